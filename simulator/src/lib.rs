//! heatgrid-sim: N simulated district-heating stations speaking heatgrid's MQTT contract.
//!
//! A peer of the engine, not a part of it: it shares no code with `heatgrid` (so a bug cannot
//! hide symmetrically on both sides), only the contract. Each station is a physical model
//! ([`plant`]) run by its own PLC logic ([`station`]): it publishes telemetry on
//! `{prefix}/station/{id}/telemetry`, follows commands from `{prefix}/station/{id}/command`
//! while they are valid and falls back to its local heating curve when they expire.
//!
//! Time: the plant runs `speed` times faster than the wall clock; every period and time
//! constant in the model is in simulated seconds. Telemetry `ts` and command validity are wall
//! clock, because the engine lives in wall-clock time.
//!
//! Tests and `heatgrid demo` start it in-process with [`spawn`]; the `heatgrid-sim` binary wraps
//! the same function.

mod live;
pub mod modbus;
pub mod plant;
pub mod scenario;
pub mod station;

use std::f64::consts::PI;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use modbus::ModbusFault;
use plant::PlantParams;
use station::SimStation;

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub host: String,
    pub port: u16,
    pub topic_prefix: String,
    pub stations: usize,
    /// Station ids are `{id_prefix}{n:03}`, n from 1.
    pub id_prefix: String,
    pub seed: u64,
    /// Simulated seconds per wall-clock second.
    pub speed: f64,
    /// Telemetry period per station, simulated seconds.
    pub telemetry_period_s: f64,
    /// Integration step, simulated seconds.
    pub step_s: f64,
    /// Daily outdoor profile: mean ± amplitude, coldest at 03:00.
    pub outdoor_mean_c: f64,
    pub outdoor_amplitude_k: f64,
    /// Simulated time of day at start, hours.
    pub start_hour: f64,
    /// Simulated hours of local-only operation before going online (settles the plant).
    pub warmup_h: f64,
    pub telemetry_qos1: bool,
    /// Serve the stations over Modbus TCP instead of MQTT (see [`modbus`]).
    pub modbus: Option<SimModbus>,
    /// How the fleet's buildings deviate from their design.
    pub fleet: Fleet,
    /// Scenario runs only: hours the run's policy drives the fleet before the measured window
    /// (in the weather of the days before), so a controller is judged in its own steady state.
    pub lead_h: f64,
}

/// The fleet's buildings against their design data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fleet {
    /// Every station's radiators and building exactly as designed: one curve suits all.
    #[default]
    Balanced,
    /// As real districts are: each station's installed radiators give 75–135 % of its design
    /// load (oversizing is the usual error, and flow starvation the cause of the low end), and
    /// its buildings lose 95–105 % of the design heat. On the common curve the oversized ones
    /// overheat and the undersized ones stay cold (`domain.md` §2.5).
    Unbalanced,
}

impl Fleet {
    pub const ALL: [Fleet; 2] = [Fleet::Balanced, Fleet::Unbalanced];

    pub fn name(self) -> &'static str {
        match self {
            Fleet::Balanced => "balanced",
            Fleet::Unbalanced => "unbalanced",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// Modbus TCP settings of a simulator whose stations are PLCs.
#[derive(Debug, Clone)]
pub struct SimModbus {
    pub host: String,
    /// Station n listens on `base_port + n - 1`; 0 gives each an ephemeral port.
    pub base_port: u16,
    /// Register map text; [`DEFAULT_MAP`] is the one heatgrid ships.
    pub map: String,
    /// Faults from the start, by station id.
    pub faults: Vec<(String, ModbusFault)>,
}

/// The default register map (`config/modbus/heatgrid-sim.toml`).
pub const DEFAULT_MAP: &str = include_str!("../../config/modbus/heatgrid-sim.toml");

impl Default for SimModbus {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            base_port: 0,
            map: DEFAULT_MAP.into(),
            faults: Vec::new(),
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 1883,
            topic_prefix: "heating".into(),
            stations: 10,
            id_prefix: "st-".into(),
            seed: 1,
            speed: 1.0,
            telemetry_period_s: 5.0,
            step_s: 1.0,
            outdoor_mean_c: -5.0,
            outdoor_amplitude_k: 4.0,
            start_hour: 6.0,
            warmup_h: 6.0,
            telemetry_qos1: true,
            modbus: None,
            fleet: Fleet::Balanced,
            lead_h: 0.0,
        }
    }
}

impl SimConfig {
    /// Outdoor temperature `t_s` simulated seconds after start.
    pub fn outdoor_c(&self, t_s: f64) -> f64 {
        let hour = self.start_hour + t_s / 3600.0;
        self.outdoor_mean_c + self.outdoor_amplitude_k * (2.0 * PI * (hour - 15.0) / 24.0).cos()
    }

    /// Runs the stations under their local control for `warmup_h` simulated hours (2 s steps,
    /// no I/O), so they start from a settled plant.
    pub fn warm_up(&self, stations: &mut [SimStation]) {
        self.warm_up_in(stations, |t| self.outdoor_c(t));
    }

    /// [`SimConfig::warm_up`] in the weather `outdoor_c(t)`, `t` seconds from the start (so
    /// negative during the warm-up).
    pub fn warm_up_in(&self, stations: &mut [SimStation], outdoor_c: impl Fn(f64) -> f64) {
        let warm_steps = (self.warmup_h * 3600.0 / 2.0) as usize;
        for k in 0..warm_steps {
            let out = outdoor_c(-self.warmup_h * 3600.0 + k as f64 * 2.0);
            for s in stations.iter_mut() {
                s.step(2.0, out, 0);
            }
        }
    }

    /// Runs `hours` simulated hours as fast as the CPU allows, with no I/O: every station
    /// stepped by `step_s` under its local control and a telemetry payload serialised at
    /// every period, as the live simulator would publish it (so the cost is the live one).
    /// After the warm-up; the returned count of bytes keeps the payloads from being elided.
    pub fn run_offline(&self, hours: f64) -> OfflineRun {
        let mut stations = self.build_stations();
        self.warm_up(&mut stations);
        let mut run = OfflineRun::default();
        let (mut t, mut next_telemetry) = (0.0, 0.0);
        let end = hours * 3600.0;
        while t < end {
            let dt = self.step_s.min((next_telemetry - t).max(1e-3));
            let outdoor = self.outdoor_c(t);
            for s in &mut stations {
                s.step(dt, outdoor, 0);
            }
            run.station_steps += stations.len() as u64;
            t += dt;
            if t + 1e-9 >= next_telemetry {
                next_telemetry += self.telemetry_period_s;
                for s in &mut stations {
                    run.payload_bytes += s.telemetry(0, outdoor).to_json().len() as u64;
                    run.messages += 1;
                }
            }
        }
        run.sim_s = t;
        run
    }

    /// The stations of this configuration, varied from the seed: areas 50k–200k m², heat index
    /// 40–50 W/m², building time constants 30–50 h; an unbalanced [`Fleet`] also varies the
    /// radiators and buildings against that design (from a second stream of the seed, so the
    /// design data are the same for both fleets).
    pub fn build_stations(&self) -> Vec<SimStation> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let mut off_design = rand::rngs::StdRng::seed_from_u64(self.seed ^ 0x5eed_ba1a_ce00_0000);
        (1..=self.stations)
            .map(|n| {
                let area = (rng.random_range(50_000.0..=200_000.0_f64) / 1000.0).round() * 1000.0;
                let mut params = PlantParams::for_area(
                    area,
                    rng.random_range(40.0..=50.0),
                    rng.random_range(30.0..=50.0),
                );
                if self.fleet == Fleet::Unbalanced {
                    params.radiator_design_w *= off_design.random_range(0.75..=1.35);
                    params.building_ua_w_k *= off_design.random_range(0.95..=1.05);
                }
                SimStation::new(format!("{}{n:03}", self.id_prefix), params)
            })
            .collect()
    }

    /// The heat index (W/m²) each station was designed for, as its station data sheet gives it
    /// to the heating centre, in the order of [`SimConfig::build_stations`].
    pub fn design_heat_index_w_m2(&self) -> Vec<f64> {
        self.build_stations()
            .iter()
            .map(|s| s.plant.p.design_heat_w / s.plant.p.area_m2)
            .collect()
    }
}

/// What [`SimConfig::run_offline`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct OfflineRun {
    pub sim_s: f64,
    pub station_steps: u64,
    pub messages: u64,
    pub payload_bytes: u64,
}

/// Faults a test can inject into a running station.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// The supply sensor reads this many K too high (0 removes it).
    SensorOffsetK(f64),
    /// The network's primary supply is held at this temperature (`None` removes it).
    PrimarySupplyC(Option<f64>),
    /// This share of the supply is short-circuited into the return (0 removes it).
    Bypass(f64),
}

/// What a caller can see of one station.
#[derive(Debug, Clone, PartialEq)]
pub struct StationView {
    pub id: String,
    pub supply_c: f64,
    pub return_c: f64,
    pub flow_m3h: f64,
    pub indoor_c: f64,
    pub valve_pct: f64,
    pub pump_pct: f64,
    pub engine_in_control: bool,
    /// The supply setpoint of the command in force, if any.
    pub commanded_setpoint_c: Option<f64>,
    pub commands_received: u64,
    pub commands_refused: u64,
    pub published: u64,
    pub max_command_data_age_ms: i64,
}

#[derive(Debug)]
struct Shared {
    stations: Vec<SimStation>,
    /// Station id → position in `stations` (commands arrive by id).
    index: std::collections::HashMap<String, usize>,
    sim_time_s: f64,
    publish_failures: u64,
    /// Outdoor temperature at `sim_time_s`.
    outdoor_c: f64,
    /// Modbus only: per station, its fault and its holding registers.
    modbus_faults: Vec<ModbusFault>,
    holding: Vec<std::collections::HashMap<u16, u16>>,
}

impl Shared {
    /// The fleet's shared state: the stations, their index by id, and for Modbus stations
    /// their fault and a zeroed holding-register image.
    fn new(cfg: &SimConfig, stations: Vec<SimStation>, map: Option<&modbus::SimMap>) -> Self {
        let holding_image: std::collections::HashMap<u16, u16> = map
            .iter()
            .flat_map(|m| m.registers.iter().filter(|r| r.holding))
            .flat_map(|r| {
                let words = r.encode(0.0).len() as u16;
                (0..words).map(move |k| (r.address + k, 0))
            })
            .collect();
        let faults = cfg
            .modbus
            .as_ref()
            .map(|m| m.faults.clone())
            .unwrap_or_default();
        Shared {
            modbus_faults: stations
                .iter()
                .map(|s| {
                    faults
                        .iter()
                        .find(|(id, _)| *id == s.id)
                        .map_or(ModbusFault::None, |(_, f)| *f)
                })
                .collect(),
            holding: vec![holding_image; stations.len()],
            index: stations
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id.clone(), i))
                .collect(),
            stations,
            sim_time_s: 0.0,
            publish_failures: 0,
            outdoor_c: cfg.outdoor_c(0.0),
        }
    }
}

/// A running simulator.
#[derive(Debug)]
pub struct SimHandle {
    shared: Arc<Mutex<Shared>>,
    stop: watch::Sender<bool>,
    stepper: JoinHandle<()>,
    event_loop: JoinHandle<()>,
    client: AsyncClient,
    prefix: String,
    modbus_addrs: Vec<std::net::SocketAddr>,
    modbus_tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    modbus_map: Option<Arc<modbus::SimMap>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Warms the plants up locally, connects to the broker and starts simulating.
pub async fn spawn(cfg: SimConfig) -> SimHandle {
    let mut stations = cfg.build_stations();
    cfg.warm_up(&mut stations);
    let n = stations.len();
    let modbus_map = cfg
        .modbus
        .as_ref()
        .and_then(|m| match modbus::SimMap::parse(&m.map) {
            Ok(map) => Some(Arc::new(map)),
            Err(e) => {
                warn!(error = %e, "Simulator register map unreadable; Modbus disabled.");
                None
            }
        });
    let shared = Arc::new(Mutex::new(Shared::new(
        &cfg,
        stations,
        modbus_map.as_deref(),
    )));
    let (modbus_addrs, modbus_tasks) = match (&cfg.modbus, modbus_map.clone()) {
        (Some(m), Some(map)) => {
            match modbus::serve(shared.clone(), map, &m.host, m.base_port, n).await {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "Simulator cannot listen for Modbus.");
                    (Vec::new(), Vec::new())
                }
            }
        }
        _ => (Vec::new(), Vec::new()),
    };
    let over_modbus = cfg.modbus.is_some();

    let mut opts = MqttOptions::new(
        format!(
            "heatgrid-sim-{}-{}",
            std::process::id(),
            rand::rng().random::<u32>()
        ),
        &cfg.host,
        cfg.port,
    );
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(20);
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    let (client, mut el) = AsyncClient::new(opts, 100_000);
    el.set_network_options(net);
    let (stop, stop_rx) = watch::channel(false);

    let prefix = cfg.topic_prefix.clone();
    let ids: Vec<String> = shared
        .lock()
        .map(|s| s.stations.iter().map(|s| s.id.clone()).collect())
        .unwrap_or_default();
    let event_loop = if over_modbus {
        // Modbus stations speak no MQTT.
        tokio::spawn(async {})
    } else {
        tokio::spawn(live::mqtt_loop(
            el,
            client.clone(),
            shared.clone(),
            prefix.clone(),
            ids,
        ))
    };

    let (n_stations, speed, broker) = (
        cfg.stations,
        cfg.speed,
        format!("{}:{}", cfg.host, cfg.port),
    );
    let qos = if cfg.telemetry_qos1 {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    };
    let stepper = tokio::spawn(live::step_loop(
        cfg.clone(),
        shared.clone(),
        client.clone(),
        qos,
        stop_rx,
        over_modbus,
    ));
    if over_modbus {
        info!(stations = n_stations, speed, first = ?modbus_addrs.first(), "Simulator started (Modbus TCP).");
    } else {
        info!(stations = n_stations, speed, broker, "Simulator started.");
    }
    SimHandle {
        shared,
        stop,
        stepper,
        event_loop,
        client,
        prefix,
        modbus_addrs,
        modbus_tasks: Arc::new(Mutex::new(modbus_tasks)),
        modbus_map,
    }
}

impl SimHandle {
    pub fn snapshot(&self) -> Vec<StationView> {
        Self::views(&self.shared)
    }

    fn views(shared: &Mutex<Shared>) -> Vec<StationView> {
        let Ok(sh) = shared.lock() else {
            return Vec::new();
        };
        sh.stations
            .iter()
            .map(|s| StationView {
                id: s.id.clone(),
                supply_c: s.plant.supply_sensor_c,
                return_c: s.plant.return_c,
                flow_m3h: s.plant.secondary_kgs() / plant::KGS_PER_M3H,
                indoor_c: s.plant.indoor_c,
                valve_pct: s.plant.valve * 100.0,
                pump_pct: s.plant.pump * 100.0,
                engine_in_control: s.control == station::Control::Engine,
                commanded_setpoint_c: s.active.as_ref().map(|(c, _)| c.supply_setpoint_c),
                commands_received: s.commands_received,
                commands_refused: s.commands_refused,
                published: s.published,
                max_command_data_age_ms: s.max_command_data_age_ms,
            })
            .collect()
    }

    /// Simulated seconds since start.
    pub fn sim_time_s(&self) -> f64 {
        self.shared.lock().map(|s| s.sim_time_s).unwrap_or(0.0)
    }

    /// Telemetry messages that could not be queued for MQTT.
    pub fn publish_failures(&self) -> u64 {
        self.shared.lock().map(|s| s.publish_failures).unwrap_or(0)
    }

    /// Injects (or with `Fault::None`-like values removes) a fault at station `id`.
    pub fn set_fault(&self, id: &str, fault: Fault) -> bool {
        let Ok(mut sh) = self.shared.lock() else {
            return false;
        };
        let Some(s) = sh.stations.iter_mut().find(|s| s.id == id) else {
            return false;
        };
        match fault {
            Fault::SensorOffsetK(k) => s.sensor_offset_k = k,
            Fault::PrimarySupplyC(c) => s.plant.primary_supply_override_c = c,
            Fault::Bypass(f) => s.plant.bypass = f.clamp(0.0, 1.0),
        }
        true
    }

    /// Modbus: the address each station listens on, in station order (empty over MQTT).
    pub fn modbus_addrs(&self) -> &[std::net::SocketAddr] {
        &self.modbus_addrs
    }

    /// Modbus: makes station `id` dead, refusing, or healthy again.
    pub fn set_modbus_fault(&self, id: &str, fault: ModbusFault) -> bool {
        let Ok(mut sh) = self.shared.lock() else {
            return false;
        };
        match sh.stations.iter().position(|s| s.id == id) {
            Some(i) => {
                sh.modbus_faults[i] = fault;
                true
            }
            None => false,
        }
    }

    /// Modbus: station `id`'s PLC drops every connection and stops listening, as a rebooting
    /// PLC does, and is back on the same port after `down_for` (zero: at once — a PLC closing
    /// its connections, like the ECL Comfort does after ~75 s idle). Returns once the old
    /// listener is closed (and, for a zero outage, the new one is listening).
    pub async fn modbus_outage(&self, id: &str, down_for: Duration) -> bool {
        let (Some(index), Some(map)) = (
            self.shared
                .lock()
                .ok()
                .and_then(|sh| sh.stations.iter().position(|s| s.id == id)),
            self.modbus_map.clone(),
        ) else {
            return false;
        };
        let Some(addr) = self.modbus_addrs.get(index).copied() else {
            return false;
        };
        let old = match self.modbus_tasks.lock() {
            Ok(mut tasks) => std::mem::replace(&mut tasks[index], tokio::spawn(async {})),
            Err(_) => return false,
        };
        old.abort();
        let _ = old.await;
        let (shared, tasks) = (self.shared.clone(), self.modbus_tasks.clone());
        let back = async move {
            tokio::time::sleep(down_for).await;
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => {
                    let task = modbus::serve_one(shared, map, index, l);
                    if let Ok(mut t) = tasks.lock() {
                        t[index] = task;
                    }
                }
                Err(e) => warn!(%addr, error = %e, "Simulated PLC could not listen again."),
            }
        };
        if down_for.is_zero() {
            back.await;
        } else {
            tokio::spawn(back);
        }
        true
    }

    /// Publishes station `id`'s presence (`{prefix}/station/{id}/state`, retained).
    pub fn set_presence(&self, id: &str, online: bool) -> bool {
        self.client
            .try_publish(
                format!("{}/station/{id}/state", self.prefix),
                QoS::AtLeastOnce,
                true,
                if online { "online" } else { "offline" },
            )
            .is_ok()
    }

    /// Stops (or resumes) publishing telemetry for station `id`; its plant keeps running.
    pub fn set_silenced(&self, id: &str, silenced: bool) -> bool {
        let Ok(mut sh) = self.shared.lock() else {
            return false;
        };
        match sh.stations.iter_mut().find(|s| s.id == id) {
            Some(s) => {
                s.silenced = silenced;
                true
            }
            None => false,
        }
    }

    /// Stops stepping, lets queued telemetry go out, disconnects. Returns the final snapshot.
    pub async fn stop(self) -> Vec<StationView> {
        let _ = self.stop.send(true);
        let _ = self.stepper.await;
        if let Ok(tasks) = self.modbus_tasks.lock() {
            for t in tasks.iter() {
                t.abort();
            }
        }
        if !self.modbus_addrs.is_empty() {
            return Self::views(&self.shared);
        }
        let snapshot = Self::views(&self.shared);
        for s in &snapshot {
            let _ = self.client.try_publish(
                format!("{}/station/{}/state", self.prefix, s.id),
                QoS::AtLeastOnce,
                true,
                "offline",
            );
        }
        let _ = self.client.disconnect().await;
        // The event loop ends after sending DISCONNECT (everything queued before it went first).
        let mut el = self.event_loop;
        if tokio::time::timeout(Duration::from_secs(20), &mut el)
            .await
            .is_err()
        {
            warn!("Simulator MQTT did not flush within 20 s; queued telemetry may be lost.");
            el.abort();
        }
        snapshot
    }
}
