//! One station's KPIs over a scenario run, from the plant's ground truth: the shared
//! accumulator (`heatgrid_kpi`) fed with what the plant really did, plus the heat a meter
//! would have computed from the telemetry.

use serde::Serialize;

use crate::station::SimStation;

/// What one station did over a run (ground truth unless named otherwise).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StationKpis {
    pub id: String,
    pub area_m2: f64,
    /// Heat through the heat exchanger, GJ.
    pub heat_gj: f64,
    /// Heat as a meter on the secondary side computes it from the telemetry every period:
    /// flow (m³/h) × (supply − return) (K) × 1.163 kWh/(m³·K).
    pub heat_metered_gj: f64,
    pub heat_gj_per_m2: f64,
    /// Mean heat per heated area, W/m².
    pub mean_w_m2: f64,
    /// Pump energy relative to its rated power (∝ speed³), in hours at full speed.
    pub pump_full_speed_h: f64,
    /// Time with the valve at a limit (≤ 1 % or ≥ 99 %), hours.
    pub valve_saturated_h: f64,
    /// Mean |supply − the setpoint in force|, K (the local curve's or the command's).
    pub supply_error_mean_k: f64,
    /// Share of the time the supply was within ±1 K of the setpoint in force.
    pub supply_within_1k: f64,
    /// Mean secondary ΔT and the flow-weighted return temperature, °C.
    pub delta_t_mean_k: f64,
    pub return_flow_weighted_c: f64,
    /// Shares of the time with indoor below 18, within 18–22, above 22 °C.
    pub indoor_under: f64,
    pub indoor_comfort: f64,
    pub indoor_over: f64,
    pub indoor_min_c: f64,
    pub indoor_max_c: f64,
    /// Time-mean indoor temperature, °C.
    pub indoor_mean_c: f64,
    /// Degree-hours of indoor temperature below 18 and below 20 °C (K·h): how far and how
    /// long the homes were too cold, not only how often.
    pub degree_h_below_18: f64,
    pub degree_h_below_20: f64,
    #[serde(skip)]
    acc: heatgrid_kpi::Kpis,
}

/// One step's ground truth, as [`StationKpis::record`] takes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub heat_w: f64,
    pub supply_c: f64,
    pub return_c: f64,
    pub setpoint_c: f64,
    pub flow_kgs: f64,
    pub valve: f64,
    pub pump: f64,
    pub indoor_c: f64,
}

impl StationKpis {
    pub fn new(id: &str, area_m2: f64) -> Self {
        Self {
            id: id.to_owned(),
            area_m2,
            indoor_min_c: f64::INFINITY,
            indoor_max_c: f64::NEG_INFINITY,
            ..Self::default()
        }
    }

    /// Accounts `dt` seconds spent in state `s`.
    pub fn record(&mut self, dt: f64, s: &Sample) {
        if s.indoor_c.is_finite() {
            self.degree_h_below_18 += (18.0 - s.indoor_c).max(0.0) * dt / 3600.0;
            self.degree_h_below_20 += (20.0 - s.indoor_c).max(0.0) * dt / 3600.0;
        }
        self.acc.record(
            dt,
            &heatgrid_kpi::Sample {
                heat_kw: s.heat_w / 1000.0,
                supply_c: s.supply_c,
                setpoint_c: s.setpoint_c,
                return_c: s.return_c,
                flow: s.flow_kgs,
                pump: s.pump,
                valve: s.valve,
                indoor_c: Some(s.indoor_c),
                outdoor_c: None,
                area_m2: Some(self.area_m2),
            },
        );
    }

    /// Accounts one telemetry sample standing for `period_s` seconds (the metered heat).
    pub fn record_metered(&mut self, period_s: f64, flow_m3h: f64, supply_c: f64, return_c: f64) {
        self.heat_metered_gj += flow_m3h * (supply_c - return_c) * 1.163 * period_s * 1e3 / 1e9;
    }

    /// Turns the running sums into the reported means and shares.
    pub fn finish(&mut self) {
        let a = &self.acc;
        self.heat_gj = a.heat_gj();
        self.heat_gj_per_m2 = self.heat_gj / self.area_m2.max(1.0);
        self.mean_w_m2 = a.heat_w_m2().unwrap_or(0.0);
        self.pump_full_speed_h = a.pump_full_speed_h();
        self.valve_saturated_h = a.valve_saturated_h();
        self.supply_error_mean_k = a.supply_error_mean_k();
        self.supply_within_1k = a.supply_within_1k();
        self.delta_t_mean_k = a.delta_t_mean_k();
        self.return_flow_weighted_c = a.return_flow_weighted_c().unwrap_or(0.0);
        self.indoor_under = a.indoor_under().unwrap_or(0.0);
        self.indoor_comfort = a.indoor_comfort().unwrap_or(0.0);
        self.indoor_over = a.indoor_over().unwrap_or(0.0);
        self.indoor_mean_c = a.indoor_mean_c().unwrap_or(0.0);
        self.indoor_min_c = a.indoor_min_c().unwrap_or(f64::INFINITY);
        self.indoor_max_c = a.indoor_max_c().unwrap_or(f64::NEG_INFINITY);
    }
}

/// The ground truth of station `s` after a step at outdoor `outdoor_c`.
pub(crate) fn sample(s: &SimStation, outdoor_c: f64) -> Sample {
    let p = &s.plant;
    Sample {
        heat_w: p.heat_w,
        supply_c: p.supply_c,
        return_c: p.station_return_c(),
        setpoint_c: s.setpoint_in_force_c(outdoor_c),
        flow_kgs: p.secondary_kgs(),
        valve: p.valve,
        pump: p.pump,
        indoor_c: p.indoor_c,
    }
}
