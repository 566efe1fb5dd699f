//! What happens to each MQTT message the event loop receives.
//!
//! Called synchronously from the MQTT event-loop task (it must never block): telemetry is
//! decoded and validated, the accepted reading replaces the station's latest (latest-value
//! policy: the controller only needs the newest) and its line is gathered for storage; a
//! rejected payload is counted by reason and logged at most once per station per minute, and
//! nothing else happens. Weather messages update the shared outdoor temperature.
//!
//! Readings arrive in bursts (the MQTT client reads up to ten packets per socket read). What
//! a burst's readings leave to do is gathered in [`Gathered`] and done once when the burst
//! ends ([`Ingest::flush`], called by the event loop before it waits on the socket again):
//! one spool append for all their lines, then one wake-up of the control task for all their
//! stations. At 10,000 msg/s that replaced ~10,000 `write` calls and control wake-ups a second
//! by one per burst. With `ack_after_spool` the broker's acknowledgements go out only after
//! the flush, so the guarantee is unchanged: acknowledged means in the spool.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::decode::{self, DecodeLimits};
use super::event_loop::{Event, Handler};
use super::mapping::assemble::Assembler;
use super::mapping::{Mapping, Matched, PayloadKind};
use super::plant::{self, PlantFeed};
use super::slot::{accept, Gathered, StationSlot, Weather};
use crate::clock::now_ms;
use crate::model::StationId;
use crate::stats::Stats;
use crate::store::record::Record;
use crate::store::StoreHandle;

const REJECT_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Number of topic filters the engine subscribes to (telemetry, weather, forecast, state,
/// ack).
pub const SUBSCRIPTIONS: usize = 5;

#[derive(Debug)]
pub struct Ingest {
    prefix: String,
    slots: HashMap<StationId, Arc<StationSlot>>,
    weather: Weather,
    gathered: Gathered,
    stats: Arc<Stats>,
    limits: DecodeLimits,
    /// Per source (station id or topic): when we last logged a rejection, and how many since.
    reject_log: HashMap<String, (Instant, u64)>,
    /// The `[[mapping]]`s this ingest's stations follow (once each), and the values of
    /// value-per-topic stations waiting to make a reading.
    mappings: Vec<Arc<Mapping>>,
    assembler: Assembler,
    /// The configured plant's id and what is known of it (`None`: no `[plant]`).
    plant: Option<(String, PlantFeed)>,
}

impl Ingest {
    pub fn new(
        prefix: &str,
        slots: HashMap<StationId, Arc<StationSlot>>,
        weather: Weather,
        store: StoreHandle,
        stats: Arc<Stats>,
        limits: DecodeLimits,
    ) -> Self {
        let trigger = slots.values().find_map(|s| s.trigger.clone());
        let mut mappings: Vec<Arc<Mapping>> = Vec::new();
        for m in slots.values().filter_map(|s| s.mapping.as_ref()) {
            if !mappings.iter().any(|x| x.name == m.name) {
                mappings.push(m.clone());
            }
        }
        mappings.sort_by(|a, b| a.name.cmp(&b.name));
        Self {
            prefix: prefix.to_owned(),
            slots,
            weather,
            gathered: Gathered::new(store, trigger),
            stats,
            limits,
            reject_log: HashMap::new(),
            mappings,
            assembler: Assembler::default(),
            plant: None,
        }
    }

    /// Also takes the plant's telemetry, acknowledgements and presence, and the network's
    /// pressure points (contract §7), into `feed`.
    pub fn with_plant(mut self, id: &str, feed: PlantFeed) -> Self {
        self.plant = Some((id.to_owned(), feed));
        self
    }

    /// The plant's topic filters (none without a plant): telemetry, ack, state, and every
    /// pressure point's telemetry.
    pub fn plant_subscriptions(&self, telemetry_qos1: bool) -> Vec<(String, bool)> {
        let Some((id, _)) = &self.plant else {
            return Vec::new();
        };
        let p = &self.prefix;
        vec![
            (format!("{p}/plant/{id}/telemetry"), telemetry_qos1),
            (format!("{p}/plant/{id}/ack"), true),
            (format!("{p}/plant/{id}/state"), true),
            (format!("{p}/network/+/telemetry"), telemetry_qos1),
        ]
    }

    /// The topic filters to subscribe: (filter, qos1). There are [`SUBSCRIPTIONS`] of them,
    /// then one per `[[mapping]]` in use.
    pub fn subscriptions(&self, telemetry_qos1: bool) -> Vec<(String, bool)> {
        let mapped = self
            .mappings
            .iter()
            .map(|m| (m.topic.filter(None), telemetry_qos1));
        let mut own = vec![
            (
                format!("{}/station/+/telemetry", self.prefix),
                telemetry_qos1,
            ),
            (format!("{}/weather", self.prefix), true),
            (format!("{}/weather/forecast", self.prefix), true),
            (format!("{}/station/+/state", self.prefix), true),
            (format!("{}/station/+/ack", self.prefix), true),
        ];
        own.extend(mapped);
        own
    }

    /// In a cluster, what a partition's session subscribes: each of its stations' telemetry
    /// and acknowledgements, at QoS 1 (queued by the broker while no instance leads it).
    pub fn station_subscriptions(&self) -> Vec<(String, bool)> {
        let mut ids: Vec<&StationId> = self.slots.keys().collect();
        ids.sort();
        ids.into_iter()
            .flat_map(|id| {
                let mapped = self.slots[id].mapping.as_ref().map(|m| {
                    let own = id.as_str().strip_prefix(&m.station_prefix);
                    (m.topic.filter(Some(own.unwrap_or(id.as_str()))), true)
                });
                [
                    (format!("{}/station/{id}/telemetry", self.prefix), true),
                    (format!("{}/station/{id}/ack", self.prefix), true),
                ]
                .into_iter()
                .chain(mapped)
            })
            .collect()
    }

    /// In a cluster, what the instance's own connection subscribes: the weather and every
    /// station's presence (telemetry comes on the partitions' sessions).
    pub fn shared_subscriptions(&self) -> Vec<(String, bool)> {
        vec![
            (format!("{}/weather", self.prefix), true),
            (format!("{}/weather/forecast", self.prefix), true),
            (format!("{}/station/+/state", self.prefix), true),
        ]
    }

    pub fn on_message(&mut self, topic: &str, payload: &[u8], now_ms: i64) {
        self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.mappings.len() {
            let m = self.mappings[i].clone();
            if let Some(matched) = m.topic.matches(topic, &m.station_prefix) {
                return self.on_mapped(&m, matched, topic, payload, now_ms);
            }
        }
        let Some(rest) = topic.strip_prefix(self.prefix.as_str()) else {
            return;
        };
        if rest == "/weather" {
            return self.on_weather(payload, now_ms);
        }
        if rest == "/weather/forecast" {
            return self.on_forecast(payload, now_ms);
        }
        if rest.starts_with("/plant/") || rest.starts_with("/network/") {
            return self.on_plant(rest, payload, now_ms);
        }
        if let Some(id) = rest
            .strip_prefix("/station/")
            .and_then(|r| r.strip_suffix("/state"))
        {
            if let Some(slot) = StationId::new(id).ok().and_then(|s| self.slots.get(&s)) {
                let v = match payload {
                    b"online" => 1,
                    b"offline" => 2,
                    _ => 0,
                };
                slot.presence.store(v, Ordering::Relaxed);
            }
            return;
        }
        if let Some(id) = rest
            .strip_prefix("/station/")
            .and_then(|r| r.strip_suffix("/ack"))
        {
            #[derive(serde::Deserialize)]
            struct Ack {
                seq: u64,
                error: Option<String>,
            }
            let slot = StationId::new(id)
                .ok()
                .and_then(|s| self.slots.get(&s).cloned());
            match (slot, serde_json::from_slice::<Ack>(payload)) {
                (Some(slot), Ok(ack)) => {
                    slot.acked_seq.fetch_max(ack.seq, Ordering::Relaxed);
                    let mut e = slot.ack_error.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(err) = &ack.error {
                        warn!(station = id, seq = ack.seq, error = %err, "Station refused a command.");
                    }
                    *e = ack.error.map(|err| format!("seq {}: {err}", ack.seq));
                }
                (None, _) => self.reject(
                    id,
                    "unknown_station",
                    "ack from a station not in the config",
                ),
                (_, Err(e)) => self.reject(id, "bad_ack", &e.to_string()),
            }
            return;
        }
        let Some(id) = rest
            .strip_prefix("/station/")
            .and_then(|r| r.strip_suffix("/telemetry"))
        else {
            return;
        };
        let station = match StationId::new(id) {
            Ok(s) => s,
            Err(_) => return self.reject(topic, "bad_topic", "station id in topic is invalid"),
        };
        let Some(slot) = self.slots.get(&station) else {
            return self.reject(
                id,
                "unknown_station",
                "telemetry from a station not in the config",
            );
        };
        match decode::decode(&station, payload, now_ms, &self.limits)
            .and_then(|r| slot.check_area(r))
        {
            Ok(reading) => accept(slot, reading, &mut self.gathered, &self.stats),
            Err(rej) => {
                slot.rejects.fetch_add(1, Ordering::Relaxed);
                let label = rej.label();
                self.reject(id, label, &rej.to_string());
            }
        }
    }

    /// A message on a `[[mapping]]`'s topic: translated into contract telemetry (a JSON
    /// payload at once; a value per topic once its station's reading is complete), then
    /// decoded and taken like a native payload. A payload that does not fit is refused and
    /// counted like any bad payload; a value on a `{field}` the mapping does not name is
    /// ignored (gateways publish more than a station needs).
    fn on_mapped(
        &mut self,
        m: &Mapping,
        matched: Matched<'_>,
        topic: &str,
        payload: &[u8],
        now_ms: i64,
    ) {
        let Ok(station) = StationId::new(&matched.station) else {
            return self.reject(topic, "bad_topic", "station id in topic is invalid");
        };
        let slot = match self.slots.get(&station) {
            Some(s) if s.mapping.as_ref().is_some_and(|x| x.name == m.name) => s.clone(),
            _ => {
                let why = format!(
                    "telemetry on mapping {}'s topic from a station not configured with it",
                    m.name
                );
                return self.reject(station.as_str(), "unknown_station", &why);
            }
        };
        let contract = match (m.payload, matched.field) {
            (PayloadKind::Value, Some(seg)) => {
                let Some(f) = m.fields.iter().find(|f| f.path[0] == seg) else {
                    return;
                };
                match self.assembler.value(station.as_str(), f, payload) {
                    Ok(None) => return,
                    Ok(Some(object)) => Ok(object),
                    Err(e) => Err(e),
                }
            }
            _ => m.translate(payload, self.limits.max_payload_bytes),
        };
        let reading = contract
            .and_then(|c| decode::decode(&station, &c, now_ms, &self.limits))
            .and_then(|r| slot.check_area(r));
        match reading {
            Ok(reading) => accept(&slot, reading, &mut self.gathered, &self.stats),
            Err(rej) => {
                slot.rejects.fetch_add(1, Ordering::Relaxed);
                let detail = format!("mapping {}: {rej}", m.name);
                self.reject(station.as_str(), rej.label(), &detail);
            }
        }
    }

    /// Ends a burst: stores what was gathered and wakes the control task (see the module
    /// docs). Cheap when nothing was gathered.
    pub fn flush(&mut self) {
        self.gathered.flush(&self.stats);
    }

    /// A forecast replaces the last one; a refused one is counted and logged, and the last
    /// good one stays until it goes stale. An empty (retained-clearing) message removes it.
    fn on_forecast(&mut self, payload: &[u8], now_ms: i64) {
        if self.too_large("forecast", payload) {
            return;
        }
        if payload.is_empty() {
            self.weather
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .forecast = None;
            info!("weather forecast cleared");
            return;
        }
        match crate::predict::forecast::Forecast::decode(payload, now_ms) {
            Ok(f) => {
                self.weather
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .forecast = Some(Arc::new(f));
            }
            Err(e) => self.reject("forecast", "bad_forecast", &e.to_string()),
        }
    }

    /// A message on a plant or pressure-point topic (`rest`: the topic after the prefix).
    fn on_plant(&mut self, rest: &str, payload: &[u8], now_ms: i64) {
        let Some((id, feed)) = self.plant.clone() else {
            return;
        };
        let mut seen = feed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(point) = rest
            .strip_prefix("/network/")
            .and_then(|r| r.strip_suffix("/telemetry"))
        {
            match plant::decode_point(payload, now_ms, &self.limits) {
                Ok(r) => {
                    self.gathered
                        .push(&Record::NetworkPoint { point, reading: &r });
                    seen.points.insert(point.to_owned(), r);
                }
                Err(e) => {
                    seen.rejects += 1;
                    drop(seen);
                    self.reject(point, e.label(), &e.to_string());
                }
            }
            return;
        }
        let Some(what) = rest
            .strip_prefix("/plant/")
            .and_then(|r| r.strip_prefix(id.as_str()))
        else {
            return;
        };
        match what {
            "/telemetry" => match plant::decode_plant(payload, now_ms, &self.limits) {
                Ok(r) => {
                    self.gathered.push(&Record::Plant {
                        plant: &id,
                        reading: &r,
                    });
                    if seen.reading.as_ref().is_none_or(|l| l.ts_ms <= r.ts_ms) {
                        seen.reading = Some(r);
                        seen.received_ms = Some(now_ms);
                    }
                }
                Err(e) => {
                    seen.rejects += 1;
                    drop(seen);
                    self.reject(&id, e.label(), &e.to_string());
                }
            },
            "/ack" => {
                #[derive(serde::Deserialize)]
                struct Ack {
                    seq: u64,
                    error: Option<String>,
                }
                match serde_json::from_slice::<Ack>(payload) {
                    Ok(a) => {
                        if let Some(err) = &a.error {
                            warn!(plant = %id, seq = a.seq, error = %err, "The plant refused a command.");
                        }
                        seen.ack = Some((a.seq, a.error));
                    }
                    Err(e) => {
                        drop(seen);
                        self.reject(&id, "bad_ack", &e.to_string());
                    }
                }
            }
            "/state" => {
                seen.online = match payload {
                    b"online" => Some(true),
                    b"offline" => Some(false),
                    _ => None,
                }
            }
            _ => {}
        }
    }

    /// A payload over `max_payload_bytes` is refused before it is parsed (counted, logged).
    fn too_large(&mut self, source: &str, payload: &[u8]) -> bool {
        let limit = self.limits.max_payload_bytes;
        if payload.len() <= limit {
            return false;
        }
        let detail = format!("{} bytes, over max_payload_bytes {limit}", payload.len());
        self.reject(source, "too_large", &detail);
        true
    }

    fn on_weather(&mut self, payload: &[u8], now_ms: i64) {
        if self.too_large("weather", payload) {
            return;
        }
        #[derive(serde::Deserialize)]
        struct W {
            ts: Option<i64>,
            outdoor_temp_c: f64,
        }
        match serde_json::from_slice::<W>(payload) {
            Ok(w) if (decode::TEMP_MIN_C..=decode::TEMP_MAX_C).contains(&w.outdoor_temp_c) => {
                let ts = w.ts.unwrap_or(now_ms);
                self.weather.lock().unwrap_or_else(|p| p.into_inner()).now =
                    Some((ts, w.outdoor_temp_c));
            }
            Ok(_) => self.reject(
                "weather",
                "out_of_range",
                "weather outdoor_temp_c out of range",
            ),
            Err(e) => self.reject("weather", "not_json", &e.to_string()),
        }
    }

    fn reject(&mut self, source: &str, label: &'static str, detail: &str) {
        self.stats.count_reject(label);
        let now = Instant::now();
        let entry = self
            .reject_log
            .entry(source.to_owned())
            .or_insert((now - REJECT_LOG_INTERVAL, 0));
        entry.1 += 1;
        if now.duration_since(entry.0) >= REJECT_LOG_INTERVAL {
            warn!(
                station = source,
                reason = label,
                detail,
                count = entry.1,
                "Telemetry rejected; not used for control."
            );
            *entry = (now, 0);
        }
        // Bound the map against a flood of random ids.
        if self.reject_log.len() > 10_000 {
            self.reject_log.clear();
        }
    }
}

/// The engine's MQTT event loop hands its events straight to ingest.
impl Handler for Ingest {
    /// Counts the connection's events and takes each message (see [`Ingest::on_message`]).
    fn on_event(&mut self, ev: Event<'_>) {
        let stats = &self.stats;
        match ev {
            Event::Connected => {
                stats.mqtt_connects.fetch_add(1, Ordering::Relaxed);
            }
            Event::Subscribed => {
                let n = stats.mqtt_subacks.fetch_add(1, Ordering::Relaxed) + 1;
                if n % (SUBSCRIPTIONS + self.mappings.len()) as u64 == 0 {
                    info!("MQTT subscriptions confirmed.");
                }
            }
            Event::Watchdog => {
                stats.mqtt_watchdog.fetch_add(1, Ordering::Relaxed);
            }
            Event::Message { topic, payload } => self.on_message(topic, payload, now_ms()),
            Event::BurstEnd => self.flush(),
            Event::Acked { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::slot::Trigger;
    use std::collections::BTreeMap;

    fn slot(index: usize, trigger: Option<Trigger>) -> Arc<StationSlot> {
        Arc::new(StationSlot::new(
            index,
            BTreeMap::new(),
            None,
            false,
            trigger,
        ))
    }

    #[test]
    fn a_burst_is_spooled_in_one_append_before_control_is_woken_once() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(Stats::default());
        let store = StoreHandle::in_dir(dir.path(), stats.clone());
        let spool = store.spool().clone();
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let slots: HashMap<StationId, Arc<StationSlot>> = (0..3)
            .map(|i| {
                let id = StationId::new(&format!("st-{i}")).unwrap();
                (id, slot(i, Some(tx.clone())))
            })
            .collect();
        let weather: Weather = Weather::default();
        let mut ingest = Ingest::new(
            "heating",
            slots,
            weather,
            store,
            stats.clone(),
            DecodeLimits::default(),
        );
        let now = 1_764_262_800_000;
        for i in 0..3 {
            let payload = format!(
                r#"{{"ts": {now}, "supply_temp_c": 52.4, "return_temp_c": 39.8, "flow_m3h": 41.2, "heated_area_m2": 9000}}"#
            );
            let topic = format!("heating/station/st-{i}/telemetry");
            ingest.on_message(&topic, payload.as_bytes(), now);
        }
        // A rejected payload in the same burst: counted, neither stored nor woken.
        ingest.on_message("heating/station/st-1/telemetry", b"{oops", now);
        assert_eq!(
            spool.depth().points,
            0,
            "nothing is written before the burst ends"
        );
        assert!(
            rx.try_recv().is_err(),
            "control is not woken before the burst ends"
        );
        assert_eq!(Stats::get(&stats.readings_accepted), 3);

        ingest.flush();
        assert_eq!(spool.depth().points, 3);
        assert_eq!(Stats::get(&stats.spool_appended), 3);
        let mut woken = rx.try_recv().expect("one wake-up for the burst");
        woken.sort_unstable();
        assert_eq!(woken, vec![0, 1, 2]);
        assert!(rx.try_recv().is_err(), "exactly one wake-up");
        // An empty flush does nothing.
        ingest.flush();
        assert_eq!(spool.depth().points, 3);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn weather_and_forecast_over_the_payload_limit_are_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(Stats::default());
        let store = StoreHandle::in_dir(dir.path(), stats.clone());
        let weather: Weather = Weather::default();
        let limits = DecodeLimits {
            max_payload_bytes: 64,
            ..DecodeLimits::default()
        };
        let mut ingest = Ingest::new(
            "heating",
            HashMap::new(),
            weather.clone(),
            store,
            stats.clone(),
            limits,
        );
        let now = 1_764_262_800_000;
        let padded = format!(r#"{{"outdoor_temp_c": -3.0, "pad": "{}"}}"#, "x".repeat(64));
        ingest.on_message("heating/weather", padded.as_bytes(), now);
        ingest.on_message("heating/weather/forecast", padded.as_bytes(), now);
        assert_eq!(Stats::get(&stats.readings_rejected), 2);
        let by_reason = stats.rejects_by_reason.lock().unwrap().clone();
        assert_eq!(by_reason.get("too_large"), Some(&2), "{by_reason:?}");
        assert!(weather.lock().unwrap().now.is_none());
        // Within the limit, the same reading is taken.
        ingest.on_message("heating/weather", br#"{"outdoor_temp_c": -3.0}"#, now);
        assert_eq!(weather.lock().unwrap().now, Some((now, -3.0)));
    }

    #[test]
    fn a_reading_without_area_is_refused_unless_the_config_sets_one() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(Stats::default());
        let store = StoreHandle::in_dir(dir.path(), stats.clone());
        let with_area = |i, area| Arc::new(StationSlot::new(i, BTreeMap::new(), area, false, None));
        let slots: HashMap<StationId, Arc<StationSlot>> = [
            (StationId::new("bare").unwrap(), with_area(0, None)),
            (StationId::new("sized").unwrap(), with_area(1, Some(5000.0))),
        ]
        .into_iter()
        .collect();
        let mut ingest = Ingest::new(
            "heating",
            slots.clone(),
            Weather::default(),
            store,
            stats.clone(),
            DecodeLimits::default(),
        );
        let now = 1_764_262_800_000;
        let body = r#"{"supply_temp_c": 52.4, "return_temp_c": 39.8, "flow_m3h": 41.2}"#;
        for id in ["bare", "sized"] {
            ingest.on_message(
                &format!("heating/station/{id}/telemetry"),
                body.as_bytes(),
                now,
            );
        }
        let bare = &slots[&StationId::new("bare").unwrap()];
        assert!(
            bare.latest.lock().unwrap().is_none(),
            "refused without any area"
        );
        assert_eq!(bare.rejects.load(Ordering::Relaxed), 1);
        assert_eq!(
            Stats::get(&stats.readings_accepted),
            1,
            "the configured one is taken"
        );
        // The payload's own area makes it whole.
        let with = r#"{"supply_temp_c": 52.4, "return_temp_c": 39.8, "flow_m3h": 41.2, "heated_area_m2": 800}"#;
        ingest.on_message("heating/station/bare/telemetry", with.as_bytes(), now);
        assert!(bare.latest.lock().unwrap().is_some());
    }
}
