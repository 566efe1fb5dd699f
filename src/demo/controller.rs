//! heatgrid's side of an offline run: a [`StationController`] per station (and the district
//! coordinator over them), fed the simulator's telemetry as contract JSON through heatgrid's
//! decoder, answering with contract JSON commands.
//!
//! Where it sits: the controller that [`super::scenario`] and [`super::diagnosis`] put in the
//! loop of `heatgrid_sim::scenario::run_with`, with simulated time standing in for the wall
//! clock; with a [`Watch`] it also gives every reading and command to the station diagnosis.

use std::collections::HashMap;

use heatgrid_sim::SimConfig;

use super::error::DemoError;
use super::watch::Watch;
use crate::config::Config;
use crate::control::coordinator::{Coordinator, CoordinatorConfig, Observation};
use crate::control::plant::{PlantController, PlantSettings};
use crate::control::station::Tick;
use crate::control::StationController;
use crate::ingest::decode::{decode, DecodeLimits};
use crate::ingest::plant::decode_plant;
use crate::model::{Command, StationId};
use crate::predict::forecast::Forecast;
use crate::predict::{self, Predictor};

/// The predictive layer of a run: its settings, a predictor per station (made on its first
/// reading) and the forecast, fetched once per simulated hour from `source` (contract JSON
/// for a simulated time in ms) and decoded as the engine decodes the MQTT message.
pub(super) struct Predictive {
    pub(super) settings: predict::Settings,
    predictors: Vec<Option<Predictor>>,
    forecast: Option<Forecast>,
    source: Box<dyn FnMut(i64) -> String + Send>,
    fetched_hour: Option<i64>,
}

impl Predictive {
    pub(super) fn new(
        settings: predict::Settings,
        stations: usize,
        source: Box<dyn FnMut(i64) -> String + Send>,
    ) -> Self {
        Self {
            settings,
            predictors: vec![None; stations],
            forecast: None,
            source,
            fetched_hour: None,
        }
    }

    /// Station `i`'s predictive step on `reading` ([`crate::control::fleet::predict`]), the
    /// forecast fetched first when a new simulated hour began; the indoor temperature its
    /// plan aims at.
    fn step(
        &mut self,
        i: usize,
        ctrl: &mut StationController,
        reading: &crate::model::Reading,
        now_ms: i64,
    ) -> Option<f64> {
        let hour = now_ms.div_euclid(3_600_000);
        if self.fetched_hour != Some(hour) {
            self.fetched_hour = Some(hour);
            self.forecast = Forecast::decode((self.source)(now_ms).as_bytes(), now_ms).ok();
        }
        let outdoor = reading.outdoor_temp_c.unwrap_or(-5.0);
        crate::control::fleet::predict(
            &mut self.predictors[i],
            ctrl,
            reading,
            (now_ms, outdoor),
            self.forecast.as_ref(),
            &self.settings,
            0.0,
        )
    }
}

/// The plant loop of a run on a network: heatgrid's [`PlantController`] fed the stations'
/// readings, the plant's telemetry decoded as the engine decodes it, and the forecast
/// fetched once per simulated hour; a command every `period_ms`.
pub(super) struct PlantLoop {
    pub(super) ctrl: PlantController,
    source: Box<dyn FnMut(i64) -> String + Send>,
    forecast: Option<Forecast>,
    fetched_hour: Option<i64>,
    period_ms: i64,
    valid_for_s: u32,
    next_ms: i64,
    seq: u64,
    outdoor_c: f64,
    limits: DecodeLimits,
}

impl PlantLoop {
    pub(super) fn new(
        settings: PlantSettings,
        stations: usize,
        source: Box<dyn FnMut(i64) -> String + Send>,
    ) -> Self {
        Self {
            ctrl: PlantController::new(settings, stations),
            source,
            forecast: None,
            fetched_hour: None,
            period_ms: 60_000,
            valid_for_s: 300,
            next_ms: i64::MIN,
            seq: 0,
            outdoor_c: 0.0,
            limits: DecodeLimits::default(),
        }
    }

    /// The plant reported `telemetry` at `now_ms`: a command JSON when one is due.
    pub(super) fn answer(&mut self, telemetry: &str, now_ms: i64) -> Option<String> {
        let reading = decode_plant(telemetry.as_bytes(), now_ms, &self.limits).ok()?;
        if now_ms < self.next_ms {
            return None;
        }
        self.next_ms = now_ms + self.period_ms;
        let hour = now_ms.div_euclid(3_600_000);
        if self.fetched_hour != Some(hour) {
            self.fetched_hour = Some(hour);
            self.forecast = Forecast::decode((self.source)(now_ms).as_bytes(), now_ms).ok();
        }
        self.ctrl.observe_plant(&reading);
        let plan = self
            .ctrl
            .plan(now_ms, self.outdoor_c, self.forecast.as_ref());
        self.seq += 1;
        let cmd = serde_json::json!({
            "seq": self.seq,
            "epoch": 1,
            "ts": now_ms,
            "supply_setpoint_c": plan.supply_setpoint_c,
            "diff_pressure_setpoint_kpa": plan.diff_pressure_setpoint_kpa,
            "pressure_point": plan.pressure_point,
            "valid_for_s": self.valid_for_s,
        });
        Some(cmd.to_string())
    }
}

/// heatgrid's side of a run: a controller per station (and the coordinator over them), fed
/// contract JSON, answering with contract JSON.
pub(super) struct Heatgrid {
    loops: HashMap<String, usize>,
    stations: Vec<(StationId, StationController, u64)>,
    coordinator: Option<Coordinator>,
    limits: DecodeLimits,
    valid_for_s: u32,
    period_s: f64,
    /// Simulated time of the last telemetry seen, ms (the coordinator's clock).
    last_ms: Option<i64>,
    pub(super) indoor_sensor: bool,
    /// The diagnosis run's watch, and which stations it only watches (no command sent:
    /// they run on their own curve).
    pub(super) watch: Option<(Watch, Vec<bool>)>,
    pub(super) predictive: Option<Predictive>,
    /// On a network: the plant loop, fed every reading a station controller acts on.
    pub(super) plant: Option<PlantLoop>,
}

impl Heatgrid {
    pub(super) fn new(
        sim: &SimConfig,
        coordinator: Option<CoordinatorConfig>,
    ) -> Result<Self, DemoError> {
        // The engine's defaults for every station, with the heat index from each station's
        // data sheet (ids as the simulator names them).
        let toml: String = sim
            .design_heat_index_w_m2()
            .iter()
            .enumerate()
            .map(|(n, w)| {
                format!(
                    "[[station]]\nid = \"{}{:03}\"\nheat_index_w_m2 = {w}\n",
                    sim.id_prefix,
                    n + 1
                )
            })
            .collect();
        let cfg = Config::parse(&toml, &|_| None).map_err(|e| {
            DemoError::Config(format!(
                "building the fleet's configuration: {}",
                e.join("; ")
            ))
        })?;
        let stations: Vec<_> = cfg
            .stations
            .iter()
            .map(|s| {
                let ctrl = StationController::new(s.params.clone(), sim.telemetry_period_s);
                (s.id.clone(), ctrl, 0)
            })
            .collect();
        Ok(Self {
            loops: cfg
                .stations
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id.as_str().to_owned(), i))
                .collect(),
            coordinator: coordinator.map(|c| Coordinator::new(c, stations.len())),
            stations,
            limits: DecodeLimits::default(),
            valid_for_s: cfg.command_valid_for_s,
            period_s: sim.telemetry_period_s,
            last_ms: None,
            indoor_sensor: false,
            watch: None,
            predictive: None,
            plant: None,
        })
    }

    pub(super) fn answer(&mut self, id: &str, telemetry: &str, now_ms: i64) -> Option<String> {
        if let Some(c) = &mut self.coordinator {
            // The clock moves once per telemetry round (all stations report at the same time).
            if self.last_ms.is_some_and(|t| now_ms > t) && c.advance(self.period_s) {
                for (i, (_, ctrl, _)) in self.stations.iter_mut().enumerate() {
                    ctrl.set_district_offset_k(c.offset_k(i));
                }
            }
        }
        self.last_ms = Some(now_ms);
        let &i = self.loops.get(id)?;
        let (sid, ctrl, seq) = &mut self.stations[i];
        let mut reading = decode(sid, telemetry.as_bytes(), now_ms, &self.limits).ok()?;
        if !self.indoor_sensor {
            reading.indoor_temp_c = None;
        }
        // The design data only when a diagnosis watches (not on the scenarios' hot path).
        let design = |ctrl: &StationController| crate::control::fleet::design_of(ctrl, &reading);
        if let Some((w, monitor_only)) = &mut self.watch {
            if monitor_only[i] {
                w.observe(i, &reading, None, &design(ctrl), now_ms);
                return None;
            }
        }
        if let Some(p) = &mut self.predictive {
            let planned = p.step(i, ctrl, &reading, now_ms);
            if let Some(c) = &mut self.coordinator {
                c.set_planned_indoor(i, planned);
            }
        }
        match ctrl.tick(
            Some(&reading),
            reading.outdoor_temp_c.unwrap_or(-5.0),
            now_ms,
        ) {
            Tick::Act(o) => {
                if let Some(p) = &mut self.plant {
                    p.ctrl.observe(&reading, Some(o.supply_setpoint_c));
                    p.outdoor_c = reading.outdoor_temp_c.unwrap_or(p.outdoor_c);
                }
                if let Some(c) = &mut self.coordinator {
                    c.observe(i, &Observation::of_step(ctrl, &reading, &o, self.period_s));
                }
                *seq += 1;
                let cmd = Command {
                    seq: *seq,
                    ts: now_ms,
                    mode: o.mode,
                    supply_setpoint_c: o.supply_setpoint_c,
                    valve_pct: o.valve_pct,
                    pump_pct: o.pump_pct,
                    flow_setpoint_m3h: o.flow_setpoint_m3h,
                    valid_for_s: self.valid_for_s,
                    epoch: None,
                };
                if let Some((w, _)) = &mut self.watch {
                    w.observe(i, &reading, Some(&cmd), &design(ctrl), now_ms);
                }
                serde_json::to_string(&cmd).ok()
            }
            Tick::Stale { .. } => None,
        }
    }
}
