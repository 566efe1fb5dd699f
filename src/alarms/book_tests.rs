//! The alarm book: the hold time, one alarm per (station, kind), acknowledgement, clear, persistence, adoption.

use super::*;

#[test]
fn lifecycle_hold_time_dedup_ack_clear_and_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alarms.json");
    let mut book = AlarmBook::open(path.clone()).unwrap();
    let msg = || "supply 5 K below setpoint".to_owned();
    assert!(book
        .evaluate("s", AlarmKind::SupplyDeviation, true, 1000, 5.0, 0, msg)
        .is_none());
    assert!(book
        .evaluate("s", AlarmKind::SupplyDeviation, true, 1000, 5.0, 500, msg)
        .is_none());
    let raised = book
        .evaluate("s", AlarmKind::SupplyDeviation, true, 1000, 5.0, 1000, msg)
        .unwrap();
    assert_eq!(
        (
            raised.station.as_str(),
            raised.kind,
            raised.severity,
            raised.active
        ),
        ("s", "supply_deviation", "minor", true)
    );
    // As the store encodes it:
    assert!(crate::store::line_protocol::alarm(&raised)
        .unwrap()
        .starts_with("alarm,station=s,kind=supply_deviation,severity=minor active=true"));
    assert!(
        book.evaluate("s", AlarmKind::SupplyDeviation, true, 1000, 6.0, 2000, msg)
            .is_none(),
        "de-duplicated"
    );
    assert_eq!(book.active().len(), 1);
    let id = book.active()[0].id;
    assert_eq!(
        book.ack(id, "alice", 2500).unwrap().acked_by.as_deref(),
        Some("alice")
    );
    assert!(book.ack(999, "alice", 2500).is_err());
    book.persist();
    let mut book = AlarmBook::open(path).unwrap();
    assert_eq!(
        book.active()[0].acked_by.as_deref(),
        Some("alice"),
        "kept across a restart"
    );
    let cleared = book
        .evaluate("s", AlarmKind::SupplyDeviation, false, 1000, 0.0, 3000, msg)
        .unwrap();
    assert!(!cleared.active);
    assert_eq!(cleared.ts_ms, 3000);
    assert!(book.active().is_empty());
    assert_eq!(book.recent()[0].cleared_ms, Some(3000));
    // A condition that goes away before its hold time never raises.
    book.evaluate("s", AlarmKind::LowDeltaT, true, 1000, 3.0, 4000, msg);
    book.evaluate("s", AlarmKind::LowDeltaT, false, 1000, 8.0, 4500, msg);
    assert!(book
        .evaluate("s", AlarmKind::LowDeltaT, true, 1000, 3.0, 5000, msg)
        .is_none());
}

#[test]
fn an_adopted_alarm_keeps_its_raise_and_acknowledgement_under_a_new_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut elsewhere = AlarmBook::open(dir.path().join("a.json")).unwrap();
    let msg = || "no telemetry".to_owned();
    elsewhere.evaluate("s", AlarmKind::Stale, true, 0, 9.0, 100, msg);
    elsewhere.evaluate("t", AlarmKind::Stale, true, 0, 9.0, 100, msg);
    elsewhere.ack(1, "alice", 150).unwrap();
    let kept = elsewhere.active_of(|s| s == "s");
    assert_eq!(kept.len(), 1);
    assert_eq!(elsewhere.forget("s"), 1);
    assert!(!elsewhere.is_active("s", AlarmKind::Stale));

    let mut here = AlarmBook::open(dir.path().join("b.json")).unwrap();
    here.evaluate("u", AlarmKind::Stale, true, 0, 9.0, 120, msg);
    assert!(here.adopt(kept[0].clone()));
    assert!(!here.adopt(kept[0].clone()), "once");
    let a = here.active_of(|s| s == "s").pop().unwrap();
    assert_eq!(
        (a.id, a.raised_ms, a.acked_by.as_deref()),
        (2, 100, Some("alice"))
    );
    // Its condition holds on: still the same alarm; then it clears as usual.
    assert!(here
        .evaluate("s", AlarmKind::Stale, true, 0, 9.5, 200, msg)
        .is_none());
    let cleared = here.evaluate("s", AlarmKind::Stale, false, 0, 0.0, 300, msg);
    assert_eq!(cleared.map(|p| (p.id, p.active)), Some((2, false)));
}
