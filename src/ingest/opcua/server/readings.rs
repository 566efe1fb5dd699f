//! From values to readings: a publish response's (or a poll's) changes applied to each
//! station's latest values, one reading per station they touched, checked (status, newer than
//! the last) and handed to the same decoder and [`slot::accept`] as an MQTT payload.
//!
//! Where it sits: methods of the server's task ([`super::Server`]).

use std::sync::atomic::Ordering;

use opcua::types::{DataValue, StatusCode};
use tokio::time::Instant;
use tracing::warn;

use super::Server;
use crate::ingest::decode::{self, Reject};
use crate::ingest::modbus::map::READ_FIELDS;
use crate::ingest::slot;

impl Server {
    /// Applies data changes and makes a reading of every station they touched.
    pub(super) fn apply(&mut self, changes: impl Iterator<Item = (u32, DataValue)>) {
        let now_ms = crate::clock::now_ms();
        let mut touched = vec![false; self.stations.len()];
        for (handle, value) in changes {
            let Some(item) = (handle as usize)
                .checked_sub(1)
                .and_then(|k| self.items.get(k))
            else {
                continue;
            };
            let ts = value
                .source_timestamp
                .as_ref()
                .or(value.server_timestamp.as_ref())
                .map(crate::ingest::opcua::unix_ms)
                .unwrap_or(now_ms);
            self.parts
                .stats
                .opcua_notifications
                .fetch_add(1, Ordering::Relaxed);
            self.parts
                .stats
                .opcua_lateness
                .record(((now_ms - ts).max(0) as u64) * 1000);
            let l = &mut self.latest[item.station];
            l.pending_ts = Some(l.pending_ts.map_or(ts, |p| p.max(ts)));
            l.values[item.node] = Some(value);
            touched[item.station] = true;
        }
        for (i, t) in touched.into_iter().enumerate() {
            if t {
                let ts = self.latest[i].pending_ts.take().unwrap_or(now_ms);
                self.read_station(i, ts);
            }
        }
    }

    /// Once per interval: a station that had no change since its last reading is read again
    /// from its latest values, if the subscription published since (its values are current).
    pub(super) fn refresh(&mut self) {
        if !std::mem::take(&mut self.published) || self.live.borrow().is_none() {
            return;
        }
        let now_ms = crate::clock::now_ms();
        for i in 0..self.stations.len() {
            if self.latest[i].last_read.elapsed() >= self.cfg.interval {
                self.read_station(i, now_ms);
            }
        }
    }

    /// A reading from station `i`'s latest values at `ts`, if it has every required one, they
    /// are all Good and it is newer than the last.
    fn read_station(&mut self, i: usize, ts: i64) {
        let (st, slot) = &self.stations[i];
        let l = &mut self.latest[i];
        l.last_read = Instant::now();
        if !slot.active.load(Ordering::Relaxed) {
            return; // another instance of the cluster leads the station
        }
        if ts <= l.last_ts {
            // The server re-sent a value already stored (a new subscription's first values).
            self.parts
                .stats
                .opcua_resent
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut obj = serde_json::Map::new();
        obj.insert("ts".into(), ts.into());
        let mut bad: Option<Reject> = None;
        for (node, v) in st.map.nodes.iter().zip(&l.values) {
            let Some(v) = v else { continue };
            let status = v.status.unwrap_or(StatusCode::Good);
            if !status.is_good() {
                bad.get_or_insert(Reject::BadStatus {
                    field: node.field.clone(),
                    status: status.to_string(),
                });
                continue;
            }
            let Some(x) = v.value.as_ref().and_then(|x| node.decode(x)) else {
                bad.get_or_insert(Reject::WrongType(node.field.clone()));
                continue;
            };
            let x = (x * 1e6).round() / 1e6;
            if let (Some(n), true) = (
                serde_json::Number::from_f64(x),
                READ_FIELDS.contains(&node.field.as_str()),
            ) {
                obj.insert(node.field.clone(), n.into());
            }
        }
        let decoded = match bad {
            Some(r) => Err(r),
            None => {
                let payload = serde_json::Value::Object(obj).to_string();
                decode::decode(&st.station, payload.as_bytes(), ts, &self.parts.limits)
                    .and_then(|r| slot.check_area(r))
            }
        };
        match decoded {
            Ok(reading) => {
                l.last_ts = ts;
                l.logged = None;
                let mut out = slot::Gathered::new(self.parts.store.clone(), slot.trigger.clone());
                slot::accept(slot, reading, &mut out, &self.parts.stats);
                out.flush(&self.parts.stats);
            }
            // A station without its required values yet (the first changes are arriving).
            Err(Reject::Missing(_)) => {}
            Err(rej) => {
                slot.rejects.fetch_add(1, Ordering::Relaxed);
                self.parts.stats.count_reject(rej.label());
                let text = rej.to_string();
                if l.logged.as_deref() != Some(&text) {
                    warn!(server = %self.cfg.name, station = %st.station, reason = rej.label(), detail = %text,
                        "OPC UA reading rejected; not used for control.");
                    l.logged = Some(text);
                }
            }
        }
    }
}
