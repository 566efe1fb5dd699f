//! The per-station controller: heating curve → setpoint ramp → return limitation →
//! temperature loop (valve) and volume loop (pump), on a fixed tick.
//!
//! Pure state machine, called by the engine's control task once per tick with the station's
//! latest accepted reading (or none). It never acts on a reading older than the staleness limit:
//! it then holds its outputs, reports [`Tick::Stale`] and no command is sent, so the station's
//! last command expires and it falls back to its local curve (`domain.md` §2.8).

use crate::control::curve::Curve;
use crate::control::pi::{PiConfig, PiLoop, PiStep};
use crate::model::{Mode, Reading};
use crate::physics;

/// Everything that configures one station's control. Built from the validated config.
#[derive(Debug, Clone, PartialEq)]
pub struct StationParams {
    /// Heated area from config; a reading's `heated_area_m2` takes precedence.
    pub heated_area_m2: Option<f64>,
    pub heat_index_w_m2: f64,
    pub design_outdoor_c: f64,
    pub design_indoor_c: f64,
    pub design_delta_t_k: f64,
    pub curve: Curve,
    pub supply_offset_k: f64,
    pub supply_min_c: f64,
    pub supply_max_c: f64,
    /// Largest setpoint change per minute of plant time.
    pub ramp_k_per_min: f64,
    pub return_limit_c: f64,
    /// Setpoint reduction per minute per K of return temperature above the limit.
    pub return_limit_gain_per_min: f64,
    pub return_limit_max_k: f64,
    /// Temperature loop: error in K → valve %.
    pub valve: PiConfig,
    /// Volume loop: error in % of design flow → pump %.
    pub pump: PiConfig,
    pub staleness_ms: i64,
    /// Outputs used before the first feedback (no `valve_pct`/`pump_pct` in telemetry).
    pub initial_valve_pct: f64,
    pub initial_pump_pct: f64,
}

/// The controller's outputs for one tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outputs {
    pub mode: Mode,
    pub supply_setpoint_c: f64,
    pub valve_pct: f64,
    pub pump_pct: f64,
    pub flow_setpoint_m3h: f64,
    /// The outdoor temperature measured (or fed), °C, and the predictive layer's shift on it
    /// (the targets are computed from their sum, [`Outputs::planning_outdoor_c`]).
    pub outdoor_c: f64,
    pub weather_shift_k: f64,
    pub return_correction_k: f64,
    pub valve_terms: PiStep,
    pub pump_terms: PiStep,
}

impl Outputs {
    /// The outdoor temperature the targets were computed from, °C.
    pub fn planning_outdoor_c(&self) -> f64 {
        self.outdoor_c + self.weather_shift_k
    }
}

/// The result of one tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tick {
    /// Send a command with these outputs.
    Act(Outputs),
    /// No fresh reading: outputs held, nothing sent. `age_ms` is `None` before any reading.
    Stale { age_ms: Option<i64>, newly: bool },
}

/// One station's control state.
#[derive(Debug, Clone)]
pub struct StationController {
    params: StationParams,
    dt_s: f64,
    mode: Mode,
    manual: Option<(f64, f64)>,
    setpoint_c: Option<f64>,
    return_corr_k: f64,
    valve: Option<PiLoop>,
    pump: Option<PiLoop>,
    stale: bool,
    last: Option<Outputs>,
    /// An operator's fixed supply setpoint (°C) replacing the curve, until the optional expiry.
    fixed: Option<(f64, Option<i64>)>,
    /// The district coordinator's offset on the curve, K (0 without a coordinator).
    district_offset_k: f64,
    /// The predictive layer's weather shift, K: added to the outdoor temperature the curve,
    /// the flow target and the coordinator's demand are computed from (0 without it).
    weather_shift_k: f64,
    /// The ΔT the flow target is sized for when larger than the design's, K (0: the design's).
    flow_delta_t_k: f64,
}

impl StationController {
    /// `dt_s` is the tick in plant seconds (gains are per tick).
    pub fn new(params: StationParams, dt_s: f64) -> Self {
        Self {
            params,
            dt_s,
            mode: Mode::Auto,
            manual: None,
            setpoint_c: None,
            return_corr_k: 0.0,
            valve: None,
            pump: None,
            stale: true,
            last: None,
            fixed: None,
            district_offset_k: 0.0,
            weather_shift_k: 0.0,
            flow_delta_t_k: 0.0,
        }
    }

    /// The operator offset added to the curve, K.
    pub fn supply_offset_k(&self) -> f64 {
        self.params.supply_offset_k
    }

    /// Replaces the heating curve (already validated).
    pub fn set_curve(&mut self, curve: Curve) {
        self.params.curve = curve;
    }

    /// Sets the operator offset. The caller checks it against the safety limits.
    pub fn set_supply_offset_k(&mut self, k: f64) {
        self.params.supply_offset_k = k;
    }

    /// The district coordinator's offset, K.
    pub fn district_offset_k(&self) -> f64 {
        self.district_offset_k
    }

    /// Sets the district coordinator's offset (already within the coordinator's bounds; a
    /// non-finite value is ignored). Added to the curve like the operator's offset, never to a
    /// fixed setpoint; the sum is clamped to the supply limits and ramped.
    pub fn set_district_offset_k(&mut self, k: f64) {
        if k.is_finite() {
            self.district_offset_k = k;
        }
    }

    /// The predictive layer's weather shift, K.
    pub fn weather_shift_k(&self) -> f64 {
        self.weather_shift_k
    }

    /// Sets the weather shift (already within the predictive layer's bounds; a non-finite
    /// value is ignored). It moves only the outdoor temperature the targets are computed
    /// from: the supply limits, the ramp and the loops act on the result as on any target.
    pub fn set_weather_shift_k(&mut self, k: f64) {
        if k.is_finite() {
            self.weather_shift_k = k;
        }
    }

    /// Sizes the flow target for a ΔT of `k` K when that is larger than the design's (0 or
    /// a non-finite value: the design's).
    pub fn set_flow_delta_t_k(&mut self, k: f64) {
        self.flow_delta_t_k = if k.is_finite() { k.max(0.0) } else { 0.0 };
    }

    /// The fixed supply setpoint and its expiry (Unix ms), if one is set.
    pub fn fixed_supply(&self) -> Option<(f64, Option<i64>)> {
        self.fixed
    }

    /// Fixes the supply setpoint (°C, clamped to the hard limits) until `expires_at_ms`, or
    /// clears it with `None`. The ramp still applies, so the change is gradual.
    pub fn set_fixed_supply(&mut self, fixed: Option<(f64, Option<i64>)>) {
        self.fixed = fixed.map(|(c, exp)| {
            (
                c.clamp(self.params.supply_min_c, self.params.supply_max_c),
                exp,
            )
        });
    }

    /// The plant time the next [`StationController::tick`] covers, seconds: the tick, or the
    /// time since the last step when control follows telemetry. Ramps, the return limitation
    /// and both loops' integral and rate limits all scale with it.
    pub fn set_dt(&mut self, dt_s: f64) {
        if dt_s.is_finite() && dt_s > 0.0 {
            self.dt_s = dt_s;
            for l in [&mut self.valve, &mut self.pump].into_iter().flatten() {
                l.set_dt(dt_s);
            }
        }
    }

    pub fn params(&self) -> &StationParams {
        &self.params
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Another instance commanded the station until now: start again from what the station
    /// measures and reports, as on a first tick (the setpoint ramps from the measured supply,
    /// the loops start from the reported outputs), keeping the operator's settings.
    pub fn take_over(&mut self) {
        self.setpoint_c = None;
        self.return_corr_k = 0.0;
        self.valve = None;
        self.pump = None;
        self.stale = true;
        self.last = None;
    }

    /// The manual outputs (valve %, pump %) set with [`Mode::Manual`].
    pub fn manual(&self) -> Option<(f64, f64)> {
        self.manual
    }

    pub fn is_stale(&self) -> bool {
        self.stale
    }

    pub fn last_outputs(&self) -> Option<&Outputs> {
        self.last.as_ref()
    }

    /// Changes the mode. `manual` gives fixed (valve %, pump %) for [`Mode::Manual`], clamped to
    /// the loops' limits. Going back to auto is bumpless: the loops continue from the outputs
    /// last sent.
    pub fn set_mode(&mut self, mode: Mode, manual: Option<(f64, f64)>) {
        self.mode = mode;
        self.manual = manual
            .filter(|(v, p)| v.is_finite() && p.is_finite())
            .map(|(v, p)| {
                (
                    v.clamp(self.params.valve.out_min, self.params.valve.out_max),
                    p.clamp(self.params.pump.out_min, self.params.pump.out_max),
                )
            });
    }

    /// The target for `outdoor_c`: the operator's fixed setpoint, else the heating curve plus
    /// offset and the district offset; then the return correction; clamped to the hard limits.
    fn target_c(&self, outdoor_c: f64) -> f64 {
        let base = match self.fixed {
            Some((c, _)) => c,
            None => {
                self.params.curve.supply_c(outdoor_c)
                    + self.params.supply_offset_k
                    + self.district_offset_k
            }
        };
        (base + self.return_corr_k).clamp(self.params.supply_min_c, self.params.supply_max_c)
    }

    /// One tick at `now_ms` with the latest accepted reading and the outdoor temperature to use
    /// when the reading has none (weather feed or configured default).
    pub fn tick(
        &mut self,
        reading: Option<&Reading>,
        fallback_outdoor_c: f64,
        now_ms: i64,
    ) -> Tick {
        // Defence in depth: the decoder already refuses non-finite values, but a controller
        // must never turn one into an output.
        let usable = |r: &&Reading| {
            r.supply_temp_c.is_finite() && r.return_temp_c.is_finite() && r.flow_m3h.is_finite()
        };
        let fresh = reading
            .filter(usable)
            .filter(|r| now_ms - r.ts_ms <= self.params.staleness_ms);
        let Some(r) = fresh else {
            let newly = !self.stale;
            self.stale = true;
            return Tick::Stale {
                age_ms: reading.map(|r| now_ms - r.ts_ms),
                newly,
            };
        };
        if self
            .fixed
            .is_some_and(|(_, exp)| exp.is_some_and(|e| now_ms >= e))
        {
            self.fixed = None; // expired: back to the curve (ramped)
        }
        let dt_min = self.dt_s / 60.0;
        let outdoor_c = r.outdoor_temp_c.unwrap_or(fallback_outdoor_c);
        let planning_c = outdoor_c + self.weather_shift_k;
        self.limit_return(r.return_temp_c, dt_min);
        let f = self.flows(r, planning_c);
        let p = &self.params;
        let target =
            (self.target_c(planning_c) + f.compensation_k).clamp(p.supply_min_c, p.supply_max_c);
        let setpoint = self.ramp(target, r.supply_temp_c, dt_min);
        let (valve_terms, pump_terms) = self.run_loops(r, setpoint, &f);
        let out = Outputs {
            mode: self.mode,
            supply_setpoint_c: setpoint,
            valve_pct: valve_terms.output,
            pump_pct: pump_terms.output,
            flow_setpoint_m3h: f.flow_sp,
            outdoor_c,
            weather_shift_k: self.weather_shift_k,
            return_correction_k: self.return_corr_k,
            valve_terms,
            pump_terms,
        };
        self.last = Some(out);
        Tick::Act(out)
    }

    /// Return-temperature limitation: integrates the excess over the limit into a negative
    /// correction, and lets it relax towards zero at the same rate once the return is back
    /// under the limit.
    fn limit_return(&mut self, return_c: f64, dt_min: f64) {
        let p = &self.params;
        let excess = return_c - p.return_limit_c;
        let step = p.return_limit_gain_per_min * excess.abs() * dt_min;
        self.return_corr_k = if excess > 0.0 {
            self.return_corr_k - step
        } else {
            self.return_corr_k + step
        }
        .clamp(-p.return_limit_max_k, 0.0);
    }

    /// The flow the load calls for at `outdoor_c`, the design flow, and the supply rise that
    /// keeps the radiators' mean temperature at the flow measured.
    fn flows(&self, r: &Reading, outdoor_c: f64) -> Flows {
        let p = &self.params;
        let area = r.heated_area_m2.or(p.heated_area_m2).unwrap_or(0.0);
        let demand = |at_c: f64| {
            physics::heat_demand_kw(
                p.heat_index_w_m2,
                area,
                at_c,
                p.design_indoor_c,
                p.design_outdoor_c,
            )
        };
        // The flow for the ΔT to keep: the design's, or the predictive layer's larger one
        // (less water for the same heat, a colder return; the compensation below raises the
        // supply for the flow that results).
        let keep_dt = self.flow_delta_t_k.max(p.design_delta_t_k);
        let flow_sp = physics::flow_m3h(demand(outdoor_c), keep_dt);
        let design_flow =
            physics::flow_m3h(demand(p.design_outdoor_c), p.design_delta_t_k).max(1e-9);
        // The curve is the supply temperature at design flow. Below it (the pump follows the
        // load) the same radiator mean temperature needs a hotter supply: raise it for the
        // flow actually measured. Without this the scenarios showed homes below 18 °C on
        // mild days (docs/scenarios.md).
        let compensation_k = if area > 0.0 && self.fixed.is_none() {
            flow_compensation_k(
                p.design_delta_t_k,
                (p.design_indoor_c - outdoor_c) / (p.design_indoor_c - p.design_outdoor_c),
                r.flow_m3h / design_flow,
            )
        } else {
            0.0
        };
        Flows {
            flow_sp,
            design_flow,
            compensation_k,
        }
    }

    /// Moves the setpoint towards `target` by at most the ramp; the first tick starts from the
    /// measured supply (bumpless take-over).
    fn ramp(&mut self, target: f64, supply_c: f64, dt_min: f64) -> f64 {
        let p = &self.params;
        let max_step = p.ramp_k_per_min * dt_min;
        let from = self
            .setpoint_c
            .unwrap_or_else(|| supply_c.clamp(p.supply_min_c, p.supply_max_c));
        let setpoint = (from + (target - from).clamp(-max_step, max_step))
            .clamp(p.supply_min_c, p.supply_max_c);
        self.setpoint_c = Some(setpoint);
        setpoint
    }

    /// The valve loop (supply temperature) and the pump loop (flow, in % of design) for this
    /// tick, by mode: created on the first tick, re-aligned (bumpless) when auto resumes or
    /// data returns after a gap, following fixed outputs in manual and hold.
    fn run_loops(&mut self, r: &Reading, setpoint: f64, f: &Flows) -> (PiStep, PiStep) {
        let (flow_sp, flow) = (f.pct(f.flow_sp), f.pct(r.flow_m3h));
        let supply = r.supply_temp_c;
        let (valve_fb, pump_fb) = (r.valve_pct, r.pump_pct);
        let p = &self.params;
        let (init_v, init_p) = (p.initial_valve_pct, p.initial_pump_pct);
        let (vcfg, pcfg, dt) = (p.valve.clone(), p.pump.clone(), self.dt_s);
        let was_stale = self.stale;
        let valve = self.valve.get_or_insert_with(|| {
            let mut l = PiLoop::new(vcfg, dt, valve_fb.unwrap_or(init_v));
            l.track(valve_fb.unwrap_or(init_v), setpoint, supply);
            l
        });
        let pump = self.pump.get_or_insert_with(|| {
            let mut l = PiLoop::new(pcfg, dt, pump_fb.unwrap_or(init_p));
            l.track(pump_fb.unwrap_or(init_p), flow_sp, flow);
            l
        });
        let entering_auto =
            self.mode == Mode::Auto && self.last.is_some_and(|o| o.mode != Mode::Auto);
        if entering_auto {
            // Bumpless manual/hold → auto: start from the outputs last sent, at today's error.
            let last = self
                .last
                .map(|o| (o.valve_pct, o.pump_pct))
                .unwrap_or_default();
            valve.track(last.0, setpoint, supply);
            pump.track(last.1, flow_sp, flow);
        }
        if was_stale {
            // Data is back after a gap: resume from where the actuators are, not from where
            // the loops were when the data stopped.
            valve.track(valve_fb.unwrap_or(valve.output()), setpoint, supply);
            pump.track(pump_fb.unwrap_or(pump.output()), flow_sp, flow);
        }
        self.stale = false;
        match (self.mode, self.manual, self.last) {
            (Mode::Auto, _, _) => (valve.step(setpoint, supply), pump.step(flow_sp, flow)),
            (Mode::Manual, Some((v, pu)), _) => {
                valve.track(v, setpoint, supply);
                pump.track(pu, flow_sp, flow);
                (held(valve.output()), held(pump.output()))
            }
            // Hold, or manual without values: freeze the outputs, keep the loops tracking them.
            (_, _, last) => {
                let (v, pu) = last
                    .map(|o| (o.valve_pct, o.pump_pct))
                    .unwrap_or((valve.output(), pump.output()));
                valve.track(v, setpoint, supply);
                pump.track(pu, flow_sp, flow);
                (held(v), held(pu))
            }
        }
    }
}

/// The flows of one tick.
#[derive(Debug, Clone, Copy)]
struct Flows {
    /// What the load calls for, m³/h.
    flow_sp: f64,
    /// At the design outdoor temperature, m³/h (> 0).
    design_flow: f64,
    /// Supply rise for the measured flow, K.
    compensation_k: f64,
}

impl Flows {
    /// `v` m³/h in % of the design flow (the pump loop's unit).
    fn pct(&self, v: f64) -> f64 {
        100.0 * v / self.design_flow
    }
}

/// Supply rise (K) that keeps the radiators' mean temperature when the secondary flow is `g`
/// times the design flow at relative load `q` = (Ti,d − To)/(Ti,d − To,d): with ΔT = ΔT_d·q/g
/// the quality-regulation formula (domain.md §2.1) gives Ts = curve + ½·ΔT_d·q·(1/g − 1).
/// `g` is bounded to 0.3–1.5 so a bad flow reading cannot swing the setpoint far (the result
/// is clamped to the station's supply limits afterwards anyway).
pub fn flow_compensation_k(design_delta_t_k: f64, q: f64, g: f64) -> f64 {
    if !(q.is_finite() && g.is_finite()) {
        return 0.0;
    }
    let (q, g) = (q.clamp(0.0, 1.5), g.clamp(0.3, 1.5));
    let k = 0.5 * design_delta_t_k * q * (1.0 / g - 1.0);
    // Colder than the design point a curve is flat at its design supply, already short of
    // what the buildings need: extra flow must not lower it further (seen in the cold snap).
    if q > 1.0 {
        k.max(0.0)
    } else {
        k
    }
}

fn held(output: f64) -> PiStep {
    PiStep {
        output,
        ..PiStep::default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::StationId;

    pub(crate) fn params() -> StationParams {
        StationParams {
            heated_area_m2: Some(100_000.0),
            heat_index_w_m2: 45.0,
            design_outdoor_c: -10.0,
            design_indoor_c: 18.0,
            design_delta_t_k: 15.0,
            curve: Curve::default(),
            supply_offset_k: 0.0,
            supply_min_c: 30.0,
            supply_max_c: 75.0,
            ramp_k_per_min: 2.0,
            return_limit_c: 50.0,
            return_limit_gain_per_min: 0.5,
            return_limit_max_k: 10.0,
            valve: PiConfig {
                kp: 2.0,
                ti_s: 120.0,
                dead_band: 0.3,
                out_min: 0.0,
                out_max: 100.0,
                max_rate_per_s: 100.0 / 60.0,
            },
            pump: PiConfig {
                kp: 0.5,
                ti_s: 30.0,
                dead_band: 0.0,
                out_min: 30.0,
                out_max: 100.0,
                max_rate_per_s: 100.0 / 30.0,
            },
            staleness_ms: 30_000,
            initial_valve_pct: 50.0,
            initial_pump_pct: 80.0,
        }
    }

    fn reading(ts_ms: i64, supply: f64, ret: f64) -> Reading {
        Reading {
            station: StationId::new("s").unwrap(),
            ts_ms,
            supply_temp_c: supply,
            return_temp_c: ret,
            // The design flow of `params()` (4.5 MW at 15 K): no flow compensation.
            flow_m3h: DESIGN_FLOW,
            heated_area_m2: None,
            outdoor_temp_c: Some(-5.0),
            indoor_temp_c: None,
            valve_pct: Some(40.0),
            pump_pct: Some(70.0),
            heat_kw: None,
            extra: vec![],
        }
    }

    const DESIGN_FLOW: f64 = 4500.0 / (15.0 * 1.163);

    #[test]
    fn below_design_flow_the_supply_rises_to_keep_the_radiators_mean_temperature() {
        // Half the load on half the design flow: ΔT stays 15 K instead of 7.5 K, so the
        // supply must be 3.75 K above the design-flow curve.
        assert!((flow_compensation_k(15.0, 0.5, 0.5) - 3.75).abs() < 1e-12);
        assert_eq!(flow_compensation_k(15.0, 0.7, 1.0), 0.0);
        assert!(
            flow_compensation_k(15.0, 0.7, 1.2) < 0.0,
            "above design flow: cooler"
        );
        // Bounded: a nonsense flow reading moves it at most as much as 30 % flow would.
        assert_eq!(
            flow_compensation_k(15.0, 0.5, 0.0),
            flow_compensation_k(15.0, 0.5, 0.3)
        );
        assert_eq!(flow_compensation_k(15.0, f64::NAN, 0.5), 0.0);
        assert_eq!(
            flow_compensation_k(15.0, 1.2, 1.25),
            0.0,
            "beyond design: never lower"
        );
        assert!(flow_compensation_k(15.0, 1.2, 0.8) > 0.0);

        let mut c = StationController::new(params(), 5.0);
        let mut r = reading(0, 53.8, 40.0);
        r.flow_m3h = DESIGN_FLOW / 2.0;
        for k in 0..200 {
            r.ts_ms = k * 5000;
            c.tick(Some(&r), 0.0, k * 5000);
        }
        // −5 °C: q = 23/28, g = 0.5 → 53.8 + 7.5 × 23/28 = 59.96 °C.
        let o = c.last_outputs().unwrap();
        let want = 53.8 + 7.5 * 23.0 / 28.0;
        assert!(
            (o.supply_setpoint_c - want).abs() < 1e-9,
            "{}",
            o.supply_setpoint_c
        );
        // A fixed setpoint is taken as given.
        c.set_fixed_supply(Some((50.0, None)));
        for k in 200..400 {
            r.ts_ms = k * 5000;
            c.tick(Some(&r), 0.0, k * 5000);
        }
        assert!((c.last_outputs().unwrap().supply_setpoint_c - 50.0).abs() < 1e-9);
    }

    fn act(t: Tick) -> Outputs {
        match t {
            Tick::Act(o) => o,
            other => panic!("expected a command, got {other:?}"),
        }
    }

    #[test]
    fn first_tick_is_bumpless_and_ramps_towards_the_curve() {
        let mut c = StationController::new(params(), 5.0);
        let o = act(c.tick(Some(&reading(0, 45.0, 38.0)), 0.0, 1000));
        // Starts at the measured 45 °C and moves at most 2 K/min × 5 s towards 53.8 °C.
        assert!((o.supply_setpoint_c - (45.0 + 2.0 * 5.0 / 60.0)).abs() < 1e-9);
        assert!(
            (o.valve_pct - 40.0).abs() < 3.0,
            "valve jumped to {}",
            o.valve_pct
        );
        // Flow setpoint: 45 W/m² × 100,000 m² × 23/28 = 3696 kW at 15 K → 211.9 m³/h.
        assert!(
            (o.flow_setpoint_m3h - 211.9).abs() < 0.1,
            "{}",
            o.flow_setpoint_m3h
        );
        for k in 1..2000 {
            c.tick(Some(&reading(k * 5000, 45.0, 38.0)), 0.0, k * 5000 + 1000);
        }
        let o = c.last_outputs().unwrap();
        assert!((o.supply_setpoint_c - 53.8).abs() < 1e-9);
        assert_eq!(
            o.valve_pct, 100.0,
            "supply far below setpoint saturates the valve open"
        );
    }

    #[test]
    fn stale_or_missing_data_never_produces_a_command() {
        let mut c = StationController::new(params(), 5.0);
        assert_eq!(
            c.tick(None, 0.0, 0),
            Tick::Stale {
                age_ms: None,
                newly: false
            }
        );
        act(c.tick(Some(&reading(0, 50.0, 40.0)), 0.0, 1000));
        let old = reading(0, 50.0, 40.0);
        assert_eq!(
            c.tick(Some(&old), 0.0, 31_000),
            Tick::Stale {
                age_ms: Some(31_000),
                newly: true
            }
        );
        assert!(matches!(
            c.tick(Some(&old), 0.0, 36_000),
            Tick::Stale { newly: false, .. }
        ));
        assert!(c.is_stale());
        // Data back: bumpless from the reported valve position.
        let o = act(c.tick(Some(&reading(40_000, 50.0, 40.0)), 0.0, 40_500));
        assert!((o.valve_pct - 40.0).abs() < 3.0);
    }

    #[test]
    fn return_limit_lowers_the_setpoint_slowly_and_within_bounds() {
        let mut c = StationController::new(params(), 5.0);
        let mut last = 0.0;
        for k in 0..2000 {
            let o = act(c.tick(Some(&reading(k * 5000, 53.8, 55.0)), 0.0, k * 5000));
            assert!(
                o.return_correction_k <= last + 1e-12,
                "correction must only deepen"
            );
            last = o.return_correction_k;
        }
        assert_eq!(last, -10.0, "clamped at the configured maximum");
        let o = c.last_outputs().unwrap();
        assert!(
            (o.supply_setpoint_c - 43.8).abs() < 1e-9,
            "{}",
            o.supply_setpoint_c
        );
    }

    #[test]
    fn a_fixed_setpoint_is_clamped_ramped_and_expires() {
        let mut c = StationController::new(params(), 60.0);
        act(c.tick(Some(&reading(0, 53.8, 40.0)), 0.0, 0));
        c.set_fixed_supply(Some((90.0, Some(600_000))));
        assert_eq!(
            c.fixed_supply(),
            Some((75.0, Some(600_000))),
            "clamped to supply_max_c"
        );
        let o = act(c.tick(Some(&reading(60_000, 53.8, 40.0)), 0.0, 60_000));
        assert!(
            (o.supply_setpoint_c - (53.8 + 2.0)).abs() < 0.2,
            "ramped: {}",
            o.supply_setpoint_c
        );
        act(c.tick(Some(&reading(600_000, 53.8, 40.0)), 0.0, 600_000));
        assert_eq!(c.fixed_supply(), None, "expired");
    }

    #[test]
    fn manual_and_hold_then_back_to_auto_without_a_bump() {
        let mut c = StationController::new(params(), 5.0);
        for k in 0..50 {
            act(c.tick(Some(&reading(k * 5000, 52.0, 40.0)), 0.0, k * 5000));
        }
        c.set_mode(Mode::Manual, Some((150.0, 10.0)));
        let o = act(c.tick(Some(&reading(250_000, 52.0, 40.0)), 0.0, 250_000));
        assert_eq!(
            (o.valve_pct, o.pump_pct, o.mode),
            (100.0, 30.0, Mode::Manual)
        );
        c.set_mode(Mode::Manual, Some((35.0, 60.0)));
        act(c.tick(Some(&reading(255_000, 52.0, 40.0)), 0.0, 255_000));
        c.set_mode(Mode::Hold, None);
        let o = act(c.tick(Some(&reading(260_000, 40.0, 40.0)), 0.0, 260_000));
        assert_eq!((o.valve_pct, o.pump_pct), (35.0, 60.0));
        c.set_mode(Mode::Auto, None);
        let o = act(c.tick(Some(&reading(265_000, 52.0, 40.0)), 0.0, 265_000));
        assert!((o.valve_pct - 35.0).abs() < 1.0, "bump to {}", o.valve_pct);
    }
}

#[cfg(test)]
mod properties {
    //! For any sequence of readings (including nonsense the decoder would refuse, and NaN), the
    //! controller's outputs stay finite, inside their limits and inside the rate limits.
    use proptest::prelude::*;

    use super::tests::params;
    use super::*;
    use crate::model::StationId;

    fn reading(ts_ms: i64, supply: f64, ret: f64, flow: f64, outdoor: Option<f64>) -> Reading {
        Reading {
            station: StationId::new("p").unwrap(),
            ts_ms,
            supply_temp_c: supply,
            return_temp_c: ret,
            flow_m3h: flow,
            heated_area_m2: None,
            outdoor_temp_c: outdoor,
            indoor_temp_c: None,
            valve_pct: None,
            pump_pct: None,
            heat_kw: None,
            extra: vec![],
        }
    }

    fn temp() -> impl Strategy<Value = f64> {
        prop_oneof![8 => -50.0..200.0f64, 1 => Just(f64::NAN), 1 => Just(f64::INFINITY)]
    }

    proptest! {
        #[test]
        fn outputs_stay_finite_bounded_and_rate_limited(
            steps in proptest::collection::vec(
                (temp(), temp(), prop_oneof![9 => 0.0..2000.0f64, 1 => Just(f64::NAN)],
                 proptest::option::of(-40.0..30.0f64), any::<bool>(), 0u8..20,
                 // Time since the last step: a fixed tick, or control following telemetry.
                 prop_oneof![3 => Just(5.0), 1 => 0.05..30.0f64]),
                1..200),
        ) {
            let p = params();
            let mut c = StationController::new(p.clone(), 5.0);
            let mut last: Option<Outputs> = None;
            for (k, (supply, ret, flow, outdoor, fresh, mode, dt)) in steps.into_iter().enumerate() {
                c.set_dt(dt);
                let now = k as i64 * 5000;
                match mode {
                    0 => c.set_mode(Mode::Manual, Some((supply, ret))),
                    1 => c.set_mode(Mode::Hold, None),
                    2 => c.set_mode(Mode::Auto, None),
                    _ => {}
                }
                let ts = if fresh { now } else { now - 60_000 };
                let r = reading(ts, supply, ret, flow, outdoor);
                if let Tick::Act(o) = c.tick(Some(&r), -5.0, now) {
                    prop_assert!(o.supply_setpoint_c.is_finite() && o.valve_pct.is_finite() && o.pump_pct.is_finite());
                    prop_assert!(o.supply_setpoint_c >= p.supply_min_c && o.supply_setpoint_c <= p.supply_max_c);
                    prop_assert!(o.valve_pct >= p.valve.out_min && o.valve_pct <= p.valve.out_max);
                    prop_assert!(o.pump_pct >= p.pump.out_min && o.pump_pct <= p.pump.out_max);
                    if let Some(l) = last {
                        // Auto outputs move at most one rate-limit step per tick (manual and
                        // hold are the operator's values, still within the limits above).
                        if o.mode == Mode::Auto && l.mode == Mode::Auto {
                            prop_assert!((o.valve_pct - l.valve_pct).abs() <= p.valve.max_rate_per_s * dt + 1e-9);
                            prop_assert!((o.pump_pct - l.pump_pct).abs() <= p.pump.max_rate_per_s * dt + 1e-9);
                        }
                        prop_assert!((o.supply_setpoint_c - l.supply_setpoint_c).abs() <= p.ramp_k_per_min * dt / 60.0 + 1e-9);
                    }
                    last = Some(o);
                } else {
                    let usable = supply.is_finite() && ret.is_finite() && flow.is_finite();
                    prop_assert!(!(fresh && usable), "a fresh, finite reading must be acted on");
                }
            }
        }
    }
}
