//! Ingest: what happens to each MQTT message the event loop receives.
//!
//! Called synchronously from the MQTT event-loop task (it must never block): telemetry is
//! decoded and validated, the accepted reading replaces the station's latest (latest-value
//! policy: the controller only needs the newest) and its line is queued for storage; a rejected
//! payload is counted by reason and logged at most once per station per minute, and nothing
//! else happens. Weather messages update the shared outdoor temperature.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::decode::{self, DecodeLimits};
use crate::model::{Reading, StationId};
use crate::stats::Stats;
use crate::store::{line_protocol, StoreHandle};

const REJECT_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Number of topic filters the engine subscribes to (telemetry, weather, state, ack).
pub const SUBSCRIPTIONS: usize = 4;

/// The latest accepted reading of one configured station, shared with the control task.
#[derive(Debug)]
pub struct StationSlot {
    pub latest: Mutex<Option<Reading>>,
    /// Payloads rejected for this station so far.
    pub rejects: std::sync::atomic::AtomicU64,
    /// The station's MQTT presence (`…/state`): 0 unknown, 1 online, 2 offline.
    pub presence: std::sync::atomic::AtomicU8,
    /// Highest command `seq` the station acknowledged on `…/ack`, and its last error text.
    pub acked_seq: std::sync::atomic::AtomicU64,
    pub ack_error: Mutex<Option<String>>,
    pub tags: BTreeMap<String, String>,
    pub area_m2: Option<f64>,
    /// Modbus stations: why the link is down or the device refuses (`None` while polls
    /// succeed), and the poller's counters.
    pub comm_error: Mutex<Option<String>>,
    pub modbus: Option<Arc<crate::modbus::poller::Counters>>,
    /// Position in the config, and the control task's wake-up channel when control follows
    /// telemetry (`engine.control_on = "telemetry"`).
    pub index: usize,
    pub trigger: Option<tokio::sync::mpsc::Sender<u32>>,
}

/// Takes one validated reading of a configured station, whichever way it came (MQTT or a
/// Modbus poll): counted, queued for storage, and made the station's latest unless a newer one
/// is already there.
/// With control following telemetry, a new latest reading also wakes the control task.
pub fn accept(slot: &StationSlot, reading: Reading, store: &StoreHandle, stats: &Stats) {
    stats.readings_accepted.fetch_add(1, Ordering::Relaxed);
    store.submit(line_protocol::telemetry(&reading, &slot.tags, slot.area_m2));
    let mut latest = slot.latest.lock().unwrap_or_else(|p| p.into_inner());
    // Out-of-order delivery must not replace a newer reading with an older one.
    if latest.as_ref().is_none_or(|l| l.ts_ms <= reading.ts_ms) {
        *latest = Some(reading);
        drop(latest);
        if let Some(trigger) = &slot.trigger {
            // Full: the control task is behind; the tick steps a station it missed.
            if trigger.try_send(slot.index as u32).is_err() {
                stats
                    .control_triggers_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The latest weather-feed outdoor temperature: (ts_ms, °C).
pub type Weather = Arc<Mutex<Option<(i64, f64)>>>;

#[derive(Debug)]
pub struct Ingest {
    prefix: String,
    slots: HashMap<StationId, Arc<StationSlot>>,
    weather: Weather,
    store: StoreHandle,
    stats: Arc<Stats>,
    limits: DecodeLimits,
    /// Per source (station id or topic): when we last logged a rejection, and how many since.
    reject_log: HashMap<String, (Instant, u64)>,
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
        Self {
            prefix: prefix.to_owned(),
            slots,
            weather,
            store,
            stats,
            limits,
            reject_log: HashMap::new(),
        }
    }

    /// The topic filters to subscribe: (filter, qos1). There are [`SUBSCRIPTIONS`] of them.
    pub fn subscriptions(&self, telemetry_qos1: bool) -> Vec<(String, bool)> {
        vec![
            (
                format!("{}/station/+/telemetry", self.prefix),
                telemetry_qos1,
            ),
            (format!("{}/weather", self.prefix), true),
            (format!("{}/station/+/state", self.prefix), true),
            (format!("{}/station/+/ack", self.prefix), true),
        ]
    }

    pub fn on_message(&mut self, topic: &str, payload: &[u8], now_ms: i64) {
        self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
        let Some(rest) = topic.strip_prefix(self.prefix.as_str()) else {
            return;
        };
        if rest == "/weather" {
            return self.on_weather(payload, now_ms);
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
        match decode::decode(&station, payload, now_ms, &self.limits) {
            Ok(reading) => accept(slot, reading, &self.store, &self.stats),
            Err(rej) => {
                slot.rejects.fetch_add(1, Ordering::Relaxed);
                let label = rej.label();
                self.reject(id, label, &rej.to_string());
            }
        }
    }

    fn on_weather(&mut self, payload: &[u8], now_ms: i64) {
        #[derive(serde::Deserialize)]
        struct W {
            ts: Option<i64>,
            outdoor_temp_c: f64,
        }
        match serde_json::from_slice::<W>(payload) {
            Ok(w) if (decode::TEMP_MIN_C..=decode::TEMP_MAX_C).contains(&w.outdoor_temp_c) => {
                let ts = w.ts.unwrap_or(now_ms);
                *self.weather.lock().unwrap_or_else(|p| p.into_inner()) =
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
