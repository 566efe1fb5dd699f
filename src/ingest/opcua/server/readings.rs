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
use crate::ingest::opcua::map::Access;
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
        // One spool append and one control wake-up for the whole response, as for an MQTT burst.
        let mut out = self.gathered();
        for (i, t) in touched.into_iter().enumerate() {
            if t {
                let ts = self.latest[i].pending_ts.take().unwrap_or(now_ms);
                self.read_station(i, ts, &mut out);
            }
        }
        out.flush(&self.parts.stats);
    }

    /// Where a burst of readings is gathered (all slots share the control's wake-up channel).
    fn gathered(&self) -> slot::Gathered {
        let trigger = self.stations.first().and_then(|(_, s)| s.trigger.clone());
        slot::Gathered::new(self.parts.store.clone(), trigger)
    }

    /// Once per interval: a station that had no change since its last reading is read again
    /// from its latest values, if the subscription published since (its values are current).
    pub(super) fn refresh(&mut self) {
        if !std::mem::take(&mut self.published) || !self.connected {
            return;
        }
        let now_ms = crate::clock::now_ms();
        let mut out = self.gathered();
        for i in 0..self.stations.len() {
            if self.latest[i].last_read.elapsed() >= self.cfg.interval {
                self.read_station(i, now_ms, &mut out);
            }
        }
        out.flush(&self.parts.stats);
    }

    /// A reading from station `i`'s latest values at `ts`, if it has every required one, they
    /// are all Good and it is newer than the last.
    fn read_station(&mut self, i: usize, ts: i64, out: &mut slot::Gathered) {
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
                slot::accept(slot, reading, out, &self.parts.stats);
            }
            // A station whose first values are still arriving.
            Err(Reject::Missing(_))
                if st
                    .map
                    .nodes
                    .iter()
                    .zip(&l.values)
                    .any(|(n, v)| n.access == Access::Read && v.is_none()) => {}
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use opcua::types::{DataValue, DateTime, StatusCode, Variant};
    use tokio::sync::watch;

    use super::super::{Parts, Server};
    use crate::ingest::decode::DecodeLimits;
    use crate::ingest::opcua::map::NodeMap;
    use crate::ingest::opcua::{Identity, Mode, Security, ServerConfig, StationNodes};
    use crate::ingest::slot::StationSlot;
    use crate::model::StationId;
    use crate::stats::Stats;
    use crate::store::StoreHandle;

    const MAP: &str =
        "[[node]]\nfield = \"supply_temp_c\"\nnode_id = \"ns=2;s={node}.s\"\ntype = \"double\"\n\
        [[node]]\nfield = \"return_temp_c\"\nnode_id = \"ns=2;s={node}.r\"\ntype = \"double\"\n\
        [[node]]\nfield = \"flow_m3h\"\nnode_id = \"ns=2;s={node}.f\"\ntype = \"double\"\n";

    /// A server's task of one station with the three required nodes (handles 1–3), without
    /// a session; readings go to a spool under `dir`.
    fn server(dir: &std::path::Path, area: Option<f64>) -> (Server, Arc<StationSlot>, Arc<Stats>) {
        let stats = Arc::new(Stats::default());
        let cfg = ServerConfig {
            name: "t".into(),
            endpoint: "opc.tcp://127.0.0.1:4840".into(),
            security: Security::None,
            server_certificate: None,
            client_certificate: None,
            application_uri: "urn:t".into(),
            identity: Identity::Anonymous,
            mode: Mode::Subscribe,
            interval: Duration::from_millis(10),
            timeout: Duration::from_secs(1),
            pki_dir: dir.join("pki"),
        };
        let nodes = StationNodes {
            station: StationId::new("st-1").unwrap(),
            node: "st-1".into(),
            map: Arc::new(NodeMap::parse(MAP).unwrap()),
        };
        let slot = Arc::new(StationSlot::new(0, BTreeMap::new(), area, false, None));
        let parts = Parts {
            store: StoreHandle::in_dir(dir, stats.clone()),
            stats: stats.clone(),
            limits: DecodeLimits::default(),
        };
        let mut s = Server::new(
            cfg,
            vec![(nodes.clone(), slot.clone())],
            parts,
            watch::channel(None).0,
        );
        for (node, _) in nodes.map.nodes.iter().enumerate() {
            s.items.push(super::super::Item {
                station: 0,
                node,
                id: nodes
                    .map
                    .node_id(&nodes.map.nodes[node], "st-1", 0)
                    .unwrap(),
                deadband: None,
            });
        }
        (s, slot, stats)
    }

    /// The three values at source time `ms` with `status` on the supply.
    fn batch(ms: i64, supply: f64, status: StatusCode) -> Vec<(u32, DataValue)> {
        let at = |v: f64, st: StatusCode| DataValue {
            value: Some(Variant::Double(v)),
            status: Some(st),
            source_timestamp: Some(DateTime::from(ms * 10_000 + 116_444_736_000_000_000)),
            ..Default::default()
        };
        vec![
            (1, at(supply, status)),
            (2, at(40.0, StatusCode::Good)),
            (3, at(100.0, StatusCode::Good)),
        ]
    }

    fn accepted(stats: &Stats) -> u64 {
        Stats::get(&stats.readings_accepted)
    }

    fn rejected(stats: &Stats, label: &str) -> u64 {
        stats
            .rejects_by_reason
            .lock()
            .unwrap()
            .get(label)
            .copied()
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn one_reading_per_response_none_twice_and_a_value_not_good_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, slot, stats) = server(dir.path(), Some(8000.0));
        let t0 = crate::clock::now_ms() - 5_000;
        s.apply(batch(t0, 60.0, StatusCode::Good).into_iter());
        assert_eq!(accepted(&stats), 1);
        assert_eq!(slot.latest.lock().unwrap().as_ref().unwrap().ts_ms, t0);
        // The same values again (a new subscription's first values): not stored twice.
        s.apply(batch(t0, 60.0, StatusCode::Good).into_iter());
        assert_eq!((accepted(&stats), Stats::get(&stats.opcua_resent)), (1, 1));
        // Bad, then Uncertain: refused with the status, counted; the last good one stays.
        s.apply(batch(t0 + 1000, 61.0, StatusCode::BadSensorFailure).into_iter());
        s.apply(batch(t0 + 2000, 62.0, StatusCode::UncertainLastUsableValue).into_iter());
        assert_eq!((accepted(&stats), rejected(&stats, "bad_status")), (1, 2));
        assert_eq!(slot.latest.lock().unwrap().as_ref().unwrap().ts_ms, t0);
        // Good again.
        s.apply(batch(t0 + 3000, 63.0, StatusCode::Good).into_iter());
        assert_eq!(accepted(&stats), 2);
        let latest = slot.latest.lock().unwrap().clone().unwrap();
        assert_eq!((latest.ts_ms, latest.supply_temp_c), (t0 + 3000, 63.0));
    }

    #[tokio::test]
    async fn a_steady_station_is_read_again_only_while_the_subscription_publishes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _slot, stats) = server(dir.path(), Some(8000.0));
        s.apply(batch(crate::clock::now_ms() - 1000, 60.0, StatusCode::Good).into_iter());
        assert_eq!(accepted(&stats), 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.published = true;
        s.refresh();
        assert_eq!(
            accepted(&stats),
            1,
            "no session: nothing says the values are current"
        );
        // A session and a keep-alive since: the same values, now.
        s.connected = true;
        s.published = true;
        s.refresh();
        assert_eq!(accepted(&stats), 2);
        s.refresh();
        assert_eq!(accepted(&stats), 2, "no publish since: nothing new");
    }

    #[tokio::test]
    async fn a_field_no_node_and_no_config_gives_is_named_once_every_node_answered() {
        let dir = tempfile::tempdir().unwrap();
        // Neither the map nor the config gives the heated area.
        let (mut s, _slot, stats) = server(dir.path(), None);
        let t0 = crate::clock::now_ms() - 5_000;
        let mut first = batch(t0, 60.0, StatusCode::Good);
        first.truncate(2);
        s.apply(first.into_iter());
        assert_eq!(
            rejected(&stats, "missing_field"),
            0,
            "the flow has not come yet"
        );
        s.apply(batch(t0 + 1000, 60.0, StatusCode::Good).into_iter());
        assert_eq!(
            (accepted(&stats), rejected(&stats, "missing_field")),
            (0, 1)
        );
    }
}
