//! The closed loop: simulator → broker → engine → commands → simulator, with storage.

use std::time::Duration;

use heatgrid::app::{self, EngineHandle};
use heatgrid::stats::Stats;
use heatgrid_sim::{SimConfig, SimHandle};

use crate::util::{self, error_k};

const SPEED: f64 = 20.0;

fn ids(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("st-{i:03}")).collect()
}

fn sim_config(port: u16, stations: usize, seed: u64) -> SimConfig {
    SimConfig {
        port,
        stations,
        seed,
        speed: SPEED,
        ..SimConfig::default()
    }
}

/// Waits until every station named in `which` (all when empty) has stayed within `band` K of
/// its setpoint for `hold` consecutive seconds. Returns the worst error seen in the hold window.
pub(crate) async fn wait_settled(
    engine: &EngineHandle,
    which: &[String],
    band: f64,
    hold: Duration,
    timeout: Duration,
) -> Result<f64, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut since: Option<tokio::time::Instant> = None;
    let mut worst = 0.0_f64;
    loop {
        let status = engine.status();
        let errs: Vec<(String, Option<f64>)> = status
            .iter()
            .filter(|s| which.is_empty() || which.iter().any(|w| w == s.id.as_str()))
            .map(|s| (s.id.to_string(), error_k(s)))
            .collect();
        let ok = !errs.is_empty() && errs.iter().all(|(_, e)| e.is_some_and(|e| e <= band));
        let now = tokio::time::Instant::now();
        if ok {
            let start = *since.get_or_insert(now);
            worst = worst.max(errs.iter().filter_map(|(_, e)| *e).fold(0.0, f64::max));
            if now - start >= hold {
                return Ok(worst);
            }
        } else {
            since = None;
            worst = 0.0;
        }
        if now >= deadline {
            return Err(format!("not settled within {timeout:?}: {errs:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stop_all(
    sim: SimHandle,
    engine: EngineHandle,
) -> (Vec<heatgrid_sim::StationView>, std::sync::Arc<Stats>) {
    let views = sim.stop().await;
    let published: u64 = views.iter().map(|v| v.published).sum();
    let stats = engine.stats().clone();
    // Everything published must have reached the engine before it stops.
    let arrived = util::eventually(Duration::from_secs(30), || {
        Stats::get(&stats.readings_accepted) + Stats::get(&stats.readings_rejected) >= published
    })
    .await;
    assert!(
        arrived,
        "engine got {} of {published} readings",
        Stats::get(&stats.readings_accepted)
    );
    engine.shutdown().await;
    (views, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_loop_settles_and_every_point_reaches_the_tsdb() {
    let broker = util::mosquitto();
    let vm = util::victoria_metrics();
    let dir = tempfile::tempdir().unwrap();
    let n = 6;
    let cfg = util::engine_config(
        &ids(n),
        broker.port,
        "3.1.1",
        SPEED,
        dir.path(),
        Some(vm.port),
    );
    let staleness_ms = cfg.stations[0].params.staleness_ms;
    let engine = app::start(cfg).await.unwrap();
    assert!(
        engine.wait_subscribed(Duration::from_secs(20)).await,
        "engine never subscribed"
    );
    let sim = heatgrid_sim::spawn(sim_config(broker.port, n, 7)).await;

    let worst = wait_settled(
        &engine,
        &[],
        1.0,
        Duration::from_secs(10),
        Duration::from_secs(90),
    )
    .await
    .unwrap();
    println!("settled: worst error over 10 s = {worst:.2} K");

    let (views, stats) = stop_all(sim, engine).await;
    let published: u64 = views.iter().map(|v| v.published).sum();
    assert_eq!(Stats::get(&stats.readings_rejected), 0);
    assert_eq!(Stats::get(&stats.readings_accepted), published);
    assert_eq!(Stats::get(&stats.spool_refused), 0);
    for v in &views {
        assert!(v.commands_received > 0, "{} got no command", v.id);
        assert_eq!(
            v.commands_refused, 0,
            "{} refused a command (seq order)",
            v.id
        );
        assert!(
            v.max_command_data_age_ms <= staleness_ms + 1000,
            "{} received a command computed from data {} ms old",
            v.id,
            v.max_command_data_age_ms
        );
    }

    // Every telemetry point is in the TSDB, per station.
    let stored = util::vm_wait_total(
        vm.port,
        "telemetry_supply_temp_c",
        published as usize,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        stored as u64, published,
        "telemetry points in VictoriaMetrics vs published"
    );
    let per_station = util::vm_count(vm.port, "telemetry_supply_temp_c").await;
    for v in &views {
        assert_eq!(
            per_station.get(&v.id).copied().unwrap_or(0) as u64,
            v.published,
            "{}",
            v.id
        );
    }
    // And every command sent, with its derived fields next to the readings.
    let sent = Stats::get(&stats.commands_sent) as usize;
    assert_eq!(
        util::vm_wait_total(vm.port, "command_seq", sent, Duration::from_secs(30)).await,
        sent
    );
    let heat = util::vm_wait_total(
        vm.port,
        "telemetry_heat_w_m2",
        published as usize,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(heat as u64, published);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_with_mqtt5_engine_settles_and_writes_local_files() {
    let ports = heatgrid::demo::start_embedded_broker().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let n = 4;
    // The engine speaks MQTT 5, the simulator 3.1.1: the broker bridges them.
    let cfg = util::engine_config(&ids(n), ports.v5, "5", SPEED, dir.path(), None);
    let engine = app::start(cfg).await.unwrap();
    assert!(
        engine.wait_subscribed(Duration::from_secs(20)).await,
        "engine never subscribed"
    );
    let sim = heatgrid_sim::spawn(sim_config(ports.v311, n, 11)).await;
    wait_settled(
        &engine,
        &[],
        1.0,
        Duration::from_secs(10),
        Duration::from_secs(90),
    )
    .await
    .unwrap();
    let (views, stats) = stop_all(sim, engine).await;
    let published: u64 = views.iter().map(|v| v.published).sum();

    let telemetry = util::stored_lines(dir.path(), "telemetry").len();
    let commands = util::stored_lines(dir.path(), "command").len();
    assert_eq!(telemetry as u64, published);
    assert_eq!(commands as u64, Stats::get(&stats.commands_sent));
    let seqs: serde_json::Value = util::seqs(dir.path());
    for v in &views {
        assert!(
            seqs[&v.id].as_u64().unwrap() >= v.commands_received,
            "{}",
            v.id
        );
    }

    // Restart on the same data directory: the first command continues the sequence.
    let (client, mut el) = rumqttc::v5::AsyncClient::new(
        rumqttc::v5::MqttOptions::new("watcher", "127.0.0.1", ports.v5),
        100,
    );
    client
        .subscribe(
            "heating/station/st-001/command",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    let first_seq = tokio::spawn(async move {
        loop {
            if let Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::Publish(p))) =
                el.poll().await
            {
                let cmd: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                return cmd["seq"].as_u64().unwrap();
            }
        }
    });
    let engine = app::start(util::engine_config(
        &ids(n),
        ports.v5,
        "5",
        SPEED,
        dir.path(),
        None,
    ))
    .await
    .unwrap();
    let sim = heatgrid_sim::spawn(sim_config(ports.v311, n, 11)).await;
    let seq = tokio::time::timeout(Duration::from_secs(30), first_seq)
        .await
        .expect("a command after restart")
        .unwrap();
    assert_eq!(
        seq,
        seqs["st-001"].as_u64().unwrap() + 1,
        "seq after restart"
    );
    stop_all(sim, engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_burst_and_a_silent_station_leave_the_others_in_control() {
    let broker = util::mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let n = 5;
    let cfg = util::engine_config(&ids(n), broker.port, "3.1.1", SPEED, dir.path(), None);
    let staleness_ms = cfg.stations[0].params.staleness_ms;
    let engine = app::start(cfg).await.unwrap();
    assert!(
        engine.wait_subscribed(Duration::from_secs(20)).await,
        "engine never subscribed"
    );
    let sim = heatgrid_sim::spawn(sim_config(broker.port, n, 3)).await;
    wait_settled(
        &engine,
        &[],
        1.0,
        Duration::from_secs(3),
        Duration::from_secs(90),
    )
    .await
    .unwrap();

    // A hostile publisher: 1,500 bad payloads on a real station's topic and on odd topics.
    let mut opts = rumqttc::MqttOptions::new("hostile", "127.0.0.1", broker.port);
    opts.set_inflight(20);
    opts.set_max_packet_size(2 << 20, 2 << 20); // rumqttc's default is 10 KiB
    let (client, mut el) = rumqttc::AsyncClient::new(opts, 4000);
    let poller = tokio::spawn(async move { while el.poll().await.is_ok() {} });
    let bad: [&[u8]; 6] = [
        b"not json",
        b"[1,2,3]",
        br#"{"supply_temp_c": "hot", "return_temp_c": 40, "flow_m3h": 1}"#,
        br#"{"supply_temp_c": 1e308, "return_temp_c": 40, "flow_m3h": 1}"#,
        br#"{"supply_temp_c": 50, "return_temp_c": 40, "flow_m3h": -3}"#,
        b"\xff\xfe\xfd",
    ];
    for k in 0..1500 {
        let topic = match k % 3 {
            0 | 1 => "heating/station/st-001/telemetry".to_owned(),
            _ => format!("heating/station/ghost-{k}/telemetry"),
        };
        client
            .publish(
                topic,
                rumqttc::QoS::AtLeastOnce,
                false,
                bad[k % bad.len()].to_vec(),
            )
            .await
            .unwrap();
    }
    // And the odd ones: a 1,000,000-byte payload, 10,000 levels of nesting, an id with a
    // character the contract forbids, a topic with an extra level (not subscribed: ignored).
    let odd: [(&str, Vec<u8>); 4] = [
        ("heating/station/st-001/telemetry", vec![b' '; 1_000_000]),
        (
            "heating/station/st-001/telemetry",
            "[".repeat(10_000).into_bytes(),
        ),
        (
            "heating/station/st.001/telemetry",
            br#"{"supply_temp_c": 50}"#.to_vec(),
        ),
        (
            "heating/station/st-001/telemetry/x",
            br#"{"supply_temp_c": 50}"#.to_vec(),
        ),
    ];
    for (topic, payload) in odd {
        client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
    let stats = engine.stats().clone();
    assert!(
        util::eventually(Duration::from_secs(20), || Stats::get(
            &stats.readings_rejected
        ) >= 1503)
        .await,
        "rejected {}: {:?}, connects {}",
        Stats::get(&stats.readings_rejected),
        stats.rejects_by_reason.lock().unwrap().clone(),
        Stats::get(&stats.mqtt_connects)
    );
    {
        let reasons = stats.rejects_by_reason.lock().unwrap().clone();
        // 1,000 bad payloads on st-001's topic (6 kinds in turn), 500 on unknown stations,
        // and the odd ones.
        let expected = [
            ("not_json", 251),
            ("not_object", 250),
            ("out_of_range", 500),
            ("unknown_station", 500),
            ("too_large", 1),
            ("bad_topic", 1),
        ];
        for (label, n) in expected {
            assert_eq!(reasons.get(label).copied(), Some(n), "{label}: {reasons:?}");
        }
    }

    // st-002 goes silent: it becomes stale, gets no further commands; the others carry on.
    assert!(sim.set_silenced("st-002", true));
    assert!(
        util::eventually(Duration::from_secs(10), || engine
            .status()
            .iter()
            .any(|s| s.id.as_str() == "st-002" && s.stale))
        .await,
        "st-002 never went stale"
    );
    let frozen = engine
        .status()
        .iter()
        .find(|s| s.id.as_str() == "st-002")
        .unwrap()
        .seq;
    let others = ids(n)
        .into_iter()
        .filter(|i| i != "st-002")
        .collect::<Vec<_>>();
    wait_settled(
        &engine,
        &others,
        1.0,
        Duration::from_secs(5),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let now = engine
        .status()
        .iter()
        .find(|s| s.id.as_str() == "st-002")
        .unwrap()
        .seq;
    assert_eq!(now, frozen, "commands were sent to a stale station");

    // Data back: control resumes.
    sim.set_silenced("st-002", false);
    wait_settled(
        &engine,
        &["st-002".to_owned()],
        1.0,
        Duration::from_secs(3),
        Duration::from_secs(60),
    )
    .await
    .unwrap();

    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), poller).await;
    let (views, _) = stop_all(sim, engine).await;
    for v in &views {
        assert!(
            v.max_command_data_age_ms <= staleness_ms + 1000,
            "{} received a command computed from data {} ms old",
            v.id,
            v.max_command_data_age_ms
        );
    }
}

/// `control_on = "telemetry"`: one command per reading, computed as soon as it arrives, with
/// a tick four times longer than the telemetry period (a tick-driven engine would send a
/// quarter as many); the loops, stepping with the time since each station's last step, settle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_following_telemetry_answers_every_reading_and_settles() {
    let broker = util::mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let n = 4;
    let mut text = format!(
        "[engine]\ndata_dir = {:?}\ntick_s = {}\nstaleness_s = 3\ncommand_valid_for_s = 30\ntime_scale = {SPEED}\ncontrol_on = \"telemetry\"\n\
         [mqtt]\nport = {}\nclient_id = \"engine-on-telemetry\"\n[storage]\nflush_interval_ms = 200\n[api]\nlisten = \"\"\n",
        dir.path().display().to_string(),
        4.0 * 5.0 / SPEED,
        broker.port,
    );
    for id in ids(n) {
        text.push_str(&format!("[[station]]\nid = {id:?}\n"));
    }
    let engine = app::start(heatgrid::config::Config::parse(&text, &|_| None).unwrap())
        .await
        .unwrap();
    assert!(engine.wait_subscribed(Duration::from_secs(20)).await);
    // Telemetry every 5 simulated seconds = 250 ms; the tick is 1 s.
    let sim = heatgrid_sim::spawn(sim_config(broker.port, n, 3)).await;
    let worst = wait_settled(
        &engine,
        &[],
        1.0,
        Duration::from_secs(10),
        Duration::from_secs(120),
    )
    .await
    .unwrap();
    println!("settled following telemetry: worst {worst:.2} K");
    let (views, stats) = stop_all(sim, engine).await;
    let readings = Stats::get(&stats.readings_accepted);
    let commands = Stats::get(&stats.commands_sent);
    assert!(
        commands as f64 >= 0.95 * readings as f64 && commands <= readings + n as u64,
        "{commands} commands for {readings} readings"
    );
    assert_eq!(Stats::get(&stats.control_triggers_dropped), 0);
    for v in &views {
        assert_eq!(v.commands_refused, 0, "{}", v.id);
    }
}
