//! Per-station slots: where an accepted reading lands, whichever way it came (MQTT or a
//! Modbus poll), and what a burst of readings leaves to do.
//!
//! Where it sits: between the ingest paths and the control task. [`accept`] makes a reading
//! the station's latest and gathers its storage line; [`Gathered::flush`] spools a burst's
//! lines in one append and then wakes the control task once. The control task reads each
//! [`StationSlot`]; the alarm evaluation reads its presence, rejects and link error.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::model::Reading;
use crate::stats::Stats;
use crate::store::record::Record;
use crate::store::{Points, StoreHandle};

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
    pub modbus: Option<Arc<ModbusCounters>>,
    /// Position in the config, and the control task's wake-up channel when control follows
    /// telemetry (`engine.control_on = "telemetry"`).
    pub index: usize,
    pub trigger: Option<Trigger>,
    /// When the latest reading was accepted ([`crate::clock::mono_us`]).
    pub accepted_us: std::sync::atomic::AtomicU64,
    /// Whether this instance reads and commands the station: always alone; in a cluster
    /// while it leads the station's partition (a Modbus poller polls only then).
    pub active: std::sync::atomic::AtomicBool,
    /// In a cluster, the lease's fence while this instance leads the station's partition:
    /// a Modbus write goes out only while it holds.
    pub fence: Mutex<Option<crate::cluster::membership::Fence>>,
    /// The `[[mapping]]` the station's payloads follow (`None`: the contract's own).
    pub mapping: Option<Arc<crate::ingest::mapping::Mapping>>,
}

impl StationSlot {
    /// Whether this instance may write a command to the station now.
    pub fn may_command(&self) -> bool {
        self.active.load(std::sync::atomic::Ordering::Relaxed)
            && self
                .fence
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .is_none_or(|f| f.holds())
    }
}

impl StationSlot {
    /// An empty slot for the station at config position `index`; `modbus`: it is polled over
    /// Modbus (and gets counters); `trigger`: control follows telemetry.
    pub fn new(
        index: usize,
        tags: BTreeMap<String, String>,
        area_m2: Option<f64>,
        modbus: bool,
        trigger: Option<Trigger>,
    ) -> Self {
        Self {
            latest: Mutex::new(None),
            rejects: Default::default(),
            presence: Default::default(),
            acked_seq: Default::default(),
            ack_error: Mutex::new(None),
            tags,
            area_m2,
            comm_error: Mutex::new(None),
            modbus: modbus.then(Default::default),
            index,
            trigger,
            accepted_us: Default::default(),
            active: std::sync::atomic::AtomicBool::new(true),
            fence: Mutex::new(None),
            mapping: None,
        }
    }

    /// The same slot for a station whose payloads follow `mapping`.
    pub fn with_mapping(mut self, mapping: Option<Arc<crate::ingest::mapping::Mapping>>) -> Self {
        self.mapping = mapping;
        self
    }

    /// Contract §1: a reading may leave `heated_area_m2` out only when the station's config
    /// sets it. Without either, the heat per m², the KPIs and the coordinator's share would
    /// be computed on nothing, so such a reading is refused like any incomplete payload.
    pub fn check_area(&self, r: Reading) -> Result<Reading, crate::ingest::decode::Reject> {
        if r.heated_area_m2.is_none() && self.area_m2.is_none() {
            return Err(crate::ingest::decode::Reject::Missing("heated_area_m2"));
        }
        Ok(r)
    }
}

/// Wakes the control task with the config indices of stations that have a new reading
/// (control following telemetry).
pub type Trigger = tokio::sync::mpsc::Sender<Vec<u32>>;

/// What accepted readings leave to do until [`Gathered::flush`]: their storage lines and the
/// stations whose control step they call for.
#[derive(Debug)]
pub struct Gathered {
    store: StoreHandle,
    trigger: Option<Trigger>,
    points: Points,
    woken: Vec<u32>,
}

impl Gathered {
    pub fn new(store: StoreHandle, trigger: Option<Trigger>) -> Self {
        Self {
            store,
            trigger,
            points: Points::default(),
            woken: Vec::new(),
        }
    }

    /// Gathers one more record for the next flush's write.
    pub fn push(&mut self, r: &Record<'_>) {
        self.points.push(r);
    }

    /// Appends the gathered lines to the spool in one write, then wakes the control task once
    /// for every station gathered (so control never acts before the reading is spooled).
    pub fn flush(&mut self, stats: &Stats) {
        self.store.append_points(&mut self.points);
        if self.woken.is_empty() {
            return;
        }
        let Some(trigger) = &self.trigger else {
            self.woken.clear();
            return;
        };
        let woken = std::mem::take(&mut self.woken);
        let n = woken.len() as u64;
        // Full: the control task is behind; the tick steps the stations it missed.
        if trigger.try_send(woken).is_err() {
            stats
                .control_triggers_dropped
                .fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Takes one validated reading of a configured station, whichever way it came (MQTT or a
/// Modbus poll): counted, its line gathered for storage, and made the station's latest unless
/// a newer one is already there. With control following telemetry, a new latest reading also
/// gathers the station for the control task's next wake-up. Nothing is written or woken
/// before `out.flush`.
pub fn accept(slot: &StationSlot, reading: Reading, out: &mut Gathered, stats: &Stats) {
    stats.readings_accepted.fetch_add(1, Ordering::Relaxed);
    out.points.push(&Record::Reading {
        reading: &reading,
        tags: &slot.tags,
        area_m2: slot.area_m2,
    });
    let mut latest = slot.latest.lock().unwrap_or_else(|p| p.into_inner());
    // Out-of-order delivery must not replace a newer reading with an older one.
    if latest.as_ref().is_none_or(|l| l.ts_ms <= reading.ts_ms) {
        *latest = Some(reading);
        drop(latest);
        slot.accepted_us
            .store(crate::clock::mono_us(), Ordering::Relaxed);
        if slot.trigger.is_some() {
            out.woken.push(slot.index as u32);
        }
    }
}

/// What the weather feed last gave: the outdoor temperature (ts_ms, °C) from
/// `{prefix}/weather` and the forecast from `{prefix}/weather/forecast`.
#[derive(Debug, Clone, Default)]
pub struct WeatherFeed {
    pub now: Option<(i64, f64)>,
    pub forecast: Option<Arc<crate::predict::forecast::Forecast>>,
}

/// The weather feed, shared between ingest and the control task.
pub type Weather = Arc<Mutex<WeatherFeed>>;

/// A Modbus station's poller counters, shown in the status view and used by tests and
/// benchmarks.
#[derive(Debug, Default)]
pub struct ModbusCounters {
    pub cycles: AtomicU64,
    pub polls_ok: AtomicU64,
    pub link_failures: AtomicU64,
    pub timeouts: AtomicU64,
    pub exceptions: AtomicU64,
    pub connects: AtomicU64,
    pub writes_ok: AtomicU64,
    pub write_failures: AtomicU64,
    /// Read requests sent, and how many one poll takes with the plan in use.
    pub read_requests: AtomicU64,
    pub requests_per_poll: AtomicU64,
    /// Lateness of poll-cycle starts against their schedule, µs: the last and the largest.
    pub lateness_us: AtomicU64,
    pub lateness_max_us: AtomicU64,
}
