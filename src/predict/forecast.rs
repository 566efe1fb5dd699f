//! The weather forecast the predictive layer plans on: decoded from the retained
//! `heating/weather/forecast` message, checked, and judged fresh or stale.
//!
//! Where it sits: ingest decodes it into the shared weather state; the control task hands it to
//! each station's [`super::Predictor`] on every tick. A forecast that is too old, or that does not
//! reach far enough ahead, is stale: the predictor then says so and leaves the station on its
//! curve.

use serde::Deserialize;

/// The outdoor temperatures a forecast may carry, °C (what weather can be, not a sensor's
/// range).
const OUTDOOR_MIN_C: f64 = -60.0;
const OUTDOOR_MAX_C: f64 = 60.0;

/// One forecast hour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub ts_ms: i64,
    pub outdoor_c: f64,
    /// Global horizontal irradiance, W/m² (0 when the source gives none).
    pub solar_w_m2: f64,
    pub wind_m_s: Option<f64>,
}

/// A forecast: its points in time order, and when it arrived (engine clock, ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    pub received_ms: i64,
    pub points: Vec<Point>,
}

/// Why a forecast message was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForecastError {
    #[error("forecast is not a JSON list of {{ts, outdoor_temp_c}} objects: {0}")]
    NotJson(String),
    #[error("forecast has {0} points; 2 to 240 are accepted")]
    Length(usize),
    #[error("forecast point {0}: {1}")]
    Point(usize, &'static str),
}

#[derive(Deserialize)]
struct RawPoint {
    ts: i64,
    outdoor_temp_c: f64,
    #[serde(default)]
    solar_w_m2: Option<f64>,
    #[serde(default)]
    wind_m_s: Option<f64>,
}

/// Freshness of a forecast at some instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Freshness {
    Fresh,
    /// None has arrived.
    Missing,
    /// Arrived longer ago than the limit allows (age, h).
    TooOld(f64),
    /// Does not reach the horizon the plan needs (hours it still covers).
    TooShort(f64),
}

impl Freshness {
    pub fn describe(&self) -> String {
        match self {
            Freshness::Fresh => "fresh".into(),
            Freshness::Missing => "no forecast received".into(),
            Freshness::TooOld(h) => format!("forecast is {h:.1} h old"),
            Freshness::TooShort(h) => format!("forecast covers only {h:.1} h ahead"),
        }
    }
}

impl Forecast {
    /// Decodes a forecast message received at `now_ms`: 2–240 points, times strictly
    /// increasing and at most 3 h apart, every value finite and physical (outdoor −60…60 °C,
    /// solar 0…1,500 W/m², wind 0…80 m/s).
    pub fn decode(payload: &[u8], now_ms: i64) -> Result<Self, ForecastError> {
        let raw: Vec<RawPoint> =
            serde_json::from_slice(payload).map_err(|e| ForecastError::NotJson(e.to_string()))?;
        if !(2..=240).contains(&raw.len()) {
            return Err(ForecastError::Length(raw.len()));
        }
        let mut points = Vec::with_capacity(raw.len());
        for (i, p) in raw.into_iter().enumerate() {
            if !(OUTDOOR_MIN_C..=OUTDOOR_MAX_C).contains(&p.outdoor_temp_c) {
                return Err(ForecastError::Point(i, "outdoor_temp_c out of range"));
            }
            let solar = p.solar_w_m2.unwrap_or(0.0);
            if !(0.0..=1500.0).contains(&solar) {
                return Err(ForecastError::Point(i, "solar_w_m2 outside 0..1500"));
            }
            if p.wind_m_s.is_some_and(|w| !(0.0..=80.0).contains(&w)) {
                return Err(ForecastError::Point(i, "wind_m_s outside 0..80"));
            }
            if let Some(prev) = points.last().map(|q: &Point| q.ts_ms) {
                if p.ts <= prev || p.ts - prev > 3 * 3_600_000 {
                    return Err(ForecastError::Point(
                        i,
                        "ts must increase, by at most 3 h per point",
                    ));
                }
            }
            points.push(Point {
                ts_ms: p.ts,
                outdoor_c: p.outdoor_temp_c,
                solar_w_m2: solar,
                wind_m_s: p.wind_m_s,
            });
        }
        Ok(Self {
            received_ms: now_ms,
            points,
        })
    }

    /// Whether the forecast can be planned on at `now_ms`: received at most `max_age_ms` ago
    /// and reaching at least `horizon_ms` beyond now.
    pub fn freshness(
        this: Option<&Self>,
        now_ms: i64,
        max_age_ms: i64,
        horizon_ms: i64,
    ) -> Freshness {
        let Some(f) = this else {
            return Freshness::Missing;
        };
        let age = now_ms - f.received_ms;
        if age > max_age_ms {
            return Freshness::TooOld(age as f64 / 3.6e6);
        }
        let last = f.points.last().map_or(now_ms, |p| p.ts_ms);
        if last - now_ms < horizon_ms {
            return Freshness::TooShort((last - now_ms) as f64 / 3.6e6);
        }
        Freshness::Fresh
    }

    /// The forecast with its times multiplied by `k` (the plant's clock when it runs `k`
    /// times faster than the wall clock).
    pub fn scaled(&self, k: f64) -> Self {
        let at = |t: i64| (t as f64 * k) as i64;
        Self {
            received_ms: at(self.received_ms),
            points: self
                .points
                .iter()
                .map(|p| Point {
                    ts_ms: at(p.ts_ms),
                    ..*p
                })
                .collect(),
        }
    }

    /// (outdoor °C, solar W/m²) at `ts_ms`, linear between points and held beyond the ends.
    pub fn at(&self, ts_ms: i64) -> (f64, f64) {
        let p = &self.points;
        let (first, last) = (p[0], p[p.len() - 1]);
        if ts_ms <= first.ts_ms {
            return (first.outdoor_c, first.solar_w_m2);
        }
        if ts_ms >= last.ts_ms {
            return (last.outdoor_c, last.solar_w_m2);
        }
        let k = p.partition_point(|q| q.ts_ms <= ts_ms).max(1);
        let (a, b) = (p[k - 1], p[k]);
        let w = (ts_ms - a.ts_ms) as f64 / (b.ts_ms - a.ts_ms) as f64;
        (
            a.outdoor_c + w * (b.outdoor_c - a.outdoor_c),
            a.solar_w_m2 + w * (b.solar_w_m2 - a.solar_w_m2),
        )
    }

    /// The mean (outdoor, solar) of each of the `hours` hours from `from_ms` (four samples per
    /// hour).
    pub fn hourly(&self, from_ms: i64, hours: usize) -> Vec<(f64, f64)> {
        (0..hours)
            .map(|h| {
                let (mut o, mut s) = (0.0, 0.0);
                for q in 0..4 {
                    let (a, b) = self.at(from_ms + h as i64 * 3_600_000 + q * 900_000 + 450_000);
                    o += a / 4.0;
                    s += b / 4.0;
                }
                (o, s)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_768_435_200_000;

    fn payload(n: usize) -> String {
        let pts: Vec<String> = (0..n)
            .map(|h| {
                format!(
                    r#"{{"ts": {}, "outdoor_temp_c": {}, "solar_w_m2": {}}}"#,
                    T0 + h as i64 * 3_600_000,
                    -5.0 + h as f64,
                    if h == 1 { 100.0 } else { 0.0 }
                )
            })
            .collect();
        format!("[{}]", pts.join(","))
    }

    #[test]
    fn decodes_interpolates_and_averages_hours() {
        let f = Forecast::decode(payload(48).as_bytes(), T0).unwrap();
        assert_eq!(f.points.len(), 48);
        assert_eq!(f.at(T0 - 1), (-5.0, 0.0));
        assert_eq!(f.at(T0 + 1_800_000), (-4.5, 50.0));
        assert_eq!(f.at(T0 + 100 * 3_600_000).0, 42.0);
        // Hour 0 runs from −5 to −4 °C: its mean is −4.5.
        let h = f.hourly(T0, 2);
        assert!(
            (h[0].0 + 4.5).abs() < 1e-9 && (h[0].1 - 50.0).abs() < 1e-9,
            "{h:?}"
        );
    }

    #[test]
    fn refuses_what_is_not_a_forecast() {
        let bad = |s: &str| Forecast::decode(s.as_bytes(), T0).unwrap_err();
        assert!(matches!(bad("{}"), ForecastError::NotJson(_)));
        assert!(matches!(bad("[]"), ForecastError::Length(0)));
        let p = |ts: i64, t: f64| format!(r#"{{"ts": {ts}, "outdoor_temp_c": {t}}}"#);
        assert!(matches!(
            bad(&format!("[{},{}]", p(T0, -5.0), p(T0, -5.0))),
            ForecastError::Point(1, _)
        ));
        assert!(matches!(
            bad(&format!("[{},{}]", p(T0, -5.0), p(T0 + 1, 300.0))),
            ForecastError::Point(1, _)
        ));
        let sun = format!(
            r#"[{},{{"ts": {}, "outdoor_temp_c": 1, "solar_w_m2": -3}}]"#,
            p(T0, 0.0),
            T0 + 3_600_000
        );
        assert!(matches!(bad(&sun), ForecastError::Point(1, _)));
    }

    #[test]
    fn a_forecast_is_stale_when_old_or_short() {
        let f = Forecast::decode(payload(30).as_bytes(), T0).unwrap();
        let h = 3_600_000;
        let fresh = |now: i64| Forecast::freshness(Some(&f), now, 6 * h, 24 * h);
        assert_eq!(fresh(T0), Freshness::Fresh);
        // 29 h of points: 5 h on, only 24 h remain; 6 h on, 23 h.
        assert_eq!(fresh(T0 + 5 * h), Freshness::Fresh);
        assert_eq!(fresh(T0 + 6 * h), Freshness::TooShort(23.0));
        assert!(matches!(fresh(T0 + 7 * h), Freshness::TooOld(_)));
        assert_eq!(Forecast::freshness(None, T0, h, h), Freshness::Missing);
    }
}
