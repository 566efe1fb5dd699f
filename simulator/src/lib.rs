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

pub mod faults;
pub mod forecast;
mod handle;
mod kpis;
mod live;
pub mod modbus;
mod modbus_bus;
pub mod network;
pub mod plant;
pub mod scenario;
mod shared;
pub mod station;
mod weather;

use std::f64::consts::PI;

use rand::{Rng, SeedableRng};

pub use handle::{spawn, SimHandle};
pub use modbus::ModbusFault;
use plant::PlantParams;
pub use shared::CommandRecord;
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
    /// Keep every command the stations receive ([`SimHandle::command_log`]): for checkers
    /// of ownership and fencing.
    pub record_commands: bool,
    /// Serve the stations over Modbus TCP instead of MQTT (see [`modbus`]).
    pub modbus: Option<SimModbus>,
    /// How the fleet's buildings deviate from their design.
    pub fleet: Fleet,
    /// Scenario runs only: hours the run's policy drives the fleet before the measured window
    /// (in the weather of the days before), so a controller is judged in its own steady state.
    pub lead_h: f64,
    /// Faults to inject, by station index (0-based), each from its onset ([`faults`],
    /// [`faults::plan`] draws a seeded fleet of them).
    pub faults: Vec<(usize, faults::Fault)>,
    /// Sensor noise: each reported temperature off by up to ± this (K), each flow and heat
    /// figure by up to ± (10 × this) % (uniform, seeded per station and sample; 0.05 gives
    /// ±0.05 K and ±0.5 %). 0 by default.
    pub sensor_noise_k: f64,
    /// Put the stations on a primary network with its plant (contract §7: the plant's
    /// telemetry on `{prefix}/plant/{id}/telemetry`, its commands on `…/command`). MQTT
    /// only. `None` by default: each station gets a fixed primary supply.
    pub network: Option<SimNetwork>,
    /// Publish a weather forecast with this error on `{prefix}/weather/forecast` (retained,
    /// every simulated hour, 48 h ahead; [`forecast`]). `None` by default.
    pub forecast: Option<forecast::ForecastError>,
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

/// The primary network of a live simulator.
#[derive(Debug, Clone)]
pub struct SimNetwork {
    pub file: network::file::NetworkFile,
    pub loads: network::district::Loads,
    /// Pipe cells, m.
    pub cell_m: f64,
    /// The plant's id in its topics.
    pub plant_id: String,
    /// Serve the plant's PLC over Modbus TCP instead of MQTT (the stations keep MQTT).
    pub plant_modbus: Option<SimPlantModbus>,
}

/// Where and with which register map the plant's PLC is served over Modbus TCP.
#[derive(Debug, Clone)]
pub struct SimPlantModbus {
    pub host: String,
    /// 0: an ephemeral port ([`SimHandle::plant_modbus_addr`] says which).
    pub port: u16,
    /// Register map text; [`PLANT_MAP`] is the one heatgrid ships.
    pub map: String,
}

impl Default for SimPlantModbus {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 0,
            map: PLANT_MAP.into(),
        }
    }
}

/// The plant's register map heatgrid ships (`config/modbus/heatgrid-sim-plant.toml`).
pub const PLANT_MAP: &str = include_str!("../../config/modbus/heatgrid-sim-plant.toml");

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
    /// Serve the stations as units 1…N of one Modbus RTU line on this serial device (and
    /// its baud rate) instead of one TCP listener each.
    pub rtu: Option<(String, u32)>,
    /// Serve the stations as units 1…N behind one Modbus TCP listener (an RTU-to-TCP
    /// gateway) instead of one listener each.
    pub gateway: bool,
    /// Serve the stations as units 1…N of one RTU line reached over TCP (a transparent serial
    /// server: RTU frames on a TCP socket) instead of one listener each.
    pub rtu_over_tcp: bool,
    /// Record when each station's PLC got each read request ([`SimHandle::reads`]).
    pub record_reads: bool,
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
            rtu: None,
            gateway: false,
            rtu_over_tcp: false,
            record_reads: false,
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
            record_commands: false,
            modbus: None,
            fleet: Fleet::Balanced,
            lead_h: 0.0,
            faults: Vec::new(),
            sensor_noise_k: 0.0,
            forecast: None,
            network: None,
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
        let mut glazing = rand::rngs::StdRng::seed_from_u64(self.seed ^ 0x0050_1a40_0000_0000);
        (1..=self.stations)
            .map(|n| {
                let area = (rng.random_range(50_000.0..=200_000.0_f64) / 1000.0).round() * 1000.0;
                let mut params = PlantParams::for_area(
                    area,
                    rng.random_range(40.0..=50.0),
                    rng.random_range(30.0..=50.0),
                );
                // 1.5–2.5 % of the floor as effective aperture (7 W/m² of floor at 350 W/m²).
                params.solar_aperture = glazing.random_range(0.015..=0.025);
                if self.fleet == Fleet::Unbalanced {
                    params.radiator_design_w *= off_design.random_range(0.75..=1.35);
                    params.building_ua_w_k *= off_design.random_range(0.95..=1.05);
                }
                let mut s = SimStation::new(format!("{}{n:03}", self.id_prefix), params);
                s.noise = (
                    self.sensor_noise_k,
                    self.seed.wrapping_mul(1_000_003) ^ n as u64,
                );
                s.fault = self
                    .faults
                    .iter()
                    .find(|(i, _)| *i + 1 == n)
                    .map(|(_, f)| (*f, faults::FaultState::default()));
                s
            })
            .collect()
    }

    /// A network generated for this fleet (from `seed`): sized for each station's design load
    /// at a 50 K primary ΔT ([`network::file::generate_for`]).
    pub fn generated_network(&self, seed: u64) -> network::file::NetworkFile {
        let loads: Vec<(String, f64)> = self
            .build_stations()
            .iter()
            .map(|s| (s.id.clone(), s.plant.p.design_heat_w / 1000.0))
            .collect();
        network::file::generate_for(&loads, seed, 50.0)
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
