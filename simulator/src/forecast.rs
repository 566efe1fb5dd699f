//! Weather forecasts the simulator issues from its own weather, with a configurable error:
//! what a forecast service would publish on `heating/weather/forecast`.
//!
//! The error has a bias and a random walk that grows with lead time (its standard deviation
//! reaches `sigma_24h_k` at 24 h, as the error of a day-ahead temperature forecast does); the
//! irradiance is off by a relative error that grows the same way. Each issue draws its own
//! error from the seed and the issue hour, so runs are reproducible.

use rand::{Rng, SeedableRng};
use serde::Serialize;

/// How wrong the forecasts are.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ForecastError {
    /// Added to every forecast temperature, K.
    pub bias_k: f64,
    /// Standard deviation of the temperature error at 24 h lead, K (growing as √lead).
    pub sigma_24h_k: f64,
    /// Relative standard deviation of the irradiance at 24 h lead.
    pub solar_sigma_24h: f64,
}

impl ForecastError {
    /// The weather exactly as it will be.
    pub const EXACT: Self = Self {
        bias_k: 0.0,
        sigma_24h_k: 0.0,
        solar_sigma_24h: 0.0,
    };

    /// A day-ahead forecast as good as a national weather service's: σ 1.5 K at 24 h, the sun
    /// ±40 % at 24 h, no bias.
    pub const REALISTIC: Self = Self {
        bias_k: 0.0,
        sigma_24h_k: 1.5,
        solar_sigma_24h: 0.4,
    };
}

/// One forecast point: seconds from the run's start, outdoor °C, irradiance W/m².
pub type Point = (f64, f64, f64);

/// A forecast issued at `t_issue_s` of the weather `weather(t) = (outdoor °C, W/m²)`: a point
/// every hour from the issue's hour for `hours` hours (so `hours + 1` points).
pub fn issue(
    weather: impl Fn(f64) -> (f64, f64),
    t_issue_s: f64,
    hours: usize,
    err: &ForecastError,
    seed: u64,
) -> Vec<Point> {
    let first = (t_issue_s / 3600.0).floor();
    let mut rng =
        rand::rngs::StdRng::seed_from_u64(seed ^ (first as i64 as u64).wrapping_mul(0x9e37_79b9));
    let step = err.sigma_24h_k / 24f64.sqrt();
    let sun_step = err.solar_sigma_24h / 24f64.sqrt();
    let (mut walk, mut sun_walk) = (0.0, 0.0);
    (0..=hours)
        .map(|k| {
            let t = (first + k as f64) * 3600.0;
            let lead_h = ((t - t_issue_s) / 3600.0).max(0.0);
            if k > 0 && lead_h > 0.0 {
                walk += step * normal(&mut rng);
                sun_walk += sun_step * normal(&mut rng);
            }
            let (o, s) = weather(t);
            (t, o + err.bias_k + walk, (s * (1.0 + sun_walk)).max(0.0))
        })
        .collect()
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    let v: f64 = rng.random_range(0.0..1.0);
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// The forecast as the contract's JSON list, `ts_of(t)` giving each point's Unix ms.
pub fn to_json(points: &[Point], ts_of: impl Fn(f64) -> i64) -> String {
    let items: Vec<String> = points
        .iter()
        .map(|(t, o, s)| {
            format!(
                r#"{{"ts":{},"outdoor_temp_c":{:.2},"solar_w_m2":{:.1}}}"#,
                ts_of(*t),
                o,
                s
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_is_the_weather_and_the_error_grows_with_lead_time() {
        let weather = |t: f64| (-5.0 + t / 36_000.0, 100.0);
        let exact = issue(weather, 1800.0, 36, &ForecastError::EXACT, 1);
        assert_eq!(exact.len(), 37);
        assert_eq!(exact[0].0, 0.0);
        for (t, o, s) in &exact {
            assert_eq!((*o, *s), weather(*t));
        }
        // Over many issues, the error at 24 h has σ ≈ 1.5 K and at 3 h much less.
        let (mut e3, mut e24) = (0.0, 0.0);
        let n = 400;
        for i in 0..n {
            let f = issue(weather, i as f64 * 3600.0, 36, &ForecastError::REALISTIC, 7);
            e3 += (f[3].1 - weather(f[3].0).0).powi(2) / n as f64;
            e24 += (f[24].1 - weather(f[24].0).0).powi(2) / n as f64;
            assert!(f.iter().all(|p| p.2 >= 0.0));
        }
        assert!((e24.sqrt() - 1.5).abs() < 0.25, "{}", e24.sqrt());
        assert!(e3.sqrt() < 0.8, "{}", e3.sqrt());
        // Same seed and hour, same forecast.
        assert_eq!(
            issue(weather, 7200.0, 24, &ForecastError::REALISTIC, 3),
            issue(weather, 7300.0, 24, &ForecastError::REALISTIC, 3)
        );
        let json = to_json(&exact[..2], |t| 1_000 + (t * 1000.0) as i64);
        assert_eq!(
            json,
            r#"[{"ts":1000,"outdoor_temp_c":-5.00,"solar_w_m2":100.0},{"ts":3601000,"outdoor_temp_c":-4.90,"solar_w_m2":100.0}]"#
        );
    }
}
