//! One hour of a station's readings, summed: what the detectors look at.
//!
//! Where it sits: [`super::Diagnosis::observe`] adds every reading (and the command sent on
//! it) to the current hour; when the hour changes, the closed one goes to the detectors.
//! Hour means smooth the sensors' noise and the controllers' ripple without keeping samples.

use super::kinds::Design;
use crate::model::{Command, Reading};

/// Sums, extremes and counts of one hour.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hour {
    pub start_ms: i64,
    /// The first reading's own time (the wall clock, where `start_ms` is the plant's).
    pub first_ts_ms: Option<i64>,
    pub n: u32,
    /// Readings with the heat meter's `heat_kw`, and with both primary temperatures.
    pub with_meter: u32,
    pub with_primary: u32,
    /// The meter's heat as a share of the design load (samples with a meter and a design).
    pub heat_share: Span,
    pub supply: Span,
    pub ret: Span,
    pub flow: Span,
    pub outdoor: Span,
    /// Valve position reported and valve told; pump speed (reported, else told).
    pub valve_fb: Span,
    pub valve_cmd: Span,
    pub pump: Span,
    /// Flow per % pump speed (samples with the pump at ≥ 10 %).
    pub flow_per_pump: Span,
    /// ΔT − heat_kw / (1.163 × flow), K (samples with a meter and flow): 0 when the
    /// temperatures and the meter agree.
    pub balance: Span,
    /// Heat transfer coefficient, kW/K, from the meter's heat and the four temperatures
    /// (samples with the primary side reported and heat flowing).
    pub ua: Span,
    /// (supply − return) / (supply − outdoor) (samples with supply ≥ outdoor + 10 K).
    pub dt_share: Span,
    /// Samples with the pump driven (≥ 20 %) and flow below 2 % of the pump's speed in
    /// m³/h per point — counted here, judged against the station's usual flow by the
    /// detector: (samples driven, their mean flow per point).
    pub driven: Span,
    /// Samples with the valve told ≤ 2 % and supply over its setpoint: the excess, K.
    pub closed_over: Span,
    /// The indoor temperature the station's heat implies from its design load, °C.
    pub implied_indoor: Span,
    /// Supply over the heating curve, K.
    pub over_curve: Span,
    /// UA per kW of design load, 1/K.
    pub ua_per_kw: Span,
}

/// Count, sum, min and max of a figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub n: u32,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Default for Span {
    fn default() -> Self {
        Self {
            n: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Span {
    pub fn add(&mut self, x: f64) {
        if x.is_finite() {
            self.n += 1;
            self.sum += x;
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
    }

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }

    /// max − min, 0 with fewer than two samples.
    pub fn range(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            self.max - self.min
        }
    }
}

impl Hour {
    pub fn add(&mut self, r: &Reading, cmd: Option<&Command>, design: &Design) {
        self.n += 1;
        self.first_ts_ms.get_or_insert(r.ts_ms);
        let (ts, tr, flow) = (r.supply_temp_c, r.return_temp_c, r.flow_m3h);
        self.supply.add(ts);
        self.ret.add(tr);
        self.flow.add(flow);
        if let Some(o) = r.outdoor_temp_c {
            self.outdoor.add(o);
            if ts >= o + 10.0 {
                self.dt_share.add((ts - tr) / (ts - o));
            }
        }
        if let Some(v) = r.valve_pct {
            self.valve_fb.add(v);
        }
        let pump = r.pump_pct.or(cmd.map(|c| c.pump_pct));
        if let Some(c) = cmd {
            self.valve_cmd.add(c.valve_pct);
            if c.valve_pct <= 2.0 {
                self.closed_over.add(ts - c.supply_setpoint_c);
            }
        }
        if let Some(p) = pump {
            self.pump.add(p);
            if p >= 10.0 {
                self.flow_per_pump.add(flow / p);
            }
            if p >= 20.0 {
                self.driven.add(flow / p);
            }
        }
        if let Some(o) = r.outdoor_temp_c {
            if let Some(c) = design.curve_c {
                self.over_curve.add(ts - c);
            }
            if let Some(i) = r.heat_kw.and_then(|q| design.implied_indoor_c(q, o)) {
                self.implied_indoor.add(i);
            }
        }
        let has = |name: &str| r.extra.iter().any(|(k, _)| k == name);
        if has("primary_supply_temp_c") && has("primary_return_temp_c") {
            self.with_primary += 1;
        }
        if let Some(q) = r.heat_kw {
            self.with_meter += 1;
            if design.design_kw > 1.0 {
                self.heat_share.add(q / design.design_kw);
            }
            if flow > 0.0 {
                self.balance
                    .add((ts - tr) - q / (crate::physics::KW_PER_M3H_K * flow));
            }
            let primary = |name: &str| r.extra.iter().find(|(k, _)| k == name).map(|e| e.1);
            if let (Some(tp_in), Some(tp_out)) = (
                primary("primary_supply_temp_c"),
                primary("primary_return_temp_c"),
            ) {
                // Counterflow: hot end (primary in, secondary out), cold end (primary out,
                // secondary in).
                if let Some(lmtd) = lmtd(tp_in - ts, tp_out - tr) {
                    if q > 1.0 {
                        self.ua.add(q / lmtd);
                        if design.design_kw > 1.0 {
                            self.ua_per_kw.add(q / lmtd / design.design_kw);
                        }
                    }
                }
            }
        }
    }
}

/// Log-mean temperature difference of two end differences, K (`None` if either is not
/// positive).
fn lmtd(a: f64, b: f64) -> Option<f64> {
    if !(a > 0.05 && b > 0.05) {
        return None;
    }
    if (a - b).abs() < 1e-6 {
        return Some(a);
    }
    Some((a - b) / (a / b).ln())
}
