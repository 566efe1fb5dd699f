//! The fleet's state shared by the simulator's tasks (stepper, MQTT loop, Modbus servers)
//! and its handle, behind one mutex.

use crate::modbus::{self, ModbusFault};
use crate::station::SimStation;
use crate::SimConfig;

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) stations: Vec<SimStation>,
    /// Station id → position in `stations` (commands arrive by id).
    pub(crate) index: std::collections::HashMap<String, usize>,
    pub(crate) sim_time_s: f64,
    pub(crate) publish_failures: u64,
    /// Outdoor temperature at `sim_time_s`.
    pub(crate) outdoor_c: f64,
    /// Modbus only: per station, its fault and its holding registers.
    pub(crate) modbus_faults: Vec<ModbusFault>,
    pub(crate) holding: Vec<std::collections::HashMap<u16, u16>>,
    /// Every command received, when [`SimConfig::record_commands`] is on.
    pub(crate) commands: Option<Vec<CommandRecord>>,
    /// Modbus, when [`crate::SimModbus::record_reads`] is on: (station position, when) of
    /// every read request a station's PLC answered or refused.
    pub(crate) reads: Option<Vec<(usize, std::time::Instant)>>,
    /// The stations' primary network and its plant, with the plant's id, when
    /// [`SimConfig::network`] is set.
    pub(crate) network: Option<(crate::network::district::Networked, String)>,
    /// The plant publishes nothing (a test's dead link); over Modbus it answers nothing.
    pub(crate) plant_silenced: bool,
    /// The plant's PLC is served over Modbus TCP: it speaks no MQTT.
    pub(crate) plant_over_modbus: bool,
}

impl Shared {
    /// Hands `cmd` to station `i` at wall time `now_ms`, recording it with its verdict when
    /// [`SimConfig::record_commands`] is on (the MQTT and the Modbus side alike).
    pub(crate) fn command(
        &mut self,
        i: usize,
        cmd: crate::station::Command,
        now_ms: i64,
    ) -> Result<u64, String> {
        let record = self.commands.is_some().then(|| CommandRecord {
            t_ms: now_ms,
            station: self.stations[i].id.clone(),
            epoch: cmd.epoch.unwrap_or(0),
            seq: cmd.seq,
            accepted: false,
            supply_setpoint_c: cmd.supply_setpoint_c,
            valve_pct: cmd.valve_pct,
            pump_pct: cmd.pump_pct,
            supply_c: self.stations[i].plant.supply_sensor_c,
        });
        let verdict = self.stations[i].on_command(cmd, now_ms);
        if let (Some(mut r), Some(log)) = (record, self.commands.as_mut()) {
            r.accepted = verdict.is_ok();
            log.push(r);
        }
        verdict
    }
}

/// One command as a station received it, and its verdict.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CommandRecord {
    /// Wall time of receipt, ms.
    pub t_ms: i64,
    pub station: String,
    pub epoch: u64,
    pub seq: u64,
    pub accepted: bool,
    pub supply_setpoint_c: f64,
    pub valve_pct: f64,
    pub pump_pct: f64,
    /// The station's measured supply when the command arrived, °C.
    pub supply_c: f64,
}

impl Shared {
    /// The fleet's shared state: the stations, their index by id, and for Modbus stations
    /// their fault and a zeroed holding-register image.
    pub(crate) fn new(
        cfg: &SimConfig,
        stations: Vec<SimStation>,
        map: Option<&modbus::SimMap>,
    ) -> Self {
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
            reads: cfg
                .modbus
                .as_ref()
                .is_some_and(|m| m.record_reads)
                .then(Vec::new),
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
            commands: cfg.record_commands.then(Vec::new),
            network: None,
            plant_silenced: false,
            plant_over_modbus: cfg
                .network
                .as_ref()
                .is_some_and(|n| n.plant_modbus.is_some()),
            sim_time_s: 0.0,
            publish_failures: 0,
            outdoor_c: cfg.outdoor_c(0.0),
        }
    }
}

/// Wall-clock time, Unix ms.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
