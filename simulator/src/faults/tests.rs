//! Each fault's physical signature, against a healthy twin of the same station run under
//! the same weather and the station's own control.

use super::*;
use crate::plant::{PlantParams, KGS_PER_M3H};
use crate::station::Telemetry;

const DT: f64 = 30.0;

/// A 100,000 m² station, healthy and with `kind` at `severity` from 12 h on, both run for
/// `days` at an outdoor temperature swinging ±4 K around −2 °C; the last telemetry of each.
fn twins(
    kind: FaultKind,
    severity: f64,
    days: f64,
) -> (SimStation, SimStation, Telemetry, Telemetry) {
    let params = PlantParams::for_area(100_000.0, 45.0, 40.0);
    let mut healthy = SimStation::new("h".into(), params.clone());
    let mut faulty = SimStation::new("f".into(), params);
    faulty.fault = Some((
        Fault {
            kind,
            onset_s: 0.5 * DAY_S,
            severity,
        },
        FaultState::default(),
    ));
    let steps = (days * DAY_S / DT) as usize;
    for k in 0..steps {
        let t = k as f64 * DT;
        let outdoor = -2.0 + 4.0 * (2.0 * std::f64::consts::PI * t / DAY_S).cos();
        healthy.step(DT, outdoor, 0);
        faulty.step(DT, outdoor, 0);
    }
    let outdoor = -2.0 + 4.0 * (2.0 * std::f64::consts::PI * days).cos();
    let (th, tf) = (healthy.telemetry(0, outdoor), faulty.telemetry(0, outdoor));
    (healthy, faulty, th, tf)
}

#[test]
fn fouling_and_an_undersized_exchanger_take_ua_away() {
    let (h, f, _, _) = twins(FaultKind::Fouling, 1.0, 6.0);
    assert!((f.plant.p.hx_ua_w_k / h.plant.p.hx_ua_w_k - 0.4).abs() < 1e-9);
    // The station opens its valve further for the same supply.
    assert!(
        f.plant.valve > h.plant.valve + 0.02,
        "{} vs {}",
        f.plant.valve,
        h.plant.valve
    );
    let (_, f2, _, _) = twins(FaultKind::Fouling, 1.0, 2.5);
    let ratio = f2.plant.p.hx_ua_w_k / h.plant.p.hx_ua_w_k;
    assert!((0.6..0.9).contains(&ratio), "two days in: {ratio}");
    let (h, f, _, _) = twins(FaultKind::UndersizedHx, 0.5, 1.0);
    assert!((f.plant.p.hx_ua_w_k / h.plant.p.hx_ua_w_k - 0.575).abs() < 1e-9);
}

#[test]
fn a_stuck_valve_stays_and_a_leaking_one_passes_water_when_closed() {
    let (mut h, mut f, _, _) = twins(FaultKind::ValveStuck, 1.0, 2.0);
    let stuck = f.plant.valve_stuck_at.expect("stuck");
    // Another day of swinging weather: the healthy valve follows it, the stuck one does not.
    let range = |s: &mut SimStation| {
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        for k in 0..(DAY_S / DT) as usize {
            let outdoor = -2.0 + 4.0 * (2.0 * std::f64::consts::PI * k as f64 * DT / DAY_S).cos();
            s.step(DT, outdoor, 0);
            (lo, hi) = (lo.min(s.plant.valve), hi.max(s.plant.valve));
        }
        hi - lo
    };
    assert!(range(&mut h) > 0.05);
    assert_eq!(range(&mut f), 0.0);
    assert_eq!(f.plant.valve, stuck);
    // Closed by a command: the leaking valve still heats.
    let (mut h, mut f, _, _) = twins(FaultKind::ValveLeak, 1.0, 1.0);
    for s in [&mut h, &mut f] {
        for _ in 0..200 {
            s.plant.step(DT, 0.0, 0.9, 0.0);
        }
    }
    assert_eq!(h.plant.primary_kgs, 0.0);
    assert!((f.plant.primary_kgs / f.plant.p.primary_max_kgs - 0.15).abs() < 1e-9);
    assert!(
        f.plant.heat_w > 0.05 * f.plant.p.design_heat_w,
        "{}",
        f.plant.heat_w
    );
}

#[test]
fn sensor_faults_change_what_is_reported_not_the_plant() {
    let (_, f, _, tf) = twins(FaultKind::SupplySensorOffset, 1.0, 1.0);
    assert!((tf.supply_temp_c - (f.plant.supply_sensor_c + 6.0)).abs() < 0.01);
    // The PLC controls on the wrong reading: the real supply ends about 6 K low.
    let (h, _, th, _) = twins(FaultKind::SupplySensorOffset, 1.0, 1.0);
    assert!(
        h.plant.supply_sensor_c - f.plant.supply_sensor_c > 4.0,
        "{th:?}"
    );
    let (_, f, _, _) = twins(FaultKind::SupplySensorDrift, 1.0, 3.5);
    assert!(
        (f.sensor_offset_k - 1.5 * 3.0).abs() < 0.01,
        "{}",
        f.sensor_offset_k
    );
    let (_, f, _, tf) = twins(FaultKind::SupplySensorFrozen, 1.0, 2.0);
    let frozen = f.supply_frozen_c.expect("frozen");
    assert!((tf.supply_temp_c - frozen).abs() < 0.01);
    let (_, f, _, tf) = twins(FaultKind::ReturnSensorOffset, 0.0, 1.0);
    assert!((tf.return_temp_c - (f.plant.station_return_c() - 1.5)).abs() < 0.01);
}

#[test]
fn a_bypass_raises_the_return_and_hydraulic_faults_take_the_flow() {
    let (_, _, th, tf) = twins(FaultKind::Bypass, 1.0, 1.5);
    let dt = |t: &Telemetry| t.supply_temp_c - t.return_temp_c;
    assert!(tf.return_temp_c > th.return_temp_c + 2.0, "{th:?}\n{tf:?}");
    assert!(dt(&tf) < 0.8 * dt(&th));
    let (_, _, th, tf) = twins(FaultKind::Strainer, 1.0, 5.0);
    assert_eq!(tf.pump_pct, th.pump_pct, "same speed");
    assert!(
        (tf.flow_m3h / th.flow_m3h - 0.5).abs() < 0.01,
        "{} vs {}",
        tf.flow_m3h,
        th.flow_m3h
    );
    let (_, f, _, tf) = twins(FaultKind::PumpFailure, 1.0, 1.0);
    assert!(tf.pump_pct >= 80.0, "the pump is still driven");
    assert!(tf.flow_m3h < 0.02 * f.plant.p.pump_max_kgs / 0.01 / KGS_PER_M3H);
}

#[test]
fn over_firing_faults_show_in_supply_and_area() {
    let (_, _, th, tf) = twins(FaultKind::CurveTooHigh, 1.0, 1.5);
    assert!(tf.supply_temp_c > th.supply_temp_c + 8.0, "{th:?}\n{tf:?}");
    let (_, _, th, tf) = twins(FaultKind::WrongArea, 1.0, 1.0);
    assert_eq!(tf.heated_area_m2, (0.4 * th.heated_area_m2).round());
    // Nothing happens before the onset.
    let (_, f, _, _) = twins(FaultKind::WrongArea, 1.0, 0.25);
    assert_eq!(f.area_report_factor, 1.0);
}

#[test]
fn a_fault_plan_is_seeded_and_shaped_as_asked() {
    let a = plan(1000, 0.15, 14.0, 7);
    assert_eq!(a, plan(1000, 0.15, 14.0, 7));
    assert_ne!(a, plan(1000, 0.15, 14.0, 8));
    assert!((120..=180).contains(&a.len()), "{}", a.len());
    let mild = a.iter().filter(|(_, f)| f.severity < 0.35).count() as f64 / a.len() as f64;
    assert!((0.2..0.45).contains(&mild), "{mild}");
    for (_, f) in &a {
        assert!((0.5 * DAY_S..=11.0 * DAY_S).contains(&f.onset_s));
    }
    for kind in FaultKind::ALL {
        assert!(
            a.iter().any(|(_, f)| f.kind == kind),
            "{kind:?} never drawn"
        );
    }
}

#[test]
fn a_configured_fleet_carries_its_planned_faults() {
    let fault = Fault {
        kind: FaultKind::Bypass,
        onset_s: DAY_S,
        severity: 0.5,
    };
    let cfg = crate::SimConfig {
        stations: 3,
        faults: vec![(1, fault)],
        ..crate::SimConfig::default()
    };
    let fleet = cfg.build_stations();
    assert!(fleet[0].fault.is_none() && fleet[2].fault.is_none());
    assert_eq!(fleet[1].fault.as_ref().map(|(f, _)| *f), Some(fault));
}
