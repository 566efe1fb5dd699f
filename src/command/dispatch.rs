//! Command dispatch: numbers each command, makes the numbers durable, then publishes it on
//! the station's MQTT command topic or hands it to the station's Modbus poller, and stores the
//! ones that went out.
//!
//! Where it sits: the control task numbers each [`Command`] with [`Dispatcher::next_seq`] and hands each step's commands to [`Dispatcher::send`]. A command
//! never reaches a station before its `seq` is on disk.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::watch;
use tracing::{error, warn};

use super::seq::SeqStore;
use crate::clock::mono_us;
use crate::ingest::mqtt::Link;
use crate::model::{Command, StationId};
use crate::stats::Stats;
use crate::store::record::Record;
use crate::store::StoreHandle;

/// How one station is reached.
#[derive(Debug)]
pub struct Route {
    pub id: StationId,
    pub tags: BTreeMap<String, String>,
    /// MQTT command topic (`{prefix}/station/{id}/command`).
    pub topic: String,
    /// A Modbus station's poller: latest command wins (`None`: an MQTT station).
    pub modbus: Option<watch::Sender<Option<Command>>>,
}

/// One command to send, and when the reading it answers was accepted ([`mono_us`]; `None`
/// for a command of the periodic tick).
#[derive(Debug)]
pub struct Outgoing {
    pub station: usize,
    pub command: Command,
    pub accepted_us: Option<u64>,
}

/// Sends commands to stations, in config order.
#[derive(Debug)]
pub struct Dispatcher {
    routes: Vec<Route>,
    link: Link,
    seqs: SeqStore,
    valid_for_s: u32,
    store: StoreHandle,
    stats: Arc<Stats>,
}

impl Dispatcher {
    pub fn new(
        routes: Vec<Route>,
        link: Link,
        seqs: SeqStore,
        valid_for_s: u32,
        store: StoreHandle,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            routes,
            link,
            seqs,
            valid_for_s,
            store,
            stats,
        }
    }

    /// Station `i`'s next `seq` (durable only once [`Dispatcher::send`] persisted it).
    pub fn next_seq(&mut self, i: usize) -> u64 {
        self.seqs.next(&self.routes[i].id)
    }

    /// How long a command stays valid at the station, s.
    pub fn valid_for_s(&self) -> u32 {
        self.valid_for_s
    }

    /// The last `seq` given to station `i` (0: none yet).
    pub fn last_seq(&self, i: usize) -> u64 {
        self.seqs.last(&self.routes[i].id)
    }

    /// Persists the sequence numbers, then publishes (MQTT) or hands to the poller (Modbus)
    /// each command, and stores the ones that went out. If the numbers cannot be persisted,
    /// nothing is sent. A command answering a reading records its latency.
    pub fn send(&mut self, commands: Vec<Outgoing>) {
        if commands.is_empty() {
            return;
        }
        if let Err(e) = self.seqs.persist() {
            error!(error = %e, "Cannot persist command sequence numbers; commands withheld.");
            return;
        }
        let mut sent = Vec::with_capacity(commands.len());
        let now_us = mono_us();
        for out in commands {
            if let Some(accepted) = out.accepted_us {
                self.stats
                    .control_latency
                    .record(now_us.saturating_sub(accepted));
            }
            let route = &self.routes[out.station];
            if let Some(tx) = &route.modbus {
                // The poller writes it now and counts and stores it once the device confirmed.
                tx.send_replace(Some(out.command));
                continue;
            }
            let payload = serde_json::to_vec(&out.command).unwrap_or_default();
            match self.link.try_publish(&route.topic, true, false, payload) {
                Ok(()) => {
                    self.stats.commands_sent.fetch_add(1, Ordering::Relaxed);
                    sent.push((out.station, out.command));
                }
                Err(e) => {
                    let n = self.stats.commands_failed.fetch_add(1, Ordering::Relaxed);
                    if n.is_power_of_two() {
                        warn!(station = %route.id, error = %e, failed_total = n + 1,
                            "Command not queued for MQTT.");
                    }
                }
            }
        }
        self.store
            .submit_many(sent.iter().map(|(i, command)| Record::Command {
                station: &self.routes[*i].id,
                tags: &self.routes[*i].tags,
                command,
            }));
    }
}
