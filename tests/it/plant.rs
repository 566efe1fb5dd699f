//! The heat plant live (contract §7): the simulator's stations on a generated network with
//! its plant, mosquitto between them and the engine, VictoriaMetrics behind it. The engine
//! commands the plant from the fleet, the plant follows, acknowledges and reports; the
//! series are stored; the API and `heatgrid plant` show it; a silent plant raises
//! `plant_stale`; a stopped engine leaves the plant on its own curve once its command
//! expires.

use std::time::Duration;

use heatgrid::app;
use heatgrid_sim::network::district::Loads;
use heatgrid_sim::{SimConfig, SimNetwork};

use crate::util;

const SPEED: f64 = 20.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_commands_the_plant_from_the_fleet_and_the_plant_falls_back_when_it_stops() {
    let broker = util::mosquitto();
    let vm = util::victoria_metrics();
    let dir = tempfile::tempdir().unwrap();
    let n = 6;
    let sim_cfg = SimConfig {
        port: broker.port,
        stations: n,
        seed: 5,
        speed: SPEED,
        ..SimConfig::default()
    };
    let ids: Vec<String> = sim_cfg.build_stations().into_iter().map(|s| s.id).collect();
    let mut cfg = util::engine_config(&ids, broker.port, "3.1.1", SPEED, dir.path(), Some(vm.port));
    // Every 5 plant seconds (a quarter of a second here), valid for 6 wall seconds.
    let plant = heatgrid::config::Config::parse(
        "[[station]]\nid = \"x\"\n[plant]\nid = \"main\"\nperiod_s = 5\ncommand_valid_for_s = 6\n\
         plant_stale_after_s = 3\nmin_dp_kpa = 60\n",
        &|_| None,
    )
    .unwrap()
    .plant;
    cfg.plant = plant;
    util::with_viewer(&mut cfg);
    let engine = app::start(cfg).await.unwrap();
    assert!(engine.wait_subscribed(Duration::from_secs(20)).await);
    let api = format!("http://{}", engine.api_addr().unwrap());
    let sim = heatgrid_sim::spawn(SimConfig {
        network: Some(SimNetwork {
            file: sim_cfg.generated_network(5),
            loads: Loads::PEAKY,
            cell_m: 50.0,
            plant_id: "main".into(),
            plant_modbus: None,
        }),
        ..sim_cfg
    })
    .await;

    // The plant follows the engine: commands accepted, none refused, the pump holding the
    // minimum at the station the engine named.
    let following = util::eventually(Duration::from_secs(30), || {
        sim.plant()
            .is_some_and(|(t, received, _)| t.mode == "engine" && received >= 5)
    })
    .await;
    let (telemetry, received, refused) = sim.plant().unwrap();
    assert!(following, "{telemetry:?}, {received} received");
    assert_eq!(refused, 0);
    let v: serde_json::Value =
        serde_json::from_str(&util::viewer_cli(&api, &["plant", "--json"])).unwrap();
    assert_eq!(v["id"], "main");
    assert_eq!(v["mode"], "control");
    assert_eq!(v["stale"], false);
    assert_eq!(v["plan"]["basis"], "fleet", "{v}");
    assert!(v["reading"]["supply_temp_c"].as_f64().unwrap() > 50.0);
    let point = v["plan"]["pressure_point"].as_str().unwrap().to_owned();
    assert!(ids.contains(&point), "{point}");
    // At the minimum, or a little above when that station's valve asks for more.
    let dp_setpoint = v["plan"]["diff_pressure_setpoint_kpa"].as_f64().unwrap();
    assert!((60.0..80.0).contains(&dp_setpoint), "{dp_setpoint}");
    assert!(v["acked_seq"].as_u64().unwrap() >= 1, "{v}");
    let held = util::eventually(Duration::from_secs(10), || {
        sim.primary_of(&point)
            .is_some_and(|(_, kpa)| (59.0..85.0).contains(&kpa))
    })
    .await;
    assert!(held, "{point} sees {:?}", sim.primary_of(&point));
    let text = util::viewer_cli(&api, &["plant"]);
    assert!(text.contains("plant main (control)"), "{text}");
    assert!(text.contains(&format!("at {point}")), "{text}");

    // Stored: the plant's readings and commands, the stations' primary pressure.
    for metric in [
        "plant_supply_temp_c",
        "plant_command_supply_setpoint_c",
        "telemetry_primary_diff_pressure_kpa",
    ] {
        let stored = util::vm_wait_total(vm.port, metric, 1, Duration::from_secs(20)).await;
        assert!(stored >= 1, "{metric}: {stored}");
    }

    // A silent plant is named.
    sim.set_plant_silenced(true);
    let raised = util::eventually(Duration::from_secs(20), || {
        engine
            .alarms()
            .active
            .iter()
            .any(|a| a.station == "plant:main" && a.kind.as_str() == "plant_stale")
    })
    .await;
    assert!(raised, "{:?}", engine.alarms().active);
    sim.set_plant_silenced(false);

    // The engine stops: its last command expires and the plant goes back to its own curve.
    engine.shutdown().await;
    let own = util::eventually(Duration::from_secs(20), || {
        sim.plant().is_some_and(|(t, _, _)| t.mode == "local")
    })
    .await;
    assert!(own, "{:?}", sim.plant());
    sim.stop().await;
}

/// The plant's PLC on Modbus TCP (contract §7 with the register map heatgrid ships), its
/// stations on MQTT: the engine polls it, commands it through its holding registers (the
/// pressure point by its number in `pressure_points`), and its series are stored. A plant
/// that stops answering is named (`plant_stale`, with the link's failure) and costs the
/// stations nothing; it is read again once it answers; a stopped engine leaves it on its own
/// curve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plant_on_modbus_is_polled_and_commanded_and_a_silent_one_costs_the_stations_nothing() {
    let broker = util::mosquitto();
    let vm = util::victoria_metrics();
    let dir = tempfile::tempdir().unwrap();
    let n = 6;
    let sim_cfg = SimConfig {
        port: broker.port,
        stations: n,
        seed: 5,
        speed: SPEED,
        ..SimConfig::default()
    };
    let ids: Vec<String> = sim_cfg.build_stations().into_iter().map(|s| s.id).collect();
    let sim = heatgrid_sim::spawn(SimConfig {
        network: Some(SimNetwork {
            file: sim_cfg.generated_network(5),
            loads: Loads::PEAKY,
            cell_m: 50.0,
            plant_id: "main".into(),
            plant_modbus: Some(heatgrid_sim::SimPlantModbus::default()),
        }),
        ..sim_cfg
    })
    .await;
    let addr = sim
        .plant_modbus_addr()
        .expect("the plant served over Modbus");
    let mut cfg = util::engine_config(&ids, broker.port, "3.1.1", SPEED, dir.path(), Some(vm.port));
    // The simulator numbers its pressure points as its fleet: station k is point k.
    let stations: String = ids
        .iter()
        .map(|id| format!("[[station]]\nid = {id:?}\n"))
        .collect();
    let map = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/modbus/heatgrid-sim-plant.toml"
    );
    let parsed = heatgrid::config::Config::parse(
        &format!(
            "{stations}[plant]\nid = \"main\"\nperiod_s = 5\ncommand_valid_for_s = 6\n\
             plant_stale_after_s = 3\nmin_dp_kpa = 60\npressure_points = {ids:?}\n\
             modbus = {{ address = \"{addr}\", map = {map:?}, poll_interval_s = 0.5, timeout_ms = 300 }}\n"
        ),
        &|_| None,
    )
    .unwrap_or_else(|e| panic!("{e:#?}"));
    (cfg.plant, cfg.plant_modbus) = (parsed.plant, parsed.plant_modbus);
    util::with_viewer(&mut cfg);
    let engine = app::start(cfg).await.unwrap();
    let api = format!("http://{}", engine.api_addr().unwrap());

    // The plant follows the engine's commands, written to its registers, none refused.
    let following = util::eventually(Duration::from_secs(30), || {
        sim.plant()
            .is_some_and(|(t, received, _)| t.mode == "engine" && received >= 5)
    })
    .await;
    let (telemetry, received, refused) = sim.plant().unwrap();
    assert!(following, "{telemetry:?}, {received} received");
    assert_eq!(refused, 0);
    let v: serde_json::Value =
        serde_json::from_str(&util::viewer_cli(&api, &["plant", "--json"])).unwrap();
    assert_eq!(v["mode"], "control", "{v}");
    assert_eq!(v["stale"], false, "{v}");
    assert_eq!(v["plan"]["basis"], "fleet", "{v}");
    // Read over Modbus: the plant's own figures; its confirmed write is the acknowledgement.
    let supply = v["reading"]["supply_temp_c"].as_f64().unwrap();
    assert!((supply - telemetry.supply_temp_c).abs() < 2.0, "{v}");
    assert!(v["acked_seq"].as_u64().unwrap() >= 1, "{v}");
    // The point the engine chose is the one the PLC holds, at the pressure asked.
    let point = v["plan"]["pressure_point"].as_str().unwrap().to_owned();
    assert!(ids.contains(&point), "{point}");
    let followed = util::eventually(Duration::from_secs(10), || {
        sim.plant_command()
            .is_some_and(|c| c.pressure_point.as_deref() == Some(point.as_str()))
    })
    .await;
    let cmd = sim.plant_command();
    assert!(followed, "the plan holds {point}, the PLC {cmd:?}");
    let cmd = cmd.unwrap();
    let asked = v["plan"]["diff_pressure_setpoint_kpa"].as_f64().unwrap();
    assert!(
        (cmd.diff_pressure_setpoint_kpa.unwrap() - asked).abs() < 5.0,
        "{cmd:?} against {asked}"
    );
    assert_eq!(cmd.valid_for_s, 6);
    let held = util::eventually(Duration::from_secs(10), || {
        sim.primary_of(&point)
            .is_some_and(|(_, kpa)| (59.0..85.0).contains(&kpa))
    })
    .await;
    assert!(held, "{point} sees {:?}", sim.primary_of(&point));
    let stored =
        util::vm_wait_total(vm.port, "plant_supply_temp_c", 1, Duration::from_secs(20)).await;
    assert!(stored >= 1, "plant_supply_temp_c: {stored}");

    // The plant stops answering: named with its link's failure; the stations are still
    // commanded all along.
    let acked = |e: &heatgrid::app::EngineHandle| -> Vec<u64> {
        e.status().iter().map(|s| s.acked_seq).collect()
    };
    let before = acked(&engine);
    sim.set_plant_silenced(true);
    let raised = util::eventually(Duration::from_secs(20), || {
        engine.alarms().active.iter().any(|a| {
            a.station == "plant:main"
                && a.kind.as_str() == "plant_stale"
                && a.message.contains("no answer")
        })
    })
    .await;
    assert!(raised, "{:?}", engine.alarms().active);
    let text = util::viewer_cli(&api, &["plant"]);
    assert!(
        text.contains("offline") && text.contains("link: ") && text.contains("no answer"),
        "{text}"
    );
    let after = acked(&engine);
    assert!(
        before.iter().zip(&after).all(|(b, a)| a > b),
        "a station went uncommanded while the plant was silent: {before:?} → {after:?}"
    );
    sim.set_plant_silenced(false);
    let back = util::eventually(Duration::from_secs(20), || {
        !engine
            .alarms()
            .active
            .iter()
            .any(|a| a.kind.as_str() == "plant_stale")
    })
    .await;
    assert!(back, "{:?}", engine.alarms().active);

    // The engine stops: its last command expires and the plant goes back to its own curve.
    engine.shutdown().await;
    let own = util::eventually(Duration::from_secs(20), || {
        sim.plant().is_some_and(|(t, _, _)| t.mode == "local")
    })
    .await;
    assert!(own, "{:?}", sim.plant());
    sim.stop().await;
}

/// The engine reads the network file the simulator runs (`[plant] network`): every station
/// placed, the same loss per kelvin as the simulator's pipes, every station beyond the
/// transmission main.
#[test]
fn the_engine_reads_the_simulators_network_file_with_the_same_loss_per_kelvin() {
    let file = heatgrid_sim::network::file::generate(100, "st-", 7, 50.0);
    let layout = heatgrid::network::Layout::parse(&serde_json::to_string(&file).unwrap())
        .unwrap_or_else(|e| panic!("{e:?}"));
    let stations: Vec<&str> = layout.stations().collect();
    assert_eq!(stations.len(), 100);
    assert!(stations.contains(&"st-001") && stations.contains(&"st-100"));
    let (engine, sim) = (layout.ua_kw_per_k(), file.ua_w_per_k() / 1000.0);
    assert!(
        engine > 0.0 && (engine - sim).abs() < 1e-9 * sim,
        "{engine} against {sim}"
    );
    let depth = layout.depth_m();
    let nearest = layout
        .nodes
        .iter()
        .filter(|n| n.kind == "station")
        .map(|n| depth[n.id.as_str()])
        .fold(f64::INFINITY, f64::min);
    assert!(
        nearest > 2000.0,
        "the nearest station {nearest} m from the plant"
    );
}
