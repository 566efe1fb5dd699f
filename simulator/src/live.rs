//! The running simulator's two tasks: the MQTT loop (commands in, acks and presence out) and
//! the stepper (plant physics in simulated time, telemetry out).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, Outgoing, QoS};
use tokio::sync::watch;
use tracing::warn;

use crate::shared::{now_ms, Shared};
use crate::{station, SimConfig};

/// The simulator's MQTT client (a unique client id per run, no Nagle, a deep request queue:
/// a whole fleet's telemetry of one step is queued at once).
pub(crate) fn client(cfg: &SimConfig) -> (AsyncClient, rumqttc::EventLoop) {
    let id = format!(
        "heatgrid-sim-{}-{}",
        std::process::id(),
        rand::rng().random::<u32>()
    );
    let mut opts = MqttOptions::new(id, &cfg.host, cfg.port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(20);
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    let (client, mut el) = AsyncClient::new(opts, 100_000);
    el.set_network_options(net);
    (client, el)
}

/// The simulator's MQTT side: on every ConnAck subscribes to the commands and announces each
/// station online; hands each command to its station and answers on `…/ack`. Ends on the
/// DISCONNECT sent by [`crate::SimHandle::stop`] (after everything queued before it).
pub(crate) async fn mqtt_loop(
    mut el: rumqttc::EventLoop,
    client: AsyncClient,
    shared: Arc<Mutex<Shared>>,
    prefix: String,
    ids: Vec<String>,
) {
    let mut failures = 0u32;
    loop {
        // Ends on the DISCONNECT sent by `stop` (after everything queued before it).
        match el.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                failures = 0;
                let _ =
                    client.try_subscribe(format!("{prefix}/station/+/command"), QoS::AtLeastOnce);
                let plant = shared
                    .lock()
                    .ok()
                    .filter(|sh| !sh.plant_over_modbus)
                    .and_then(|sh| sh.network.as_ref().map(|(_, id)| id.clone()));
                if let Some(id) = plant {
                    let _ = client
                        .try_subscribe(format!("{prefix}/plant/{id}/command"), QoS::AtLeastOnce);
                    let _ = client.try_publish(
                        format!("{prefix}/plant/{id}/state"),
                        QoS::AtLeastOnce,
                        true,
                        "online",
                    );
                }
                for id in &ids {
                    let _ = client.try_publish(
                        format!("{prefix}/station/{id}/state"),
                        QoS::AtLeastOnce,
                        true,
                        "online",
                    );
                }
            }
            Ok(Event::Incoming(Incoming::Publish(p)))
                if p.topic.starts_with(&format!("{prefix}/plant/")) =>
            {
                plant_command(&client, &shared, &prefix, &p.topic, &p.payload);
            }
            Ok(Event::Incoming(Incoming::Publish(p))) => {
                let id = p
                    .topic
                    .strip_prefix(&format!("{prefix}/station/"))
                    .and_then(|r| r.strip_suffix("/command"))
                    .map(str::to_owned);
                let cmd = serde_json::from_slice::<station::Command>(&p.payload);
                if let (Some(id), Ok(cmd)) = (id, cmd) {
                    let verdict = shared.lock().ok().and_then(|mut sh| {
                        let i = *sh.index.get(&id)?;
                        Some(sh.command(i, cmd, now_ms()))
                    });
                    // Acknowledge (contract: `{prefix}/station/{id}/ack`, optional).
                    let ack = match verdict {
                        Some(Ok(seq)) => Some(serde_json::json!({ "seq": seq })),
                        Some(Err(e)) => Some(serde_json::json!({ "seq": 0, "error": e })),
                        None => None,
                    };
                    if let Some(ack) = ack {
                        let _ = client.try_publish(
                            format!("{prefix}/station/{id}/ack"),
                            QoS::AtLeastOnce,
                            false,
                            ack.to_string(),
                        );
                    }
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    warn!(error = %e, "Simulator MQTT connection error; retrying.");
                }
                let delay = Duration::from_millis((100u64 << failures.min(6)).min(5000));
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// A command for the network's plant (contract §7): handed to its PLC, answered on `…/ack`
/// with the seq, or with seq 0 and the reason it was refused.
fn plant_command(
    client: &AsyncClient,
    shared: &Arc<Mutex<Shared>>,
    prefix: &str,
    topic: &str,
    payload: &[u8],
) {
    let Some(id) = topic
        .strip_prefix(&format!("{prefix}/plant/"))
        .and_then(|r| r.strip_suffix("/command"))
    else {
        return;
    };
    let verdict = shared.lock().ok().and_then(|mut sh| {
        let (w, plant) = sh.network.as_mut()?;
        (plant == id).then(|| w.on_command(&String::from_utf8_lossy(payload), now_ms()))
    });
    let ack = match verdict {
        Some(Ok(seq)) => serde_json::json!({ "seq": seq }),
        Some(Err(e)) => serde_json::json!({ "seq": 0, "error": e }),
        None => return,
    };
    let _ = client.try_publish(
        format!("{prefix}/plant/{id}/ack"),
        QoS::AtLeastOnce,
        false,
        ack.to_string(),
    );
}

/// Steps every plant in simulated time (`speed` × wall time) and publishes each station's
/// telemetry every `telemetry_period_s` of simulated time (Modbus stations are read when
/// polled instead), until `stop`.
pub(crate) async fn step_loop(
    cfg: SimConfig,
    shared: Arc<Mutex<Shared>>,
    client: AsyncClient,
    qos: QoS,
    mut stop_rx: watch::Receiver<bool>,
    over_modbus: bool,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    let mut next_telemetry = 0.0;
    let mut forecast_hour = None;
    // Simulated seconds owed to the plant. It steps in whole `step_s` (or up to the next
    // telemetry instant), never in 10 ms slices: at speed 1 that was 100 steps per
    // station per second, which capped a real-time fleet at a few thousand stations.
    let mut budget = 0.0;
    // Wall-clock time of each sample is interpolated from simulated time, so samples
    // taken within one wall tick still get distinct, evenly spaced timestamps.
    let (origin_ms, origin_sim) = (now_ms(), shared.lock().map(|s| s.sim_time_s).unwrap_or(0.0));
    let wall_of =
        |sim_t: f64| origin_ms + ((sim_t - origin_sim) / cfg.speed * 1000.0).round() as i64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop_rx.wait_for(|s| *s) => return,
        }
        let now = Instant::now();
        budget += now.duration_since(last).as_secs_f64() * cfg.speed;
        last = now;
        let wall = now_ms();
        let mut out = Vec::new();
        let mut forecast = None;
        {
            let Ok(mut sh) = shared.lock() else { return };
            loop {
                // Step to the next telemetry instant at most, so samples are on time.
                let dt = cfg.step_s.min((next_telemetry - sh.sim_time_s).max(1e-3));
                if budget < dt {
                    break;
                }
                let outdoor = cfg.outdoor_c(sh.sim_time_s);
                sh.outdoor_c = outdoor;
                let day_t = cfg.start_hour * 3600.0 + sh.sim_time_s;
                let sh = &mut *sh;
                if let Some((w, _)) = &mut sh.network {
                    w.before(dt, day_t, outdoor, wall, &mut sh.stations);
                }
                for s in &mut sh.stations {
                    s.step(dt, outdoor, wall);
                }
                if let Some((w, _)) = &mut sh.network {
                    w.after(dt, day_t, &sh.stations, false);
                }
                sh.sim_time_s += dt;
                budget -= dt;
                let hour = (sh.sim_time_s / 3600.0).floor();
                if let Some(err) = cfg.forecast.filter(|_| forecast_hour != Some(hour)) {
                    forecast_hour = Some(hour);
                    let points = crate::forecast::issue(
                        |t| (cfg.outdoor_c(t), 0.0),
                        sh.sim_time_s,
                        48,
                        &err,
                        cfg.seed,
                    );
                    forecast = Some(crate::forecast::to_json(&points, wall_of));
                }
                if sh.sim_time_s + 1e-9 >= next_telemetry {
                    next_telemetry += cfg.telemetry_period_s;
                    let ts = wall_of(sh.sim_time_s);
                    // Modbus PLCs are read when polled, not published.
                    let publishing = !over_modbus;
                    let plant_publishes = publishing && !sh.plant_silenced && !sh.plant_over_modbus;
                    if let Some((w, id)) = sh.network.as_ref().filter(|_| plant_publishes) {
                        let payload = serde_json::to_string(&w.telemetry(ts)).unwrap_or_default();
                        out.push((
                            format!("{}/plant/{id}/telemetry", cfg.topic_prefix),
                            payload,
                        ));
                    }
                    for s in sh.stations.iter_mut().filter(|s| publishing && !s.silenced) {
                        let payload = s.telemetry(ts, outdoor);
                        out.push((
                            format!("{}/station/{}/telemetry", cfg.topic_prefix, s.id),
                            payload.to_json(),
                        ));
                    }
                }
            }
        }
        let mut failed = 0;
        if let Some(f) = forecast {
            let topic = format!("{}/weather/forecast", cfg.topic_prefix);
            if client
                .try_publish(topic, QoS::AtLeastOnce, true, f)
                .is_err()
            {
                failed += 1;
            }
        }
        // Waits for room rather than dropping: a reading counted as published is sent (it
        // fails only once the MQTT event loop is gone).
        for (topic, payload) in out {
            if client.publish(topic, qos, false, payload).await.is_err() {
                failed += 1;
            }
        }
        if failed > 0 {
            if let Ok(mut sh) = shared.lock() {
                sh.publish_failures += failed;
            }
        }
    }
}
