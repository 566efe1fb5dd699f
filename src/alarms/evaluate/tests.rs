//! The alarm conditions on hand-made station states.

use super::*;
use crate::alarms::engine::StorageWatch;
use crate::model::StationId;

fn settings() -> StationAlarms {
    StationAlarms {
        thresholds: super::super::Thresholds::default(),
        supply_max_c: 75.0,
        return_limit_c: 50.0,
        valve_min_pct: 0.0,
        valve_max_pct: 100.0,
        valve_dead_band_k: 0.3,
        staleness_ms: 30_000,
    }
}

fn status(supply: f64, setpoint: f64, valve: f64, mode: Mode) -> StationStatus {
    let reading = Reading {
        station: StationId::new("s").unwrap(),
        ts_ms: 1_000,
        supply_temp_c: supply,
        return_temp_c: 40.0,
        flow_m3h: 100.0,
        heated_area_m2: None,
        outdoor_temp_c: None,
        indoor_temp_c: None,
        valve_pct: None,
        pump_pct: None,
        heat_kw: None,
        extra: Vec::new(),
    };
    let outputs = Outputs {
        weather_shift_k: 0.0,
        mode,
        supply_setpoint_c: setpoint,
        valve_pct: valve,
        pump_pct: 50.0,
        flow_setpoint_m3h: 100.0,
        outdoor_c: -5.0,
        return_correction_k: 0.0,
        valve_terms: Default::default(),
        pump_terms: Default::default(),
    };
    StationStatus {
        id: StationId::new("s").unwrap(),
        mode,
        stale: false,
        reading: Some(reading),
        outputs: Some(outputs),
        seq: 0,
        epoch: Some(0),
        supply_offset_k: 0.0,
        curve: Vec::new(),
        recent_commands: Default::default(),
        district_offset_k: 0.0,
        district_held: false,
        fixed_supply: None,
        acked_seq: 0,
        ack_error: None,
        heat_today_gj: 0.0,
        kpis_today: Default::default(),
        trend: Default::default(),
        tags: Default::default(),
        area_m2: None,
        link: "mqtt".into(),
        link_error: None,
        offline: false,
        rejects: 0,
        findings: vec![],
        unjudged: vec![],
        predictive: None,
    }
}

fn active(st: &StationStatus, rejected: u64, since_start_ms: i64) -> Vec<AlarmKind> {
    let mut out = Vec::new();
    station_checks(st, &settings(), rejected, since_start_ms, 2_000, &mut out);
    out.iter().filter(|c| c.active).map(|c| c.kind).collect()
}

#[test]
fn a_finding_raises_fault_suspected_naming_its_kind_even_when_stale() {
    let mut st = status(55.0, 55.2, 40.0, Mode::Auto);
    st.stale = true;
    st.findings = vec![crate::diagnose::Finding {
        kind: crate::diagnose::Kind::Strainer,
        confidence: 0.8,
        evidence: "flow per % pump speed fell 30 %".into(),
        since_ms: 0,
    }];
    assert!(active(&st, 0, 60_000).contains(&AlarmKind::FaultSuspected));
    let mut out = Vec::new();
    station_checks(&st, &settings(), 0, 60_000, 2_000, &mut out);
    let c = out
        .iter()
        .find(|c| c.kind == AlarmKind::FaultSuspected)
        .unwrap();
    assert_eq!(c.value, 0.8);
    assert_eq!(
        c.detail.to_string(),
        "suspected strainer (80 %): flow per % pump speed fell 30 %"
    );
    assert_eq!(
        AlarmKind::FaultSuspected.severity(),
        super::super::Severity::Warning
    );
}

#[test]
fn a_station_on_its_setpoint_has_no_condition() {
    assert!(active(&status(55.0, 55.2, 40.0, Mode::Auto), 0, 60_000).is_empty());
}

#[test]
fn deviation_and_saturation_count_only_in_auto() {
    // 8 K short with the valve wide open: deviation and saturation in auto …
    let short = status(47.0, 55.0, 100.0, Mode::Auto);
    assert_eq!(
        active(&short, 0, 60_000),
        vec![AlarmKind::SupplyDeviation, AlarmKind::ValveSaturated]
    );
    // … nothing in manual (the operator chose the outputs).
    assert!(active(&status(47.0, 55.0, 100.0, Mode::Manual), 0, 60_000).is_empty());
}

#[test]
fn stale_data_is_judged_only_for_staleness_and_a_silent_start_waits() {
    let mut st = status(90.0, 55.0, 40.0, Mode::Auto);
    st.stale = true;
    // Out of range and deviating, but stale: only `stale` is judged.
    assert_eq!(active(&st, 0, 60_000), vec![AlarmKind::Stale]);
    // Never reported since the start: stale only after the staleness time.
    st.reading = None;
    assert!(active(&st, 0, 10_000).is_empty());
    assert_eq!(active(&st, 0, 31_000), vec![AlarmKind::Stale]);
}

#[test]
fn link_and_rejects() {
    let mut st = status(55.0, 55.0, 40.0, Mode::Auto);
    st.link_error = Some("connect: refused".into());
    let mut out = Vec::new();
    station_checks(&st, &settings(), 11, 60_000, 2_000, &mut out);
    let lost = out.iter().find(|c| c.kind == AlarmKind::CommLost).unwrap();
    assert!(lost.active);
    assert_eq!(lost.detail.to_string(), "Modbus: connect: refused");
    let rejected = out
        .iter()
        .find(|c| c.kind == AlarmKind::RejectedRepeatedly)
        .unwrap();
    assert!(rejected.active, "11 > the default 10 per minute");
}

#[test]
fn rejects_are_counted_over_a_sliding_minute() {
    let mut w = RejectWindow::default();
    assert_eq!(w.per_min(0, 5), 0);
    assert_eq!(w.per_min(30_000, 12), 7);
    assert_eq!(w.per_min(70_000, 12), 0, "the first sample left the window");
}

#[test]
fn storage_trouble_holds_for_30_s_after_the_last_new_failure() {
    let mut w = StorageWatch::default();
    assert!(!w.check(0, 0, 0, 0).active);
    assert!(w.check(1, 0, 0, 1_000).active);
    assert!(w.check(1, 0, 0, 30_000).active);
    assert!(!w.check(1, 0, 0, 31_001).active);
}
