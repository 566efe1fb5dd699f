//! Predictive control in the running engine, with the forecast over MQTT: a station learns
//! its building, stays on the curve and says why while no forecast has come, plans once a
//! retained forecast arrives on `heating/weather/forecast` (heating ahead of a forecast cold
//! front), and eases back to its curve when that forecast goes stale.

use std::time::Duration;

use heatgrid::app;
use heatgrid::predict::forecast::Freshness;
use heatgrid::predict::State;
use heatgrid_sim::SimConfig;

use crate::util;

/// Plant seconds per wall second: a plant hour is 15 s here.
const SPEED: f64 = 240.0;

/// A forecast as a weather service would publish it, on the wall clock the engine scales to
/// its plant clock: one point per plant hour for 48 plant hours from now, `outdoor(h)` °C.
fn forecast(outdoor: impl Fn(f64) -> f64) -> String {
    let now = heatgrid::clock::now_ms();
    let hour_ms = (3_600_000.0 / SPEED) as i64;
    let points: Vec<String> = (0..=48)
        .map(|h| {
            format!(
                r#"{{"ts": {}, "outdoor_temp_c": {:.2}, "solar_w_m2": 0}}"#,
                now + h * hour_ms,
                outdoor(h as f64)
            )
        })
        .collect();
    format!("[{}]", points.join(","))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forecast_over_mqtt_drives_the_plan_and_a_stale_one_hands_back_to_the_curve() {
    let broker = util::mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (1..=2).map(|n| format!("st-{n:03}")).collect();
    let mut cfg = util::engine_config(&ids, broker.port, "3.1.1", SPEED, dir.path(), None);
    util::with_viewer(&mut cfg);
    cfg.coordinator = Some(Default::default());
    cfg.predictive = heatgrid::predict::Settings {
        enabled: true,
        min_fit_hours: 3,
        max_rmse_k: 0.5,
        replan_s: 600.0,
        forecast_max_age_h: 2.0,
        ..Default::default()
    };
    let engine = app::start(cfg).await.unwrap();
    let api = format!("http://{}", engine.api_addr().unwrap());
    let cli = |args: &[&str]| util::viewer_cli(&api, args);
    assert!(engine.wait_subscribed(Duration::from_secs(20)).await);
    let sim_cfg = SimConfig {
        port: broker.port,
        stations: 2,
        speed: SPEED,
        seed: 5,
        ..SimConfig::default()
    };
    let sim = heatgrid_sim::spawn(sim_cfg.clone()).await;
    let state = |e: &app::EngineHandle| {
        e.status()
            .iter()
            .find(|s| s.id.as_str() == "st-001")
            .and_then(|s| s.predictive)
    };
    // Three plant hours with an indoor temperature, then: on the curve, no forecast.
    let learned = util::eventually(Duration::from_secs(150), || {
        state(&engine)
            .is_some_and(|p| p.fit_hours >= 3 && p.state == State::NoForecast(Freshness::Missing))
    })
    .await;
    assert!(learned, "{:?}", state(&engine));
    assert_eq!(state(&engine).unwrap().shift_k, 0.0);
    assert!(cli(&["station", "st-001"]).contains("on the curve: no forecast received"));

    // A retained forecast: steady weather now, a cold front 10 K colder from hour 6.
    let mut opts = rumqttc::MqttOptions::new("forecast-service", "127.0.0.1", broker.port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = rumqttc::AsyncClient::new(opts, 10);
    let poller = tokio::spawn(async move { while el.poll().await.is_ok() {} });
    let now_c = sim_cfg.outdoor_c(sim.sim_time_s());
    let payload = forecast(|h| if h < 6.0 { now_c } else { now_c - 10.0 });
    client
        .publish(
            "heating/weather/forecast",
            rumqttc::QoS::AtLeastOnce,
            true,
            payload.into_bytes(),
        )
        .await
        .unwrap();
    // Planning: heating ahead of the front (a negative shift on the curve's outdoor input).
    let pre_heats = util::eventually(Duration::from_secs(40), || {
        state(&engine).is_some_and(|p| p.state.is_active() && p.shift_k < -0.5)
    })
    .await;
    let planning = state(&engine);
    let shown = cli(&["station", "st-001"]);
    let json: serde_json::Value =
        serde_json::from_str(&cli(&["station", "st-001", "--json"])).unwrap();
    assert!(pre_heats, "{planning:?}");
    assert!(
        shown.contains("predict   predictive, weather shift -"),
        "{shown}"
    );
    let p = &json["predictive"];
    assert_eq!(p["active"], true, "{json}");
    assert!(p["model"]["fit_hours"].as_u64().unwrap() >= 3, "{p}");
    let ua = p["model"]["ua_kw_k"].as_f64().unwrap();
    assert!(ua > 0.0 && ua.is_finite(), "{p}");
    assert!(p["weather_shift_k"].as_f64().unwrap() >= -10.0, "{p}");

    // Two plant hours later (30 s) the forecast is stale: back to the curve, eased by the
    // step limit, and the state says why; commands go on.
    let received = |sim: &heatgrid_sim::SimHandle| {
        sim.snapshot()
            .iter()
            .find(|v| v.id == "st-001")
            .map_or(0, |v| v.commands_received)
    };
    let seq_before = received(&sim);
    let back = util::eventually(Duration::from_secs(90), || {
        state(&engine).is_some_and(|p| {
            matches!(p.state, State::NoForecast(Freshness::TooOld(_))) && p.shift_k == 0.0
        })
    })
    .await;
    let after = state(&engine);
    let shown = cli(&["station", "st-001"]);
    let seq_after = received(&sim);
    let views = sim.snapshot();
    let engine_view: Vec<_> = engine
        .status()
        .iter()
        .map(|s| (s.seq, s.stale, s.predictive.map(|p| p.state)))
        .collect();
    poller.abort();
    sim.stop().await;
    engine.shutdown().await;
    assert!(back, "{after:?}");
    assert!(shown.contains("on the curve: forecast is"), "{shown}");
    assert!(
        seq_after > seq_before + 10,
        "commands received {seq_before} → {seq_after}; sim {views:?}; engine {engine_view:?}"
    );
}
