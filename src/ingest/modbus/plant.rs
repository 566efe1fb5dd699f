//! The heat plant over Modbus TCP (contract §7: "a plant PLC may equally be polled over Modbus
//! with a register map"): one task polls the plant's map on a fixed interval and writes the
//! plant loop's commands to its holding registers.
//!
//! Where it sits: the Modbus twin of the plant's MQTT topics in [`super::super::messages`].
//! A poll's values become the same JSON object an MQTT plant publishes and go through the
//! same decoder ([`crate::ingest::plant::decode_plant`]) into the same [`PlantFeed`] and
//! storage; the plant task ([`crate::control::plant_task`]) hands each command over a `watch`
//! (latest wins) as a [`PlantWrite`], and a write the PLC confirmed is its acknowledgement
//! (a Modbus exception its refusal). Every request has the timeout; a silent or broken link
//! drops the connection, which is retried with capped, jittered backoff, and is named in the
//! feed (`comm_error`, shown in `plant_stale`). In a cluster a command carries its lead's
//! fence and is written only while that holds.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_modbus::client::{Context, Reader, Writer};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::link::{bits, connect, first_of_kind, Failure};
use super::map::{ReadBlock, RegisterMap, Table, WriteFunction, WriteRun};
use crate::backoff::Backoff;
use crate::cluster::membership::Fence;
use crate::ingest::decode::DecodeLimits;
use crate::ingest::plant::{decode_plant, PlantFeed};
use crate::stats::Stats;
use crate::store::record::Record;
use crate::store::StoreHandle;

/// `[plant] modbus = { … }`, validated.
#[derive(Debug, Clone)]
pub struct PlantModbusConfig {
    /// `host:port` of the plant's PLC (or its gateway).
    pub address: String,
    pub unit_id: u8,
    pub interval: Duration,
    pub timeout: Duration,
    pub max_registers: u16,
    pub coalesce: bool,
    pub max_gap: u16,
    pub map: Arc<RegisterMap>,
}

/// One command as the PLC's registers carry it.
#[derive(Debug, Clone)]
pub struct PlantWrite {
    pub seq: u64,
    pub epoch: u64,
    pub ts_ms: i64,
    pub supply_setpoint_c: f64,
    pub diff_pressure_setpoint_kpa: f64,
    /// 0: the plant's outlet; k: the k-th of the plant's `pressure_points`.
    pub pressure_point: u16,
    pub valid_for_s: u32,
    /// In a cluster: written only while this holds.
    pub fence: Option<Fence>,
}

impl PlantWrite {
    fn value(&self, field: &str) -> Option<f64> {
        Some(match field {
            "supply_setpoint_c" => self.supply_setpoint_c,
            "diff_pressure_setpoint_kpa" => self.diff_pressure_setpoint_kpa,
            "pressure_point" => f64::from(self.pressure_point),
            "valid_for_s" => f64::from(self.valid_for_s),
            "seq" => self.seq as f64,
            "epoch" => self.epoch as f64,
            _ => return None,
        })
    }
}

/// What the poller needs beside its config.
#[derive(Debug)]
pub struct PlantPollerParts {
    pub plant: String,
    pub feed: PlantFeed,
    pub store: StoreHandle,
    pub stats: Arc<Stats>,
    pub limits: DecodeLimits,
    pub commands: watch::Receiver<Option<PlantWrite>>,
}

struct PlantPoller {
    cfg: PlantModbusConfig,
    parts: PlantPollerParts,
    plan: Vec<ReadBlock>,
    ctx: Option<Context>,
    backoff: Backoff,
    reconnect_at: Instant,
    pending: Option<PlantWrite>,
    /// The problem last logged, so each change of state is logged once.
    logged: Option<String>,
}

/// Polls and commands the plant until `stop` is cancelled.
pub async fn run(cfg: PlantModbusConfig, parts: PlantPollerParts, stop: CancellationToken) {
    let plan = cfg
        .map
        .read_plan(cfg.coalesce, cfg.max_registers, cfg.max_gap);
    let interval = cfg.interval;
    info!(plant = %parts.plant, address = %cfg.address, unit = cfg.unit_id,
        "Polling the plant over Modbus TCP.");
    let mut p = PlantPoller {
        cfg,
        parts,
        plan,
        ctx: None,
        // One connection to one PLC: retried sooner than a fleet's (at most every 10 s).
        backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(10)),
        reconnect_at: Instant::now(),
        pending: None,
        logged: None,
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                p.poll().await;
                p.write().await;
            }
            changed = p.parts.commands.changed() => {
                if changed.is_err() {
                    break;
                }
                p.pending = p.parts.commands.borrow_and_update().clone();
                p.write().await;
            }
            _ = stop.cancelled() => break,
        }
    }
    if let Some(mut ctx) = p.ctx.take() {
        use tokio_modbus::client::Client;
        let _ = tokio::time::timeout(p.cfg.timeout, ctx.disconnect()).await;
    }
}

impl PlantPoller {
    /// The open connection, connecting first if the backoff allows. `None`: not now.
    async fn connection(&mut self) -> Option<&mut Context> {
        if self.ctx.is_none() {
            if Instant::now() < self.reconnect_at {
                return None;
            }
            match connect(&self.cfg.address, self.cfg.unit_id, self.cfg.timeout).await {
                Ok(ctx) => self.ctx = Some(ctx),
                Err(f) => {
                    let what = format!("connect to {}", self.cfg.address);
                    self.failed(&what, f);
                    return None;
                }
            }
        }
        self.ctx.as_mut()
    }

    /// Records a failure: the feed's `comm_error`, the connection, the backoff, one log line
    /// per kind of problem.
    fn failed(&mut self, what: &str, f: Failure) {
        if !f.keeps_connection() {
            self.ctx = None;
            self.reconnect_at = Instant::now() + self.backoff.next_delay();
        }
        let text = f.describe(what, self.cfg.timeout);
        let kind = text.split(':').next().unwrap_or_default();
        if first_of_kind(&mut self.logged, kind) {
            warn!(plant = %self.parts.plant, address = %self.cfg.address, unit = self.cfg.unit_id,
                problem = %text, "Plant's Modbus link failing; its data go stale and it is retried with backoff.");
        }
        let mut seen = self.parts.feed.lock().unwrap_or_else(|p| p.into_inner());
        if !f.keeps_connection() {
            seen.online = Some(false);
        }
        seen.comm_error = Some(text);
    }

    fn recovered(&mut self) {
        self.backoff.reset();
        if self.logged.take().is_some() {
            info!(plant = %self.parts.plant, address = %self.cfg.address, "Plant answering again.");
        }
        self.parts
            .feed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .comm_error = None;
    }

    /// One poll: every block read, decoded as the MQTT telemetry is, kept and stored.
    async fn poll(&mut self) {
        let ts = crate::clock::now_ms();
        let plan = std::mem::take(&mut self.plan);
        let result = self.read_all(&plan).await;
        self.plan = plan;
        let words = match result {
            Ok(Some(w)) => w,
            Ok(None) => return,
            Err((what, f)) => {
                self.parts
                    .stats
                    .modbus_poll_failures
                    .fetch_add(1, Ordering::Relaxed);
                return self.failed(&what, f);
            }
        };
        self.recovered();
        self.parts
            .stats
            .modbus_polls
            .fetch_add(1, Ordering::Relaxed);
        let mut obj = serde_json::Map::new();
        obj.insert("ts".into(), ts.into());
        for (field, v) in self.cfg.map.decode(&self.plan, &words) {
            // Counters (applied_seq) as integers; the rest without the scaling's binary noise.
            let n = if v.fract() == 0.0 && v.abs() < 9e15 {
                Some(serde_json::Number::from(v as i64))
            } else {
                serde_json::Number::from_f64((v * 1e6).round() / 1e6)
            };
            if let Some(n) = n {
                obj.insert(field.to_owned(), n.into());
            }
        }
        let payload = serde_json::Value::Object(obj).to_string();
        let mut seen = self.parts.feed.lock().unwrap_or_else(|p| p.into_inner());
        match decode_plant(payload.as_bytes(), ts, &self.parts.limits) {
            Ok(r) => {
                self.parts.store.submit(&Record::Plant {
                    plant: &self.parts.plant,
                    reading: &r,
                });
                seen.reading = Some(r);
                seen.received_ms = Some(ts);
                seen.online = Some(true);
            }
            Err(rej) => {
                seen.rejects += 1;
                drop(seen);
                self.parts.stats.count_reject(rej.label());
                let kind = format!("rejected {}", rej.label());
                if first_of_kind(&mut self.logged, &kind) {
                    warn!(plant = %self.parts.plant, reason = rej.label(), detail = %rej,
                        "Plant's Modbus reading rejected; not used.");
                }
            }
        }
    }

    /// Reads every block of the plan. `Ok(None)`: no connection this cycle (backoff).
    async fn read_all(
        &mut self,
        plan: &[ReadBlock],
    ) -> Result<Option<Vec<Vec<u16>>>, (String, Failure)> {
        let timeout = self.cfg.timeout;
        let Some(ctx) = self.connection().await else {
            return Ok(None);
        };
        let mut words = Vec::with_capacity(plan.len());
        for b in plan {
            let (a, n) = (b.address, b.count);
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
            let what = || format!("read {:?} {a}+{n}", b.table);
            match reply {
                Err(_) => return Err((what(), Failure::Timeout)),
                Ok(Err(e)) => return Err((what(), Failure::from_transport(e))),
                Ok(Ok(Err(exc))) => return Err((what(), Failure::Exception(format!("{exc:?}")))),
                Ok(Ok(Ok(w))) if w.len() != n as usize => {
                    let got = format!("{} words in the reply, {n} asked", w.len());
                    return Err((what(), Failure::Link(got)));
                }
                Ok(Ok(Ok(w))) => words.push(w),
            }
        }
        Ok(Some(words))
    }

    /// Writes the pending command. Confirmed: acknowledged in the feed. Refused (a Modbus
    /// exception, or values that do not fit the map): the refusal is the ack, not retried.
    /// No answer: retried on the next cycles while the command is valid and its fence holds.
    async fn write(&mut self) {
        let Some(cmd) = self.pending.clone() else {
            return;
        };
        let expired = crate::clock::now_ms() - cmd.ts_ms > i64::from(cmd.valid_for_s) * 1000;
        if expired || cmd.fence.as_ref().is_some_and(|f| !f.holds()) {
            self.pending = None;
            return;
        }
        let runs = match self.cfg.map.write_plan(|f| cmd.value(f)) {
            Ok(r) => r,
            Err(e) => return self.refused(&cmd, e.to_string()),
        };
        let stats = self.parts.stats.clone();
        match self.write_all(&runs).await {
            Ok(false) => {}
            Ok(true) => {
                self.pending = None;
                stats.modbus_writes.fetch_add(1, Ordering::Relaxed);
                stats.commands_sent.fetch_add(1, Ordering::Relaxed);
                self.parts
                    .feed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .ack = Some((cmd.seq, None));
            }
            Err((what, Failure::Exception(e))) => {
                self.refused(&cmd, format!("{what}: Modbus exception {e}"))
            }
            Err((what, f)) => {
                stats.modbus_write_failures.fetch_add(1, Ordering::Relaxed);
                self.failed(&what, f);
            }
        }
    }

    fn refused(&mut self, cmd: &PlantWrite, why: String) {
        self.pending = None;
        let stats = &self.parts.stats;
        stats.modbus_write_failures.fetch_add(1, Ordering::Relaxed);
        stats.commands_failed.fetch_add(1, Ordering::Relaxed);
        warn!(plant = %self.parts.plant, seq = cmd.seq, error = %why, "The plant refused a command.");
        self.parts
            .feed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ack = Some((cmd.seq, Some(why)));
    }

    /// Writes every run on the open connection. `Ok(false)`: no connection this time.
    async fn write_all(&mut self, runs: &[WriteRun]) -> Result<bool, (String, Failure)> {
        let timeout = self.cfg.timeout;
        let single = self.cfg.map.write_function == WriteFunction::Single;
        let Some(ctx) = self.connection().await else {
            return Ok(false);
        };
        for run in runs {
            let (addr, words) = (run.address, &run.words);
            let reply = if single && words.len() == 1 {
                tokio::time::timeout(timeout, ctx.write_single_register(addr, words[0])).await
            } else {
                tokio::time::timeout(timeout, ctx.write_multiple_registers(addr, words)).await
            };
            let f = match reply {
                Err(_) => Failure::Timeout,
                Ok(Err(e)) => Failure::from_transport(e),
                Ok(Ok(Err(exc))) => Failure::Exception(format!("{exc:?}")),
                Ok(Ok(Ok(()))) => continue,
            };
            return Err((format!("write {:?} {addr}+{}", run.table, words.len()), f));
        }
        Ok(true)
    }
}
