//! The predictor as the control task drives it: learning from readings, planning on a fresh
//! forecast, falling back to the curve on a stale one.

use super::*;
use crate::model::StationId;

const T0: i64 = 1_768_435_200_000;
const H: i64 = 3_600_000;

fn design() -> Design {
    Design {
        design_kw: 280.0,
        span_k: 28.0,
    }
}

fn outdoor(ts: i64) -> f64 {
    let h = (ts - T0) as f64 / 3.6e6;
    -5.0 + 4.0 * (2.0 * std::f64::consts::PI * (h - 15.0) / 24.0).cos()
}

fn reading(ts_ms: i64, heat_kw: f64, indoor_c: Option<f64>) -> Reading {
    Reading {
        station: StationId::new("st-001").unwrap(),
        ts_ms,
        supply_temp_c: 50.0,
        return_temp_c: 40.0,
        flow_m3h: 20.0,
        heated_area_m2: Some(7000.0),
        outdoor_temp_c: Some(outdoor(ts_ms)),
        indoor_temp_c: indoor_c,
        valve_pct: None,
        pump_pct: None,
        heat_kw: Some(heat_kw),
        extra: Vec::new(),
    }
}

/// A forecast received at `at_ms` covering `hours` hours of the test's weather.
fn forecast(at_ms: i64, hours: i64) -> Forecast {
    let pts: Vec<String> = (0..=hours)
        .map(|k| {
            let ts = at_ms + k * H;
            format!(r#"{{"ts": {ts}, "outdoor_temp_c": {}}}"#, outdoor(ts))
        })
        .collect();
    Forecast::decode(format!("[{}]", pts.join(",")).as_bytes(), at_ms).unwrap()
}

/// A 1R1C building (UA 10 kW/K, τ 40 h) heated with a heat that varies, read every minute
/// for `hours`: returns the predictor and the indoor temperature at the end.
fn learned(hours: i64) -> (Predictor, f64) {
    let mut p = Predictor::new(&design(), 7000.0);
    let mut ti = 20.0;
    for m in 0..hours * 60 {
        let ts = T0 + m * 60_000;
        let to = outdoor(ts);
        let wobble = if (m / 180) % 2 == 0 { 1.15 } else { 0.85 };
        let q = 10.0 * (20.0 - to) * wobble;
        ti += (q - 10.0 * (ti - to)) / 400.0 / 60.0;
        p.observe(&reading(ts, q, Some(ti)), ts, to, 0.0);
    }
    (p, ti)
}

#[test]
fn learns_then_plans_and_falls_back_when_the_forecast_goes_stale() {
    let s = Settings {
        enabled: true,
        ..Settings::default()
    };
    let (mut p, ti) = learned(72);
    let st = p.status();
    assert!(st.fit_hours >= 48, "{st:?}");
    assert!((st.model.ua_kw_k / 10.0 - 1.0).abs() < 0.1, "{st:?}");
    let now = T0 + 72 * H;
    let f = forecast(now, 36);
    // The first call places the station's plans in the period (phase 0: the next call).
    assert_eq!(
        p.shift_k(
            now - 10_000,
            Some(ti),
            outdoor(now),
            Some(&f),
            &design(),
            &s
        ),
        0.0
    );
    assert_eq!(p.status().state, State::Learning(p.status().fit_hours));
    let shift = p.shift_k(now, Some(ti), outdoor(now), Some(&f), &design(), &s);
    assert!(p.status().state.is_active(), "{:?}", p.status().state);
    assert!(shift.abs() <= s.max_shift_step_k + 1e-9);
    assert!(p.status().planned_kw.is_some());
    // Seven hours on, the same forecast is stale: the shift eases back to 0 by the step
    // limit, one plan after another, and the state says why.
    let mut t = now + 7 * H;
    let mut last = p.shift_k(t, Some(ti), outdoor(t), Some(&f), &design(), &s);
    assert!(matches!(
        p.status().state,
        State::NoForecast(Freshness::TooOld(_))
    ));
    for _ in 0..10 {
        t += 900_000;
        let next = p.shift_k(t, Some(ti), outdoor(t), Some(&f), &design(), &s);
        assert!((next - last).abs() <= s.max_shift_step_k + 1e-9);
        last = next;
    }
    assert_eq!(last, 0.0);
    assert!(p.status().planned_kw.is_none());
    assert!(p.status().state.describe().contains("h old"));
}

#[test]
fn no_indoor_sensor_or_too_little_data_stays_on_the_curve() {
    let s = Settings {
        enabled: true,
        ..Settings::default()
    };
    let now = T0 + 72 * H;
    let f = forecast(now, 36);
    let (mut young, ti) = learned(20);
    assert_eq!(
        young.shift_k(now, Some(ti), -5.0, Some(&f), &design(), &s),
        0.0
    );
    assert!(matches!(young.status().state, State::Learning(h) if h < 20));
    let mut blind = Predictor::new(&design(), 7000.0);
    for m in 0..72 * 60 {
        let ts = T0 + m * 60_000;
        blind.observe(&reading(ts, 200.0, None), ts, outdoor(ts), 0.0);
    }
    blind.shift_k(now - 1, None, -5.0, Some(&f), &design(), &s);
    assert_eq!(blind.shift_k(now, None, -5.0, Some(&f), &design(), &s), 0.0);
    assert_eq!(blind.status().state, State::NoIndoor);
    assert_eq!(blind.status().fit_hours, 0);
    // Disabled: off, whatever it knows.
    let (mut off, ti) = learned(72);
    assert_eq!(
        off.shift_k(
            now,
            Some(ti),
            -5.0,
            Some(&f),
            &design(),
            &Settings::default()
        ),
        0.0
    );
    assert_eq!(off.status().state, State::Off);
}

#[test]
fn phases_spread_the_first_plans_over_the_period() {
    let s = Settings {
        enabled: true,
        ..Settings::default()
    };
    let now = T0 + 72 * H;
    let f = forecast(now, 36);
    let (p, ti) = learned(72);
    let mut late = p.with_phase(0.5);
    late.shift_k(now, Some(ti), -5.0, Some(&f), &design(), &s);
    // Half of the 900 s period later, not before, it plans.
    late.shift_k(now + 449_000, Some(ti), -5.0, Some(&f), &design(), &s);
    assert!(!late.status().state.is_active());
    late.shift_k(now + 450_000, Some(ti), -5.0, Some(&f), &design(), &s);
    assert!(late.status().state.is_active(), "{:?}", late.status().state);
}

#[test]
fn settings_are_range_checked_and_the_setback_lowers_the_floor_at_night() {
    assert!(Settings::default().problems().is_empty());
    let bad = Settings {
        horizon_h: 12,
        indoor_max_c: 20.2,
        setback: Some((22.0, 6.0, 9.0)),
        ..Settings::default()
    };
    let p = bad.problems();
    assert_eq!(p.len(), 3, "{p:?}");
    let night = Settings {
        setback: Some((22.0, 6.0, 3.0)),
        utc_offset_h: 1.0,
        ..Settings::default()
    };
    // T0 is midnight UTC, 01:00 local: inside; noon UTC is not.
    assert_eq!(night.floor_c(T0), 17.0);
    assert_eq!(night.floor_c(T0 + 12 * H), 20.0);
    assert_eq!(night.floor_c(T0 + 5 * H), 20.0);
}
