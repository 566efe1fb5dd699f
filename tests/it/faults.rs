//! Faults the engine must ride through: the broker restarting, the engine itself going away.

use std::time::Duration;

use heatgrid::app;
use heatgrid::config::Config;
use heatgrid::stats::Stats;
use heatgrid_sim::SimConfig;

use crate::util;

const SPEED: f64 = 20.0;

fn config(n: usize, port: u16, dir: &std::path::Path, valid_for_s: u32) -> Config {
    let mut text = format!(
        "[engine]\ndata_dir = {:?}\ntick_s = {}\nstaleness_s = 2\ncommand_valid_for_s = {valid_for_s}\ntime_scale = {SPEED}\n\
         [mqtt]\nport = {port}\nclient_id = \"engine-faults\"\n[storage]\nflush_interval_ms = 200\n[api]\nlisten = \"\"\n",
        dir.display().to_string(),
        5.0 / SPEED,
    );
    for i in 1..=n {
        text.push_str(&format!("[[station]]\nid = \"st-{i:03}\"\n"));
    }
    Config::parse(&text, &|_| None).unwrap()
}

fn sim(port: u16, n: usize) -> SimConfig {
    SimConfig {
        port,
        stations: n,
        speed: SPEED,
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_for_30_s_then_telemetry_and_commands_flow_again() {
    let broker = util::mosquitto();
    let port = broker.port;
    let dir = tempfile::tempdir().unwrap();
    let n = 3;
    let engine = app::start(config(n, port, dir.path(), 30)).await.unwrap();
    let sim = heatgrid_sim::spawn(sim(port, n)).await;
    let stats = engine.stats().clone();
    assert!(
        util::eventually(Duration::from_secs(20), || Stats::get(&stats.commands_sent)
            > 20)
        .await
    );

    drop(broker); // killed: both sides lose the connection
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        util::eventually(Duration::from_secs(10), || engine
            .status()
            .iter()
            .all(|s| s.stale))
        .await,
        "without the broker every station goes stale"
    );
    let sent_during_outage = Stats::get(&stats.commands_sent);

    let _broker = util::mosquitto_on(port);
    let back = std::time::Instant::now();
    let received = |sim: &heatgrid_sim::SimHandle| {
        sim.snapshot()
            .iter()
            .map(|v| v.commands_received)
            .sum::<u64>()
    };
    let before = received(&sim);
    assert!(
        util::eventually(Duration::from_secs(20), || engine
            .status()
            .iter()
            .all(|s| !s.stale)
            && received(&sim) > before + 3 * n as u64)
        .await,
        "telemetry and commands did not flow again after the broker came back"
    );
    println!(
        "control resumed {:.1} s after the broker came back",
        back.elapsed().as_secs_f64()
    );
    assert!(
        Stats::get(&stats.mqtt_connects) >= 2,
        "the engine reconnected"
    );
    assert!(Stats::get(&stats.commands_sent) > sent_during_outage);
    sim.stop().await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stations_fall_back_when_the_engine_goes_away_and_return_when_it_is_back() {
    let broker = util::mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let n = 3;
    let sim = heatgrid_sim::spawn(sim(broker.port, n)).await;
    let engine = app::start(config(n, broker.port, dir.path(), 3))
        .await
        .unwrap();
    let all = |sim: &heatgrid_sim::SimHandle, central: bool| {
        sim.snapshot()
            .iter()
            .all(|v| v.engine_in_control == central)
    };
    assert!(
        util::eventually(Duration::from_secs(20), || all(&sim, true)).await,
        "engine never took control"
    );

    engine.shutdown().await;
    // Commands are valid for 3 s: then every station runs its local curve again.
    assert!(
        util::eventually(Duration::from_secs(10), || all(&sim, false)).await,
        "stations kept stale commands"
    );

    let engine = app::start(config(n, broker.port, dir.path(), 3))
        .await
        .unwrap();
    assert!(
        util::eventually(Duration::from_secs(20), || all(&sim, true)).await,
        "stations did not return to central control"
    );
    // seq continued across the restart, so no station refused a command.
    assert!(sim.snapshot().iter().all(|v| v.commands_refused == 0));
    sim.stop().await;
    engine.shutdown().await;
}

/// Connected but nothing arriving: the watchdog notices, says so (counter) and subscribes
/// again, and data flows as soon as there is some.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_trips_the_watchdog_which_subscribes_again() {
    let broker = util::mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[engine]\ndata_dir = {:?}\ntick_s = 0.25\nstaleness_s = 2\ntime_scale = {SPEED}\n\
         [mqtt]\nport = {}\nclient_id = \"engine-watchdog\"\nkeep_alive_s = 5\nwatchdog_s = 2\n\
         [storage]\nflush_interval_ms = 200\n[api]\nlisten = \"\"\n[[station]]\nid = \"st-001\"\n",
        dir.path().display().to_string(),
        broker.port,
    );
    let engine = app::start(Config::parse(&text, &|_| None).unwrap())
        .await
        .unwrap();
    let stats = engine.stats().clone();
    assert!(engine.wait_subscribed(Duration::from_secs(20)).await);
    let subacks = Stats::get(&stats.mqtt_subacks);
    // Nobody publishes: within a keep-alive or two the watchdog fires and resubscribes.
    assert!(
        util::eventually(Duration::from_secs(20), || Stats::get(&stats.mqtt_watchdog)
            >= 1
            && Stats::get(&stats.mqtt_subacks)
                >= subacks + heatgrid::ingest::SUBSCRIPTIONS as u64)
        .await,
        "watchdog {} subacks {} (from {subacks})",
        Stats::get(&stats.mqtt_watchdog),
        Stats::get(&stats.mqtt_subacks)
    );
    assert_eq!(
        Stats::get(&stats.mqtt_connects),
        1,
        "resubscribed, not reconnected"
    );
    let sim = heatgrid_sim::spawn(sim(broker.port, 1)).await;
    assert!(
        util::eventually(Duration::from_secs(20), || Stats::get(
            &stats.readings_accepted
        ) > 10
            && Stats::get(&stats.commands_sent) > 5)
        .await
    );
    sim.stop().await;
    engine.shutdown().await;
}
