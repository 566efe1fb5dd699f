//! What the stages store: typed records, encoded as line protocol only here in `store`.
//!
//! Where it sits: every producer (ingest, the Modbus pollers, command dispatch, the alarm
//! task, the operator log, the district coordinator) hands [`Record`]s to the
//! [`super::StoreHandle`], alone or gathered in [`super::Points`] for one spool append;
//! [`super::line_protocol`] encodes them. The
//! measurements and their fields are the storage schema of the contract.

use std::collections::BTreeMap;

use crate::model::{Applied, Command, Reading, StationId};

/// One point to store.
#[derive(Debug, Clone)]
pub enum Record<'a> {
    /// `telemetry`: an accepted reading, with the station's tags and the configured heated
    /// area (used when the reading has none).
    Reading {
        reading: &'a Reading,
        tags: &'a BTreeMap<String, String>,
        area_m2: Option<f64>,
    },
    /// `command`: a command that went out (MQTT) or that the device confirmed (Modbus).
    Command {
        station: &'a StationId,
        tags: &'a BTreeMap<String, String>,
        command: &'a Command,
    },
    /// `alarm`: a raise or a clear.
    Alarm(AlarmPoint),
    /// `operator_action`: an applied operator change or acknowledgement.
    OperatorAction {
        applied: &'a Applied,
        user: &'a str,
        ts_ms: i64,
    },
    /// `coordinator`: a station's district offset after an update.
    Coordinator(CoordinatorPoint<'a>),
    /// `finding`: a suspected fault named or cleared by the station diagnosis.
    Finding(FindingPoint),
    /// `plant`: an accepted plant reading (contract §7).
    Plant {
        plant: &'a str,
        reading: &'a crate::model::PlantReading,
    },
    /// `network_point`: an accepted pressure-point reading.
    NetworkPoint {
        point: &'a str,
        reading: &'a crate::model::PointReading,
    },
    /// `plant_command`: a command that went out to the plant, with the loop's reasons.
    PlantCommand(PlantCommandPoint<'a>),
}

/// One command to the plant as it went out, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct PlantCommandPoint<'a> {
    pub plant: &'a str,
    pub seq: u64,
    pub epoch: u64,
    pub supply_setpoint_c: f64,
    pub diff_pressure_setpoint_kpa: f64,
    pub pressure_point: &'a str,
    pub curve_c: f64,
    pub trim_k: f64,
    /// The most demanding station and its demand, %.
    pub critical: Option<(&'a str, f64)>,
    /// `fleet` or `curve`.
    pub basis: &'static str,
    pub fresh_stations: usize,
    pub ts_ms: i64,
}

/// One finding of the station diagnosis as it is named (active) or cleared.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingPoint {
    pub station: String,
    pub kind: &'static str,
    pub active: bool,
    pub confidence: f64,
    pub evidence: String,
    /// Start of the first hour its condition held, Unix ms.
    pub since_ms: i64,
    pub ts_ms: i64,
}

/// One raise or clear of an alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmPoint {
    pub station: String,
    pub kind: &'static str,
    pub severity: &'static str,
    pub active: bool,
    pub message: String,
    pub value: f64,
    pub id: u64,
    pub ts_ms: i64,
}

/// A station's district offset, its load ratio and the district's target after an update.
#[derive(Debug, Clone, Copy)]
pub struct CoordinatorPoint<'a> {
    pub station: &'a StationId,
    pub tags: &'a BTreeMap<String, String>,
    pub offset_k: f64,
    pub load_ratio: f64,
    pub target_ratio: Option<f64>,
    pub ts_ms: i64,
}
