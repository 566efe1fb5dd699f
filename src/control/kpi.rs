//! A station's KPIs for the current day, computed by the engine from its live telemetry and
//! its controller's outputs (issue 8's list, as far as telemetry shows it).
//!
//! Where it sits: the control task records every controller step that acted on a fresh
//! reading ([`DayKpis::record`], plant seconds, so an accelerated run adds up) and starts a
//! new day at 00:00 UTC; the status view, the API (`station ID --json`: `kpis_today`) and the
//! CLI's station view show them. The sums are `heatgrid_kpi`'s, the accumulator the
//! simulator's scenario KPIs (`heatgrid scenario`) use on ground truth; these are what an
//! operator can know from the meters.

use heatgrid_kpi::{Kpis, Sample};
use serde::Serialize;

use super::Outputs;
use crate::model::Reading;

/// Figures since 00:00 UTC. Shares are of the time covered (`hours`); the indoor shares are of
/// the time the station reported an indoor temperature, `None` if it never did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DayKpis {
    /// Plant hours covered by controller steps on fresh data.
    pub hours: f64,
    /// Heat delivered (the meter's `heat_kw`, else 1.163 × flow × ΔT), GJ.
    pub heat_gj: f64,
    /// Mean heat per heated area, W/m².
    pub heat_w_m2: Option<f64>,
    /// Heat per heating degree-day (base 18 °C, from the outdoor temperature used), GJ.
    pub heat_gj_per_degree_day: Option<f64>,
    /// Mean |supply − setpoint| and the share of time within ±1 K.
    pub supply_error_mean_k: f64,
    pub supply_within_1k: f64,
    /// Mean supply − return, and the flow-weighted return temperature.
    pub delta_t_mean_k: f64,
    pub return_flow_weighted_c: Option<f64>,
    /// Pump energy relative to its rated power (∝ speed³), hours at full speed.
    pub pump_full_speed_h: f64,
    /// Time with the valve at ≤ 1 % or ≥ 99 %, hours.
    pub valve_saturated_h: f64,
    pub indoor_comfort: Option<f64>,
    pub indoor_under: Option<f64>,
    pub indoor_over: Option<f64>,
    #[serde(skip)]
    acc: Kpis,
}

impl DayKpis {
    /// Accounts `dt_s` plant seconds of station state: the reading the controller acted on,
    /// what it computed, the heated area in force. Non-finite or non-positive spans are ignored.
    pub fn record(&mut self, r: &Reading, o: &Outputs, area_m2: Option<f64>, dt_s: f64) {
        if !(dt_s.is_finite() && dt_s > 0.0) {
            return;
        }
        self.acc.record(
            dt_s,
            &Sample {
                heat_kw: r.heat_kw(),
                supply_c: r.supply_temp_c,
                setpoint_c: o.supply_setpoint_c,
                return_c: r.return_temp_c,
                flow: r.flow_m3h,
                pump: r.pump_pct.unwrap_or(o.pump_pct) / 100.0,
                valve: r.valve_pct.unwrap_or(o.valve_pct) / 100.0,
                indoor_c: r.indoor_temp_c,
                outdoor_c: Some(o.outdoor_c),
                area_m2,
            },
        );
        let a = &self.acc;
        self.hours = a.hours();
        self.heat_gj = a.heat_gj();
        self.heat_w_m2 = a.heat_w_m2();
        self.heat_gj_per_degree_day = a.heat_gj_per_degree_day();
        self.supply_error_mean_k = a.supply_error_mean_k();
        self.supply_within_1k = a.supply_within_1k();
        self.delta_t_mean_k = a.delta_t_mean_k();
        self.return_flow_weighted_c = a.return_flow_weighted_c();
        self.pump_full_speed_h = a.pump_full_speed_h();
        self.valve_saturated_h = a.valve_saturated_h();
        self.indoor_comfort = a.indoor_comfort();
        self.indoor_under = a.indoor_under();
        self.indoor_over = a.indoor_over();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Mode, StationId};

    fn reading(supply: f64, ret: f64, flow: f64, indoor: Option<f64>) -> Reading {
        Reading {
            station: StationId::new("s").unwrap(),
            ts_ms: 0,
            supply_temp_c: supply,
            return_temp_c: ret,
            flow_m3h: flow,
            heated_area_m2: None,
            outdoor_temp_c: None,
            indoor_temp_c: indoor,
            valve_pct: Some(50.0),
            pump_pct: Some(50.0),
            heat_kw: None,
            extra: Vec::new(),
        }
    }

    fn outputs(setpoint: f64, valve: f64) -> Outputs {
        Outputs {
            weather_shift_k: 0.0,
            mode: Mode::Auto,
            supply_setpoint_c: setpoint,
            valve_pct: valve,
            pump_pct: 50.0,
            flow_setpoint_m3h: 0.0,
            outdoor_c: -6.0,
            return_correction_k: 0.0,
            valve_terms: Default::default(),
            pump_terms: Default::default(),
        }
    }

    #[test]
    fn a_hand_computed_three_hours() {
        let mut k = DayKpis::default();
        // 100 m³/h × 10 K × 1.163 = 1,163 kW for an hour; on its setpoint; 17 °C inside.
        k.record(
            &reading(50.0, 40.0, 100.0, Some(17.0)),
            &outputs(50.0, 50.0),
            Some(10_000.0),
            3600.0,
        );
        // 200 m³/h × 20 K = 4,652 kW, 2 K off its setpoint, valve reported wide open, 20 °C.
        let mut wide = reading(60.0, 40.0, 200.0, Some(20.0));
        wide.valve_pct = Some(100.0);
        k.record(&wide, &outputs(62.0, 100.0), Some(10_000.0), 3600.0);
        // No indoor sensor this hour, no flow: nothing delivered.
        k.record(
            &reading(45.0, 45.0, 0.0, None),
            &outputs(45.5, 0.5),
            Some(10_000.0),
            3600.0,
        );
        assert!((k.hours - 3.0).abs() < 1e-12);
        // (1,163 + 4,652) kWh = 5,815 kWh = 20.934 GJ.
        assert!((k.heat_gj - 20.934).abs() < 1e-9, "{}", k.heat_gj);
        // 20.934e9 J / 10,800 s / 10,000 m² = 193.83 W/m².
        assert!((k.heat_w_m2.unwrap() - 20.934e9 / 10_800.0 / 10_000.0).abs() < 1e-9);
        // 24 K below the base for 3 h = 3 degree-days × 24 / 24 = 3 × 24 K·h = 3 degree-days.
        assert!((k.heat_gj_per_degree_day.unwrap() - 20.934 / 3.0).abs() < 1e-9);
        assert!((k.supply_error_mean_k - (0.0 + 2.0 + 0.5) / 3.0).abs() < 1e-12);
        assert!((k.supply_within_1k - 2.0 / 3.0).abs() < 1e-12);
        assert!((k.delta_t_mean_k - (10.0 + 20.0 + 0.0) / 3.0).abs() < 1e-12);
        // (100·40 + 200·40) / 300 = 40 °C.
        assert!((k.return_flow_weighted_c.unwrap() - 40.0).abs() < 1e-12);
        // Pump reported at 50 % for 3 h: 3 × 0.125.
        assert!((k.pump_full_speed_h - 0.375).abs() < 1e-12);
        // Wide open (reported 100 %), then shut (no report: the output, 0.5 %).
        let mut shut = reading(45.0, 45.0, 0.0, None);
        shut.valve_pct = None;
        let mut k2 = k.clone();
        k2.record(&shut, &outputs(45.0, 0.5), None, 3600.0);
        assert!((k.valve_saturated_h - 1.0).abs() < 1e-12);
        assert!((k2.valve_saturated_h - 2.0).abs() < 1e-12);
        // Indoor shares over the two hours with a sensor.
        assert_eq!(k.indoor_under, Some(0.5));
        assert_eq!(k.indoor_comfort, Some(0.5));
        assert_eq!(k.indoor_over, Some(0.0));
    }

    #[test]
    fn nothing_recorded_for_an_empty_span_and_no_area_no_w_m2() {
        let mut k = DayKpis::default();
        k.record(
            &reading(50.0, 40.0, 100.0, None),
            &outputs(50.0, 50.0),
            None,
            0.0,
        );
        k.record(
            &reading(50.0, 40.0, 100.0, None),
            &outputs(50.0, 50.0),
            None,
            f64::NAN,
        );
        assert_eq!(k, DayKpis::default());
        k.record(
            &reading(50.0, 40.0, 100.0, None),
            &outputs(50.0, 50.0),
            None,
            60.0,
        );
        assert_eq!(k.heat_w_m2, None);
        assert_eq!(k.indoor_comfort, None);
        assert!(k.heat_gj > 0.0);
    }
}
