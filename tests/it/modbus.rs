//! Modbus TCP stations: the simulator's PLCs (tokio-modbus server) side by side with MQTT
//! stations in one engine, a dead and a refusing PLC among healthy ones, and interop with
//! implementations we did not write (a pymodbus server as a PLC, Debian's mbpoll as a master).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use heatgrid::app;
use heatgrid::config::Config;
use heatgrid::control::change::Change;
use heatgrid::model::Mode;
use heatgrid_sim::{ModbusFault, SimConfig, SimModbus};

use crate::closed_loop::wait_settled;
use crate::util;

const SPEED: f64 = 20.0;

fn sim_map_path() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/modbus/heatgrid-sim.toml"
    )
    .to_owned()
}

fn engine_head(dir: &std::path::Path, mqtt_port: u16, staleness_s: f64) -> String {
    format!(
        "[engine]\ndata_dir = {:?}\ntick_s = {}\nstaleness_s = {staleness_s}\ncommand_valid_for_s = 30\ntime_scale = {SPEED}\n\
         [mqtt]\nport = {mqtt_port}\nclient_id = \"engine-modbus-{}\"\n\
         [storage]\nflush_interval_ms = 200\n[api]\nlisten = \"\"\n",
        dir.display().to_string(),
        5.0 / SPEED,
        util::free_port(),
    )
}

fn modbus_station(id: &str, addr: std::net::SocketAddr, map: &str, interval_s: f64) -> String {
    format!(
        "[[station]]\nid = {id:?}\nmodbus = {{ address = \"{addr}\", map = {map:?}, poll_interval_s = {interval_s}, timeout_ms = {} }}\n",
        ((interval_s * 1000.0) * 0.6) as u64
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_fleet_of_modbus_and_mqtt_stations_settles_and_is_stored() {
    let broker = util::mosquitto();
    let vm = util::victoria_metrics();
    let dir = tempfile::tempdir().unwrap();
    let plcs = heatgrid_sim::spawn(SimConfig {
        stations: 3,
        id_prefix: "plc-".into(),
        seed: 11,
        speed: SPEED,
        modbus: Some(SimModbus::default()),
        ..SimConfig::default()
    })
    .await;
    let mut text = engine_head(dir.path(), broker.port, 2.0);
    text.push_str(&format!(
        "[storage.influxdb]\nurl = \"http://127.0.0.1:{}\"\norg = \"o\"\nbucket = \"b\"\n",
        vm.port
    ));
    for (i, addr) in plcs.modbus_addrs().iter().enumerate() {
        text.push_str(&modbus_station(
            &format!("plc-{:03}", i + 1),
            *addr,
            &sim_map_path(),
            5.0 / SPEED,
        ));
    }
    for i in 1..=3 {
        text.push_str(&format!("[[station]]\nid = \"st-{i:03}\"\n"));
    }
    let cfg = Config::parse(&text, &|_| None).unwrap_or_else(|e| panic!("{e:#?}"));
    let engine = app::start(cfg).await.unwrap();
    assert!(engine.wait_subscribed(Duration::from_secs(20)).await);
    let mqtt = heatgrid_sim::spawn(SimConfig {
        port: broker.port,
        stations: 3,
        seed: 12,
        speed: SPEED,
        ..SimConfig::default()
    })
    .await;

    let worst = wait_settled(
        &engine,
        &[],
        1.0,
        Duration::from_secs(8),
        Duration::from_secs(150),
    )
    .await
    .unwrap();
    println!("mixed fleet settled, worst {worst:.2} K");
    let views = plcs.stop().await;
    assert!(
        views
            .iter()
            .all(|v| v.engine_in_control && v.commands_received > 10),
        "{views:?}"
    );
    mqtt.stop().await;
    let counters: Vec<_> = engine.modbus_counters().to_vec();
    engine.shutdown().await;

    let stored = util::vm_count(vm.port, "telemetry_supply_temp_c").await;
    let mut wanted = BTreeMap::new();
    for (id, c) in &counters {
        let polls = c.polls_ok.load(Ordering::Relaxed) as usize;
        let writes = c.writes_ok.load(Ordering::Relaxed) as usize;
        assert_eq!(c.exceptions.load(Ordering::Relaxed), 0, "{id}");
        assert!(
            polls > 20 && writes > 10,
            "{id}: {polls} polls, {writes} writes"
        );
        wanted.insert(id.to_string(), (polls, writes));
    }
    // Every poll is a stored reading and every confirmed write a stored command.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let t = util::vm_count(vm.port, "telemetry_supply_temp_c").await;
        let c = util::vm_count(vm.port, "command_seq").await;
        let ok = wanted.iter().all(|(id, (p, w))| {
            t.get(id).copied().unwrap_or(0) == *p && c.get(id).copied().unwrap_or(0) == *w
        });
        if ok {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stored {t:?} / {c:?}, wanted {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(stored.keys().any(|k| k.starts_with("st-")), "{stored:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_and_a_refusing_plc_do_not_delay_the_others() {
    let broker = util::mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let n = 20;
    let plcs = heatgrid_sim::spawn(SimConfig {
        stations: n,
        id_prefix: "plc-".into(),
        speed: SPEED,
        modbus: Some(SimModbus {
            faults: vec![
                ("plc-004".into(), ModbusFault::Dead),
                ("plc-009".into(), ModbusFault::Refuse),
            ],
            ..SimModbus::default()
        }),
        ..SimConfig::default()
    })
    .await;
    let interval = 0.5;
    let mut text = engine_head(dir.path(), broker.port, 2.0);
    for (i, addr) in plcs.modbus_addrs().iter().enumerate() {
        text.push_str(&modbus_station(
            &format!("plc-{:03}", i + 1),
            *addr,
            &sim_map_path(),
            interval,
        ));
    }
    let cfg = Config::parse(&text, &|_| None).unwrap();
    let engine = app::start(cfg).await.unwrap();
    // Start-up (20 connections at once, a debug build, the simulator on the same two cores)
    // is not the steady state this test is about: measure from 3 s on.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let base: BTreeMap<String, (u64, u64)> = engine
        .modbus_counters()
        .iter()
        .map(|(id, c)| {
            c.lateness_max_us.store(0, Ordering::Relaxed);
            (
                id.to_string(),
                (
                    c.cycles.load(Ordering::Relaxed),
                    c.polls_ok.load(Ordering::Relaxed),
                ),
            )
        })
        .collect();
    let started = std::time::Instant::now();
    // Until the alarms for both faulty stations are up, and at least 8 s of polling.
    let alarmed = util::eventually(Duration::from_secs(30), || {
        let a = engine.alarms();
        let comm = |id: &str| {
            a.active
                .iter()
                .any(|x| x.station == id && x.kind.as_str() == "comm_lost")
        };
        comm("plc-004") && comm("plc-009") && started.elapsed() > Duration::from_secs(8)
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let alarms = engine.alarms();
    let counters: BTreeMap<String, _> = engine
        .modbus_counters()
        .iter()
        .map(|(id, c)| (id.to_string(), c.clone()))
        .collect();
    let status = engine.status();
    engine.shutdown().await;
    plcs.stop().await;
    assert!(alarmed, "{:?}", alarms.active);

    let get = |id: &str, f: fn(&heatgrid::ingest::slot::ModbusCounters) -> u64| f(&counters[id]);
    // The dead one times out (link), the refusing one answers with exceptions: told apart.
    assert_eq!(get("plc-004", |c| c.polls_ok.load(Ordering::Relaxed)), 0);
    assert!(get("plc-004", |c| c.timeouts.load(Ordering::Relaxed)) > 0);
    assert_eq!(get("plc-004", |c| c.exceptions.load(Ordering::Relaxed)), 0);
    assert_eq!(get("plc-009", |c| c.polls_ok.load(Ordering::Relaxed)), 0);
    assert!(get("plc-009", |c| c.exceptions.load(Ordering::Relaxed)) > 0);
    assert!(
        get("plc-009", |c| c.exceptions.load(Ordering::Relaxed))
            > get("plc-009", |c| c.timeouts.load(Ordering::Relaxed))
    );
    let msg = |id: &str| {
        alarms
            .active
            .iter()
            .find(|a| a.station == id && a.kind.as_str() == "comm_lost")
            .map(|a| a.message.clone())
            .unwrap_or_default()
    };
    assert!(msg("plc-004").contains("no answer"), "{}", msg("plc-004"));
    assert!(msg("plc-009").contains("refused"), "{}", msg("plc-009"));
    for st in status.iter() {
        let faulty = st.id.as_str() == "plc-004" || st.id.as_str() == "plc-009";
        assert_eq!(st.stale, faulty, "{}", st.id);
    }

    // The others kept their cycle: nearly every scheduled poll ran and none started late by
    // more than a generous bound (the precise figure is in benches/modbus.rs).
    let expected = elapsed / interval;
    for (id, c) in &counters {
        if id == "plc-004" || id == "plc-009" {
            continue;
        }
        let (c0, ok0) = base[id];
        let cycles = (c.cycles.load(Ordering::Relaxed) - c0) as f64;
        let ok = (c.polls_ok.load(Ordering::Relaxed) - ok0) as f64;
        let late_ms = c.lateness_max_us.load(Ordering::Relaxed) as f64 / 1000.0;
        assert!(
            cycles >= 0.8 * expected && ok >= cycles - 1.0,
            "{id}: {cycles} cycles ({ok} ok) of {expected:.0} expected"
        );
        assert!(late_ms < 150.0, "{id}: a cycle started {late_ms} ms late");
    }
}

use util::python;

/// The pymodbus PLC (`tests/peers/plc.py`, `--sparse`: it refuses reads that span addresses
/// it does not hold), its port and its "WRITE …" / "COIL …" lines.
fn pymodbus_plc(
    sparse: bool,
) -> (
    std::process::Child,
    u16,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let port = util::free_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/plc.py");
    let mut cmd = Command::new(python());
    cmd.args([script, "--port", &port.to_string()]);
    if sparse {
        cmd.arg("--sparse");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the pymodbus PLC (python3 with pymodbus; see scripts/test.sh)");
    let stdout = child.stdout.take().unwrap();
    let (tx, writes) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, port, writes)
}

/// The PLC's manual numbers registers from 1; temperatures are i16 × 0.1, flow an f32 with
/// the low word first, area a u32; commands go to holding registers by function 6. The mapped
/// inputs sit in two blocks (101–103, 111–112) seven registers apart, the area in a holding
/// block of its own, and two bits: a discrete input (pump running) and a coil (pump enable).
const PLC_MAP: &str = "device = \"pymodbus PLC\"\naddress_base = 1\nwrite_function = \"single\"\n\
    [[register]]\nfield = \"supply_temp_c\"\ntable = \"input\"\naddress = 101\ntype = \"i16\"\nscale = 0.1\n\
    [[register]]\nfield = \"return_temp_c\"\ntable = \"input\"\naddress = 102\ntype = \"i16\"\nscale = 0.1\n\
    [[register]]\nfield = \"outdoor_temp_c\"\ntable = \"input\"\naddress = 103\ntype = \"i16\"\nscale = 0.1\n\
    [[register]]\nfield = \"flow_m3h\"\ntable = \"input\"\naddress = 111\ntype = \"f32\"\norder = \"CDAB\"\n\
    [[register]]\nfield = \"heated_area_m2\"\ntable = \"holding\"\naddress = 121\ntype = \"u32\"\norder = \"ABCD\"\n\
    [[register]]\nfield = \"pump_running\"\ntable = \"discrete_input\"\naddress = 4\ntype = \"bool\"\n\
    [[register]]\nfield = \"pump_enable\"\ntable = \"coil\"\naddress = 1\ntype = \"bool\"\naccess = \"read_write\"\n\
    [[register]]\nfield = \"supply_setpoint_c\"\ntable = \"holding\"\naddress = 201\ntype = \"i16\"\nscale = 0.1\naccess = \"read_write\"\n\
    [[register]]\nfield = \"valve_pct\"\ntable = \"holding\"\naddress = 202\ntype = \"u16\"\nscale = 0.1\naccess = \"read_write\"\n\
    [[register]]\nfield = \"pump_pct\"\ntable = \"holding\"\naddress = 203\ntype = \"u16\"\nscale = 0.1\naccess = \"read_write\"\n\
    [[register]]\nfield = \"mode\"\ntable = \"holding\"\naddress = 204\ntype = \"u16\"\naccess = \"read_write\"\n\
    [[register]]\nfield = \"seq\"\ntable = \"holding\"\naddress = 211\ntype = \"u32\"\norder = \"CDAB\"\naccess = \"read_write\"\n";

/// An engine with one Modbus station `py-plc` at `port` with [`PLC_MAP`], polled every 0.5 s.
async fn plc_engine(dir: &std::path::Path, broker: u16, port: u16) -> app::EngineHandle {
    let map_path = dir.join("plc.toml");
    std::fs::write(&map_path, PLC_MAP).unwrap();
    let mut text =
        engine_head(dir, broker, 5.0).replace(&format!("time_scale = {SPEED}"), "time_scale = 1");
    text = text.replace(&format!("tick_s = {}", 5.0 / SPEED), "tick_s = 0.5");
    text.push_str(&format!(
        "[[station]]\nid = \"py-plc\"\nmodbus = {{ address = \"127.0.0.1:{port}\", map = {:?}, unit_id = 7, poll_interval_s = 0.5, timeout_ms = 300 }}\n",
        map_path.display().to_string()
    ));
    let cfg = Config::parse(&text, &|_| None).unwrap_or_else(|e| panic!("{e:#?}"));
    app::start(cfg).await.unwrap()
}

/// The exact values the Python PLC holds (tests/peers/plc.py), and its pump-running bit.
fn assert_plc_reading(r: &heatgrid::model::Reading) {
    assert_eq!(r.supply_temp_c, 52.4);
    assert_eq!(r.return_temp_c, 39.8);
    assert_eq!(r.outdoor_temp_c, Some(-6.5));
    assert_eq!(r.flow_m3h, 240.5);
    assert_eq!(r.heated_area_m2, Some(100_000.0));
    let bit = r.extra.iter().find(|(k, _)| k == "pump_running");
    assert_eq!(
        bit,
        Some(&("pump_running".to_owned(), 1.0)),
        "{:?}",
        r.extra
    );
}

/// Waits (bounded) for the PLC's first reading and checks it.
async fn first_plc_reading(engine: &app::EngineHandle, child: &mut std::process::Child) {
    let got = util::eventually(Duration::from_secs(30), || {
        engine.status().first().is_some_and(|s| s.reading.is_some())
    })
    .await;
    if let Ok(Some(status)) = child.try_wait() {
        panic!("tests/peers/plc.py exited ({status}): is pymodbus installed? (scripts/test.sh)");
    }
    assert!(got, "no reading from the pymodbus PLC");
    assert_plc_reading(&engine.status()[0].reading.clone().unwrap());
}

fn requests_per_poll(engine: &app::EngineHandle) -> u64 {
    engine.modbus_counters()[0]
        .1
        .requests_per_poll
        .load(Ordering::Relaxed)
}

/// A pymodbus server as the PLC, with a register map unlike ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_a_pymodbus_plc_with_another_register_map() {
    let broker = util::mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port, mut writes) = pymodbus_plc(false);
    let engine = plc_engine(dir.path(), broker.port, port).await;

    // Reads: the exact values the Python PLC holds (tests/peers/plc.py).
    first_plc_reading(&engine, &mut child).await;
    // Five mapped blocks (two input, one holding, one bit) in three requests: the inputs are
    // read as one across their gap of seven registers (max_gap 10 by default).
    assert_eq!(requests_per_poll(&engine), 3);

    // Writes: manual mode with fixed outputs gives exact words at the PLC.
    engine
        .apply(
            "py-plc",
            Change::Mode {
                mode: Mode::Manual,
                valve_pct: Some(37.5),
                pump_pct: Some(61.2),
            },
            "test",
        )
        .await
        .unwrap();
    // Lines "WRITE <wire address> <word>…" from the PLC, latest value per address.
    let mut regs: BTreeMap<u16, u16> = BTreeMap::new();
    let mut coils: BTreeMap<u16, u16> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while regs.get(&201) != Some(&375)
        || regs.get(&202) != Some(&612)
        || regs.get(&203) != Some(&1)
        || coils.get(&0) != Some(&1)
    {
        let line = tokio::time::timeout_at(deadline, writes.recv())
            .await
            .unwrap_or_else(|_| panic!("PLC never got the manual command: {regs:?}"))
            .expect("PLC output ended");
        let mut parts = line.split_whitespace();
        let table = match parts.next() {
            Some("WRITE") => &mut regs,
            Some("COIL") => &mut coils,
            _ => continue,
        };
        let addr: u16 = parts.next().unwrap().parse().unwrap();
        for (k, w) in parts.enumerate() {
            table.insert(addr + k as u16, w.parse().unwrap());
        }
    }
    let status = engine.status();
    let st = &status[0];
    let setpoint = st.outputs.unwrap().supply_setpoint_c;
    let raw = regs[&200] as i16 as f64;
    assert!((raw - setpoint * 10.0).abs() <= 1.0, "{raw} vs {setpoint}");
    // seq in CDAB order: low word at 210, high word at 211; acknowledged by the write.
    let seq = ((regs[&211] as u64) << 16) | regs[&210] as u64;
    assert!(
        seq >= 1 && st.acked_seq >= seq - 1,
        "seq {seq}, acked {}",
        st.acked_seq
    );
    engine.shutdown().await;
    let _ = child.kill();
    let _ = child.wait();
}

/// A PLC that refuses a read spanning registers it does not hold (pymodbus with a sparse
/// store) is detected on the first refusal and read block by block from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plc_refusing_reads_across_gaps_is_read_block_by_block() {
    let broker = util::mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port, _writes) = pymodbus_plc(true);
    let engine = plc_engine(dir.path(), broker.port, port).await;
    first_plc_reading(&engine, &mut child).await;
    // The two input blocks are now two requests: four per poll.
    assert_eq!(requests_per_poll(&engine), 4);
    let c = &engine.modbus_counters()[0].1;
    let (exceptions, ok) = (
        c.exceptions.load(Ordering::Relaxed),
        c.polls_ok.load(Ordering::Relaxed),
    );
    // No further refusals once it reads block by block: every later cycle answers.
    let later = util::eventually(Duration::from_secs(10), || {
        c.polls_ok.load(Ordering::Relaxed) >= ok + 3
    })
    .await;
    assert!(later, "polls stopped succeeding");
    assert_eq!(c.exceptions.load(Ordering::Relaxed), exceptions);
    assert!(engine.status()[0].link_error.is_none());
    engine.shutdown().await;
    let _ = child.kill();
    let _ = child.wait();
}

/// Debian's mbpoll reads the simulator's registers: the words decode to what it reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbpoll_reads_the_simulator_registers() {
    let Some(mbpoll) = ["/usr/bin/mbpoll", "/usr/local/bin/mbpoll"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        panic!("mbpoll is not installed (scripts/test.sh installs it)");
    };
    let plcs = heatgrid_sim::spawn(SimConfig {
        stations: 1,
        id_prefix: "plc-".into(),
        speed: 1.0,
        modbus: Some(SimModbus::default()),
        ..SimConfig::default()
    })
    .await;
    let port = plcs.modbus_addrs()[0].port();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(mbpoll)
            .args([
                "-m",
                "tcp",
                "-p",
                &port.to_string(),
                "-a",
                "1",
                "-t",
                "3",
                "-0",
                "-r",
                "0",
                "-c",
                "10",
                "-1",
                "127.0.0.1",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let view = plcs.snapshot()[0].clone();
    plcs.stop().await;
    let text = String::from_utf8_lossy(&out.stdout);
    // Lines like "[0]: 	5733" or "[3]: 	59307 (-6229)".
    let words: BTreeMap<u16, u16> = text
        .lines()
        .filter_map(|l| {
            let (a, v) = l.trim().strip_prefix('[')?.split_once("]:")?;
            Some((a.parse().ok()?, v.split_whitespace().next()?.parse().ok()?))
        })
        .collect();
    assert_eq!(words.len(), 10, "{text}");
    let supply = words[&0] as i16 as f64 / 100.0;
    let ret = words[&1] as i16 as f64 / 100.0;
    let flow = (((words[&2] as u32) << 16) | words[&3] as u32) as f64 / 100.0;
    let area = ((words[&4] as u32) << 16) | words[&5] as u32;
    let valve = words[&8] as f64 / 100.0;
    // The plant moves slowly at speed 1: within a few hundredths of the snapshot after it.
    assert!(
        (supply - view.supply_c).abs() < 0.05,
        "{supply} vs {}",
        view.supply_c
    );
    assert!(
        (ret - view.return_c).abs() < 0.05,
        "{ret} vs {}",
        view.return_c
    );
    assert!(
        (flow - view.flow_m3h).abs() < 0.5,
        "{flow} vs {}",
        view.flow_m3h
    );
    assert!(
        (valve - view.valve_pct).abs() < 0.5,
        "{valve} vs {}",
        view.valve_pct
    );
    assert!((50_000..=200_000).contains(&area), "{area}");
}

/// A PLC that closes its connections (as the ECL Comfort does when idle) costs no reading; a
/// PLC that reboots goes stale with a comm-lost alarm and is back under control when it
/// returns, without restarting anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plcs_closing_connections_or_rebooting_recover_without_restart() {
    let broker = util::mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let plcs = heatgrid_sim::spawn(SimConfig {
        stations: 3,
        id_prefix: "plc-".into(),
        speed: SPEED,
        modbus: Some(SimModbus::default()),
        ..SimConfig::default()
    })
    .await;
    let mut text = engine_head(dir.path(), broker.port, 2.0);
    for (i, addr) in plcs.modbus_addrs().iter().enumerate() {
        text.push_str(&modbus_station(
            &format!("plc-{:03}", i + 1),
            *addr,
            &sim_map_path(),
            0.5,
        ));
    }
    let engine = app::start(Config::parse(&text, &|_| None).unwrap())
        .await
        .unwrap();
    let counters: BTreeMap<String, _> = engine
        .modbus_counters()
        .iter()
        .map(|(id, c)| (id.to_string(), c.clone()))
        .collect();
    let c1 = counters["plc-001"].clone();
    assert!(
        util::eventually(Duration::from_secs(20), || {
            c1.polls_ok.load(Ordering::Relaxed) > 10
                && engine
                    .status()
                    .iter()
                    .all(|s| !s.stale && s.outputs.is_some())
        })
        .await
    );

    // 1. plc-001 drops its connections and listens again at once.
    let (links0, connects0, cycles0, ok0, wfail0) = (
        c1.link_failures.load(Ordering::Relaxed),
        c1.connects.load(Ordering::Relaxed),
        c1.cycles.load(Ordering::Relaxed),
        c1.polls_ok.load(Ordering::Relaxed),
        c1.write_failures.load(Ordering::Relaxed),
    );
    assert!(plcs.modbus_outage("plc-001", Duration::ZERO).await);
    let watch_until = tokio::time::Instant::now() + Duration::from_secs(6);
    while tokio::time::Instant::now() < watch_until {
        let st = engine.status();
        assert!(
            !st[0].stale,
            "plc-001 went stale after a dropped connection"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(c1.link_failures.load(Ordering::Relaxed) > links0);
    assert!(c1.connects.load(Ordering::Relaxed) > connects0);
    // Not one cycle or command lost: whichever request met the closed connection first (a
    // poll or a command write) replaced it at once and went through.
    let cycles = c1.cycles.load(Ordering::Relaxed) - cycles0;
    let ok = c1.polls_ok.load(Ordering::Relaxed) - ok0;
    assert!(cycles >= 8 && ok == cycles, "{ok} of {cycles} cycles read");
    assert_eq!(
        c1.write_failures.load(Ordering::Relaxed),
        wfail0,
        "a command write failed"
    );

    // 2. plc-002 reboots for 4 s.
    let received = |views: &[heatgrid_sim::StationView]| views[1].commands_received;
    let before = received(&plcs.snapshot());
    assert!(plcs.modbus_outage("plc-002", Duration::from_secs(4)).await);
    let comm_lost = |engine: &app::EngineHandle| {
        engine
            .alarms()
            .active
            .iter()
            .any(|a| a.station == "plc-002" && a.kind.as_str() == "comm_lost")
    };
    assert!(
        util::eventually(Duration::from_secs(4), || comm_lost(&engine)
            && engine.status()[1].stale)
        .await,
        "no comm_lost alarm / stale during the reboot"
    );
    let during = received(&plcs.snapshot());
    assert!(
        util::eventually(Duration::from_secs(30), || {
            !comm_lost(&engine)
                && !engine.status()[1].stale
                && received(&plcs.snapshot()) > during + 5
        })
        .await,
        "plc-002 not back under control after its reboot"
    );
    assert!(during >= before);
    let views = plcs.stop().await;
    engine.shutdown().await;
    assert!(views[1].engine_in_control, "{:?}", views[1]);
}

/// Units on one bus or address: how the engine reaches them.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Via {
    /// One Modbus TCP address (a gateway), requests side by side (the default).
    Tcp,
    /// RTU frames over one TCP connection (a transparent serial server): one at a time.
    RtuOverTcp,
    /// Modbus RTU on a serial line (a `socat` pseudo-terminal pair): one at a time.
    Serial,
}

const UNITS: usize = 8;
const PERIOD_MS: u64 = 250;

/// Eight stations as units 1–8 of one bus, reached `via` a Modbus TCP address, an RTU line
/// over TCP or a serial line, polled every 250 ms with a 150 ms timeout. Unit 2 is dead
/// (silent, as on a real bus) and unit 5 refuses every request. The live units' poll
/// interval, measured where the requests arrive (the simulator's PLCs), stays within 50 ms of
/// the period at p99; the dead unit is retried with backoff, not asked every cycle, and
/// alarmed.
async fn a_dead_and_a_refusing_unit_delay_no_other(via: Via) {
    let broker = util::mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let (sim_end, engine_end) = (dir.path().join("sim-tty"), dir.path().join("engine-tty"));
    let mut _socat = None;
    let mut modbus = SimModbus {
        faults: vec![
            ("bus-002".into(), ModbusFault::Dead),
            ("bus-005".into(), ModbusFault::Refuse),
        ],
        record_reads: true,
        ..SimModbus::default()
    };
    match via {
        Via::Serial => {
            let socat = Command::new("socat")
                .arg(format!("pty,raw,echo=0,link={}", sim_end.display()))
                .arg(format!("pty,raw,echo=0,link={}", engine_end.display()))
                .spawn()
                .expect("socat (scripts/test.sh installs it)");
            _socat = Some(util::Proc {
                child: socat,
                port: 0,
                _dir: None,
            });
            let linked = util::eventually(Duration::from_secs(10), || {
                sim_end.exists() && engine_end.exists()
            })
            .await;
            assert!(linked, "socat made no pseudo-terminal pair");
            modbus.rtu = Some((sim_end.display().to_string(), 38_400));
        }
        Via::Tcp => modbus.gateway = true,
        Via::RtuOverTcp => modbus.rtu_over_tcp = true,
    }
    let plcs = heatgrid_sim::spawn(SimConfig {
        stations: UNITS,
        id_prefix: "bus-".into(),
        speed: SPEED,
        modbus: Some(modbus),
        ..SimConfig::default()
    })
    .await;
    let link = match (via, plcs.modbus_addrs().first()) {
        (Via::Tcp, Some(a)) => format!("address = \"{a}\""),
        (Via::RtuOverTcp, Some(a)) => format!("address = \"{a}\", framing = \"rtu\""),
        _ => format!(
            "serial = {{ port = {:?}, baud_rate = 38400 }}",
            engine_end.display().to_string()
        ),
    };
    let mut text = engine_head(dir.path(), broker.port, 2.0);
    for unit in 1..=UNITS {
        text.push_str(&format!(
            "[[station]]\nid = \"bus-{unit:03}\"\nmodbus = {{ {link}, unit_id = {unit}, map = {:?}, poll_interval_s = {}, timeout_ms = 150 }}\n",
            sim_map_path(),
            PERIOD_MS as f64 / 1000.0,
        ));
    }
    let cfg = Config::parse(&text, &|_| None).unwrap_or_else(|e| panic!("{e:#?}"));
    let engine = app::start(cfg).await.unwrap();
    let ids: Vec<String> = (1..=UNITS).map(|u| format!("bus-{u:03}")).collect();
    let live_ids: Vec<&String> = ids
        .iter()
        .filter(|id| !["bus-002", "bus-005"].contains(&id.as_str()))
        .collect();
    let live = util::eventually(Duration::from_secs(30), || {
        let st = engine.status();
        live_ids.iter().all(|id| {
            st.iter()
                .any(|s| s.id.as_str() == id.as_str() && s.reading.is_some() && s.acked_seq > 3)
        })
    })
    .await;
    let counts = |id: &str| {
        let c = engine
            .modbus_counters()
            .iter()
            .find(|(s, _)| s.as_str() == id)
            .map(|(_, c)| c.clone())
            .unwrap();
        (
            c.cycles.load(Ordering::Relaxed),
            c.polls_ok.load(Ordering::Relaxed),
            c.timeouts.load(Ordering::Relaxed),
        )
    };
    // 20 s of steady polling, measured where the requests arrive.
    let before: Vec<_> = ids.iter().map(|id| counts(id)).collect();
    let from = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let to = std::time::Instant::now();
    let after: Vec<_> = ids.iter().map(|id| counts(id)).collect();
    let reads = plcs.reads();
    let status = engine.status();
    let alarms = engine.alarms();
    engine.shutdown().await;
    plcs.stop().await;
    assert!(
        live,
        "{via:?}: the live units were not read and commanded: {status:?}"
    );
    // A poll is one or more reads of a unit in a row: it starts with a read more than half a
    // period after the unit's previous one.
    let mut intervals = Vec::new();
    for unit in [0, 2, 3, 5, 6, 7] {
        let times: Vec<std::time::Instant> = reads
            .iter()
            .filter(|(i, t)| *i == unit && *t >= from && *t <= to)
            .map(|(_, t)| *t)
            .collect();
        let starts: Vec<std::time::Instant> = times
            .iter()
            .enumerate()
            .filter(|(k, t)| {
                *k == 0 || t.duration_since(times[k - 1]) > Duration::from_millis(PERIOD_MS / 2)
            })
            .map(|(_, t)| *t)
            .collect();
        assert!(
            starts.len() as u64 >= 20_000 / PERIOD_MS * 9 / 10,
            "{via:?}: unit {} polled {} times in 20 s",
            unit + 1,
            starts.len()
        );
        intervals.extend(
            starts
                .windows(2)
                .map(|w| w[1].duration_since(w[0]).as_secs_f64() * 1000.0),
        );
    }
    let mut off: Vec<f64> = intervals
        .iter()
        .map(|ms| (ms - PERIOD_MS as f64).abs())
        .collect();
    off.sort_by(f64::total_cmp);
    let p99 = off[(off.len() - 1) * 99 / 100];
    eprintln!(
        "{via:?}: {} poll intervals of the live units, |interval − {PERIOD_MS} ms| p50 {:.1} ms, p99 {p99:.1} ms, max {:.1} ms",
        off.len(),
        off[off.len() / 2],
        off[off.len() - 1]
    );
    assert!(
        p99 <= 50.0,
        "{via:?}: the live units' poll interval is off the period by {p99:.1} ms at p99"
    );
    // The dead unit: retried with backoff, never read, alarmed; the refusing one counted.
    let live_cycles = after[0].0 - before[0].0;
    let dead_timeouts = after[1].2 - before[1].2;
    assert_eq!(after[1].1, 0, "{via:?}: the dead unit never answered");
    assert!(
        dead_timeouts * 4 < live_cycles,
        "{via:?}: the dead unit timed out {dead_timeouts} times in {live_cycles} cycles: not backed off"
    );
    let st = |id: &str| status.iter().find(|s| s.id.as_str() == id).unwrap().clone();
    assert!(st("bus-002").stale && st("bus-005").stale);
    assert!(live_ids.iter().all(|id| !st(id).stale));
    let scheme = match via {
        Via::Serial => "modbus rtu://",
        Via::RtuOverTcp => "modbus rtu+tcp://",
        Via::Tcp => "modbus tcp://",
    };
    assert!(
        st("bus-001").link.starts_with(scheme),
        "{}",
        st("bus-001").link
    );
    assert!(
        alarms.active.iter().any(|a| a.station == "bus-002"
            && a.kind.as_str() == "comm_lost"
            && a.message.contains("no answer")),
        "{via:?}: {:?}",
        alarms.active
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_behind_one_modbus_tcp_address_are_polled_side_by_side_and_a_dead_one_delays_none() {
    a_dead_and_a_refusing_unit_delay_no_other(Via::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_of_an_rtu_line_over_tcp_are_polled_in_turn_and_a_dead_one_delays_none() {
    a_dead_and_a_refusing_unit_delay_no_other(Via::RtuOverTcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_of_a_serial_rtu_line_are_polled_in_turn_and_a_dead_one_delays_none() {
    a_dead_and_a_refusing_unit_delay_no_other(Via::Serial).await;
}
