//! Operator changes: what an operator may change on a station, and the pure check and
//! application of one change to a station's controller within its hard safety limits.
//!
//! Where it sits: the API (or the demo, or a test) puts a [`Change`] on the control task's
//! queue; the control task calls [`apply`] on the station's controller, then audits and stores
//! the [`Applied`] record. Nothing here does I/O: a refused change leaves the controller as it
//! was and says why in a [`ChangeError`].

use tokio::sync::{mpsc, oneshot};

use super::curve::Curve;
use super::station::StationController;
use crate::model::{Applied, Mode};

/// Largest operator offset on the heating curve, K (the config allows the same).
pub const MAX_OFFSET_K: f64 = 20.0;

/// An operator's change to one station, checked against the station's hard safety limits.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// Offset added to the heating curve (K), and/or a fixed supply setpoint (°C) with an
    /// optional expiry; `clear_fixed` returns to the curve.
    Supply {
        #[serde(default)]
        offset_k: Option<f64>,
        #[serde(default)]
        fixed_c: Option<f64>,
        #[serde(default)]
        expires_in_s: Option<f64>,
        #[serde(default)]
        clear_fixed: bool,
    },
    /// Replace the station's heating curve: [outdoor °C, supply °C] points.
    Curve { points: Vec<[f64; 2]> },
    /// Acknowledge an active alarm (the station is ignored).
    AckAlarm { id: u64 },
    /// Mode change; `manual` needs `valve_pct` and `pump_pct`.
    Mode {
        mode: Mode,
        #[serde(default)]
        valve_pct: Option<f64>,
        #[serde(default)]
        pump_pct: Option<f64>,
    },
}

/// Why a change was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChangeError {
    #[error("unknown station {0:?}")]
    UnknownStation(String),
    #[error("{0}")]
    UnknownAlarm(String),
    #[error("refused by safety limit: {0}")]
    Limit(String),
    #[error("invalid change: {0}")]
    Invalid(String),
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// In a cluster: not this instance's station now, or its state could not be kept.
    #[error("{0}")]
    Unavailable(String),
}

/// A change on its way to the task that applies it, with the operator's name and the reply slot.
#[derive(Debug)]
pub struct ChangeRequest {
    pub station: String,
    pub change: Change,
    pub user: String,
    pub reply: oneshot::Sender<Result<Applied, ChangeError>>,
}

/// Where operator changes go: station changes to the control task's queue, alarm
/// acknowledgements to the alarm task's. Both queues are bounded; a full or closed one is
/// answered at once rather than waited on.
#[derive(Debug, Clone)]
pub struct Inbox {
    pub control: mpsc::Sender<ChangeRequest>,
    pub alarms: mpsc::Sender<ChangeRequest>,
}

impl Inbox {
    /// Sends `change` of `station` as `user` and waits for the verdict.
    pub async fn send(
        &self,
        station: &str,
        change: Change,
        user: &str,
    ) -> Result<Applied, ChangeError> {
        let queue = match change {
            Change::AckAlarm { .. } => &self.alarms,
            _ => &self.control,
        };
        let (reply, rx) = oneshot::channel();
        queue
            .try_send(ChangeRequest {
                station: station.to_owned(),
                change,
                user: user.to_owned(),
                reply,
            })
            .map_err(|_| ChangeError::ShuttingDown)?;
        rx.await.map_err(|_| ChangeError::ShuttingDown)?
    }
}

/// Checks `change` against the limits of `ctrl`'s station and, if it passes, applies it at
/// `now_ms` (the start of a fixed setpoint's expiry). Alarm acknowledgements are not station
/// changes: the control task handles them with the alarm book.
pub fn apply(
    ctrl: &mut StationController,
    station: &str,
    change: &Change,
    now_ms: i64,
) -> Result<Applied, ChangeError> {
    let (action, before, after) = match change {
        Change::Supply {
            offset_k,
            fixed_c,
            expires_in_s,
            clear_fixed,
        } => supply(
            ctrl,
            *offset_k,
            *fixed_c,
            *expires_in_s,
            *clear_fixed,
            now_ms,
        )?,
        Change::Curve { points } => curve(ctrl, points)?,
        Change::Mode {
            mode,
            valve_pct,
            pump_pct,
        } => set_mode(ctrl, *mode, *valve_pct, *pump_pct)?,
        Change::AckAlarm { .. } => return Err(ChangeError::Invalid("not a station change".into())),
    };
    Ok(Applied {
        station: station.to_owned(),
        action: action.to_owned(),
        before,
        after,
    })
}

type Done = (&'static str, String, String);

fn finite(name: &str, x: Option<f64>) -> Result<(), ChangeError> {
    match x {
        Some(v) if !v.is_finite() => Err(ChangeError::Invalid(format!(
            "{name} must be a finite number"
        ))),
        _ => Ok(()),
    }
}

fn supply(
    ctrl: &mut StationController,
    offset_k: Option<f64>,
    fixed_c: Option<f64>,
    expires_in_s: Option<f64>,
    clear_fixed: bool,
    now_ms: i64,
) -> Result<Done, ChangeError> {
    finite("offset_k", offset_k)?;
    finite("fixed_c", fixed_c)?;
    finite("expires_in_s", expires_in_s)?;
    if offset_k.is_none() && fixed_c.is_none() && !clear_fixed {
        return Err(ChangeError::Invalid(
            "give offset_k, fixed_c or clear_fixed".into(),
        ));
    }
    if let Some(k) = offset_k {
        if k.abs() > MAX_OFFSET_K {
            return Err(ChangeError::Limit(format!(
                "supply offset {k} K is outside ±{MAX_OFFSET_K} K"
            )));
        }
    }
    let p = ctrl.params();
    if let Some(c) = fixed_c {
        if c < p.supply_min_c || c > p.supply_max_c {
            return Err(ChangeError::Limit(format!(
                "supply setpoint {c} °C is outside supply_min_c..supply_max_c = {}..{} °C",
                p.supply_min_c, p.supply_max_c
            )));
        }
    }
    if expires_in_s.is_some_and(|e| e <= 0.0) {
        return Err(ChangeError::Invalid("expires_in_s must be positive".into()));
    }
    let describe = |c: &StationController| match c.fixed_supply() {
        Some((v, exp)) => format!(
            "offset {:+} K, fixed {v} °C{}",
            c.supply_offset_k(),
            exp.map(|e| format!(" until {e}")).unwrap_or_default()
        ),
        None => format!("offset {:+} K, curve", c.supply_offset_k()),
    };
    let before = describe(ctrl);
    if let Some(k) = offset_k {
        ctrl.set_supply_offset_k(k);
    }
    if clear_fixed {
        ctrl.set_fixed_supply(None);
    }
    if let Some(c) = fixed_c {
        let exp = expires_in_s.map(|s| now_ms + (s * 1000.0) as i64);
        ctrl.set_fixed_supply(Some((c, exp)));
    }
    Ok(("set_supply", before, describe(ctrl)))
}

fn curve(ctrl: &mut StationController, points: &[[f64; 2]]) -> Result<Done, ChangeError> {
    let curve = Curve::new(points.iter().map(|p| (p[0], p[1])).collect())
        .map_err(|e| ChangeError::Invalid(e.to_string()))?;
    let p = ctrl.params();
    if let Some((o, c)) = curve
        .points()
        .iter()
        .find(|(_, c)| *c < p.supply_min_c || *c > p.supply_max_c)
    {
        return Err(ChangeError::Limit(format!(
            "curve point [{o}, {c}] is outside supply_min_c..supply_max_c = {}..{} °C",
            p.supply_min_c, p.supply_max_c
        )));
    }
    let show = |c: &Curve| {
        c.points()
            .iter()
            .map(|(o, s)| format!("{o}:{s}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let before = show(&p.curve);
    let after = show(&curve);
    ctrl.set_curve(curve);
    Ok(("set_curve", before, after))
}

fn set_mode(
    ctrl: &mut StationController,
    mode: Mode,
    valve_pct: Option<f64>,
    pump_pct: Option<f64>,
) -> Result<Done, ChangeError> {
    finite("valve_pct", valve_pct)?;
    finite("pump_pct", pump_pct)?;
    let p = ctrl.params();
    let manual = match (mode, valve_pct, pump_pct) {
        (Mode::Manual, Some(v), Some(pu)) => {
            if v < p.valve.out_min || v > p.valve.out_max {
                return Err(ChangeError::Limit(format!(
                    "valve {v} % is outside valve_min_pct..valve_max_pct = {}..{} %",
                    p.valve.out_min, p.valve.out_max
                )));
            }
            if pu < p.pump.out_min || pu > p.pump.out_max {
                return Err(ChangeError::Limit(format!(
                    "pump {pu} % is outside pump_min_pct..pump_max_pct = {}..{} %",
                    p.pump.out_min, p.pump.out_max
                )));
            }
            Some((v, pu))
        }
        (Mode::Manual, _, _) => {
            return Err(ChangeError::Invalid(
                "manual mode needs valve_pct and pump_pct".into(),
            ))
        }
        (_, None, None) => None,
        _ => {
            return Err(ChangeError::Invalid(
                "valve_pct/pump_pct only go with manual".into(),
            ))
        }
    };
    let before = ctrl.mode().as_str().to_owned();
    ctrl.set_mode(mode, manual);
    let after = match manual {
        Some((v, pu)) => format!("manual (valve {v} %, pump {pu} %)"),
        None => mode.as_str().to_owned(),
    };
    Ok(("set_mode", before, after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::station::tests::params;

    fn ctrl() -> StationController {
        StationController::new(params(), 1.0)
    }

    fn supply_change(offset_k: Option<f64>, fixed_c: Option<f64>) -> Change {
        Change::Supply {
            offset_k,
            fixed_c,
            expires_in_s: None,
            clear_fixed: false,
        }
    }

    #[test]
    fn an_offset_within_limits_is_applied_and_described() {
        let mut c = ctrl();
        let a = apply(&mut c, "s", &supply_change(Some(2.5), None), 0).unwrap();
        assert_eq!(c.supply_offset_k(), 2.5);
        assert_eq!(a.action, "set_supply");
        assert_eq!(a.before, "offset +0 K, curve");
        assert_eq!(a.after, "offset +2.5 K, curve");
    }

    #[test]
    fn a_refused_change_changes_nothing() {
        let mut c = ctrl();
        let e = apply(&mut c, "s", &supply_change(Some(25.0), None), 0).unwrap_err();
        assert!(matches!(e, ChangeError::Limit(_)), "{e}");
        // supply_max_c is 75 in params(): a fixed 80 °C is refused with the limit named.
        let e = apply(&mut c, "s", &supply_change(None, Some(80.0)), 0).unwrap_err();
        assert!(
            e.to_string()
                .contains("supply_min_c..supply_max_c = 30..75"),
            "{e}"
        );
        let e = apply(&mut c, "s", &supply_change(Some(f64::NAN), None), 0).unwrap_err();
        assert!(matches!(e, ChangeError::Invalid(_)), "{e}");
        assert_eq!(c.supply_offset_k(), 0.0);
        assert_eq!(c.fixed_supply(), None);
    }

    #[test]
    fn a_fixed_setpoint_expires_relative_to_now() {
        let mut c = ctrl();
        let change = Change::Supply {
            offset_k: None,
            fixed_c: Some(55.0),
            expires_in_s: Some(60.0),
            clear_fixed: false,
        };
        apply(&mut c, "s", &change, 1_000).unwrap();
        assert_eq!(c.fixed_supply(), Some((55.0, Some(61_000))));
    }

    #[test]
    fn manual_mode_needs_both_outputs_within_their_limits() {
        let mut c = ctrl();
        let manual = |v, p| Change::Mode {
            mode: Mode::Manual,
            valve_pct: v,
            pump_pct: p,
        };
        assert!(apply(&mut c, "s", &manual(Some(40.0), None), 0).is_err());
        // pump_min_pct is 30 in params().
        let e = apply(&mut c, "s", &manual(Some(40.0), Some(10.0)), 0).unwrap_err();
        assert!(matches!(e, ChangeError::Limit(_)), "{e}");
        assert_eq!(c.mode(), Mode::Auto);
        let a = apply(&mut c, "s", &manual(Some(40.0), Some(70.0)), 0).unwrap();
        assert_eq!(c.mode(), Mode::Manual);
        assert_eq!(a.after, "manual (valve 40 %, pump 70 %)");
    }

    #[test]
    fn a_curve_point_outside_the_supply_limits_is_refused() {
        let mut c = ctrl();
        let bad = Change::Curve {
            points: vec![[-10.0, 80.0], [10.0, 35.0]],
        };
        assert!(matches!(
            apply(&mut c, "s", &bad, 0),
            Err(ChangeError::Limit(_))
        ));
        let good = Change::Curve {
            points: vec![[-10.0, 62.0], [10.0, 35.0]],
        };
        let a = apply(&mut c, "s", &good, 0).unwrap();
        assert_eq!(a.after, "-10:62,10:35");
    }
}
