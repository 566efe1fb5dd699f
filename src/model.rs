//! Domain types shared by every stage: station ids, readings, modes, commands and applied
//! operator actions.
//!
//! Sits at the centre of the data flow: `decode` produces [`Reading`]s, `control`
//! turns them into [`Command`]s, `store` encodes both as line protocol.
//! Units live in field names (`supply_temp_c`, `flow_m3h`, …) as in the contract.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Longest station id the contract allows.
pub const STATION_ID_MAX_LEN: usize = 64;

/// Why a station id was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidStationId {
    #[error("station id must be 1-{STATION_ID_MAX_LEN} characters, got {0}")]
    Length(usize),
    #[error("station id {id:?} contains {bad:?}; only A-Z a-z 0-9 _ - are allowed")]
    Char { id: String, bad: char },
}

/// A validated station id: 1–64 characters of `A-Z a-z 0-9 _ -`.
///
/// Ids end up in MQTT topics and InfluxDB tags, so anything else (wildcards,
/// slashes, spaces, commas) is refused at the edge. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StationId(Arc<str>);

impl StationId {
    /// Validates `id` against the contract's alphabet and length.
    pub fn new(id: &str) -> Result<Self, InvalidStationId> {
        if id.is_empty() || id.len() > STATION_ID_MAX_LEN {
            return Err(InvalidStationId::Length(id.len()));
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(InvalidStationId::Char {
                id: id.to_owned(),
                bad,
            });
        }
        Ok(Self(Arc::from(id)))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// One accepted telemetry reading (contract §2.1), already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub station: StationId,
    /// Time of the measurement, Unix milliseconds (the payload's `ts`, else receive time).
    pub ts_ms: i64,
    pub supply_temp_c: f64,
    pub return_temp_c: f64,
    pub flow_m3h: f64,
    /// `None` when the payload omitted it; the station config then supplies it.
    pub heated_area_m2: Option<f64>,
    pub outdoor_temp_c: Option<f64>,
    pub indoor_temp_c: Option<f64>,
    pub valve_pct: Option<f64>,
    pub pump_pct: Option<f64>,
    pub heat_kw: Option<f64>,
    /// Every other numeric field: the contract's optional ones (`primary_*`,
    /// `heat_energy_gj`) and unknown ones, kept for storage.
    pub extra: Vec<(String, f64)>,
}

impl Reading {
    /// Supply − return, K.
    pub fn delta_t_k(&self) -> f64 {
        self.supply_temp_c - self.return_temp_c
    }

    /// Heat power: the meter's `heat_kw` if reported, else 1.163 × V × ΔT.
    pub fn heat_kw(&self) -> f64 {
        self.heat_kw
            .unwrap_or_else(|| crate::physics::heat_kw(self.flow_m3h, self.delta_t_k()))
    }
}

/// One accepted plant reading (contract §7).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlantReading {
    pub ts_ms: i64,
    pub supply_temp_c: f64,
    pub return_temp_c: f64,
    pub flow_m3h: f64,
    pub heat_kw: f64,
    /// At the plant's outlet, kPa.
    pub diff_pressure_kpa: f64,
    pub pump_pct: f64,
    /// Heat per production unit, kW, by the plant's own unit names.
    pub units: std::collections::BTreeMap<String, f64>,
    /// The (epoch, seq) of the last command the plant accepted, when it says.
    #[serde(skip)]
    pub applied: Option<(u64, u64)>,
}

/// One accepted pressure-point reading.
#[derive(Debug, Clone, PartialEq)]
pub struct PointReading {
    pub ts_ms: i64,
    pub diff_pressure_kpa: f64,
}

/// Who decides a station's outputs (contract §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The engine computes setpoint, valve and pump.
    #[default]
    Auto,
    /// An operator fixed valve and pump.
    Manual,
    /// Outputs frozen at their last value.
    Hold,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Manual => "manual",
            Mode::Hold => "hold",
        }
    }
}

/// A setpoint instruction for one station (contract §2.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub seq: u64,
    /// When the command was computed, Unix milliseconds.
    pub ts: i64,
    pub mode: Mode,
    pub supply_setpoint_c: f64,
    pub valve_pct: f64,
    pub pump_pct: f64,
    pub flow_setpoint_m3h: f64,
    /// After this many seconds the station falls back to its local curve.
    pub valid_for_s: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub epoch: Option<u64>,
}

impl Command {
    /// The value of command field `field` as a number, for a register or a foreign payload:
    /// `mode` as 0 auto, 1 manual, 2 hold; `epoch` 0 for a single engine; and two on/off
    /// values for coils: `pump_enable` (the pump is given a speed) and `manual_mode`.
    pub fn field_value(&self, field: &str) -> Option<f64> {
        Some(match field {
            "supply_setpoint_c" => self.supply_setpoint_c,
            "valve_pct" => self.valve_pct,
            "pump_pct" => self.pump_pct,
            "flow_setpoint_m3h" => self.flow_setpoint_m3h,
            "mode" => match self.mode {
                Mode::Auto => 0.0,
                Mode::Manual => 1.0,
                Mode::Hold => 2.0,
            },
            "valid_for_s" => self.valid_for_s as f64,
            "seq" => self.seq as f64,
            // In a cluster, the owner's epoch: a PLC that can, compares (epoch, seq).
            "epoch" => self.epoch.unwrap_or(0) as f64,
            "pump_enable" => (self.pump_pct > 0.0) as u8 as f64,
            "manual_mode" => (self.mode == Mode::Manual) as u8 as f64,
            _ => return None,
        })
    }
}

/// An operator action that took effect: an applied change or an alarm acknowledgement. It is
/// the reply to the operator, the audit record (before → after) and the `operator_action`
/// point in storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub station: String,
    pub action: String,
    pub before: String,
    pub after: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn station_ids_follow_the_contract_alphabet() {
        assert!(StationId::new("st-001_A").is_ok());
        assert!(StationId::new(&"a".repeat(64)).is_ok());
        for bad in ["", "a/b", "a+b", "a#", "a b", "é", "a,b", &"a".repeat(65)] {
            assert!(StationId::new(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn command_serialises_to_the_contract_shape() {
        let cmd = Command {
            seq: 7,
            ts: 1_764_262_805_000,
            mode: Mode::Auto,
            supply_setpoint_c: 53.0,
            valve_pct: 43.5,
            pump_pct: 76.0,
            flow_setpoint_m3h: 236.0,
            valid_for_s: 300,
            epoch: None,
        };
        let v: serde_json::Value = serde_json::to_value(&cmd).unwrap();
        assert_eq!(v["mode"], "auto");
        assert_eq!(v["seq"], 7);
        assert!(v.get("epoch").is_none());
    }
}
