//! A station's `modbus = { … }` table: address, unit, timing and request limits checked, its
//! register map read and validated once per file however many stations use it.
//!
//! Where it sits: called by [`super::station`] for each station with a `modbus` table; the
//! result is the station's poller config (`ingest/modbus/poller.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::raw::RawModbus;
use super::Errors;
use crate::ingest::modbus::map::RegisterMap;
use crate::model::StationId;

/// Register maps read so far, by path: each file is read and validated once, however many
/// stations use it (`None`: it was refused).
pub(super) type Maps = BTreeMap<PathBuf, Option<Arc<RegisterMap>>>;

/// A station's `modbus` table, validated, with its register map loaded (once per file).
pub(super) fn modbus_station(
    m: &RawModbus,
    id: &StationId,
    base: &Path,
    maps: &mut Maps,
    place: &str,
    v: &mut Errors,
) -> Option<crate::ingest::modbus::poller::PollerConfig> {
    let place = format!("{place}.modbus");
    let n = v.0.len();
    let address = if m.address.contains(':') {
        m.address.clone()
    } else {
        format!("{}:502", m.address)
    };
    v.check(
        address
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0)),
        format!("{place}.address: {:?} is not host:port", m.address),
    );
    v.check(
        (1..=255).contains(&m.unit_id),
        format!(
            "{place}.unit_id: {} must be 1–255 (0 is broadcast)",
            m.unit_id
        ),
    );
    v.positive(&format!("{place}.poll_interval_s"), m.poll_interval_s);
    v.check(
        m.timeout_ms > 0 && (m.timeout_ms as f64) < m.poll_interval_s * 1000.0,
        format!("{place}.timeout_ms: must be positive and shorter than poll_interval_s"),
    );
    v.check(
        (1..=125).contains(&m.max_registers),
        format!(
            "{place}.max_registers: {} must be 1–125 (the protocol's limit)",
            m.max_registers
        ),
    );
    v.check(
        m.max_gap <= 124,
        format!(
            "{place}.max_gap: {} must be 0–124 (registers a read may span unmapped)",
            m.max_gap
        ),
    );
    let path = base.join(&m.map);
    let map = maps
        .entry(path.clone())
        .or_insert_with(|| {
            match std::fs::read_to_string(&path)
                .map_err(|e| vec![format!("cannot read: {e}")])
                .and_then(|t| crate::ingest::modbus::map::RegisterMap::parse(&t))
            {
                Ok(map) => Some(std::sync::Arc::new(map)),
                Err(errs) => {
                    for e in errs {
                        v.push(format!("register map {}: {e}", path.display()));
                    }
                    None
                }
            }
        })
        .clone();
    if map.is_none() {
        v.push(format!(
            "{place}.map: {} is not usable (see above)",
            path.display()
        ));
    }
    if v.0.len() > n {
        return None;
    }
    Some(crate::ingest::modbus::poller::PollerConfig {
        station: id.clone(),
        address,
        unit_id: m.unit_id as u8,
        interval: Duration::from_secs_f64(m.poll_interval_s),
        timeout: Duration::from_millis(m.timeout_ms),
        max_registers: m.max_registers,
        coalesce: m.coalesce,
        max_gap: m.max_gap,
        map: map?,
    })
}
