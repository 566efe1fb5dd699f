//! A station's operator settings as one value: offset, fixed setpoint, curve, mode and manual
//! outputs. In a cluster the owner of a station keeps them in etcd after every change, and
//! the next owner applies them when it takes the station over, so that what an operator asked
//! on one instance stays in force when that instance dies.

use serde::{Deserialize, Serialize};

use super::curve::Curve;
use super::station::StationController;
use crate::model::Mode;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorSettings {
    pub supply_offset_k: f64,
    /// Fixed supply setpoint, °C, and its expiry (Unix ms).
    pub fixed_supply: Option<(f64, Option<i64>)>,
    /// Heating curve points (outdoor °C, supply °C).
    pub curve: Vec<(f64, f64)>,
    pub mode: Mode,
    /// Manual valve and pump, %.
    pub manual: Option<(f64, f64)>,
}

impl OperatorSettings {
    pub fn of(c: &StationController) -> Self {
        Self {
            supply_offset_k: c.supply_offset_k(),
            fixed_supply: c.fixed_supply(),
            curve: c.params().curve.points().to_vec(),
            mode: c.mode(),
            manual: c.manual(),
        }
    }

    /// Puts these settings on `c` (each was checked when the operator made it; a curve that
    /// no longer validates is left as it was).
    pub fn apply_to(&self, c: &mut StationController) {
        if self.supply_offset_k.is_finite() {
            c.set_supply_offset_k(self.supply_offset_k);
        }
        c.set_fixed_supply(self.fixed_supply);
        if let Ok(curve) = Curve::new(self.curve.clone()) {
            c.set_curve(curve);
        }
        c.set_mode(self.mode, self.manual);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::change::{apply, Change};

    #[test]
    fn settings_carry_every_operator_change_to_another_controller() {
        let params = crate::config::Config::parse(
            "[[station]]\nid = \"s\"\nheated_area_m2 = 1000\n",
            &|_| None,
        )
        .unwrap()
        .stations[0]
            .params
            .clone();
        let mut a = StationController::new(params.clone(), 5.0);
        for change in [
            Change::Supply {
                offset_k: Some(3.0),
                fixed_c: Some(55.0),
                expires_in_s: None,
                clear_fixed: false,
            },
            Change::Curve {
                points: vec![[-10.0, 70.0], [10.0, 35.0]],
            },
            Change::Mode {
                mode: Mode::Manual,
                valve_pct: Some(40.0),
                pump_pct: Some(60.0),
            },
        ] {
            apply(&mut a, "s", &change, 0).unwrap();
        }
        let json = serde_json::to_string(&OperatorSettings::of(&a)).unwrap();
        let mut b = StationController::new(params, 5.0);
        serde_json::from_str::<OperatorSettings>(&json)
            .unwrap()
            .apply_to(&mut b);
        assert_eq!(OperatorSettings::of(&b), OperatorSettings::of(&a));
        assert_eq!(b.supply_offset_k(), 3.0);
        assert_eq!(b.mode(), Mode::Manual);
    }
}
