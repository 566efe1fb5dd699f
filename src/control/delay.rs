//! The water's transport time from the plant to one station, learned from what both report:
//! the lag at which the changes of the plant's supply temperature best match the changes of
//! the station's primary supply temperature.
//!
//! Where it sits: inside the plant loop ([`super::plant`]), which reads its outdoor curve that
//! far ahead. Both series are sampled once a minute (the latest value in each minute) over
//! the last `window` minutes; every quarter of an hour the lag from 0 to `max_lag` minutes
//! with the highest correlation of minute-to-minute changes is taken, if that correlation is
//! clear (≥ 0.5) and the plant's supply moved enough to tell (a steady plant tells nothing).
//! The station followed changes: its history starts again, and the last estimate stands
//! until a new one is clear.

use std::collections::VecDeque;

use crate::model::StationId;

const MINUTE_MS: i64 = 60_000;
/// The least correlation an estimate needs.
const MIN_CORRELATION: f64 = 0.5;
/// The least spread (standard deviation) of the plant's minute-to-minute changes, K.
const MIN_SPREAD_K: f64 = 0.02;

/// The estimator.
#[derive(Debug, Clone)]
pub struct DelayEstimator {
    window: usize,
    max_lag: usize,
    plant: VecDeque<(i64, f64)>,
    station: Option<(StationId, VecDeque<(i64, f64)>)>,
    /// The lag (s) and its correlation, when one was clear.
    estimate: Option<(f64, f64)>,
    fitted_minute: i64,
}

impl DelayEstimator {
    /// Over the last `window` minutes, lags up to `max_lag` minutes.
    pub fn new(window: usize, max_lag: usize) -> Self {
        Self {
            window: window.max(max_lag + 30),
            max_lag,
            plant: VecDeque::new(),
            station: None,
            estimate: None,
            fitted_minute: i64::MIN,
        }
    }

    fn push(series: &mut VecDeque<(i64, f64)>, window: usize, ts_ms: i64, value: f64) {
        let minute = ts_ms.div_euclid(MINUTE_MS);
        match series.back_mut() {
            Some(last) if last.0 == minute => last.1 = value,
            Some(last) if last.0 > minute => {}
            _ => series.push_back((minute, value)),
        }
        while series.len() > window {
            series.pop_front();
        }
    }

    /// The plant's supply at `ts_ms`, °C.
    pub fn plant(&mut self, ts_ms: i64, supply_c: f64) {
        if supply_c.is_finite() {
            Self::push(&mut self.plant, self.window, ts_ms, supply_c);
        }
    }

    /// Station `id`'s primary supply at `ts_ms`, °C (another station than the last one
    /// starts its history again).
    pub fn station(&mut self, id: &StationId, ts_ms: i64, primary_c: f64) {
        if !primary_c.is_finite() {
            return;
        }
        if self.station.as_ref().is_none_or(|(s, _)| s != id) {
            self.station = Some((id.clone(), VecDeque::new()));
        }
        if let Some((_, series)) = &mut self.station {
            Self::push(series, self.window, ts_ms, primary_c);
        }
    }

    /// The transport time (s) and how clearly it shows (correlation), refitted at most every
    /// quarter of an hour; `None` until one is clear.
    pub fn estimate(&mut self, now_ms: i64) -> Option<(f64, f64)> {
        let minute = now_ms.div_euclid(MINUTE_MS);
        if minute.saturating_sub(self.fitted_minute) >= 15 {
            self.fitted_minute = minute;
            if let Some(e) = self.fit() {
                self.estimate = Some(e);
            }
        }
        self.estimate
    }

    /// Both series on one minute grid (held over missing minutes), their changes, and the
    /// best lag.
    fn fit(&self) -> Option<(f64, f64)> {
        let (_, station) = self.station.as_ref()?;
        let start = self.plant.front()?.0.max(station.front()?.0);
        let end = self.plant.back()?.0.min(station.back()?.0);
        let n = usize::try_from(end - start).ok()? + 1;
        if n < self.max_lag + 30 {
            return None;
        }
        let grid = |s: &VecDeque<(i64, f64)>| -> Vec<f64> {
            let mut out = Vec::with_capacity(n);
            let mut k = 0;
            let mut last = s.iter().find(|(m, _)| *m <= start).map_or(s[0].1, |x| x.1);
            for m in start..=end {
                while k < s.len() && s[k].0 <= m {
                    last = s[k].1;
                    k += 1;
                }
                out.push(last);
            }
            out
        };
        let diff = |v: Vec<f64>| -> Vec<f64> { v.windows(2).map(|w| w[1] - w[0]).collect() };
        let (p, s) = (diff(grid(&self.plant)), diff(grid(station)));
        let spread = {
            let mean = p.iter().sum::<f64>() / p.len() as f64;
            (p.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / p.len() as f64).sqrt()
        };
        if spread < MIN_SPREAD_K {
            return None;
        }
        let mut best: Option<(usize, f64)> = None;
        for lag in 0..=self.max_lag {
            let a = &p[..p.len() - lag];
            let b = &s[lag..];
            let r = correlation(a, b);
            if best.is_none_or(|(_, c)| r > c) {
                best = Some((lag, r));
            }
        }
        let (lag, r) = best?;
        (r >= MIN_CORRELATION).then_some((lag as f64 * 60.0, r))
    }
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    if n < 2 {
        return 0.0;
    }
    let (ma, mb) = (
        a[..n].iter().sum::<f64>() / n as f64,
        b[..n].iter().sum::<f64>() / n as f64,
    );
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for k in 0..n {
        let (x, y) = (a[k] - ma, b[k] - mb);
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    if saa <= 0.0 || sbb <= 0.0 {
        0.0
    } else {
        sab / (saa * sbb).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plant's supply: a daily swing and a few ramps of the loop, with sensor noise.
    fn plant_c(minute: i64) -> f64 {
        let m = minute as f64;
        let noise = ((minute * 7919) % 13) as f64 * 0.01;
        90.0 + 6.0 * (m / 1440.0 * std::f64::consts::TAU).sin()
            + 3.0 * ((m / 97.0).sin()).signum()
            + noise
    }

    #[test]
    fn a_station_that_follows_the_plant_47_minutes_later_gives_47_minutes() {
        let mut e = DelayEstimator::new(720, 240);
        let st = StationId::new("st-007").unwrap();
        let mut last = None;
        for minute in 0..900 {
            let ts = minute * MINUTE_MS;
            e.plant(ts, plant_c(minute));
            // 2.5 K lost on the way, and the station's own sensor noise.
            let noise = ((minute * 104_729) % 11) as f64 * 0.01;
            e.station(&st, ts, plant_c(minute - 47) - 2.5 + noise);
            last = e.estimate(ts);
        }
        let (lag_s, r) = last.expect("a clear lag");
        assert!((lag_s - 47.0 * 60.0).abs() <= 60.0, "{lag_s} s (r {r})");
        assert!(r > 0.8, "{r}");
    }

    #[test]
    fn a_steady_plant_tells_nothing_and_a_new_station_starts_again() {
        let mut e = DelayEstimator::new(720, 240);
        let (a, b) = (StationId::new("a").unwrap(), StationId::new("b").unwrap());
        for minute in 0..900 {
            let ts = minute * MINUTE_MS;
            e.plant(ts, 90.0);
            e.station(&a, ts, 88.0);
            assert_eq!(e.estimate(ts), None);
        }
        // A moving plant and station a following it 20 minutes later: an estimate; then the
        // critical station changes to b, whose history is too short to refit yet: the last
        // estimate stands.
        for minute in 900..1800 {
            let ts = minute * MINUTE_MS;
            e.plant(ts, plant_c(minute));
            e.station(&a, ts, plant_c(minute - 20) - 1.0);
            e.estimate(ts);
        }
        let before = e.estimate(1800 * MINUTE_MS).unwrap();
        assert!((before.0 - 1200.0).abs() <= 60.0, "{before:?}");
        e.station(&b, 1801 * MINUTE_MS, 80.0);
        assert_eq!(e.estimate(1820 * MINUTE_MS), Some(before));
    }
}
