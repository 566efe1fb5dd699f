//! Zero data loss: database outages, an engine killed with SIGKILL, a database that answers
//! with errors, and a full spool — each against real VictoriaMetrics.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use heatgrid::app::{self, EngineHandle};
use heatgrid::config::Config;
use heatgrid::stats::Stats;
use heatgrid_sim::SimConfig;

use crate::fault_http;
use crate::util;

const SPEED: f64 = 20.0;

fn ids(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("st-{i:03}")).collect()
}

fn config_text(
    n: usize,
    mqtt_port: u16,
    influx_port: u16,
    data_dir: &std::path::Path,
    extra_storage: &str,
) -> String {
    let mut text = format!(
        "[engine]\ndata_dir = {:?}\ntick_s = {}\nstaleness_s = 2\ncommand_valid_for_s = 30\ntime_scale = {SPEED}\n\
         [mqtt]\nport = {mqtt_port}\nclient_id = \"engine-durability-{}\"\n\
         [api]\nlisten = \"\"\n[storage]\nflush_interval_ms = 200\n{extra_storage}\n\
         [storage.influxdb]\nurl = \"http://127.0.0.1:{influx_port}\"\norg = \"o\"\nbucket = \"b\"\ntimeout_s = 2\n",
        data_dir.display().to_string(),
        5.0 / SPEED,
        util::free_port(),
    );
    for id in ids(n) {
        text.push_str(&format!("[[station]]\nid = {id:?}\n"));
    }
    text
}

fn sim(port: u16, n: usize, period_s: f64) -> SimConfig {
    SimConfig {
        port,
        stations: n,
        seed: 5,
        speed: SPEED,
        telemetry_period_s: period_s,
        ..SimConfig::default()
    }
}

/// Waits until the writer has emptied the spool.
async fn wait_drained(engine: &EngineHandle, timeout: Duration) -> bool {
    let stats = engine.stats().clone();
    util::eventually(timeout, || {
        Stats::get(&stats.spool_appended) > 0
            && Stats::get(&stats.store_written) + Stats::get(&stats.dead_letters)
                >= Stats::get(&stats.spool_appended)
    })
    .await
}

fn total(m: &BTreeMap<String, usize>) -> usize {
    m.values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_for_30_s_loses_no_point() {
    let broker = util::mosquitto();
    let vm_dir = tempfile::tempdir().unwrap();
    let vm_port = util::free_port();
    let vm = util::start_victoria_metrics(vm_dir.path(), vm_port);
    let dir = tempfile::tempdir().unwrap();
    let n = 4;
    let cfg = Config::parse(
        &config_text(n, broker.port, vm_port, dir.path(), ""),
        &|_| None,
    )
    .unwrap();
    let engine = app::start(cfg).await.unwrap();
    assert!(
        engine.wait_subscribed(Duration::from_secs(20)).await,
        "engine never subscribed"
    );
    let sim = heatgrid_sim::spawn(sim(broker.port, n, 5.0)).await;
    let stats = engine.stats().clone();
    assert!(
        util::eventually(Duration::from_secs(20), || Stats::get(&stats.store_written)
            > 50)
        .await
    );

    vm.stop_gracefully();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let backlog = engine.spool_depth().points;
    assert!(
        backlog > 100,
        "points must wait in the spool while the database is down ({backlog})"
    );
    assert!(Stats::get(&stats.store_write_errors) > 0);
    let _vm = util::start_victoria_metrics(vm_dir.path(), vm_port);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let views = sim.stop().await;
    let published: u64 = views.iter().map(|v| v.published).sum();
    assert!(
        util::eventually(Duration::from_secs(30), || Stats::get(
            &stats.readings_accepted
        ) >= published)
        .await
    );
    assert!(
        wait_drained(&engine, Duration::from_secs(60)).await,
        "spool not drained"
    );
    let accepted = Stats::get(&stats.readings_accepted);
    let sent = Stats::get(&stats.commands_sent);
    engine.shutdown().await;
    assert_eq!(accepted, published);
    let stored = util::vm_wait_total(
        vm_port,
        "telemetry_supply_temp_c",
        accepted as usize,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        stored as u64, accepted,
        "distinct telemetry points in the database vs accepted"
    );
    let cmds = util::vm_wait_total(
        vm_port,
        "command_seq",
        sent as usize,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(cmds as u64, sent, "distinct command points vs sent");
}

/// Bytes in the spool after its cursor (segment id, offset): what the database has not confirmed.
fn unconfirmed_bytes(spool_dir: &std::path::Path) -> u64 {
    let cursor = std::fs::read_to_string(spool_dir.join("cursor")).unwrap();
    let mut it = cursor.split_whitespace().map(|x| x.parse::<u64>().unwrap());
    let (seg, off) = (it.next().unwrap(), it.next().unwrap());
    std::fs::read_dir(spool_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let id: u64 = name
                .strip_prefix("seg-")?
                .strip_suffix(".lp")?
                .parse()
                .ok()?;
            let len = e.metadata().ok()?.len();
            (id >= seg).then(|| {
                if id == seg {
                    len.saturating_sub(off)
                } else {
                    len
                }
            })
        })
        .sum()
}

/// Waits (up to 20 s) for `heating/engine/state` = `online`.
async fn engine_online(port: u16) -> bool {
    let (client, mut el) = rumqttc::AsyncClient::new(
        rumqttc::MqttOptions::new("presence-probe", "127.0.0.1", port),
        10,
    );
    let _ = client
        .subscribe("heating/engine/state", rumqttc::QoS::AtLeastOnce)
        .await;
    let wait = async {
        loop {
            match el.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Incoming::Publish(p)))
                    if &p.payload[..] == b"online" =>
                {
                    return
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    };
    let ok = tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .is_ok();
    let _ = client.disconnect().await;
    ok
}

fn spawn_engine(config: &std::path::Path, log: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_heatgrid"))
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start heatgrid run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_killed_with_sigkill_loses_nothing_and_never_reuses_a_seq() {
    let broker = util::mosquitto();
    let vm_dir = tempfile::tempdir().unwrap();
    let vm_port = util::free_port();
    let vm = util::start_victoria_metrics(vm_dir.path(), vm_port);
    let dir = tempfile::tempdir().unwrap();
    let n = 4;
    let config = dir.path().join("heatgrid.toml");
    std::fs::write(
        &config,
        config_text(n, broker.port, vm_port, &dir.path().join("data"), ""),
    )
    .unwrap();
    let mut engine = spawn_engine(&config, &dir.path().join("engine1.log"));
    // Telemetry published before the engine's subscriptions exist reaches nobody: wait for the
    // engine's retained `online` presence (published right after it requested its
    // subscriptions), then a moment for the broker's SUBACKs.
    assert!(engine_online(broker.port).await, "engine never came online");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sim = heatgrid_sim::spawn(sim(broker.port, n, 5.0)).await;
    let commanded =
        |sim: &heatgrid_sim::SimHandle| sim.snapshot().iter().all(|v| v.commands_received > 5);
    assert!(
        util::eventually(Duration::from_secs(30), || commanded(&sim)).await,
        "engine never commanded"
    );

    // Database down so the spool fills, then the engine is killed mid-run.
    vm.stop_gracefully();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let spool_dir = dir.path().join("data/spool");
    let spooled = unconfirmed_bytes(&spool_dir);
    assert!(
        spooled > 5_000,
        "spool should hold the outage's points ({spooled} bytes)"
    );
    engine.kill().unwrap(); // SIGKILL
    engine.wait().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await; // stations keep publishing into the broker

    let _vm = util::start_victoria_metrics(vm_dir.path(), vm_port);
    let mut engine = spawn_engine(&config, &dir.path().join("engine2.log"));
    let before: u64 = sim.snapshot().iter().map(|v| v.commands_received).sum();
    assert!(
        util::eventually(Duration::from_secs(30), || sim
            .snapshot()
            .iter()
            .map(|v| v.commands_received)
            .sum::<u64>()
            > before + 20)
        .await,
        "restarted engine does not command"
    );
    let views = sim.stop().await;
    let published: u64 = views.iter().map(|v| v.published).sum();
    for v in &views {
        assert_eq!(
            v.commands_refused, 0,
            "{} got a reused or older seq after the restart",
            v.id
        );
    }
    let stored = util::vm_wait_total(
        vm_port,
        "telemetry_supply_temp_c",
        published as usize,
        Duration::from_secs(60),
    )
    .await;
    // Graceful stop (SIGTERM) of the second engine.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(engine.id().to_string())
        .status();
    let _ = tokio::task::spawn_blocking(move || engine.wait()).await;
    assert_eq!(
        stored as u64,
        published,
        "distinct telemetry points in the database vs published; logs in {}",
        dir.path().display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_errors_get_the_right_policy_and_bad_lines_become_dead_letters() {
    let broker = util::mosquitto();
    let vm = util::victoria_metrics();
    // The fault injector: 3 × 500, then 2 × 429 with Retry-After: 2, then 413 for bodies over
    // 3 kB, and 400 for any batch holding a command line of st-003 (it plays "bad data").
    let rule: Arc<fault_http::Rule> = Arc::new(|n: usize, body: &[u8]| {
        let text = String::from_utf8_lossy(body);
        let answer = |s: u16, h: Vec<(String, String)>, b: &str| Some((s, h, b.to_owned()));
        match n {
            1..=3 => answer(500, vec![], "internal error"),
            4..=5 => answer(429, vec![("Retry-After".into(), "2".into())], "slow down"),
            _ if body.len() > 3000 => answer(413, vec![], "request too large"),
            _ if text
                .lines()
                .any(|l| l.starts_with("command,station=st-003")) =>
            {
                answer(400, vec![], "partial write: field type conflict")
            }
            _ => None,
        }
    });
    let injector = fault_http::start(vm.port, rule).await;
    let dir = tempfile::tempdir().unwrap();
    let n = 4;
    let cfg = Config::parse(
        &config_text(n, broker.port, injector.port, dir.path(), ""),
        &|_| None,
    )
    .unwrap();
    let engine = app::start(cfg).await.unwrap();
    assert!(
        engine.wait_subscribed(Duration::from_secs(20)).await,
        "engine never subscribed"
    );
    let sim = heatgrid_sim::spawn(sim(broker.port, n, 5.0)).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let views = sim.stop().await;
    let published: u64 = views.iter().map(|v| v.published).sum();
    let stats = engine.stats().clone();
    // Every reading the stations published reaches the engine (the broker holds QoS 1 for
    // it); under load the last ones may take a while, never forever.
    let arrived = util::eventually(Duration::from_secs(30), || {
        Stats::get(&stats.readings_accepted) >= published
    })
    .await;
    let accepted = Stats::get(&stats.readings_accepted);
    assert!(
        arrived && accepted == published && published > 0,
        "accepted {accepted} of {published} published"
    );
    assert!(
        wait_drained(&engine, Duration::from_secs(30)).await,
        "spool not drained"
    );
    engine.shutdown().await;

    let log = injector.log.lock().unwrap().clone();
    let statuses: Vec<u16> = log.iter().map(|(_, s)| *s).collect();
    assert_eq!(&statuses[..5], &[500, 500, 500, 429, 429], "{statuses:?}");
    assert!(
        log[4].0 - log[3].0 >= Duration::from_millis(1900),
        "Retry-After not honoured"
    );
    assert!(
        log[5].0 - log[4].0 >= Duration::from_millis(1900),
        "Retry-After not honoured"
    );
    assert!(
        statuses.contains(&413) && statuses.contains(&400),
        "{statuses:?}"
    );
    assert!(Stats::get(&stats.store_retries) >= 5);

    // Dead letters hold exactly st-003's command lines, each once, with the reason.
    let seqs: serde_json::Value = util::seqs(dir.path());
    let mut dead = Vec::new();
    for e in std::fs::read_dir(dir.path().join("dead-letter")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        assert!(text.contains("# HTTP 400: partial write"));
        dead.extend(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    assert!(
        dead.iter().all(|l| l.starts_with("command,station=st-003")),
        "{dead:?}"
    );
    assert_eq!(dead.len() as u64, seqs["st-003"].as_u64().unwrap());
    assert_eq!(Stats::get(&stats.dead_letters), dead.len() as u64);

    // Everything else is in the database.
    let stored = util::vm_wait_total(
        vm.port,
        "telemetry_supply_temp_c",
        accepted as usize,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(stored as u64, accepted);
    let sent = Stats::get(&stats.commands_sent) as usize;
    let cmds = util::vm_wait_total(
        vm.port,
        "command_seq",
        sent - dead.len(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(cmds, sent - dead.len());
    assert_eq!(
        util::vm_count(vm.port, "command_seq").await.get("st-003"),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_refuses_new_points_loudly_and_recovers() {
    let broker = util::mosquitto();
    let vm_dir = tempfile::tempdir().unwrap();
    let vm_port = util::free_port(); // nothing listens here yet: the database is down
    let dir = tempfile::tempdir().unwrap();
    let n = 20;
    let cfg = Config::parse(
        &config_text(n, broker.port, vm_port, dir.path(), "max_spool_mb = 1"),
        &|_| None,
    )
    .unwrap();
    let engine = app::start(cfg).await.unwrap();
    assert!(
        engine.wait_subscribed(Duration::from_secs(20)).await,
        "engine never subscribed"
    );
    let sim = heatgrid_sim::spawn(sim(broker.port, n, 1.0)).await;
    let stats = engine.stats().clone();
    assert!(
        util::eventually(Duration::from_secs(45), || Stats::get(&stats.spool_refused)
            > 100)
        .await,
        "spool never reported full"
    );
    let depth = engine.spool_depth().bytes;
    assert!(depth <= 1 << 20, "spool grew past its limit: {depth}");
    // Control goes on while storage refuses.
    let sent = Stats::get(&stats.commands_sent);
    assert!(
        util::eventually(Duration::from_secs(5), || Stats::get(&stats.commands_sent)
            > sent + 20)
        .await
    );

    let _vm = util::start_victoria_metrics(vm_dir.path(), vm_port);
    let views = sim.stop().await;
    let published: u64 = views.iter().map(|v| v.published).sum();
    assert!(
        util::eventually(Duration::from_secs(30), || Stats::get(
            &stats.readings_accepted
        ) >= published)
        .await
    );
    assert!(
        wait_drained(&engine, Duration::from_secs(60)).await,
        "spool not drained"
    );
    engine.shutdown().await;
    // Shutdown drains what came after (stale alarms once the stations stopped): count after it.
    let appended = Stats::get(&stats.spool_appended) as usize;
    assert_eq!(Stats::get(&stats.store_written) as usize, appended);
    // New series take seconds to appear in VictoriaMetrics: poll until all three add up.
    let metrics = ["telemetry_supply_temp_c", "command_seq", "alarm_active"];
    let mut stored = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        stored = 0;
        for m in metrics {
            stored += total(&util::vm_count(vm_port, m).await);
        }
        if stored >= appended {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(stored, appended, "every point the spool accepted is stored");
}
