//! The heat plant's PLC (contract §7): what it sends into the network and how hard its pump
//! pushes, from the engine's command while one is valid, else from its own outdoor curve and
//! a fixed head at its outlet.
//!
//! Where it sits: beside the network ([`super::tree::Tree`]), as each station's PLC sits
//! beside its plant. Each step [`PlantPlc::step`] moves the supply temperature towards its
//! setpoint no faster than the plant's ramp and says how the pump is to run
//! ([`PumpTarget`]); [`super::district::Networked::telemetry`] is what it reports. Commands are fenced by
//! (`epoch`, `seq`) and expire after `valid_for_s` as the stations' are.

use serde::{Deserialize, Serialize};

/// The command fields the plant uses (contract §7). Unknown fields are ignored.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct PlantCommand {
    pub seq: u64,
    #[serde(default)]
    pub epoch: Option<u64>,
    pub ts: i64,
    pub supply_setpoint_c: f64,
    /// Hold this differential pressure at `pressure_point` (a station id, or `plant`)…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_pressure_setpoint_kpa: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pressure_point: Option<String>,
    /// …or run the pump at this speed, %.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pump_pct: Option<f64>,
    pub valid_for_s: u32,
}

/// How the pump is to run this step.
#[derive(Debug, Clone, PartialEq)]
pub enum PumpTarget {
    /// Hold `pa` between supply and return at `point` (`None`: the plant's outlet).
    DiffPressure { point: Option<String>, pa: f64 },
    /// A fixed speed, share of full.
    Speed(f64),
}

/// The plant's own settings: its fallback and its limits.
#[derive(Debug, Clone, PartialEq)]
pub struct PlantSettings {
    /// (outdoor °C, supply °C), piecewise linear: what it sends on its own.
    pub curve: Vec<(f64, f64)>,
    /// Differential pressure it holds at its outlet on its own, Pa.
    pub fixed_head_pa: f64,
    /// How fast its outlet temperature may move, K per hour.
    pub ramp_k_per_h: f64,
    /// The range its supply setpoint is clamped to, °C.
    pub min_supply_c: f64,
    pub max_supply_c: f64,
}

impl PlantSettings {
    /// 70 °C at 18 °C outdoor up to 110 °C at −10 °C (the curve the stations' fixed primary
    /// supply followed before there was a network), `fixed_head_pa` at the outlet, 10 K/h.
    pub fn with_head(fixed_head_pa: f64) -> Self {
        Self {
            curve: vec![(-10.0, 110.0), (18.0, 70.0)],
            fixed_head_pa,
            ramp_k_per_h: 10.0,
            min_supply_c: 60.0,
            max_supply_c: 120.0,
        }
    }

    /// The curve's supply at `outdoor_c`, flat beyond its ends.
    pub fn curve_c(&self, outdoor_c: f64) -> f64 {
        let c = &self.curve;
        let (first, last) = (c[0], c[c.len() - 1]);
        if outdoor_c <= first.0 {
            return first.1;
        }
        if outdoor_c >= last.0 {
            return last.1;
        }
        let k = c.windows(2).position(|w| outdoor_c <= w[1].0).unwrap_or(0);
        let ((x0, y0), (x1, y1)) = (c[k], c[k + 1]);
        y0 + (y1 - y0) * (outdoor_c - x0) / (x1 - x0)
    }
}

/// Whose setpoints the plant follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantControl {
    Engine,
    Local,
}

/// What the plant reports (contract §7), with the network's figures filled in by the caller.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlantTelemetry {
    pub ts: i64,
    pub supply_temp_c: f64,
    pub return_temp_c: f64,
    pub flow_m3h: f64,
    pub heat_kw: f64,
    pub diff_pressure_kpa: f64,
    pub pump_pct: f64,
    /// Heat per production unit, kW.
    pub units: std::collections::BTreeMap<String, f64>,
    pub applied_epoch: Option<u64>,
    pub applied_seq: Option<u64>,
    pub mode: &'static str,
}

/// The plant's PLC.
#[derive(Debug, Clone)]
pub struct PlantPlc {
    pub settings: PlantSettings,
    /// What leaves the plant now, °C.
    pub supply_c: f64,
    active: Option<(PlantCommand, i64)>,
    last_accepted: Option<(u64, u64)>,
    pub control: PlantControl,
    pub commands_received: u64,
    pub commands_refused: u64,
}

impl PlantPlc {
    pub fn new(settings: PlantSettings, supply_c: f64) -> Self {
        Self {
            settings,
            supply_c,
            active: None,
            last_accepted: None,
            control: PlantControl::Local,
            commands_received: 0,
            commands_refused: 0,
        }
    }

    /// A command arrived at wall time `now_ms`; `Err(reason)` if refused. The setpoint is
    /// clamped to the plant's range; a pressure setpoint must name its point.
    pub fn on_command(&mut self, cmd: PlantCommand, now_ms: i64) -> Result<u64, String> {
        self.commands_received += 1;
        let key = (cmd.epoch.unwrap_or(0), cmd.seq);
        let refusal = if self.last_accepted.is_some_and(|last| key <= last) {
            Some("seq not newer than the last accepted")
        } else if !cmd.supply_setpoint_c.is_finite()
            || cmd
                .diff_pressure_setpoint_kpa
                .is_some_and(|x| !x.is_finite())
            || cmd.pump_pct.is_some_and(|x| !x.is_finite())
        {
            Some("non-finite value")
        } else if cmd.diff_pressure_setpoint_kpa.is_some() == cmd.pump_pct.is_some() {
            Some("give either diff_pressure_setpoint_kpa or pump_pct")
        } else {
            None
        };
        if let Some(why) = refusal {
            self.commands_refused += 1;
            return Err(why.into());
        }
        self.last_accepted = Some(key);
        let seq = cmd.seq;
        self.active = Some((cmd, now_ms));
        Ok(seq)
    }

    /// The command in force at `now_ms`, if it has not expired.
    pub fn command(&self) -> Option<&PlantCommand> {
        self.active.as_ref().map(|(c, _)| c)
    }

    /// Advances `dt` seconds at wall time `now_ms` and outdoor `outdoor_c`: the supply moves
    /// towards its setpoint at the ramp; returns how the pump is to run.
    pub fn step(&mut self, dt: f64, outdoor_c: f64, now_ms: i64) -> PumpTarget {
        if let Some((c, at)) = &self.active {
            if now_ms > at + i64::from(c.valid_for_s) * 1000 {
                self.active = None; // expired: the plant's own curve and head
            }
        }
        let s = &self.settings;
        let (setpoint, pump) = match &self.active {
            Some((c, _)) => {
                self.control = PlantControl::Engine;
                let pump = match (c.diff_pressure_setpoint_kpa, c.pump_pct) {
                    (Some(kpa), _) => PumpTarget::DiffPressure {
                        point: c.pressure_point.clone().filter(|p| p != "plant"),
                        pa: kpa.max(0.0) * 1000.0,
                    },
                    (None, pct) => {
                        PumpTarget::Speed(pct.unwrap_or(100.0).clamp(0.0, 100.0) / 100.0)
                    }
                };
                (c.supply_setpoint_c, pump)
            }
            None => {
                self.control = PlantControl::Local;
                let head = PumpTarget::DiffPressure {
                    point: None,
                    pa: s.fixed_head_pa,
                };
                (s.curve_c(outdoor_c), head)
            }
        };
        let target = setpoint.clamp(s.min_supply_c, s.max_supply_c);
        let step = s.ramp_k_per_h / 3600.0 * dt;
        self.supply_c += (target - self.supply_c).clamp(-step, step);
        pump
    }

    /// The (epoch, seq) of the last accepted command.
    pub fn applied(&self) -> Option<(u64, u64)> {
        self.last_accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(seq: u64, setpoint: f64, valid_for_s: u32) -> PlantCommand {
        PlantCommand {
            seq,
            epoch: Some(1),
            ts: 0,
            supply_setpoint_c: setpoint,
            diff_pressure_setpoint_kpa: Some(50.0),
            pressure_point: Some("st-007".into()),
            pump_pct: None,
            valid_for_s,
        }
    }

    #[test]
    fn the_plant_follows_a_valid_command_at_its_ramp_and_falls_back_when_it_expires() {
        let mut plc = PlantPlc::new(PlantSettings::with_head(3.0e5), 90.0);
        // On its own: the curve and the fixed head at the outlet.
        let own = plc.step(60.0, 4.0, 0);
        assert_eq!(
            own,
            PumpTarget::DiffPressure {
                point: None,
                pa: 3.0e5
            }
        );
        assert_eq!(plc.control, PlantControl::Local);
        plc.on_command(cmd(1, 75.0, 600), 0).unwrap();
        // 10 K/h: a minute moves it by 1/6 K towards 75 °C.
        let before = plc.supply_c;
        let pump = plc.step(60.0, 4.0, 60_000);
        assert!((before - plc.supply_c - 10.0 / 60.0).abs() < 1e-9);
        assert_eq!(
            pump,
            PumpTarget::DiffPressure {
                point: Some("st-007".into()),
                pa: 50_000.0
            }
        );
        assert_eq!(plc.control, PlantControl::Engine);
        // Stale and replayed commands are refused; a setpoint below the plant's minimum is
        // clamped to it.
        assert!(plc.on_command(cmd(1, 70.0, 600), 1000).is_err());
        plc.on_command(cmd(2, 20.0, 600), 1000).unwrap();
        for k in 0..600 {
            plc.step(60.0, 4.0, 2000 + k * 500);
        }
        assert!((plc.supply_c - plc.settings.min_supply_c).abs() < 1e-9);
        // Expired: back to the curve's 4 °C point (90 °C) and the fixed head.
        let back = plc.step(60.0, 4.0, 1000 + 601_000);
        assert_eq!(plc.control, PlantControl::Local);
        assert!(matches!(back, PumpTarget::DiffPressure { point: None, .. }));
        assert!((plc.settings.curve_c(4.0) - 90.0).abs() < 1e-9);
        // Neither or both pump settings: refused.
        let mut both = cmd(3, 80.0, 600);
        both.pump_pct = Some(50.0);
        assert!(plc.on_command(both, 700_000).is_err());
        assert_eq!(plc.commands_refused, 2);
    }
}
