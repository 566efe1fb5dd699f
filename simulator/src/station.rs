//! One simulated station: the plant plus the station PLC's own logic.
//!
//! The PLC follows the engine's commands while they are valid (`valid_for_s`, counted in
//! wall-clock time from receipt, since the engine's clock is the wall clock), refuses commands
//! whose (`epoch`, `seq`) is not newer than the last accepted one, and otherwise runs its local
//! heating curve with its own PI on the valve and a fixed pump speed (`domain.md` §2.8). The
//! local PI tracks the valve while the engine is in charge, so both hand-overs are bumpless.

use serde::{Deserialize, Serialize};

use crate::faults::{Fault, FaultState};
use crate::plant::{Plant, PlantParams};

/// The command fields the station uses (contract §2.2). Unknown fields are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Command {
    pub seq: u64,
    pub ts: i64,
    pub mode: String,
    pub supply_setpoint_c: f64,
    pub valve_pct: f64,
    pub pump_pct: f64,
    pub valid_for_s: u32,
    #[serde(default)]
    pub epoch: Option<u64>,
}

/// Local fallback control of the station PLC.
#[derive(Debug, Clone)]
pub struct LocalControl {
    /// (outdoor °C, supply °C), piecewise linear: the quality-regulation curve of domain.md §2.1.
    pub curve: Vec<(f64, f64)>,
    pub kp_per_k: f64,
    pub ti_s: f64,
    pub pump: f64,
}

impl Default for LocalControl {
    fn default() -> Self {
        Self {
            curve: vec![
                (-10.0, 60.0),
                (-5.0, 53.8),
                (0.0, 47.4),
                (5.0, 40.6),
                (10.0, 33.3),
            ],
            kp_per_k: 0.015,
            ti_s: 120.0,
            pump: 0.9,
        }
    }
}

impl LocalControl {
    pub fn setpoint_c(&self, outdoor_c: f64) -> f64 {
        let c = &self.curve;
        if outdoor_c <= c[0].0 {
            return c[0].1;
        }
        for w in c.windows(2) {
            if outdoor_c <= w[1].0 {
                return w[0].1 + (w[1].1 - w[0].1) * (outdoor_c - w[0].0) / (w[1].0 - w[0].0);
            }
        }
        c[c.len() - 1].1
    }
}

/// Who drove the actuators in the last step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Engine,
    Local,
}

#[derive(Debug, Clone)]
pub struct SimStation {
    pub id: String,
    pub plant: Plant,
    pub local: LocalControl,
    local_integral: f64,
    pub active: Option<(Command, i64)>,
    last_accepted: Option<(u64, u64)>,
    pub control: Control,
    pub commands_received: u64,
    pub commands_refused: u64,
    /// Wall time of the last telemetry this station published, ms.
    pub last_telemetry_ms: Option<i64>,
    /// Largest (command ts − last telemetry published before it), ms: a command computed
    /// from stale data shows up here.
    pub max_command_data_age_ms: i64,
    pub published: u64,
    /// A silenced station keeps running its plant but publishes nothing.
    pub silenced: bool,
    /// Fault: added to the supply temperature it reports (a drifting sensor).
    pub sensor_offset_k: f64,
    /// Fault: added to the return temperature it reports.
    pub return_offset_k: f64,
    /// Fault: the supply sensor's frozen value.
    pub supply_frozen_c: Option<f64>,
    /// Fault: the share of its real area the station reports.
    pub area_report_factor: f64,
    /// A fault injected for diagnosis tests ([`crate::faults`]) and what it remembers.
    pub fault: Option<(Fault, FaultState)>,
    /// Simulated seconds since the station started (the clock of its fault's onset).
    pub elapsed_s: f64,
    /// Sensor noise: (amplitude in K, the station's noise seed) ([`crate::SimConfig`]).
    pub noise: (f64, u64),
}

impl SimStation {
    pub fn new(id: String, params: PlantParams) -> Self {
        Self {
            id,
            plant: Plant::new(params, 20.0),
            local: LocalControl::default(),
            local_integral: 0.5,
            active: None,
            last_accepted: None,
            control: Control::Local,
            commands_received: 0,
            commands_refused: 0,
            last_telemetry_ms: None,
            max_command_data_age_ms: 0,
            published: 0,
            silenced: false,
            sensor_offset_k: 0.0,
            return_offset_k: 0.0,
            supply_frozen_c: None,
            area_report_factor: 1.0,
            fault: None,
            elapsed_s: 0.0,
            noise: (0.0, 0),
        }
    }

    /// The supply temperature its sensor reports (offset, drift or frozen included): what
    /// both the engine and the station's own controller see.
    pub fn reported_supply_c(&self) -> f64 {
        self.supply_frozen_c
            .unwrap_or(self.plant.supply_sensor_c + self.sensor_offset_k)
    }

    /// The supply setpoint being followed: the valid command's, else the local curve's.
    pub fn setpoint_in_force_c(&self, outdoor_c: f64) -> f64 {
        match &self.active {
            Some((c, _)) => c.supply_setpoint_c,
            None => self.local.setpoint_c(outdoor_c),
        }
    }

    /// A command arrived at wall time `now_ms`. Returns `Err(reason)` if it was refused.
    pub fn on_command(&mut self, cmd: Command, now_ms: i64) -> Result<u64, String> {
        self.commands_received += 1;
        let key = (cmd.epoch.unwrap_or(0), cmd.seq);
        let finite = [cmd.valve_pct, cmd.pump_pct, cmd.supply_setpoint_c]
            .iter()
            .all(|x| x.is_finite());
        if self.last_accepted.is_some_and(|last| key <= last) || !finite {
            self.commands_refused += 1;
            return Err(if finite {
                "seq not newer than the last accepted".into()
            } else {
                "non-finite value".into()
            });
        }
        self.last_accepted = Some(key);
        if let Some(t) = self.last_telemetry_ms {
            self.max_command_data_age_ms = self.max_command_data_age_ms.max(cmd.ts - t);
        }
        let seq = cmd.seq;
        self.active = Some((cmd, now_ms));
        Ok(seq)
    }

    /// Advances the plant by `dt` simulated seconds at wall time `now_ms`.
    pub fn step(&mut self, dt: f64, outdoor_c: f64, now_ms: i64) {
        if let Some((fault, mut state)) = self.fault.take() {
            fault.apply(self, &mut state, self.elapsed_s);
            self.fault = Some((fault, state));
        }
        self.elapsed_s += dt;
        if let Some((c, at)) = &self.active {
            if now_ms > at + i64::from(c.valid_for_s) * 1000 {
                self.active = None; // expired: fall back to the local curve
            }
        }
        let (valve, pump) = match &self.active {
            Some((c, _)) => {
                self.control = Control::Engine;
                // Track for a bumpless return to local control.
                self.local_integral = self.plant.valve;
                (c.valve_pct / 100.0, c.pump_pct / 100.0)
            }
            None => {
                self.control = Control::Local;
                let e = self.local.setpoint_c(outdoor_c) - self.reported_supply_c();
                let u = self.local_integral + self.local.kp_per_k * e;
                if (0.0..=1.0).contains(&u) {
                    self.local_integral += self.local.kp_per_k * dt / self.local.ti_s * e;
                }
                self.local_integral = self.local_integral.clamp(0.0, 1.0);
                (u.clamp(0.0, 1.0), self.local.pump)
            }
        };
        self.plant.step(dt, valve, pump, outdoor_c);
    }

    /// The telemetry sample (contract §2.1) at wall time `now_ms`.
    pub fn telemetry(&mut self, now_ms: i64, outdoor_c: f64) -> Telemetry {
        self.last_telemetry_ms = Some(now_ms);
        self.published += 1;
        let p = &self.plant;
        let r2 = |x: f64| (x * 100.0).round() / 100.0;
        let (amp, seed) = self.noise;
        // Uniform in ±1, a different draw per sample and channel; nothing when amp is 0.
        let jitter = |channel: u64| {
            if amp == 0.0 {
                return 0.0;
            }
            let mut z = seed ^ (self.published << 8) ^ channel;
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        };
        // A frozen sensor repeats its value exactly.
        let supply = match self.supply_frozen_c {
            Some(v) => v,
            None => self.reported_supply_c() + amp * jitter(1),
        };
        let rel = |c: u64| 1.0 + 0.1 * amp * jitter(c);
        // The primary meter sees the hot-water exchanger's flow beside the heating one.
        let (m_dhw, _) = p.dhw_draw(p.primary_supply_c);
        let primary_kgs = p.primary_kgs + m_dhw;
        let primary_return = if primary_kgs > 1e-9 {
            (p.primary_kgs * p.primary_return_c
                + m_dhw * crate::plant::DHW_RETURN_C.min(p.primary_supply_c))
                / primary_kgs
        } else {
            p.primary_return_c
        };
        Telemetry {
            ts: now_ms,
            supply_temp_c: r2(supply),
            return_temp_c: r2(p.station_return_c() + self.return_offset_k + amp * jitter(2)),
            flow_m3h: r2(p.secondary_kgs() / crate::plant::KGS_PER_M3H * rel(3)),
            heated_area_m2: (p.p.area_m2 * self.area_report_factor).round(),
            outdoor_temp_c: r2(outdoor_c),
            indoor_temp_c: r2(p.indoor_c),
            valve_pct: r2(p.valve * 100.0),
            pump_pct: r2(p.pump * 100.0),
            primary_supply_temp_c: r2(p.primary_supply_c + amp * jitter(5)),
            primary_return_temp_c: r2(primary_return + amp * jitter(6)),
            primary_flow_m3h: r2(primary_kgs / crate::plant::KGS_PER_M3H),
            primary_diff_pressure_kpa: p.network.map(|f| r2(f.dp_pa / 1000.0)),
            heat_kw: r2(p.heat_w / 1000.0 * rel(4)),
            heat_energy_gj: (p.energy_j / 1e9 * 1e6).round() / 1e6,
            tele_seq: self.published,
            applied_epoch: self.last_accepted.map(|(e, _)| e),
            applied_seq: self.last_accepted.map(|(_, s)| s),
        }
    }
}

/// One telemetry sample as the station reports it (contract §2.1; a struct, not a JSON map:
/// serialising it is a third of what building a `serde_json::Value` cost).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Telemetry {
    pub ts: i64,
    pub supply_temp_c: f64,
    pub return_temp_c: f64,
    pub flow_m3h: f64,
    pub heated_area_m2: f64,
    pub outdoor_temp_c: f64,
    pub indoor_temp_c: f64,
    pub valve_pct: f64,
    pub pump_pct: f64,
    pub primary_supply_temp_c: f64,
    pub primary_return_temp_c: f64,
    pub primary_flow_m3h: f64,
    /// Supply − return pressure across the station on the primary side (a station on a
    /// simulated network only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_diff_pressure_kpa: Option<f64>,
    pub heat_kw: f64,
    pub heat_energy_gj: f64,
    /// This station's telemetry counter (1, 2, …): a gap in storage is a lost message.
    pub tele_seq: u64,
    /// The `(epoch, seq)` of the command last accepted (contract §2.2), for a bumpless takeover.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_epoch: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_seq: Option<u64>,
}

impl Telemetry {
    /// The JSON payload.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The numeric fields by contract name (what a PLC's register map can carry).
    pub fn fields(&self) -> [(&'static str, f64); 13] {
        [
            ("supply_temp_c", self.supply_temp_c),
            ("return_temp_c", self.return_temp_c),
            ("flow_m3h", self.flow_m3h),
            ("heated_area_m2", self.heated_area_m2),
            ("outdoor_temp_c", self.outdoor_temp_c),
            ("indoor_temp_c", self.indoor_temp_c),
            ("valve_pct", self.valve_pct),
            ("pump_pct", self.pump_pct),
            ("primary_supply_temp_c", self.primary_supply_temp_c),
            ("primary_return_temp_c", self.primary_return_temp_c),
            ("primary_flow_m3h", self.primary_flow_m3h),
            ("heat_kw", self.heat_kw),
            ("heat_energy_gj", self.heat_energy_gj),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn station() -> SimStation {
        SimStation::new("s".into(), PlantParams::for_area(100_000.0, 45.0, 40.0))
    }

    fn cmd(seq: u64, valve: f64, valid_for_s: u32) -> Command {
        Command {
            seq,
            ts: 0,
            mode: "auto".into(),
            supply_setpoint_c: 50.0,
            valve_pct: valve,
            pump_pct: 80.0,
            valid_for_s,
            epoch: None,
        }
    }

    #[test]
    fn local_curve_holds_supply_without_an_engine() {
        let mut s = station();
        for _ in 0..7200 {
            s.step(1.0, -5.0, 0);
        }
        assert_eq!(s.control, Control::Local);
        assert!(
            (s.plant.supply_sensor_c - 53.8).abs() < 1.0,
            "{}",
            s.plant.supply_sensor_c
        );
    }

    #[test]
    fn follows_valid_commands_then_falls_back_when_they_expire() {
        let mut s = station();
        assert_eq!(s.on_command(cmd(1, 20.0, 60), 0), Ok(1));
        for k in 0..50 {
            s.step(1.0, -5.0, k * 1000);
        }
        assert_eq!(s.control, Control::Engine);
        assert!((s.plant.valve - 0.2).abs() < 1e-9);
        assert!(s.on_command(cmd(1, 90.0, 60), 50_000).is_err());
        assert_eq!(s.commands_refused, 1, "a replayed seq is refused");
        s.step(1.0, -5.0, 61_000);
        assert_eq!(s.control, Control::Local, "expired after valid_for_s");
    }
}
