//! A station's KPIs over a span of time, accumulated sample by sample.
//!
//! One accumulator for both sides of heatgrid: the engine feeds it what its meters and
//! controllers know (`heatgrid` `control::kpi`, the day's figures in the status view) and the
//! simulator feeds it the plant's ground truth (`heatgrid-sim` `scenario`, the scenario
//! reports). Each [`Sample`] stands for `dt_s` seconds of station state; the figures are
//! time means and shares over what was recorded.

/// Indoor comfort band, °C.
pub const COMFORT_LOW_C: f64 = 18.0;
pub const COMFORT_HIGH_C: f64 = 22.0;
/// Base of heating degree-days, °C.
pub const DEGREE_DAY_BASE_C: f64 = 18.0;

/// A valve at or beyond these positions (0..1) is saturated.
const VALVE_SHUT: f64 = 0.01;
const VALVE_OPEN: f64 = 0.99;

/// One span of station state.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Heat delivered, kW.
    pub heat_kw: f64,
    pub supply_c: f64,
    /// The supply setpoint in force (the controller's or the local curve's), °C.
    pub setpoint_c: f64,
    pub return_c: f64,
    /// Circulation flow in any unit: only the weight of the flow-weighted return temperature.
    pub flow: f64,
    /// Pump speed and valve position, 0..1.
    pub pump: f64,
    pub valve: f64,
    /// Indoor temperature, °C, when known.
    pub indoor_c: Option<f64>,
    /// Outdoor temperature, °C, when known (degree-days).
    pub outdoor_c: Option<f64>,
    /// Heated area, m², when known.
    pub area_m2: Option<f64>,
}

/// Running sums over the recorded spans.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Kpis {
    t_s: f64,
    heat_gj: f64,
    area_s: f64,
    area_m2_s: f64,
    degree_s: f64,
    err_ks: f64,
    within_s: f64,
    delta_t_ks: f64,
    flow_s: f64,
    flow_return_s: f64,
    pump_full_speed_s: f64,
    valve_saturated_s: f64,
    indoor_s: f64,
    indoor_ks: f64,
    under_s: f64,
    comfort_s: f64,
    over_s: f64,
    indoor_min_c: Option<f64>,
    indoor_max_c: Option<f64>,
}

impl Kpis {
    /// Accounts `dt_s` seconds spent in state `s`. A non-finite or non-positive span is ignored.
    pub fn record(&mut self, dt_s: f64, s: &Sample) {
        if !(dt_s.is_finite() && dt_s > 0.0) {
            return;
        }
        self.t_s += dt_s;
        // kW × s = kJ; 1 GJ = 10⁶ kJ.
        self.heat_gj += s.heat_kw.max(0.0) * dt_s / 1e6;
        if let Some(area) = s.area_m2.filter(|a| *a > 0.0) {
            self.area_s += dt_s;
            self.area_m2_s += area * dt_s;
        }
        if let Some(outdoor) = s.outdoor_c {
            self.degree_s += (DEGREE_DAY_BASE_C - outdoor).max(0.0) * dt_s;
        }
        let err = (s.supply_c - s.setpoint_c).abs();
        self.err_ks += err * dt_s;
        if err <= 1.0 {
            self.within_s += dt_s;
        }
        self.delta_t_ks += (s.supply_c - s.return_c) * dt_s;
        self.flow_s += s.flow.max(0.0) * dt_s;
        self.flow_return_s += s.flow.max(0.0) * s.return_c * dt_s;
        self.pump_full_speed_s += s.pump.clamp(0.0, 1.0).powi(3) * dt_s;
        if s.valve <= VALVE_SHUT || s.valve >= VALVE_OPEN {
            self.valve_saturated_s += dt_s;
        }
        if let Some(t) = s.indoor_c {
            self.indoor_s += dt_s;
            self.indoor_ks += t * dt_s;
            if t < COMFORT_LOW_C {
                self.under_s += dt_s;
            } else if t > COMFORT_HIGH_C {
                self.over_s += dt_s;
            } else {
                self.comfort_s += dt_s;
            }
            self.indoor_min_c = Some(self.indoor_min_c.map_or(t, |m| m.min(t)));
            self.indoor_max_c = Some(self.indoor_max_c.map_or(t, |m| m.max(t)));
        }
    }

    /// Time recorded, h.
    pub fn hours(&self) -> f64 {
        self.t_s / 3600.0
    }

    /// Heat delivered, GJ.
    pub fn heat_gj(&self) -> f64 {
        self.heat_gj
    }

    /// Mean heat per heated area, W/m² (`None` without an area).
    pub fn heat_w_m2(&self) -> Option<f64> {
        (self.area_s > 0.0).then(|| {
            let mean_area = self.area_m2_s / self.area_s;
            self.heat_gj * 1e9 / self.t_s / mean_area
        })
    }

    /// Heat per heating degree-day, GJ (`None` without degree-days).
    pub fn heat_gj_per_degree_day(&self) -> Option<f64> {
        (self.degree_s > 0.0).then(|| self.heat_gj / (self.degree_s / 86_400.0))
    }

    /// Mean |supply − setpoint|, K, and the share of the time within ±1 K.
    pub fn supply_error_mean_k(&self) -> f64 {
        self.mean(self.err_ks)
    }

    pub fn supply_within_1k(&self) -> f64 {
        self.mean(self.within_s)
    }

    /// Mean supply − return, K.
    pub fn delta_t_mean_k(&self) -> f64 {
        self.mean(self.delta_t_ks)
    }

    /// Flow-weighted return temperature, °C (`None` without flow).
    pub fn return_flow_weighted_c(&self) -> Option<f64> {
        (self.flow_s > 0.0).then(|| self.flow_return_s / self.flow_s)
    }

    /// Pump energy relative to its rated power (∝ speed³), in hours at full speed.
    pub fn pump_full_speed_h(&self) -> f64 {
        self.pump_full_speed_s / 3600.0
    }

    /// Time with the valve at ≤ 1 % or ≥ 99 %, h.
    pub fn valve_saturated_h(&self) -> f64 {
        self.valve_saturated_s / 3600.0
    }

    /// Shares of the time with an indoor temperature below, within and above 18–22 °C
    /// (`None` if none was known).
    pub fn indoor_under(&self) -> Option<f64> {
        self.indoor_share(self.under_s)
    }

    pub fn indoor_comfort(&self) -> Option<f64> {
        self.indoor_share(self.comfort_s)
    }

    pub fn indoor_over(&self) -> Option<f64> {
        self.indoor_share(self.over_s)
    }

    /// Time-mean, lowest and highest indoor temperature, °C.
    pub fn indoor_mean_c(&self) -> Option<f64> {
        self.indoor_share(self.indoor_ks)
    }

    pub fn indoor_min_c(&self) -> Option<f64> {
        self.indoor_min_c
    }

    pub fn indoor_max_c(&self) -> Option<f64> {
        self.indoor_max_c
    }

    fn mean(&self, sum: f64) -> f64 {
        if self.t_s > 0.0 {
            sum / self.t_s
        } else {
            0.0
        }
    }

    fn indoor_share(&self, sum: f64) -> Option<f64> {
        (self.indoor_s > 0.0).then(|| sum / self.indoor_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_hand_computed_hours() {
        let mut k = Kpis::default();
        let base = Sample {
            heat_kw: 1163.0,
            supply_c: 50.0,
            setpoint_c: 50.0,
            return_c: 40.0,
            flow: 100.0,
            pump: 0.5,
            valve: 0.5,
            indoor_c: Some(17.0),
            outdoor_c: Some(-6.0),
            area_m2: Some(10_000.0),
        };
        k.record(3600.0, &base);
        k.record(
            3600.0,
            &Sample {
                heat_kw: 4652.0,
                supply_c: 60.0,
                setpoint_c: 62.0,
                flow: 200.0,
                valve: 1.0,
                indoor_c: Some(20.0),
                ..base
            },
        );
        k.record(
            3600.0,
            &Sample {
                heat_kw: 0.0,
                supply_c: 45.0,
                setpoint_c: 45.5,
                return_c: 45.0,
                flow: 0.0,
                valve: 0.005,
                indoor_c: None,
                ..base
            },
        );
        assert!((k.hours() - 3.0).abs() < 1e-12);
        // (1,163 + 4,652) kWh = 20.934 GJ over 10,800 s and 10,000 m².
        assert!((k.heat_gj() - 20.934).abs() < 1e-9);
        assert!((k.heat_w_m2().unwrap() - 20.934e9 / 10_800.0 / 10_000.0).abs() < 1e-9);
        // 24 K below the base for 3 h = 3 degree-days.
        assert!((k.heat_gj_per_degree_day().unwrap() - 20.934 / 3.0).abs() < 1e-9);
        assert!((k.supply_error_mean_k() - 2.5 / 3.0).abs() < 1e-12);
        assert!((k.supply_within_1k() - 2.0 / 3.0).abs() < 1e-12);
        assert!((k.delta_t_mean_k() - 30.0 / 3.0).abs() < 1e-12);
        assert!((k.return_flow_weighted_c().unwrap() - 40.0).abs() < 1e-12);
        assert!((k.pump_full_speed_h() - 0.375).abs() < 1e-12);
        // Wide open for an hour, shut for an hour.
        assert!((k.valve_saturated_h() - 2.0).abs() < 1e-12);
        // Indoor over the two hours with a sensor.
        assert_eq!(k.indoor_under(), Some(0.5));
        assert_eq!(k.indoor_comfort(), Some(0.5));
        assert_eq!(k.indoor_over(), Some(0.0));
        assert_eq!(k.indoor_mean_c(), Some(18.5));
        assert_eq!(
            (k.indoor_min_c(), k.indoor_max_c()),
            (Some(17.0), Some(20.0))
        );
    }

    #[test]
    fn empty_spans_count_nothing_and_unknowns_stay_unknown() {
        let mut k = Kpis::default();
        let s = Sample {
            heat_kw: 100.0,
            ..Sample::default()
        };
        k.record(0.0, &s);
        k.record(f64::NAN, &s);
        k.record(-1.0, &s);
        assert_eq!(k, Kpis::default());
        assert_eq!(k.supply_error_mean_k(), 0.0);
        k.record(60.0, &s);
        assert_eq!(k.heat_w_m2(), None);
        assert_eq!(k.heat_gj_per_degree_day(), None);
        assert_eq!(k.indoor_comfort(), None);
        assert!(k.heat_gj() > 0.0);
    }
}
