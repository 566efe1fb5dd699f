//! Telemetry decoder: any bytes give a reading or a rejection, never a panic; an accepted
//! reading is physical (the ranges the contract promises a controller).
#![no_main]

use heatgrid::ingest::decode::{decode, DecodeLimits};
use heatgrid::model::StationId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let id = StationId::new("st-001").expect("valid id");
    let limits = DecodeLimits::default();
    if let Ok(r) = decode(&id, data, 1_764_262_800_000, &limits) {
        for t in [r.supply_temp_c, r.return_temp_c] {
            assert!(t.is_finite() && (-50.0..=200.0).contains(&t), "{t}");
        }
        assert!(r.flow_m3h.is_finite() && r.flow_m3h >= 0.0);
        assert!(r.heated_area_m2.is_none_or(|a| a.is_finite() && a >= 0.0));
        assert!(r.heat_kw().is_finite());
        for (_, v) in &r.extra {
            assert!(v.is_finite());
        }
    }
});
