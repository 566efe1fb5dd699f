//! A station's `modbus = { … }` table: address, unit, timing and request limits checked, its
//! register map read and validated once per file however many stations use it.
//!
//! Where it sits: called by [`super::station`] for each station with a `modbus` table; the
//! result is the station's poller config (`ingest/modbus/poller.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::raw_modbus::RawModbus;
use super::Errors;
use crate::ingest::modbus::line::{Parity, SerialSettings, Transport};
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
    let (address, transport) = transport(m, &place, v);
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
    let map = v.map_file(
        maps,
        (base.join(&m.map), "register map"),
        RegisterMap::parse,
        &place,
    );
    if v.0.len() > n {
        return None;
    }
    Some(crate::ingest::modbus::poller::PollerConfig {
        station: id.clone(),
        address,
        transport,
        frame_gap: m.frame_gap_ms.map(Duration::from_millis),
        line: None,
        unit_id: m.unit_id as u8,
        interval: Duration::from_secs_f64(m.poll_interval_s),
        timeout: Duration::from_millis(m.timeout_ms),
        max_registers: m.max_registers,
        coalesce: m.coalesce,
        max_gap: m.max_gap,
        map: map?,
    })
}

/// Stations that share an address or a serial port must agree on how it takes requests, and
/// each unit id may be polled by one station only there.
pub(super) fn check_shared(
    stations: &[(String, &crate::ingest::modbus::poller::PollerConfig)],
    v: &mut Errors,
) {
    let mut seen: BTreeMap<String, (&str, &Transport)> = BTreeMap::new();
    let mut units: BTreeMap<(String, u8), &str> = BTreeMap::new();
    for (place, m) in stations {
        let key = m.transport.key();
        match seen.get(&key) {
            Some((first, t)) if std::mem::discriminant(*t) != std::mem::discriminant(&m.transport) => {
                v.push(format!(
                    "{place}.modbus.requests: {first} at the same address takes requests otherwise; give both the same requests"
                ))
            }
            Some(_) => {}
            None => {
                seen.insert(key.clone(), (place, &m.transport));
            }
        }
        if let Some(first) = units.insert((key, m.unit_id), place) {
            v.push(format!(
                "{place}.modbus.unit_id: {first} polls unit {} at the same address already",
                m.unit_id
            ));
        }
    }
}

/// Where the station is: a TCP address (Modbus TCP, or RTU frames over TCP) or a serial port
/// (Modbus RTU), exactly one of them. Returns the text shown in logs and the transport.
fn transport(m: &RawModbus, place: &str, v: &mut Errors) -> (String, Transport) {
    match (&m.address, &m.serial) {
        (Some(a), None) => {
            let address = if a.contains(':') {
                a.clone()
            } else {
                format!("{a}:502")
            };
            v.check(
                address
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0)),
                format!("{place}.address: {a:?} is not host:port"),
            );
            let one_at_a_time = match m.requests.as_deref() {
                None | Some("side_by_side") => false,
                Some("one_at_a_time") => true,
                Some(r) => {
                    v.push(format!(
                        "{place}.requests: {r:?} is neither \"side_by_side\" nor \"one_at_a_time\""
                    ));
                    false
                }
            };
            let t = match m.framing.as_str() {
                "tcp" if one_at_a_time => Transport::TcpOneAtATime(address.clone()),
                "tcp" => Transport::Tcp(address.clone()),
                "rtu" => {
                    v.check(
                        m.requests.as_deref() != Some("side_by_side"),
                        format!("{place}.requests: RTU frames carry one request at a time; leave requests out"),
                    );
                    Transport::RtuOverTcp(address.clone())
                }
                f => {
                    v.push(format!(
                        "{place}.framing: {f:?} is neither \"tcp\" (Modbus TCP) nor \"rtu\" (RTU frames over TCP)"
                    ));
                    Transport::Tcp(address.clone())
                }
            };
            (address, t)
        }
        (None, Some(s)) => {
            v.check(
                m.framing == "tcp" || m.framing == "rtu",
                format!("{place}.framing: a serial line is always RTU; leave framing out"),
            );
            v.check(
                m.requests.is_none() || m.requests.as_deref() == Some("one_at_a_time"),
                format!("{place}.requests: a serial line carries one request at a time; leave requests out"),
            );
            v.check(
                !s.port.is_empty(),
                format!("{place}.serial.port: must not be empty"),
            );
            v.check(
                (300..=921_600).contains(&s.baud_rate),
                format!(
                    "{place}.serial.baud_rate: {} must be 300–921600",
                    s.baud_rate
                ),
            );
            let parity = match s.parity.as_str() {
                "none" => Parity::None,
                "even" => Parity::Even,
                "odd" => Parity::Odd,
                p => {
                    v.push(format!(
                        "{place}.serial.parity: {p:?} is not none, even or odd"
                    ));
                    Parity::Even
                }
            };
            v.check(
                matches!(s.stop_bits, 1 | 2),
                format!("{place}.serial.stop_bits: {} must be 1 or 2", s.stop_bits),
            );
            v.check(
                matches!(s.data_bits, 7 | 8),
                format!("{place}.serial.data_bits: {} must be 7 or 8", s.data_bits),
            );
            let settings = SerialSettings {
                port: s.port.clone(),
                baud_rate: s.baud_rate,
                parity,
                stop_bits: s.stop_bits,
                data_bits: s.data_bits,
            };
            (s.port.clone(), Transport::Serial(settings))
        }
        _ => {
            v.push(format!(
                "{place}: give either address (Modbus TCP, or RTU over TCP with framing = \"rtu\") or serial (Modbus RTU)"
            ));
            (String::new(), Transport::Tcp(String::new()))
        }
    }
}
