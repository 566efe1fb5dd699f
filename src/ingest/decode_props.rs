//! Property tests of [`super::decode`]: arbitrary bytes and arbitrary JSON objects over the
//! contract's fields never panic, every refusal says why, every accepted value is within the
//! contract's ranges (§2.1).

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::*;

const NOW: i64 = 1_764_262_800_000;

fn station() -> StationId {
    StationId::new("st-1").expect("a valid id")
}

/// A value as a gateway might send it: numbers of every size, other JSON types.
fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (-300.0f64..300.0).prop_map(Value::from),
        2 => any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        1 => "[a-z0-9 :.-]{0,12}".prop_map(Value::from),
        1 => Just(Value::Array(vec![Value::from(1)])),
    ]
}

fn timestamp() -> impl Strategy<Value = Value> {
    prop_oneof![
        (NOW - 86_400_000..NOW + 120_000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(Value::from("2026-12-07T04:35:00Z")),
        Just(Value::from("not a time")),
        Just(Value::from(1.5)),
    ]
}

/// An object with the required fields (mostly plausible), any subset of the contract's other
/// fields with any values, an optional `ts` and a few unknown fields.
fn object() -> impl Strategy<Value = Vec<u8>> {
    let required = proptest::collection::vec(
        proptest::option::weighted(0.9, (0.0f64..120.0).prop_map(Value::from)),
        3,
    )
    .prop_map(|vs| {
        ["supply_temp_c", "return_temp_c", "flow_m3h"]
            .into_iter()
            .zip(vs)
            .filter_map(|(k, v)| Some((k.to_owned(), v?)))
            .collect::<Vec<_>>()
    });
    let known = proptest::collection::vec(
        (0..KNOWN.len(), value()).prop_map(|(i, v)| (KNOWN[i].0.to_owned(), v)),
        0..6,
    );
    let others = proptest::collection::vec(("[a-zA-Z_][a-zA-Z0-9_-]{0,70}", value()), 0..8);
    let parts = (required, known, others, proptest::option::of(timestamp()));
    parts.prop_map(|(required, known, others, ts)| {
        let mut m = Map::new();
        for (k, v) in required.into_iter().chain(others).chain(known) {
            m.insert(k, v);
        }
        if let Some(ts) = ts {
            m.insert("ts".into(), ts);
        }
        serde_json::to_vec(&Value::Object(m)).expect("a map serialises")
    })
}

/// Every field of an accepted reading is where the contract allows it.
fn within_contract(r: &Reading) -> Result<(), String> {
    let range = |name: &str| {
        KNOWN
            .iter()
            .find(|(k, _, _)| *k == name)
            .map(|k| (k.1, k.2))
    };
    let check = |name: &str, v: Option<f64>| match (v, range(name)) {
        (Some(x), Some((lo, hi))) if !(x.is_finite() && lo <= x && x <= hi) => {
            Err(format!("{name} = {x} outside {lo}..{hi}"))
        }
        _ => Ok(()),
    };
    check("supply_temp_c", Some(r.supply_temp_c))?;
    check("return_temp_c", Some(r.return_temp_c))?;
    check("flow_m3h", Some(r.flow_m3h))?;
    check("heated_area_m2", r.heated_area_m2)?;
    check("outdoor_temp_c", r.outdoor_temp_c)?;
    check("indoor_temp_c", r.indoor_temp_c)?;
    check("valve_pct", r.valve_pct)?;
    check("pump_pct", r.pump_pct)?;
    check("heat_kw", r.heat_kw)?;
    if r.ts_ms < TS_MIN_MS || r.ts_ms > NOW + DecodeLimits::default().future_tolerance_ms {
        return Err(format!("ts {} outside the accepted window", r.ts_ms));
    }
    if r.extra.len() > MAX_EXTRA_FIELDS + 4 {
        return Err(format!("{} extra fields", r.extra.len()));
    }
    for (name, x) in &r.extra {
        check(name, Some(*x))?;
        let storable = !name.is_empty()
            && name.len() <= MAX_FIELD_NAME_LEN
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !storable || !x.is_finite() {
            return Err(format!("extra {name:?} = {x} kept"));
        }
    }
    Ok(())
}

fn judged(payload: &[u8]) -> Result<(), TestCaseError> {
    match decode(&station(), payload, NOW, &DecodeLimits::default()) {
        Ok(r) => within_contract(&r).map_err(TestCaseError::fail),
        Err(e) => {
            prop_assert!(!e.label().is_empty());
            prop_assert!(
                e.to_string().len() > 10,
                "a refusal without a reason: {e:?}"
            );
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn arbitrary_bytes_are_refused_with_a_reason_or_within_the_contract(
        payload in proptest::collection::vec(any::<u8>(), 0..512)
    ) {
        judged(&payload)?;
    }

    #[test]
    fn arbitrary_objects_are_refused_with_a_reason_or_within_the_contract(payload in object()) {
        judged(&payload)?;
    }

    #[test]
    fn a_payload_over_the_limit_is_refused_before_it_is_read(extra in 1usize..4096) {
        let limits = DecodeLimits { max_payload_bytes: 64, ..DecodeLimits::default() };
        let payload = vec![b' '; 64 + extra];
        let r = decode(&station(), &payload, NOW, &limits);
        prop_assert!(matches!(r, Err(Reject::TooLarge(n)) if n == 64 + extra));
    }
}

/// The generator does reach acceptance, so the range property is exercised.
#[test]
fn the_object_generator_yields_accepted_readings_too() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = object();
    let accepted = (0..300)
        .filter(|_| {
            let payload = strategy.new_tree(&mut runner).expect("a tree").current();
            decode(&station(), &payload, NOW, &DecodeLimits::default()).is_ok()
        })
        .count();
    assert!(accepted > 0, "no generated payload was accepted");
}
