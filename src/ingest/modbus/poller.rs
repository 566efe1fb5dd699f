//! One task per Modbus station: poll its registers on a fixed interval, write its commands.
//!
//! Data flow: [`run`] reads the blocks of the station's [`RegisterMap`] read plan (registers
//! coalesced across gaps of at most `max_gap` unmapped ones; a device that refuses such a read
//! is detected on its first exception and read block by block from then on), turns the
//! values into a telemetry object and hands it to the same decoder and [`slot::accept`] as an
//! MQTT payload, so validation, storage and control are identical for both transports. The
//! control task sends each command over a `watch` channel (latest wins); the poller writes it
//! to the holding registers at once and counts it as delivered only when the device confirmed
//! every write.
//!
//! Failure handling (stack-notes: tokio-modbus has no request timeout): every connect, read and
//! write is wrapped in the station's timeout. A timeout, a link error or a reply of the wrong
//! size drops the connection, which is re-established with capped, jittered backoff; a Modbus
//! exception (the device refused) keeps it. Either way the cycle produces no reading — the
//! station goes stale, its last value is never repeated with a new timestamp — and the failure
//! is counted, logged once per change of state, and shown as `comm_error` (comm-lost alarm).
//! Each station has its own task, connection and backoff: a dead or refusing device never
//! delays another. On a shared line ([`super::line`]) the stations poll at the line's common
//! phase, and a failing one's requests go as probes, in the line's idle time.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_modbus::client::{Client, Context, Reader};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::line::{self, LineHandle, Transport};
use super::link::{bits, connect, first_of_kind, Failure};
use super::map::{ReadBlock, RegisterMap, Table};
use crate::backoff::Backoff;
use crate::ingest::decode::{self, DecodeLimits};
use crate::ingest::slot::{self, ModbusCounters as Counters, StationSlot};
use crate::model::{Command, StationId};
use crate::stats::Stats;
use crate::store::StoreHandle;

/// One station's Modbus settings, validated.
#[derive(Debug, Clone)]
pub struct PollerConfig {
    pub station: StationId,
    /// Where the station is, for logs and the status view: `host:port` or the serial port.
    pub address: String,
    /// How it is reached (a TCP address is resolved at each connect, so a DNS change is
    /// picked up).
    pub transport: Transport,
    /// The gap a shared line keeps between two requests (`None`: the transport's default).
    pub frame_gap: Option<Duration>,
    /// The shared line the station is on (set when the engine starts; `None`: its own TCP
    /// connection).
    pub line: Option<LineHandle>,
    pub unit_id: u8,
    pub interval: Duration,
    pub timeout: Duration,
    pub max_registers: u16,
    pub coalesce: bool,
    /// Unmapped registers a coalesced read may span (0: adjacent registers only).
    pub max_gap: u16,
    pub map: Arc<RegisterMap>,
}

pub(super) struct Poller {
    pub(super) cfg: PollerConfig,
    pub(super) plan: Vec<ReadBlock>,
    /// The plan without gaps, while `plan` spans unmapped registers and the device has not
    /// yet answered it: the fallback for a device that refuses such reads.
    pub(super) gap_free: Option<Vec<ReadBlock>>,
    pub(super) slot: Arc<StationSlot>,
    pub(super) counters: Arc<Counters>,
    pub(super) store: StoreHandle,
    pub(super) stats: Arc<Stats>,
    pub(super) limits: DecodeLimits,
    pub(super) ctx: Option<Context>,
    pub(super) backoff: Backoff,
    pub(super) reconnect_at: Instant,
    /// The command not yet delivered, if any.
    pub(super) pending: Option<Command>,
    /// How long an undelivered command is retried before it is dropped as too old.
    pub(super) retry_for: Duration,
    /// The problem last logged, so each change of state is logged once.
    pub(super) logged: Option<String>,
    /// No answer or a broken link since the last good poll: on a shared line the station's
    /// requests are then probes.
    pub(super) failing: Arc<std::sync::atomic::AtomicBool>,
}

/// Polls and commands one station until `stop` is cancelled.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    cfg: PollerConfig,
    slot: Arc<StationSlot>,
    store: StoreHandle,
    stats: Arc<Stats>,
    limits: DecodeLimits,
    retry_for: Duration,
    mut commands: watch::Receiver<Option<Command>>,
    stop: CancellationToken,
) {
    let plan = cfg
        .map
        .read_plan(cfg.coalesce, cfg.max_registers, cfg.max_gap);
    let gap_free = plan
        .iter()
        .any(|b| b.unmapped > 0)
        .then(|| cfg.map.read_plan(cfg.coalesce, cfg.max_registers, 0));
    let counters = slot.modbus.clone().unwrap_or_default();
    counters
        .requests_per_poll
        .store(plan.len() as u64, Ordering::Relaxed);
    let interval = cfg.interval;
    let mut p = Poller {
        cfg,
        plan,
        gap_free,
        slot,
        counters,
        store,
        stats,
        limits,
        ctx: None,
        backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(30)),
        reconnect_at: Instant::now(),
        pending: None,
        retry_for,
        logged: None,
        failing: Default::default(),
    };
    // Stations start at different phases of the interval (from a hash of the id), so a fleet
    // polled at the same interval does not wake, and load the network, all at one instant.
    // The stations of one shared line take the line's phase: their polls come together and
    // leave the line idle for the rest of the interval, where a failing unit's probe fits.
    let phase_key = match &p.cfg.line {
        Some(l) => l.key.as_str(),
        None => p.cfg.station.as_str(),
    };
    let phase = phase_key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    }) % 1000;
    let mut next = Instant::now() + interval.mul_f64(phase as f64 / 1000.0);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {
                let late = next.elapsed().as_micros() as u64;
                p.counters.lateness_us.store(late, Ordering::Relaxed);
                p.counters.lateness_max_us.fetch_max(late, Ordering::Relaxed);
                p.stats.modbus_lateness.record(late);
                next += interval;
                // After a long stall, skip the missed cycles instead of bursting them.
                let now = Instant::now();
                if next < now {
                    next = now + interval;
                }
                if !p.slot.active.load(Ordering::Relaxed) {
                    // Another instance of the cluster polls it: one master at a time.
                    if let Some(mut ctx) = p.ctx.take() {
                        let _ = tokio::time::timeout(p.cfg.timeout, ctx.disconnect()).await;
                    }
                    p.pending = None;
                    continue;
                }
                p.poll().await;
                if p.pending.is_some() {
                    p.write().await;
                }
            }
            changed = commands.changed() => {
                if changed.is_err() {
                    break;
                }
                p.pending = commands.borrow_and_update().clone();
                p.write().await;
            }
            _ = stop.cancelled() => break,
        }
    }
    if let Some(mut ctx) = p.ctx.take() {
        let _ = tokio::time::timeout(p.cfg.timeout, ctx.disconnect()).await;
    }
}

impl Poller {
    /// The open connection, connecting first if the backoff allows. `None`: not now.
    pub(super) async fn connection(&mut self) -> Option<&mut Context> {
        if self.ctx.is_none() {
            if Instant::now() < self.reconnect_at {
                return None;
            }
            let connected = match &self.cfg.line {
                Some(l) => Ok(line::attach(
                    l,
                    self.cfg.unit_id,
                    self.cfg.timeout,
                    self.cfg.interval,
                    self.failing.clone(),
                )),
                None => connect(&self.cfg.address, self.cfg.unit_id, self.cfg.timeout).await,
            };
            match connected {
                Ok(ctx) => {
                    self.counters.connects.fetch_add(1, Ordering::Relaxed);
                    self.ctx = Some(ctx);
                }
                Err(f) => {
                    let what = format!("connect to {}", self.cfg.address);
                    self.failed(&what, f);
                    return None;
                }
            }
        }
        self.ctx.as_mut()
    }

    /// Records a failure: counters, state, connection, backoff, one log line per change.
    pub(super) fn failed(&mut self, what: &str, f: Failure) {
        match &f {
            Failure::Exception(_) => &self.counters.exceptions,
            Failure::Timeout => &self.counters.timeouts,
            Failure::Link(_) => &self.counters.link_failures,
        }
        .fetch_add(1, Ordering::Relaxed);
        if matches!(f, Failure::Exception(_)) {
            self.stats.modbus_exceptions.fetch_add(1, Ordering::Relaxed);
        }
        if !f.keeps_connection() {
            self.failing.store(true, Ordering::Relaxed);
            self.ctx = None;
            self.reconnect_at = Instant::now() + self.backoff.next_delay();
        }
        let text = f.describe(what, self.cfg.timeout);
        // Log once per kind of problem, not once per cycle.
        let kind = text.split(':').next().unwrap_or_default();
        if first_of_kind(&mut self.logged, kind) {
            warn!(station = %self.cfg.station, address = %self.cfg.address, unit = self.cfg.unit_id,
                problem = %text, "Modbus station failing; it goes stale and is retried with backoff.");
        }
        *self
            .slot
            .comm_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(text);
    }

    pub(super) fn recovered(&mut self) {
        self.backoff.reset();
        self.failing.store(false, Ordering::Relaxed);
        if self.logged.take().is_some() {
            info!(station = %self.cfg.station, address = %self.cfg.address, "Modbus station answering again.");
        }
        *self
            .slot
            .comm_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// How long one request may take from the poller's side: its timeout, and on a shared
    /// line also the requests of the other units that may be queued ahead of it (each bounded
    /// by the line's own timeout).
    pub(super) fn wait(&self) -> Duration {
        let ahead = self.cfg.line.as_ref().map_or(0, |l| l.members as u32);
        self.cfg.timeout * (ahead + 1)
    }

    /// Reads every block of the plan on the open connection (connecting first if allowed).
    /// `Ok(None)`: no connection this cycle (backoff running or connect failed, recorded).
    async fn read_all(
        &mut self,
        plan: &[ReadBlock],
    ) -> Result<Option<Vec<Vec<u16>>>, (String, Failure)> {
        let timeout = self.wait();
        let counters = self.counters.clone();
        let Some(ctx) = self.connection().await else {
            return Ok(None);
        };
        let mut words = Vec::with_capacity(plan.len());
        for b in plan {
            counters.read_requests.fetch_add(1, Ordering::Relaxed);
            let (a, n) = (b.address, b.count);
            // Bits come back one `bool` per address: carried on as words of 0 or 1.
            let reply = match b.table {
                Table::Input => tokio::time::timeout(timeout, ctx.read_input_registers(a, n)).await,
                Table::Holding => {
                    tokio::time::timeout(timeout, ctx.read_holding_registers(a, n)).await
                }
                Table::Coil => bits(tokio::time::timeout(timeout, ctx.read_coils(a, n)).await),
                Table::DiscreteInput => {
                    bits(tokio::time::timeout(timeout, ctx.read_discrete_inputs(a, n)).await)
                }
            };
            let r = match reply {
                Err(_) => Err(Failure::Timeout),
                Ok(Err(e)) => Err(Failure::from_transport(e)),
                Ok(Ok(Err(exc))) => Err(Failure::Exception(format!("{exc:?}"))),
                Ok(Ok(Ok(w))) if w.len() != b.count as usize => Err(Failure::Link(format!(
                    "{} words in the reply, {} asked",
                    w.len(),
                    b.count
                ))),
                Ok(Ok(Ok(w))) => Ok(w),
            };
            match r {
                Ok(w) => words.push(w),
                Err(f) => return Err((format!("read {:?} {}+{}", b.table, b.address, b.count), f)),
            }
        }
        Ok(Some(words))
    }

    /// While the plan spans unmapped registers and the device has not answered it yet: if it
    /// refused (a Modbus exception), retry the same registers block by block and, if the
    /// device answers those, read it that way from now on. Returns the plan in use; `result`
    /// becomes the retry's when it answered.
    async fn fall_back_if_refused(
        &mut self,
        plan: Vec<ReadBlock>,
        result: &mut Result<Option<Vec<Vec<u16>>>, (String, Failure)>,
    ) -> Vec<ReadBlock> {
        let Some(gap_free) = self.gap_free.take() else {
            return plan;
        };
        match result {
            // An answer to the coalesced plan: the device takes reads across gaps.
            Ok(Some(_)) => return plan,
            Err((what, Failure::Exception(e))) => {
                let refused = format!("{what}: {e}");
                let retry = self.read_all(&gap_free).await;
                if matches!(retry, Ok(Some(_))) {
                    info!(station = %self.cfg.station, address = %self.cfg.address, %refused,
                        requests = gap_free.len(),
                        "Modbus device refuses reads across unmapped registers; reading its blocks one by one.");
                    self.counters
                        .requests_per_poll
                        .store(gap_free.len() as u64, Ordering::Relaxed);
                    *result = retry;
                    return gap_free;
                }
            }
            _ => {}
        }
        self.gap_free = Some(gap_free);
        plan
    }

    /// One poll cycle: read every block; a reading only if all of them answered.
    async fn poll(&mut self) {
        self.counters.cycles.fetch_add(1, Ordering::Relaxed);
        let ts = crate::clock::now_ms();
        let plan = std::mem::take(&mut self.plan);
        let reused = self.ctx.is_some();
        let mut result = self.read_all(&plan).await;
        // A connection the device closed while idle (the ECL Comfort does after ~75 s) fails
        // with a link error on its next use: reconnect at once and retry the cycle, once.
        if reused && matches!(result, Err((_, Failure::Link(_)))) {
            self.counters.link_failures.fetch_add(1, Ordering::Relaxed);
            self.ctx = None;
            result = self.read_all(&plan).await;
        }
        let plan = self.fall_back_if_refused(plan, &mut result).await;
        let words = match result {
            Ok(Some(words)) => words,
            Ok(None) => {
                self.plan = plan;
                self.stats
                    .modbus_poll_failures
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err((what, f)) => {
                self.plan = plan;
                self.stats
                    .modbus_poll_failures
                    .fetch_add(1, Ordering::Relaxed);
                return self.failed(&what, f);
            }
        };
        self.recovered();
        self.counters.polls_ok.fetch_add(1, Ordering::Relaxed);
        self.stats.modbus_polls.fetch_add(1, Ordering::Relaxed);
        let mut obj = serde_json::Map::new();
        obj.insert("ts".into(), ts.into());
        for (field, v) in self.cfg.map.decode(&plan, &words) {
            // Trim binary noise of the scaling (0.01 × 5240 = 52.400000000000006).
            let v = (v * 1e6).round() / 1e6;
            if let Some(n) = serde_json::Number::from_f64(v) {
                obj.insert(field.to_owned(), n.into());
            }
        }
        self.plan = plan;
        let payload = serde_json::Value::Object(obj).to_string();
        let decoded = decode::decode(&self.cfg.station, payload.as_bytes(), ts, &self.limits)
            .and_then(|r| self.slot.check_area(r));
        match decoded {
            Ok(reading) => {
                let mut out = slot::Gathered::new(self.store.clone(), self.slot.trigger.clone());
                slot::accept(&self.slot, reading, &mut out, &self.stats);
                out.flush(&self.stats);
            }
            Err(rej) => {
                // The device answered with values that are not physical: same policy as MQTT.
                self.slot.rejects.fetch_add(1, Ordering::Relaxed);
                self.stats.count_reject(rej.label());
                let kind = format!("rejected {}", rej.label());
                if first_of_kind(&mut self.logged, &kind) {
                    warn!(station = %self.cfg.station, reason = rej.label(), detail = %rej,
                        "Modbus reading rejected; not used for control.");
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "poller_tests.rs"]
mod tests;
