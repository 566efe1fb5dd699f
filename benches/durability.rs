//! Durability benchmarks (not a test: figures for docs/performance.md).
//!
//! `cargo bench --bench durability`. Parts:
//! 1. spool append (one line per append, as ingest does, and 100 per append) and drain
//!    (read 5,000-line batches + commit) with the default fsync policy (interval 1 s);
//! 2. with `HEATGRID_BENCH_INFLUX_URL` (e.g. VictoriaMetrics): catch-up after an outage — a
//!    spool holding `OUTAGE_S` seconds of points at 20,000 points/s is drained by the real
//!    writer into the database while live points keep arriving at 20,000 points/s;
//! 3. with `HEATGRID_BENCH_MQTT_PORT` (mosquitto): ingest throughput of the engine with
//!    `ack_after_spool` on and off (QoS 1 telemetry, 1,000 stations).
//!
//! `benches/run.sh` starts mosquitto and VictoriaMetrics on free ports and runs this.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use heatgrid::config::{Config, InfluxConfig};
use heatgrid::stats::Stats;
use heatgrid::store::influx::InfluxApi;
use heatgrid::store::spool::{FsyncPolicy, Spool, SpoolConfig};
use heatgrid::store::{influx::InfluxWriter, Sink, Writer, WriterConfig};

/// Appends ready-made lines straight to the spool (what the store does with encoded records),
/// so the figure is the spool's own.
fn append(spool: &Spool, lines: &[String]) -> bool {
    let mut body = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for l in lines {
        body.extend_from_slice(l.as_bytes());
        body.push(b'\n');
    }
    spool.append(&body, lines.len() as u64).is_ok()
}

fn line(i: u64) -> String {
    format!(
        "telemetry,station=st-{:04},district=north supply_temp_c=55.31,return_temp_c=42.7,flow_m3h=251.2,\
         heated_area_m2=100000.0,outdoor_temp_c=-6.5,indoor_temp_c=19.8,valve_pct=61.2,pump_pct=78.0,\
         heat_kw=3685.4,delta_t_k=12.61,heat_w_m2=36.85 {}",
        i % 1000,
        1_764_262_800_000 + i as i64
    )
}

fn spool_in(dir: &std::path::Path) -> Arc<Spool> {
    Spool::open(SpoolConfig {
        dir: dir.to_path_buf(),
        segment_bytes: 64 << 20,
        max_bytes: 64 << 30,
        fsync: FsyncPolicy::Interval(Duration::from_secs(1)),
    })
    .unwrap()
}

fn part1() {
    let n = 1_000_000u64;
    for per_append in [1u64, 100] {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool_in(dir.path());
        // The interval fsync runs beside the appends, as in the engine.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let syncer = {
            let (spool, stop) = (spool.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_secs(1));
                    spool.sync().unwrap();
                }
            })
        };
        let lines: Vec<String> = (0..n).map(line).collect();
        let t = Instant::now();
        for chunk in lines.chunks(per_append as usize) {
            assert!(append(&spool, chunk));
        }
        let append_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut reader = spool.reader().unwrap();
        let mut read = 0;
        while let Some(b) = reader.next_batch(5000, 8 << 20).unwrap() {
            read += b.lines;
            reader.commit(&b).unwrap();
        }
        let drain_s = t.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        syncer.join().unwrap();
        assert_eq!(read, n);
        println!(
            "spool, {per_append:>3} line(s) per append: append {:>9.0} points/s, drain {:>9.0} points/s, both {:>9.0} points/s ({} bytes/line)",
            n as f64 / append_s,
            n as f64 / drain_s,
            n as f64 / (append_s + drain_s),
            lines[0].len() + 1
        );
    }
}

async fn part2(url: &str) {
    let outage_s: u64 = std::env::var("OUTAGE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let live_rate = 20_000u64;
    let backlog = outage_s * live_rate;
    let dir = tempfile::tempdir().unwrap();
    let spool = spool_in(dir.path());
    let stats = Arc::new(Stats::default());
    let mut i = 0u64;
    let chunk: Vec<String> = (0..1000).map(line).collect();
    while i < backlog {
        // Distinct timestamps per point so the database keeps every one.
        let c: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(k, _)| line(i + k as u64))
            .collect();
        append(&spool, &c);
        i += 1000;
    }
    let writer = Writer::new(
        WriterConfig {
            batch_size: 5000,
            flush_interval: Duration::from_millis(1000),
            dead_letter_dir: dir.path().join("dead"),
        },
        Sink::Influx(Box::new(
            InfluxWriter::new(&InfluxConfig {
                url: url.to_owned(),
                api: InfluxApi::V2 {
                    org: "o".into(),
                    bucket: "b".into(),
                    token: String::new(),
                },
                timeout: Duration::from_secs(10),
                history_url: None,
            })
            .unwrap(),
        )),
        spool.clone(),
        stats.clone(),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let t = Instant::now();
    let task = tokio::spawn(writer.run(stop.clone(), Duration::from_secs(5)));
    // Live producer at 20k points/s in 10 ms steps.
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let per_tick = live_rate / 100;
    let caught_up = loop {
        tick.tick().await;
        let c: Vec<String> = (0..per_tick).map(|k| line(i + k)).collect();
        append(&spool, &c);
        i += per_tick;
        if spool.depth().points < 2 * 5000 {
            break t.elapsed();
        }
        if t.elapsed() > Duration::from_secs(600) {
            break t.elapsed();
        }
    };
    stop.cancel();
    let _ = task.await;
    let written = stats.store_written.load(Ordering::Relaxed);
    println!(
        "catch-up: backlog {backlog} points ({outage_s} s at {live_rate}/s) drained in {:.1} s with live load on: \
         {:.0} points/s written = {:.1}× the live rate",
        caught_up.as_secs_f64(),
        written as f64 / caught_up.as_secs_f64(),
        written as f64 / caught_up.as_secs_f64() / live_rate as f64
    );
}

async fn part3(port: u16) {
    let stations = 1000;
    let messages = 100_000u64;
    for ack_after_spool in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut text = format!(
            "[engine]\ndata_dir = {:?}\ntick_s = 5\n[api]\nlisten = \"\"\n[mqtt]\nport = {port}\nclient_id = \"bench-{ack_after_spool}-{}\"\nack_after_spool = {ack_after_spool}\n",
            dir.path().display().to_string(),
            std::process::id()
        );
        for s in 0..stations {
            text.push_str(&format!(
                "[[station]]\nid = \"st-{s:04}\"\nheated_area_m2 = 100000\n"
            ));
        }
        let cfg = Config::parse(&text, &|_| None).unwrap();
        let engine = heatgrid::app::start(cfg).await.unwrap();
        let stats = engine.stats().clone();
        let mut opts =
            rumqttc::MqttOptions::new(format!("bench-pub-{ack_after_spool}"), "127.0.0.1", port);
        opts.set_inflight(100);
        let (client, mut el) = rumqttc::AsyncClient::new(opts, 10_000);
        let poller = tokio::spawn(async move { while el.poll().await.is_ok() {} });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t = Instant::now();
        for i in 0..messages {
            let payload = format!(
                "{{\"ts\": {}, \"supply_temp_c\": 55.3, \"return_temp_c\": 42.7, \"flow_m3h\": 251.2, \"valve_pct\": 61.0, \"pump_pct\": 78.0}}",
                1_764_262_800_000 + i as i64
            );
            client
                .publish(
                    format!("heating/station/st-{:04}/telemetry", i % stations),
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .await
                .unwrap();
        }
        while Stats::get(&stats.readings_accepted) < messages
            && t.elapsed() < Duration::from_secs(120)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "ingest QoS 1 through mosquitto, ack_after_spool = {ack_after_spool}: {:.0} msg/s ({} of {messages} accepted)",
            Stats::get(&stats.readings_accepted) as f64 / secs,
            Stats::get(&stats.readings_accepted)
        );
        let _ = client.disconnect().await;
        poller.abort();
        engine.shutdown().await;
    }
}

fn main() {
    part1();
    let rt = tokio::runtime::Runtime::new().unwrap();
    if let Ok(url) = std::env::var("HEATGRID_BENCH_INFLUX_URL") {
        rt.block_on(part2(&url));
    }
    if let Some(port) = std::env::var("HEATGRID_BENCH_MQTT_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
    {
        rt.block_on(part3(port));
    }
}
