//! Register maps: any text parses to a map or a list of errors, never a panic. For a valid
//! map, any words the device could send decode without panicking, read plans respect the
//! request limit, and an encodable command value decodes back to itself within rounding.
#![no_main]

use heatgrid::ingest::modbus::map::{Access, RegisterMap};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data
        .len()
        .min(data.iter().position(|&b| b == 0).unwrap_or(data.len()));
    let (text, words) = data.split_at(split);
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(map) = RegisterMap::parse(text) else {
        return;
    };
    let words: Vec<u16> = words
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]))
        .collect();
    for (max, gap) in [(1u16, 0u16), (2, 3), (7, 0), (125, 10), (125, 125)] {
        let plan = map.read_plan(true, max, gap);
        for b in &plan {
            let limit = if b.table.is_bits() { 2000 } else { max.max(2) };
            assert!(b.count <= limit && b.unmapped < b.count.max(1));
        }
        let replies: Vec<Vec<u16>> = plan
            .iter()
            .map(|b| {
                (0..b.count)
                    .map(|k| *words.get(k as usize).unwrap_or(&k))
                    .collect()
            })
            .collect();
        let _ = map.decode(&plan, &replies);
    }
    for r in map
        .registers
        .iter()
        .filter(|r| r.access == Access::ReadWrite)
    {
        let v = words.first().copied().unwrap_or(0) as f64 * 0.37 - 50.0;
        if let Ok(w) = r.encode(v) {
            let back = r.decode(&w);
            let tolerance = r.scale.abs() * 0.5 + v.abs() * 1e-6 + 1e-9;
            assert!((back - v).abs() <= tolerance, "{v} -> {w:?} -> {back}");
        }
    }
});
