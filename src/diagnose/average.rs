//! The running averages the detectors judge a station by: [`Avg`] (a slow "how it was" and
//! a fast "how it is") and [`Banded`] (a figure's usual value per band of weather).
//!
//! Where it sits: kept in each station's [`super::detect::Health`], updated once per closed
//! hour by the detectors. The slow averages stop learning while the fast ones are off, so a
//! fault that develops over days is never learnt as the station's normal.

use super::kinds::Settings;

/// A slow and a fast average of one figure (exponential, per hour).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Avg {
    pub slow: Option<f64>,
    pub fast: Option<f64>,
}

impl Avg {
    /// Takes the hour's value; the slow average only while `learn` and while the fast one
    /// is within `hold` (relative) of it: a figure that starts to move is not learnt until it
    /// is judged.
    pub(super) fn update(&mut self, x: Option<f64>, s: &Settings, learn: bool, hold: f64) {
        let learn = learn && self.change().is_none_or(|c| c.abs() < hold);
        let Some(x) = x.filter(|x| x.is_finite()) else {
            return;
        };
        let ewma = |a: &mut Option<f64>, h: f64| {
            *a = Some(match *a {
                None => x,
                Some(v) => v + (x - v) / h.max(1.0),
            })
        };
        ewma(&mut self.fast, s.fast_h);
        if learn || self.slow.is_none() {
            ewma(&mut self.slow, s.slow_h);
        }
    }

    /// fast / slow − 1, when both are known and slow is not ~0.
    pub(super) fn change(&self) -> Option<f64> {
        match (self.slow, self.fast) {
            (Some(s), Some(f)) if s.abs() > 1e-9 => Some(f / s - 1.0),
            _ => None,
        }
    }
}

/// A figure that depends on the weather: its usual value per 4 K band of outdoor temperature
/// (learnt), and how far the last hours are from the usual of theirs (a fast average of
/// value / usual − 1). A change of weather moves the figure along its usual curve, not off it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Banded {
    /// Per band from −24 °C up: (usual value, hours learnt in it).
    pub usual: [(f64, u32); 10],
    pub off: Option<f64>,
}

impl Banded {
    fn band(outdoor_c: f64) -> usize {
        ((outdoor_c + 24.0) / 4.0).floor().clamp(0.0, 9.0) as usize
    }

    /// The usual value at `outdoor_c`: its band's, else a line through the nearest learnt
    /// bands (a weather not seen yet is judged against the station's trend, not learnt blind).
    fn usual_at(&self, outdoor_c: f64) -> Option<f64> {
        let b = Self::band(outdoor_c);
        if self.usual[b].1 > 0 {
            return Some(self.usual[b].0);
        }
        let learnt: Vec<(f64, f64)> = (0..self.usual.len())
            .filter(|&k| self.usual[k].1 > 0)
            .map(|k| (k as f64, self.usual[k].0))
            .collect();
        let x = b as f64;
        let below = learnt.iter().rev().find(|p| p.0 < x).copied();
        let above = learnt.iter().find(|p| p.0 > x).copied();
        let (p, q) = match (below, above) {
            (Some(p), Some(q)) => (p, q),
            (Some(q), None) => (*learnt.get(learnt.len().checked_sub(2)?)?, q),
            (None, Some(p)) => (p, *learnt.get(1)?),
            (None, None) => return None,
        };
        if (q.0 - p.0).abs() < 0.5 {
            return Some(p.1);
        }
        Some(p.1 + (q.1 - p.1) * (x - p.0) / (q.0 - p.0))
    }

    /// Takes the hour's value at `outdoor_c`; learns it into its band while `learn` and the
    /// station is not off by `hold` (relative).
    pub(super) fn update(
        &mut self,
        x: Option<f64>,
        outdoor_c: Option<f64>,
        s: &Settings,
        learn: bool,
        hold: f64,
    ) {
        let (Some(x), Some(o)) = (x.filter(|x| x.is_finite()), outdoor_c) else {
            return;
        };
        if let Some(u) = self.usual_at(o).filter(|u| u.abs() > 1e-9) {
            let r = x / u - 1.0;
            self.off = Some(match self.off {
                None => r,
                Some(v) => v + (r - v) / s.fast_h.max(1.0),
            });
        }
        let steady = self.off.is_none_or(|f| f.abs() < hold);
        let nothing_learnt = self.usual.iter().all(|b| b.1 == 0);
        let band = &mut self.usual[Self::band(o)];
        if (learn && steady) || nothing_learnt {
            band.1 += 1;
            // The band's mean over its first hours, then a slow average.
            band.0 += (x - band.0) / f64::from(band.1).min(s.slow_h.max(1.0));
        }
    }

    /// value / usual − 1 over the last hours, once a band has been learnt for a day.
    pub(super) fn change(&self) -> Option<f64> {
        let learnt: u32 = self.usual.iter().map(|b| b.1).sum();
        self.off.filter(|_| learnt >= 24)
    }
}
