//! A station's building as one thermal resistance and one capacity (1R1C), identified online
//! from hourly means of its telemetry: `C · dTi/dt = Q + g · S − UA · (Ti − To)`, with `Q` the
//! station's heat, `S` the forecast's solar irradiance and `Ti` the representative indoor
//! temperature.
//!
//! Where it sits: inside each station's [`super::Predictor`]; the optimiser ([`super::plan`])
//! plans on what it learned. Discretised by the hour, the model is linear in three
//! parameters, `ΔTi = Q/C + (To − Ti)·UA/C + S·g/C`, estimated by recursive least squares
//! (a Kalman filter on constant parameters) that starts from the design data: `UA` from the
//! design load and temperatures, a 40 h time constant (`domain.md`), no solar gain. Under
//! closed-loop control the heat follows the weather and the parameters are partly collinear;
//! starting from the design prior keeps the estimate where the data say nothing. The fit is
//! judged on the one-hour-ahead prediction error, before each update (honest: the hour was
//! not yet seen).

/// What the model has learned, in engineering units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Heat capacity, kWh/K.
    pub c_kwh_k: f64,
    /// Loss coefficient, kW/K.
    pub ua_kw_k: f64,
    /// Solar gain, kW per W/m² of global irradiance.
    pub gain_kw_per_w_m2: f64,
}

impl Params {
    /// Time constant C / UA, h.
    pub fn tau_h(&self) -> f64 {
        self.c_kwh_k / self.ua_kw_k
    }
}

/// One hour of a station, averaged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HourMean {
    pub heat_kw: f64,
    pub outdoor_c: f64,
    pub indoor_c: f64,
    pub solar_w_m2: f64,
}

/// The identification state.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildingModel {
    /// θ = [1/C, UA/C, g/C] per hour.
    theta: [f64; 3],
    p: [[f64; 3]; 3],
    /// Variance of the hourly indoor change the model cannot explain, K².
    noise_k2: f64,
    /// Hours learned from, and the running mean square of the prediction error before each
    /// update, K² (about three days of memory).
    pub hours: u32,
    mse_k2: f64,
    /// The same for predicting "no change" (what the model's skill is measured against).
    naive_k2: f64,
}

/// The prior's relative standard deviations on 1/C, UA/C and the solar gain (in units of
/// the prior solar gain).
const PRIOR_SD: [f64; 3] = [0.6, 0.6, 1.0];
/// Prior time constant (`domain.md`: 40 h default, 20–60 h).
pub const PRIOR_TAU_H: f64 = 40.0;
/// Prior solar gain per m² of floor, kW per W/m² of irradiance per m² (a 2 % effective
/// aperture: 12 W/m² of floor at 600 W/m²).
const PRIOR_APERTURE: f64 = 0.02e-3;

impl BuildingModel {
    /// Starts from the design: loss `ua_kw_k`, heated area `area_m2`.
    pub fn new(ua_kw_k: f64, area_m2: f64) -> Self {
        let ua = ua_kw_k.max(1e-3);
        let c = ua * PRIOR_TAU_H;
        let g = PRIOR_APERTURE * area_m2.max(0.0);
        let theta = [1.0 / c, ua / c, g.max(1e-6) / c];
        let mut p = [[0.0; 3]; 3];
        for (k, row) in p.iter_mut().enumerate() {
            row[k] = (PRIOR_SD[k] * theta[k]).powi(2);
        }
        Self {
            theta,
            p,
            noise_k2: 0.02f64.powi(2),
            hours: 0,
            mse_k2: 0.0,
            naive_k2: 0.0,
        }
    }

    pub fn params(&self) -> Params {
        let inv_c = self.theta[0].max(1e-12);
        Params {
            c_kwh_k: 1.0 / inv_c,
            ua_kw_k: self.theta[1] / inv_c,
            gain_kw_per_w_m2: self.theta[2] / inv_c,
        }
    }

    /// Indoor temperature an hour after `h`, as the model predicts it.
    pub fn predict(&self, h: &HourMean) -> f64 {
        h.indoor_c + dot(&self.theta, &regressors(h))
    }

    /// Learns from one hour and the indoor mean of the hour after it.
    pub fn update(&mut self, h: &HourMean, next_indoor_c: f64) {
        let phi = regressors(h);
        let y = next_indoor_c - h.indoor_c;
        if !(y.is_finite() && phi.iter().all(|x| x.is_finite())) {
            return;
        }
        let err = y - dot(&self.theta, &phi);
        let w = 1.0 / 72.0_f64.min(f64::from(self.hours) + 1.0);
        self.mse_k2 += w * (err * err - self.mse_k2);
        self.naive_k2 += w * (y * y - self.naive_k2);
        self.hours += 1;
        let pphi: [f64; 3] = std::array::from_fn(|i| dot(&self.p[i], &phi));
        let s = self.noise_k2 + dot(&phi, &pphi);
        let gain: [f64; 3] = std::array::from_fn(|i| pphi[i] / s);
        for (i, g) in gain.iter().enumerate() {
            self.theta[i] += g * err;
            for (pij, pj) in self.p[i].iter_mut().zip(&pphi) {
                *pij -= g * pj;
            }
        }
        // Physical bounds: a capacity, a loss and a gain are never negative.
        self.theta[0] = self.theta[0].max(1e-9);
        self.theta[1] = self.theta[1].max(1e-6);
        self.theta[2] = self.theta[2].max(0.0);
    }

    /// Root mean square of the one-hour-ahead indoor prediction error, K.
    pub fn rmse_k(&self) -> f64 {
        self.mse_k2.sqrt()
    }

    /// Share of the hourly indoor change the model explains (1 − its error over that of
    /// predicting no change; 0 when the indoor did not move).
    pub fn skill(&self) -> f64 {
        if self.naive_k2 <= 1e-12 {
            0.0
        } else {
            1.0 - self.mse_k2 / self.naive_k2
        }
    }
}

fn regressors(h: &HourMean) -> [f64; 3] {
    [h.heat_kw, h.outdoor_c - h.indoor_c, h.solar_w_m2]
}

fn dot(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A building with known parameters heated by a varying, partly random heat (as a station
    /// does that is preheating, coasting and following the weather), measured hourly.
    fn identify(truth: Params, prior_ua: f64, hours: usize, seed: u64) -> BuildingModel {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut m = BuildingModel::new(prior_ua, 10_000.0);
        let mut ti = 20.0;
        for k in 0..hours {
            let t = k as f64;
            let to = -5.0 + 4.0 * (2.0 * std::f64::consts::PI * (t - 15.0) / 24.0).cos();
            let sun = (300.0 * (std::f64::consts::PI * ((t % 24.0) - 8.0) / 8.0).sin()).max(0.0);
            let steady = truth.ua_kw_k * (20.0 - to);
            let q = (steady * (1.0 + rng.random_range(-0.25..0.25))).max(0.0);
            let h = HourMean {
                heat_kw: q,
                outdoor_c: to,
                indoor_c: ti + rng.random_range(-0.01..0.01),
                solar_w_m2: sun,
            };
            // The truth stepped at a tenth of an hour.
            for _ in 0..10 {
                ti += 0.1 * (q + truth.gain_kw_per_w_m2 * sun - truth.ua_kw_k * (ti - to))
                    / truth.c_kwh_k;
            }
            m.update(&h, ti);
        }
        m
    }

    #[test]
    fn recovers_a_known_building_from_a_wrong_prior() {
        for (seed, tau) in [(1, 25.0), (2, 40.0), (3, 60.0)] {
            let truth = Params {
                c_kwh_k: 12.0 * tau,
                ua_kw_k: 12.0,
                gain_kw_per_w_m2: 0.15,
            };
            // The design prior 20 % off on UA (and so on C).
            let m = identify(truth, 12.0 * 1.2, 21 * 24, seed);
            let p = m.params();
            let rel = |a: f64, b: f64| (a / b - 1.0).abs();
            assert!(rel(p.ua_kw_k, 12.0) < 0.05, "τ {tau}: UA {p:?}");
            assert!(rel(p.tau_h(), tau) < 0.10, "τ {tau}: {} h", p.tau_h());
            assert!(rel(p.gain_kw_per_w_m2, 0.15) < 0.15, "τ {tau}: {p:?}");
            assert!(
                m.rmse_k() < 0.02 && m.skill() > 0.9,
                "{} {}",
                m.rmse_k(),
                m.skill()
            );
            assert_eq!(m.hours, 21 * 24);
        }
    }

    #[test]
    fn the_prior_is_the_design_and_no_data_changes_nothing() {
        let m = BuildingModel::new(10.0, 1000.0);
        let p = m.params();
        assert!((p.ua_kw_k - 10.0).abs() < 1e-9 && (p.tau_h() - PRIOR_TAU_H).abs() < 1e-9);
        let mut n = m.clone();
        let nan = HourMean {
            heat_kw: f64::NAN,
            outdoor_c: 0.0,
            indoor_c: 20.0,
            solar_w_m2: 0.0,
        };
        n.update(&nan, 20.0);
        assert_eq!(n, m);
    }
}
