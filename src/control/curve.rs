//! Heating curve (weather compensation): outdoor temperature → secondary supply setpoint.
//!
//! First step of the per-station controller in [`super::station`]. Piecewise linear between
//! configured points, flat beyond the first and last point. The default is the Chinese
//! quality-regulation curve for a 60/45 °C secondary at −10 °C design outdoor and 18 °C indoor
//! (`domain.md` §2.1).

/// Default points (outdoor °C, supply °C): quality regulation, 60/45 °C at −10 °C, b = 0.3.
pub const DEFAULT_POINTS: &[(f64, f64)] = &[
    (-10.0, 60.0),
    (-5.0, 53.8),
    (0.0, 47.4),
    (5.0, 40.6),
    (10.0, 33.3),
];

/// A validated piecewise-linear curve.
/// Why a heating curve was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CurveError {
    #[error("a heating curve needs at least two [outdoor_c, supply_c] points")]
    TooFew,
    #[error("heating curve points must be finite numbers")]
    NotFinite,
    #[error("heating curve points must be sorted by strictly increasing outdoor temperature")]
    NotIncreasing,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    points: Vec<(f64, f64)>,
}

impl Curve {
    /// At least two points, finite, strictly increasing in outdoor temperature.
    pub fn new(points: Vec<(f64, f64)>) -> Result<Self, CurveError> {
        if points.len() < 2 {
            return Err(CurveError::TooFew);
        }
        if points.iter().any(|(o, s)| !o.is_finite() || !s.is_finite()) {
            return Err(CurveError::NotFinite);
        }
        if points.windows(2).any(|w| w[1].0 <= w[0].0) {
            return Err(CurveError::NotIncreasing);
        }
        Ok(Self { points })
    }

    pub fn points(&self) -> &[(f64, f64)] {
        &self.points
    }

    /// Supply setpoint for `outdoor_c`.
    pub fn supply_c(&self, outdoor_c: f64) -> f64 {
        let first = self.points[0];
        let last = self.points[self.points.len() - 1];
        if outdoor_c <= first.0 {
            return first.1;
        }
        if outdoor_c >= last.0 {
            return last.1;
        }
        for w in self.points.windows(2) {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            if outdoor_c <= x1 {
                return y0 + (y1 - y0) * (outdoor_c - x0) / (x1 - x0);
            }
        }
        last.1
    }
}

impl Default for Curve {
    fn default() -> Self {
        Self {
            points: DEFAULT_POINTS.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_curve_reproduces_the_quality_regulation_table() {
        let c = Curve::default();
        for (o, s) in DEFAULT_POINTS {
            assert_eq!(c.supply_c(*o), *s);
        }
        assert!((c.supply_c(-7.5) - 56.9).abs() < 1e-9);
        assert_eq!(c.supply_c(-25.0), 60.0);
        assert_eq!(c.supply_c(20.0), 33.3);
    }

    #[test]
    fn invalid_curves_are_refused() {
        assert!(Curve::new(vec![(0.0, 50.0)]).is_err());
        assert!(Curve::new(vec![(0.0, 50.0), (0.0, 40.0)]).is_err());
        assert!(Curve::new(vec![(5.0, 50.0), (0.0, 40.0)]).is_err());
        assert!(Curve::new(vec![(0.0, f64::NAN), (5.0, 40.0)]).is_err());
    }
}
