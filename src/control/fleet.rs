//! One station as the control task holds it: its controller, its slot, and the day's figures
//! and trend the control task keeps for the status view.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::kpi::DayKpis;
use super::status::{StationStatus, Trend, TrendPoint};
use super::{Outputs, StationController};
use crate::ingest::StationSlot;
use crate::model::{Reading, StationId};

/// One station as the control task holds it.
#[derive(Debug)]
pub struct Station {
    pub id: StationId,
    pub tags: BTreeMap<String, String>,
    /// How it is reached, for the status view (`mqtt`, `modbus tcp://… unit N`).
    pub link: String,
    pub slot: Arc<StationSlot>,
    pub ctrl: StationController,
    pub(super) kpi: Kpi,
    /// Wall time of its last controller step, and the `ts` of the reading that step acted on
    /// (a reading is acted on once).
    pub(super) last_step_ms: i64,
    pub(super) stepped_ts: i64,
    /// The epoch this instance commands it under (`Some(0)` alone; `None`: another instance
    /// leads its partition).
    pub(super) epoch: Option<u64>,
    /// The operator settings the config gives it (a cluster's takeover without kept state
    /// starts from these).
    pub(super) initial: super::settings::OperatorSettings,
    /// What its readings and commands say about its health (issue 17, docs/diagnosis.md).
    pub(super) diagnosis: crate::diagnose::Diagnosis,
    /// The district coordinator holds its offset: a sensor fault is suspected.
    pub(super) district_held: bool,
    /// The predictive layer (made on the first reading when `[predictive]` is enabled).
    pub(super) predictor: Option<crate::predict::Predictor>,
}

/// What a station's design data (its controller's settings) say about reading `r`.
pub fn design_of(ctrl: &StationController, r: &Reading) -> crate::diagnose::Design {
    let p = ctrl.params();
    let area = r.heated_area_m2.or(p.heated_area_m2).unwrap_or(0.0);
    crate::diagnose::Design {
        design_kw: p.heat_index_w_m2 * area / 1000.0,
        span_k: p.design_indoor_c - p.design_outdoor_c,
        curve_c: r.outdoor_temp_c.map(|o| p.curve.supply_c(o)),
    }
}

/// One station's predictive step, for the engine and the offline runner alike: `predictor`
/// (made here on the first reading, planning at `phase` 0–1 of its period) learns from
/// reading `r`, taken at `step` = (plant ms, outdoor °C used); `ctrl` gets the plan's weather
/// shift and the flow ΔT to keep. Returns the indoor temperature the plan aims at now (for
/// the coordinator).
pub fn predict(
    predictor: &mut Option<crate::predict::Predictor>,
    ctrl: &mut StationController,
    r: &Reading,
    (plant_ms, outdoor_c): (i64, f64),
    forecast: Option<&crate::predict::forecast::Forecast>,
    s: &crate::predict::Settings,
    phase: f64,
) -> Option<f64> {
    let d = design_of(ctrl, r);
    let design = crate::predict::Design {
        design_kw: d.design_kw,
        span_k: d.span_k,
    };
    let area = r
        .heated_area_m2
        .or(ctrl.params().heated_area_m2)
        .unwrap_or(0.0);
    let p = predictor
        .get_or_insert_with(|| crate::predict::Predictor::new(&design, area).with_phase(phase));
    let sun = forecast.map_or(0.0, |f| f.at(plant_ms).1);
    p.observe(r, plant_ms, outdoor_c, sun);
    let k = p.shift_k(plant_ms, r.indoor_temp_c, outdoor_c, forecast, &design, s);
    ctrl.set_weather_shift_k(k);
    ctrl.set_flow_delta_t_k(s.flow_delta_t_k);
    p.status().planned_indoor_c
}

/// Gives every station's diagnosis the fleet's yardsticks (once per plant hour: the
/// undersized-exchanger and over-firing detectors compare each station with them).
pub(super) fn compare_fleet(stations: &mut [Station]) {
    let fleet = crate::diagnose::Fleet::of(stations.iter().map(|s| &s.diagnosis));
    for s in stations {
        s.diagnosis.set_fleet(fleet);
    }
}

impl Station {
    pub fn new(
        id: StationId,
        tags: BTreeMap<String, String>,
        link: String,
        slot: Arc<StationSlot>,
        ctrl: StationController,
    ) -> Self {
        let initial = super::settings::OperatorSettings::of(&ctrl);
        Self {
            id,
            tags,
            link,
            slot,
            ctrl,
            kpi: Kpi::default(),
            last_step_ms: 0,
            stepped_ts: i64::MIN,
            epoch: None,
            initial,
            diagnosis: Default::default(),
            district_held: false,
            predictor: None,
        }
    }

    /// Gives the predictive layer a fresh reading and sets the controller's targets from its
    /// plan ([`predict`]); returns the indoor temperature the plan aims at.
    pub(super) fn predict(
        &mut self,
        r: &Reading,
        step: (i64, f64),
        forecast: Option<&crate::predict::forecast::Forecast>,
        s: &crate::predict::Settings,
        phase: f64,
    ) -> Option<f64> {
        predict(
            &mut self.predictor,
            &mut self.ctrl,
            r,
            step,
            forecast,
            s,
            phase,
        )
    }

    /// Gives the diagnosis a fresh reading and the command sent on it, at `plant_ms`, with
    /// what the station's design data say about it.
    pub(super) fn diagnose(
        &mut self,
        r: &Reading,
        cmd: &crate::model::Command,
        plant_ms: i64,
        s: &crate::diagnose::Settings,
    ) {
        let design = design_of(&self.ctrl, r);
        self.diagnosis.observe(r, Some(cmd), &design, plant_ms, s);
    }

    /// Whether the district coordinator should hold this station's offset (not learn from
    /// its temperatures) because the diagnosis suspects one of its sensors; says so once when
    /// that starts and when it ends.
    pub(super) fn district_holds(&mut self) -> bool {
        let held = self.diagnosis.suspects_sensor();
        if held != self.district_held {
            self.district_held = held;
            if held {
                tracing::warn!(station = %self.id, offset_k = self.ctrl.district_offset_k(),
                    "Suspected sensor fault: the district coordinator holds this station's offset.");
            } else {
                tracing::info!(station = %self.id,
                    "Sensor fault no longer suspected: the district coordinator follows this station again.");
            }
        }
        held
    }

    pub(super) fn latest(&self) -> Option<Reading> {
        self.slot
            .latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn latest_ts(&self) -> Option<i64> {
        self.slot
            .latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|r| r.ts_ms)
    }

    /// Its status after a tick, `seq` being the last number given to it.
    pub(super) fn status(
        &self,
        seq: u64,
        recent_commands: crate::command::dispatch::RecentCommands,
    ) -> StationStatus {
        let s = self;
        let reading = s.latest();
        let area_m2 = reading
            .as_ref()
            .and_then(|r| r.heated_area_m2)
            .or(s.ctrl.params().heated_area_m2);
        let slot = &s.slot;
        StationStatus {
            id: s.id.clone(),
            mode: s.ctrl.mode(),
            stale: s.ctrl.is_stale(),
            reading,
            outputs: s.ctrl.last_outputs().copied(),
            seq,
            recent_commands,
            epoch: s.epoch,
            supply_offset_k: s.ctrl.supply_offset_k(),
            curve: s.ctrl.params().curve.points().to_vec(),
            district_offset_k: s.ctrl.district_offset_k(),
            district_held: s.district_held,
            fixed_supply: s.ctrl.fixed_supply(),
            acked_seq: slot.acked_seq.load(Ordering::Relaxed),
            ack_error: slot.ack_error.lock().ok().and_then(|e| e.clone()),
            heat_today_gj: s.kpi.today.heat_gj,
            kpis_today: s.kpi.today.clone(),
            trend: s.kpi.trend.clone(),
            tags: s.tags.clone(),
            area_m2,
            link: s.link.clone(),
            link_error: slot.comm_error.lock().ok().and_then(|e| e.clone()),
            offline: slot.presence.load(Ordering::Relaxed) == 2,
            rejects: slot.rejects.load(Ordering::Relaxed),
            findings: s.diagnosis.findings().to_vec(),
            unjudged: s.diagnosis.unjudged(),
            predictive: s.predictor.as_ref().map(|p| p.status()),
        }
    }
}

/// Per-station figures the control task accumulates.
#[derive(Debug, Default, Clone)]
pub(super) struct Kpi {
    day: i64,
    today: DayKpis,
    trend: Trend,
    /// Wall time of the last trend sample (one per minute of plant time).
    trend_at_ms: i64,
}

impl Kpi {
    /// Starts a new day's figures at 00:00 UTC.
    pub(super) fn start_day_of(&mut self, now: i64) {
        let day = now.div_euclid(86_400_000);
        if self.day != day {
            self.day = day;
            self.today = Default::default();
        }
    }

    /// Accounts one step on a fresh reading (`dt_s` plant seconds); a trend sample once every
    /// `trend_every_ms` of wall time (a minute of plant time).
    pub(super) fn record(
        &mut self,
        r: &Reading,
        o: &Outputs,
        area_m2: Option<f64>,
        dt_s: f64,
        now: i64,
        trend_every_ms: i64,
    ) {
        self.today.record(r, o, area_m2, dt_s);
        if now - self.trend_at_ms >= trend_every_ms {
            self.trend_at_ms = now;
            self.trend.push(TrendPoint {
                t_ms: r.ts_ms,
                supply_temp_c: r.supply_temp_c as f32,
                supply_setpoint_c: o.supply_setpoint_c as f32,
                return_temp_c: r.return_temp_c as f32,
                flow_m3h: r.flow_m3h as f32,
                flow_setpoint_m3h: o.flow_setpoint_m3h as f32,
                valve_pct: r.valve_pct.unwrap_or(o.valve_pct) as f32,
                pump_pct: r.pump_pct.unwrap_or(o.pump_pct) as f32,
                outdoor_temp_c: o.outdoor_c as f32,
            });
        }
    }
}
