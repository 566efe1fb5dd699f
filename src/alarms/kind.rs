//! What an alarm says is wrong ([`AlarmKind`]) and how bad it is ([`Severity`]): the names the
//! API, storage, the notifications and the control room's catalogues use.
//!
//! Where it sits: a leaf of `alarms`; the book, the conditions and the notifications use it.

use serde::{Deserialize, Serialize};

/// What is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    /// No fresh telemetry: control holds, no command sent.
    Stale,
    /// The station's MQTT presence says offline.
    CommLost,
    /// Many payloads rejected in the last minute.
    RejectedRepeatedly,
    /// A reading outside the station's operating range (supply far above its maximum, …).
    OutOfRange,
    /// Supply away from its setpoint for too long.
    SupplyDeviation,
    /// Return above its limit for too long.
    ReturnHigh,
    /// Valve fully open (or closed) for too long: the station cannot reach its setpoint.
    ValveSaturated,
    /// Supply − return too small for too long (poor cooling).
    LowDeltaT,
    /// Storage trouble: database writes failing, points refused or dead-lettered.
    Storage,
    /// An alarm notification could not be delivered (notify).
    NotifyFailed,
    /// The station diagnosis suspects a fault (its kind and evidence in the message).
    FaultSuspected,
    /// No telemetry from the heat plant (contract §7): the plant loop plans blind.
    PlantStale,
    /// A station or pressure point sees less differential pressure than the minimum.
    PressureLow,
}

impl AlarmKind {
    /// Every kind.
    pub const ALL: [AlarmKind; 13] = [
        AlarmKind::Stale,
        AlarmKind::CommLost,
        AlarmKind::RejectedRepeatedly,
        AlarmKind::OutOfRange,
        AlarmKind::SupplyDeviation,
        AlarmKind::ReturnHigh,
        AlarmKind::ValveSaturated,
        AlarmKind::LowDeltaT,
        AlarmKind::Storage,
        AlarmKind::NotifyFailed,
        AlarmKind::FaultSuspected,
        AlarmKind::PlantStale,
        AlarmKind::PressureLow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::Stale => "stale",
            AlarmKind::CommLost => "comm_lost",
            AlarmKind::RejectedRepeatedly => "rejected_repeatedly",
            AlarmKind::OutOfRange => "out_of_range",
            AlarmKind::SupplyDeviation => "supply_deviation",
            AlarmKind::ReturnHigh => "return_high",
            AlarmKind::ValveSaturated => "valve_saturated",
            AlarmKind::LowDeltaT => "low_delta_t",
            AlarmKind::Storage => "storage",
            AlarmKind::NotifyFailed => "notify_failed",
            AlarmKind::FaultSuspected => "fault_suspected",
            AlarmKind::PlantStale => "plant_stale",
            AlarmKind::PressureLow => "pressure_low",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            AlarmKind::Stale
            | AlarmKind::CommLost
            | AlarmKind::Storage
            | AlarmKind::PlantStale
            | AlarmKind::NotifyFailed => Severity::Major,
            AlarmKind::OutOfRange
            | AlarmKind::SupplyDeviation
            | AlarmKind::ValveSaturated
            | AlarmKind::PressureLow => Severity::Minor,
            AlarmKind::RejectedRepeatedly
            | AlarmKind::ReturnHigh
            | AlarmKind::LowDeltaT
            | AlarmKind::FaultSuspected => Severity::Warning,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Major,
    Minor,
    Warning,
}

impl Severity {
    /// Every severity, most severe first.
    pub const ALL: [Severity; 4] = [
        Severity::Critical,
        Severity::Major,
        Severity::Minor,
        Severity::Warning,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Major => "major",
            Severity::Minor => "minor",
            Severity::Warning => "warning",
        }
    }
}
