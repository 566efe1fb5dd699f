//! The status view: what the control task knows about each station after its last tick.
//!
//! Where it sits: the control task builds one [`StationStatus`] per station every tick and
//! publishes the whole list on a watch channel; the API, `top`, the demo's table and the
//! alarm evaluation read it. It is a snapshot: nothing reads back into control from it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::kpi::DayKpis;
use super::Outputs;
use crate::model::{Mode, Reading, StationId};

/// What the engine knows about one station after the last tick.
#[derive(Debug, Clone)]
pub struct StationStatus {
    pub id: StationId,
    pub mode: Mode,
    pub stale: bool,
    pub reading: Option<Reading>,
    pub outputs: Option<Outputs>,
    /// Last command seq sent (0: none yet), and the last commands handed out (a shared handle).
    pub seq: u64,
    pub recent_commands: crate::command::dispatch::RecentCommands,
    /// The epoch this instance commands the station under: `Some(0)` for the only engine,
    /// `None` when another instance of a cluster leads its partition (or nobody does).
    pub epoch: Option<u64>,
    pub supply_offset_k: f64,
    /// The heating curve in force: (outdoor °C, supply °C) points.
    pub curve: Vec<(f64, f64)>,
    /// The district coordinator's offset on the curve, K (0 without a coordinator).
    pub district_offset_k: f64,
    /// The coordinator holds that offset: the diagnosis suspects a sensor.
    pub district_held: bool,
    /// Operator's fixed supply setpoint and its expiry (Unix ms).
    pub fixed_supply: Option<(f64, Option<i64>)>,
    /// Highest `seq` the station acknowledged on `…/ack` (0: none), and its last ack error.
    pub acked_seq: u64,
    pub ack_error: Option<String>,
    /// Heat delivered since 00:00 UTC, GJ (integrated from heat_kw over plant time).
    pub heat_today_gj: f64,
    /// Every KPI of the day so far, from telemetry.
    pub kpis_today: DayKpis,
    /// The last four hours, one sample per minute of plant time (a shared handle).
    pub trend: Trend,
    pub tags: BTreeMap<String, String>,
    /// Heated area: the reading's, else the config's.
    pub area_m2: Option<f64>,
    /// How the station is reached: `mqtt`, or `modbus tcp://host:port unit N`.
    pub link: String,
    /// Modbus: why the last poll or write failed (`None` while it answers).
    pub link_error: Option<String>,
    /// The station's MQTT presence (`…/state`, its last will) is `offline`.
    pub offline: bool,
    /// Payloads of this station rejected so far.
    pub rejects: u64,
    /// Faults the diagnosis suspects, most confident first.
    pub findings: Vec<crate::diagnose::Finding>,
    /// Faults the diagnosis cannot judge for lack of telemetry, with what each needs.
    pub unjudged: Vec<crate::diagnose::Unjudged>,
    /// The predictive layer: its state, weather shift and building model (`None` while
    /// `[predictive]` is off or before the first reading).
    pub predictive: Option<crate::predict::Status>,
}

/// Samples kept for a station's recent trend: four hours, one per minute of plant time.
const TREND_LEN: usize = 240;

/// One trend sample: what the station measured and what it was told, one plant minute apart.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TrendPoint {
    /// The reading's time, Unix ms.
    pub t_ms: i64,
    pub supply_temp_c: f32,
    pub supply_setpoint_c: f32,
    pub return_temp_c: f32,
    pub flow_m3h: f32,
    pub flow_setpoint_m3h: f32,
    pub valve_pct: f32,
    pub pump_pct: f32,
    pub outdoor_temp_c: f32,
}

/// A station's trend, shared by the control task (which appends) and whoever shows it: the
/// status snapshot of every tick carries the handle, not a copy of four hours of samples.
#[derive(Debug, Default, Clone)]
pub struct Trend(Arc<Mutex<VecDeque<TrendPoint>>>);

impl Trend {
    /// The samples, oldest first.
    pub fn points(&self) -> Vec<TrendPoint> {
        self.0
            .lock()
            .map(|t| t.iter().copied().collect())
            .unwrap_or_default()
    }

    pub(super) fn push(&self, p: TrendPoint) {
        if let Ok(mut t) = self.0.lock() {
            t.push_back(p);
            if t.len() > TREND_LEN {
                t.pop_front();
            }
        }
    }
}
