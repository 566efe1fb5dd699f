//! The predictive optimiser: a station's heat, hour by hour over the horizon, that keeps the
//! indoor temperature within the comfort band for the least heat plus a penalty on its peak.
//!
//! Where it sits: called by each station's [`super::Predictor`] with what its building model
//! learned and the forecast; the first hour of the plan becomes the station's target.
//!
//! Why not a general MPC: with a 1R1C building the problem is a small linear programme whose
//! solution has a known shape. Losses grow with the indoor temperature, so for a given cap on
//! the hourly heat the cheapest plan heats as late and as little as it can: a backward pass
//! finds, for every hour, the lowest indoor temperature from which the comfort floor can still
//! be held until the horizon with at most the cap (pre-heating ahead of a cold morning or a
//! setback's end appears exactly there), and a forward pass heats just enough to stay above
//! it. The cap is then chosen by a one-dimensional search on heat + the peak penalty.
//!
//! The peak penalty counts only what the plan's peak hour exceeds a reference — the station's
//! highest hourly heat of the past week: the district's production peak is set in the cold
//! spells, so pre-heating pays when a colder night than any of late is coming, and is wasted
//! heat (a warmer building loses more) on every ordinary night.
//! Exact for the model, a few microseconds per station, and easy to explain and to check.

use super::model::Params;

/// One hour of the horizon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hour {
    pub outdoor_c: f64,
    pub solar_w_m2: f64,
    /// The comfort floor at the end of the hour, °C (lower in a setback).
    pub floor_c: f64,
    /// The most heat the station can deliver in the hour, kW.
    pub max_kw: f64,
}

/// What a kW at the plan's peak costs: `weight_h` kWh of heat for every kW above `above_kw`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    pub weight_h: f64,
    pub above_kw: f64,
}

/// A plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Heat per hour, kW (each within 0 and the hour's maximum).
    pub heat_kw: Vec<f64>,
    /// Indoor temperature at the start of every hour and at the end, °C.
    pub indoor_c: Vec<f64>,
    /// The cap chosen, kW.
    pub cap_kw: f64,
    /// Degree-hours below the floor the model foresees (0 when the floor can be held).
    pub shortfall_kh: f64,
}

/// Plans from indoor `indoor_c` over `hours` with model `m`. `ceiling_c` is the comfort band's
/// top (heat is never planned to push above it; the sun may).
pub fn plan(m: &Params, indoor_c: f64, hours: &[Hour], ceiling_c: f64, peak: Peak) -> Plan {
    let unlimited = lazy(m, indoor_c, hours, f64::INFINITY, ceiling_c);
    let top_of = |p: &Plan| p.heat_kw.iter().fold(0.0f64, |a, q| a.max(*q));
    let top = top_of(&unlimited);
    let cost = |p: &Plan| {
        // Comfort comes first: a shortfall of a millikelvin-hour outweighs a kWh of heat.
        p.heat_kw.iter().sum::<f64>()
            + peak.weight_h.max(0.0) * (top_of(p) - peak.above_kw).max(0.0)
            + 1e6 * p.shortfall_kh
    };
    if top <= peak.above_kw.max(0.0) || peak.weight_h <= 0.0 {
        return unlimited;
    }
    // A scan of the caps between half the unlimited peak and it, then a golden-section search
    // in the best one's bracket (the cost is not convex everywhere: a shortfall appears
    // abruptly below the cap the floor needs).
    let at = |cap: f64| {
        let p = lazy(m, indoor_c, hours, cap, ceiling_c);
        (cost(&p), p)
    };
    let n = 16;
    let caps: Vec<f64> = (0..=n)
        .map(|k| top * (0.5 + 0.5 * k as f64 / n as f64))
        .collect();
    let k_best = caps
        .iter()
        .map(|c| at(*c).0)
        .enumerate()
        .fold(
            (0, f64::INFINITY),
            |b, (k, c)| if c < b.1 { (k, c) } else { b },
        )
        .0;
    let (mut lo, mut hi) = (caps[k_best.saturating_sub(1)], caps[(k_best + 1).min(n)]);
    let g = 0.618_033_988_75;
    let (mut x1, mut x2) = (hi - g * (hi - lo), lo + g * (hi - lo));
    let (mut f1, mut f2) = (at(x1), at(x2));
    for _ in 0..16 {
        if f1.0 <= f2.0 {
            hi = x2;
            x2 = x1;
            f2 = f1;
            x1 = hi - g * (hi - lo);
            f1 = at(x1);
        } else {
            lo = x1;
            x1 = x2;
            f1 = f2;
            x2 = lo + g * (hi - lo);
            f2 = at(x2);
        }
    }
    let best = if f1.0 <= f2.0 { f1 } else { f2 };
    if best.0 < cost(&unlimited) {
        best.1
    } else {
        unlimited
    }
}

/// The cheapest plan with at most `cap` kW in any hour: backward, the lowest start of every
/// hour that keeps the floor until the horizon; forward, just enough heat to stay above it.
fn lazy(m: &Params, indoor_c: f64, hours: &[Hour], cap: f64, ceiling_c: f64) -> Plan {
    let n = hours.len();
    let a = (m.ua_kw_k / m.c_kwh_k).clamp(0.0, 1.0); // per hour
    let gain = |h: &Hour| m.gain_kw_per_w_m2 * h.solar_w_m2;
    let limit = |h: &Hour| h.max_kw.max(0.0).min(cap);
    // next = ti·(1 − a) + a·to + (q + gains)/C
    let step =
        |ti: f64, h: &Hour, q: f64| ti * (1.0 - a) + a * h.outdoor_c + (q + gain(h)) / m.c_kwh_k;
    let mut need = vec![f64::NEG_INFINITY; n + 1];
    for k in (0..n).rev() {
        let h = &hours[k];
        let at_end = need[k + 1].max(h.floor_c);
        let from =
            (at_end - a * h.outdoor_c - (limit(h) + gain(h)) / m.c_kwh_k) / (1.0 - a).max(1e-9);
        need[k] = from;
    }
    let mut ti = indoor_c;
    let (mut heat, mut indoor, mut shortfall) = (Vec::with_capacity(n), vec![ti], 0.0);
    for (k, h) in hours.iter().enumerate() {
        let want = need[k + 1].max(h.floor_c).min(ceiling_c.max(h.floor_c));
        let q = ((want - step(ti, h, 0.0)) * m.c_kwh_k).clamp(0.0, limit(h));
        ti = step(ti, h, q);
        shortfall += (h.floor_c - ti).max(0.0);
        heat.push(q);
        indoor.push(ti);
    }
    Plan {
        heat_kw: heat,
        indoor_c: indoor,
        cap_kw: cap.min(hours.iter().map(|h| h.max_kw).fold(0.0, f64::max)),
        shortfall_kh: shortfall,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NONE: Peak = Peak {
        weight_h: 0.0,
        above_kw: 0.0,
    };

    fn at(weight_h: f64, above_kw: f64) -> Peak {
        Peak { weight_h, above_kw }
    }

    fn building() -> Params {
        Params {
            c_kwh_k: 400.0,
            ua_kw_k: 10.0,
            gain_kw_per_w_m2: 0.2,
        }
    }

    fn day(mean: f64, floor: f64) -> Vec<Hour> {
        (0..36)
            .map(|k| Hour {
                outdoor_c: mean + 4.0 * (2.0 * std::f64::consts::PI * k as f64 / 24.0).cos(),
                solar_w_m2: 0.0,
                floor_c: floor,
                max_kw: 600.0,
            })
            .collect()
    }

    #[test]
    fn without_a_peak_penalty_it_holds_the_floor_with_the_steady_heat() {
        let hours = day(-5.0, 20.0);
        let p = plan(&building(), 20.0, &hours, 22.0, NONE);
        for (k, h) in hours.iter().enumerate() {
            // Exactly the loss at the floor (the model is exact, the start is on the floor).
            let ti = p.indoor_c[k];
            let loss = 10.0 * (ti - h.outdoor_c);
            assert!(
                (p.indoor_c[k + 1] - 20.0).abs() < 1e-9,
                "{k}: {}",
                p.indoor_c[k + 1]
            );
            assert!(p.heat_kw[k] > 0.9 * loss - 10.0);
        }
        assert_eq!(p.shortfall_kh, 0.0);
    }

    #[test]
    fn a_peak_penalty_preheats_before_the_cold_morning_and_lowers_the_peak() {
        let hours = day(-5.0, 20.0);
        let flat = plan(&building(), 20.0, &hours, 22.0, NONE);
        let shaved = plan(&building(), 20.0, &hours, 22.0, at(12.0, 0.0));
        // Only the peak above a reference costs: one above the unlimited plan's changes nothing.
        assert_eq!(plan(&building(), 20.0, &hours, 22.0, at(12.0, 400.0)), flat);
        let peak = |p: &Plan| p.heat_kw.iter().fold(0.0f64, |a, q| a.max(*q));
        assert!(
            peak(&shaved) < 0.9 * peak(&flat),
            "{} vs {}",
            peak(&shaved),
            peak(&flat)
        );
        // Bought with a little more heat, the indoor above the floor before the cold hours.
        let sum = |p: &Plan| p.heat_kw.iter().sum::<f64>();
        assert!(sum(&shaved) > sum(&flat) && sum(&shaved) < 1.02 * sum(&flat));
        assert!(shaved.indoor_c.iter().skip(1).all(|t| *t >= 20.0 - 1e-6));
        assert!(shaved.indoor_c.iter().any(|t| *t > 20.2));
    }

    #[test]
    fn forecast_sun_lowers_the_heat_before_it_and_a_setback_recovers_in_time() {
        let mut sunny = day(0.0, 20.0);
        for h in &mut sunny[17..25] {
            h.solar_w_m2 = 400.0;
        }
        let dull = plan(&building(), 20.0, &day(0.0, 20.0), 22.0, NONE);
        let bright = plan(&building(), 20.0, &sunny, 22.0, NONE);
        let sum = |p: &Plan| p.heat_kw.iter().sum::<f64>();
        // 8 h × 80 kW of free heat: most of it replaces network heat.
        assert!(
            sum(&dull) - sum(&bright) > 0.8 * 8.0 * 80.0,
            "{} vs {}",
            sum(&dull),
            sum(&bright)
        );
        // Setback to 17 °C from 22:00 to 06:00 (the hours ending 23:00..06:00 are 7..15),
        // 20 °C again at 06:00.
        let mut setback = day(0.0, 20.0);
        for h in &mut setback[7..14] {
            h.floor_c = 17.0;
        }
        let s = plan(&building(), 20.0, &setback, 22.0, NONE);
        assert!(sum(&s) < sum(&dull));
        assert!(s.indoor_c[15] >= 20.0 - 1e-9, "{}", s.indoor_c[15]);
        assert!(s.indoor_c[11] < 19.5, "{}", s.indoor_c[11]);
        assert_eq!(s.shortfall_kh, 0.0);
    }

    proptest! {
        /// Whatever the building, weather, limits and start: every hour's heat within 0 and
        /// that hour's maximum, every figure finite, and the floor kept whenever the maximum
        /// heat could keep it.
        #[test]
        fn never_outside_the_limits(
            c in 50.0f64..2000.0, ua in 1.0f64..40.0, g in 0.0f64..1.0,
            start in 10.0f64..25.0, mean in -25.0f64..15.0, max_kw in 0.0f64..2000.0,
            weight in 0.0f64..48.0, sun in 0.0f64..800.0,
        ) {
            let m = Params { c_kwh_k: c, ua_kw_k: ua, gain_kw_per_w_m2: g };
            let hours: Vec<Hour> = day(mean, 20.0).into_iter().enumerate()
                .map(|(k, h)| Hour { max_kw, solar_w_m2: if k % 24 > 9 && k % 24 < 15 { sun } else { 0.0 }, ..h })
                .collect();
            let p = plan(&m, start, &hours, 22.0, at(weight, 0.0));
            prop_assert_eq!(p.heat_kw.len(), hours.len());
            for (q, h) in p.heat_kw.iter().zip(&hours) {
                prop_assert!(q.is_finite() && *q >= 0.0 && *q <= h.max_kw + 1e-9);
            }
            prop_assert!(p.indoor_c.iter().all(|t| t.is_finite()) && p.shortfall_kh >= 0.0);
            // With heat to spare at every hour and the start on the floor, nothing falls short.
            let rich = hours.iter().all(|h| h.max_kw > ua * (22.0 - h.outdoor_c) * 1.2);
            if rich && start >= 20.0 {
                prop_assert!(p.shortfall_kh < 1e-6, "{}", p.shortfall_kh);
            }
        }
    }
}
