//! A PI(D-less) loop with the properties a valve or pump output needs, on a fixed tick.
//!
//! Used by [`super::station`] for the temperature loop (supply °C → primary valve %) and the
//! volume loop (flow → pump %). The owner's choice was the `pid` crate; this module keeps its
//! arithmetic (P on error, integral stored as a term so gain changes do not bump, per-sample
//! integral gain on a fixed tick) and adds what it lacks, which its public API cannot provide:
//!
//! * **asymmetric output limits** (0–100 %): the crate only has symmetric limits around 0;
//! * **anti-windup by conditional integration**: the crate only clamps the I term to a fixed
//!   bound, which either recovers slowly from saturation or leaves an offset when the needed
//!   bias exceeds the bound (`stack-notes.md`); here the integral stops growing while the
//!   output is saturated or rate-limited in the direction of the error;
//! * **bumpless transfer**: the crate has no integral setter; [`PiLoop::track`] sets the
//!   integral so the next output continues from the current actuator position;
//! * **output rate limit** (100 % per actuator run time) and a **dead band**;
//! * **NaN safety**: a non-finite input is ignored and the output held (one NaN would poison
//!   the crate's integral until reset).
//!
//! Derivative action is left out: district-heating practice runs D = 0 (`domain.md` §2.2).
//! On the ordinary, unsaturated case the output equals the crate's exactly (tested below
//! against `pid` 4.0).

/// Tuning and limits of one loop. Gains are in output units per measurement unit.
#[derive(Debug, Clone, PartialEq)]
pub struct PiConfig {
    /// Proportional gain (e.g. % valve per K).
    pub kp: f64,
    /// Integral time in seconds; 0 disables integral action.
    pub ti_s: f64,
    /// No action while |error| ≤ this; outside it the error is reduced by it (no jump at its edge).
    pub dead_band: f64,
    pub out_min: f64,
    pub out_max: f64,
    /// Largest output change per second (100 % / actuator run time); infinite for none.
    pub max_rate_per_s: f64,
}

/// What one step did, for logs and the operator view.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PiStep {
    pub p: f64,
    pub i: f64,
    pub output: f64,
    /// The output was clamped or rate-limited, so integration was held.
    pub anti_windup: bool,
}

/// One PI loop's state. `dt_s` is the time step of the next [`PiLoop::step`] (set at
/// construction; [`PiLoop::set_dt`] changes it when steps follow telemetry instead of a tick).
#[derive(Debug, Clone)]
pub struct PiLoop {
    cfg: PiConfig,
    dt_s: f64,
    integral: f64,
    output: f64,
}

impl PiLoop {
    /// A loop whose output starts at `initial_output` (clamped to the limits).
    pub fn new(cfg: PiConfig, dt_s: f64, initial_output: f64) -> Self {
        let output = initial_output.clamp(cfg.out_min, cfg.out_max);
        Self {
            cfg,
            dt_s,
            integral: output,
            output,
        }
    }

    pub fn output(&self) -> f64 {
        self.output
    }

    /// The time step of the following steps, seconds (> 0; anything else is ignored).
    pub fn set_dt(&mut self, dt_s: f64) {
        if dt_s.is_finite() && dt_s > 0.0 {
            self.dt_s = dt_s;
        }
    }

    pub fn config(&self) -> &PiConfig {
        &self.cfg
    }

    fn effective_error(&self, setpoint: f64, measurement: f64) -> f64 {
        let e = setpoint - measurement;
        if e.abs() <= self.cfg.dead_band {
            0.0
        } else {
            e - self.cfg.dead_band.copysign(e)
        }
    }

    /// Bumpless transfer: make the loop continue from `output` (e.g. the actuator position
    /// reported by the station, or the operator's manual value) without a jump.
    pub fn track(&mut self, output: f64, setpoint: f64, measurement: f64) {
        self.output = output.clamp(self.cfg.out_min, self.cfg.out_max);
        let p = if setpoint.is_finite() && measurement.is_finite() {
            self.cfg.kp * self.effective_error(setpoint, measurement)
        } else {
            0.0
        };
        self.integral = self.output - p;
    }

    /// One control step. Non-finite inputs hold the output and leave the integral untouched.
    pub fn step(&mut self, setpoint: f64, measurement: f64) -> PiStep {
        if !setpoint.is_finite() || !measurement.is_finite() {
            return PiStep {
                p: 0.0,
                i: self.integral,
                output: self.output,
                anti_windup: false,
            };
        }
        let e = self.effective_error(setpoint, measurement);
        let p = self.cfg.kp * e;
        let ki = if self.cfg.ti_s > 0.0 {
            self.cfg.kp * self.dt_s / self.cfg.ti_s
        } else {
            0.0
        };
        let integral = self.integral + ki * e;
        let wanted = p + integral;
        let max_step = self.cfg.max_rate_per_s * self.dt_s;
        let applied = wanted
            .clamp(self.cfg.out_min, self.cfg.out_max)
            .clamp(self.output - max_step, self.output + max_step);
        // Conditional integration: keep the new integral unless the output is limited in the
        // direction the error pushes (that is where windup comes from).
        let limited = applied != wanted;
        let pushing_further = (wanted > applied && e > 0.0) || (wanted < applied && e < 0.0);
        if !(limited && pushing_further) {
            self.integral = integral;
        }
        // The integral never needs to exceed what the output range can use.
        let span = self.cfg.out_max - self.cfg.out_min;
        self.integral = self
            .integral
            .clamp(self.cfg.out_min - span, self.cfg.out_max + span);
        self.output = applied;
        PiStep {
            p,
            i: self.integral,
            output: applied,
            anti_windup: limited && pushing_further,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PiConfig {
        PiConfig {
            kp: 2.0,
            ti_s: 120.0,
            dead_band: 0.0,
            out_min: 0.0,
            out_max: 100.0,
            max_rate_per_s: f64::INFINITY,
        }
    }

    #[test]
    fn matches_the_pid_crate_on_the_ordinary_case() {
        let dt = 5.0;
        let bias = 40.0;
        let mut ours = PiLoop::new(cfg(), dt, bias);
        let mut theirs = pid::Pid::<f64>::new(55.0, 1000.0);
        theirs.p(2.0, 1000.0).i(2.0 * dt / 120.0, 1000.0);
        let mut meas = 50.0;
        for k in 0..200 {
            let a = ours.step(55.0, meas);
            let b = theirs.next_control_output(meas);
            assert!((a.output - (bias + b.output)).abs() < 1e-9, "step {k}");
            assert!(a.output > 0.0 && a.output < 100.0);
            // A crude first-order plant so the sequence is not trivial.
            meas += 0.05 * (a.output - 40.0) - 0.02 * (meas - 50.0);
        }
    }

    #[test]
    fn output_stays_in_limits_and_recovers_from_saturation_without_windup() {
        let mut pi = PiLoop::new(cfg(), 5.0, 50.0);
        // Unreachable setpoint for a long time: output pinned at 100.
        for _ in 0..1000 {
            let s = pi.step(90.0, 50.0);
            assert!(s.output <= 100.0);
        }
        assert_eq!(pi.output(), 100.0);
        assert!(
            pi.integral <= 100.0 + 1e-9,
            "integral wound up to {}",
            pi.integral
        );
        // Once the error reverses, the output leaves saturation at the first step.
        let s = pi.step(50.0, 52.0);
        assert!(s.output < 100.0, "{s:?}");
    }

    #[test]
    fn rate_limit_dead_band_and_nan() {
        let mut c = cfg();
        c.max_rate_per_s = 100.0 / 60.0; // 60 s actuator
        c.dead_band = 1.0;
        let mut pi = PiLoop::new(c, 5.0, 50.0);
        let s = pi.step(80.0, 50.0);
        assert!((s.output - (50.0 + 100.0 / 60.0 * 5.0)).abs() < 1e-9);
        let held = pi.output();
        assert_eq!(pi.step(f64::NAN, 50.0).output, held);
        assert_eq!(pi.step(50.0, f64::INFINITY).output, held);
        let mut pi = PiLoop::new(pi.config().clone(), 5.0, 50.0);
        assert_eq!(pi.step(50.5, 50.0).output, 50.0, "inside the dead band");
        // Just outside the band the action is small, not a jump of kp × band.
        assert!((pi.step(51.1, 50.0).output - 50.0).abs() < 0.5);
    }

    #[test]
    fn track_is_bumpless() {
        let mut pi = PiLoop::new(cfg(), 5.0, 20.0);
        pi.track(63.0, 55.0, 53.0);
        let s = pi.step(55.0, 53.0);
        // Only one tick of integral action separates the output from the tracked value.
        assert!(
            (s.output - 63.0).abs() <= 2.0 * 2.0 * 5.0 / 120.0 + 1e-9,
            "{s:?}"
        );
    }
}
