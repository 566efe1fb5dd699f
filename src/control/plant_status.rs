//! What the plant task publishes and sends: the plant's status for the API, the alarms and
//! the control room ([`PlantStatus`], with its trend), and a command as it went out
//! ([`SentPlantCommand`]: its §7 payload, its stored point, its registers for a plant on
//! Modbus).
//!
//! Where it sits: made by [`super::plant_task`], read through a [`PlantStatusView`].

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::watch;

use super::plant::PlantPlan;
use crate::cluster::membership::Fence;
use crate::ingest::modbus::plant::PlantWrite;
use crate::ingest::plant::PlantReading;
use crate::store::record::PlantCommandPoint;

/// A command that went out to the plant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentPlantCommand {
    pub plant: String,
    pub seq: u64,
    pub epoch: u64,
    pub ts_ms: i64,
    pub valid_for_s: u32,
    pub plan: PlantPlan,
}

impl SentPlantCommand {
    /// What storage keeps of it.
    pub fn point(&self) -> PlantCommandPoint<'_> {
        let p = &self.plan;
        PlantCommandPoint {
            plant: &self.plant,
            seq: self.seq,
            epoch: self.epoch,
            supply_setpoint_c: p.supply_setpoint_c,
            diff_pressure_setpoint_kpa: p.diff_pressure_setpoint_kpa,
            pressure_point: &p.pressure_point,
            curve_c: p.curve_c,
            trim_k: p.trim_k,
            critical: p.critical.as_ref().map(|(id, d)| (id.as_str(), *d)),
            basis: p.basis.as_str(),
            fresh_stations: p.fresh_stations,
            ts_ms: self.ts_ms,
        }
    }

    /// The command as a plant's registers carry it: the pressure point numbered from 1 in
    /// `points` (0: the plant's outlet; a point not in the list cannot be held there, so the
    /// plant holds `head_kpa` at its outlet instead).
    pub fn write(
        &self,
        points: &[crate::model::StationId],
        head_kpa: f64,
        fence: Option<Fence>,
    ) -> PlantWrite {
        let p = &self.plan;
        let at = points
            .iter()
            .position(|s| s.as_str() == p.pressure_point)
            .map(|k| k as u16 + 1);
        let (point, dp) = match at {
            Some(k) => (k, p.diff_pressure_setpoint_kpa),
            None if p.pressure_point == "plant" => (0, p.diff_pressure_setpoint_kpa),
            None => (0, head_kpa),
        };
        PlantWrite {
            seq: self.seq,
            epoch: self.epoch,
            ts_ms: self.ts_ms,
            supply_setpoint_c: p.supply_setpoint_c,
            diff_pressure_setpoint_kpa: dp,
            pressure_point: point,
            valid_for_s: self.valid_for_s,
            fence,
        }
    }

    /// The contract §7 payload.
    pub fn payload(&self) -> serde_json::Value {
        serde_json::json!({
            "seq": self.seq,
            "epoch": self.epoch,
            "ts": self.ts_ms,
            "supply_setpoint_c": (self.plan.supply_setpoint_c * 100.0).round() / 100.0,
            "diff_pressure_setpoint_kpa": (self.plan.diff_pressure_setpoint_kpa * 10.0).round() / 10.0,
            "pressure_point": self.plan.pressure_point,
            "valid_for_s": self.valid_for_s,
        })
    }
}

/// What the engine knows of the plant after the task's last period.
#[derive(Debug, Clone, Serialize)]
pub struct PlantStatus {
    pub id: String,
    /// `control`, or `monitor` (`mode = "monitor"`, or an instance of a cluster that does
    /// not lead partition 0).
    pub mode: &'static str,
    pub reading: Option<PlantReading>,
    /// No plant reading within `plant_stale_after_s`.
    pub stale: bool,
    pub online: Option<bool>,
    /// A plant on Modbus: why its last request failed, until one succeeds.
    pub comm_error: Option<String>,
    pub plan: Option<PlantPlan>,
    pub last_command: Option<SentPlantCommand>,
    pub acked_seq: Option<u64>,
    pub ack_error: Option<String>,
    /// Each pressure point's differential pressure, kPa.
    pub points: BTreeMap<String, f64>,
    /// The fresh station that sees the least differential pressure, and what it sees, kPa.
    pub lowest_station_dp: Option<(String, f64)>,
    /// The pressure the loop is to hold at its point, kPa (the alarm's threshold).
    pub min_dp_kpa: f64,
    pub ts_ms: i64,
    /// The last [`TREND_POINTS`] periods, oldest first (the control room's trend).
    pub trend: Vec<TrendPoint>,
}

/// Periods kept for the trend (12 h at the default 60 s).
pub const TREND_POINTS: usize = 720;

/// One period of the plant's trend.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrendPoint {
    pub ts_ms: i64,
    /// What the plant sent and what it was asked, °C.
    pub supply_c: Option<f64>,
    pub setpoint_c: f64,
    pub return_c: Option<f64>,
    /// The pressure asked for at the pressure point and the least a station saw, kPa.
    pub dp_setpoint_kpa: f64,
    pub lowest_dp_kpa: Option<f64>,
}

/// The published view: `None` without a `[plant]`.
pub type PlantStatusView = watch::Receiver<Option<Arc<PlantStatus>>>;
