//! Command dispatch: numbers each command, then publishes it on the station's MQTT command
//! topic or hands it to the station's Modbus poller, and stores the ones that went out.
//!
//! Where it sits: the control task hands each step's commands to [`Dispatcher::send`]. Alone,
//! an engine numbers `seq` per station durably ([`SeqStore`]): a command never reaches a
//! station before its `seq` is on disk. In a cluster a command goes out only for a station
//! whose partition this instance leads ([`Leads`], kept by the cluster stage), while the
//! lease's fence holds, on that partition's own MQTT session, carrying the partition's
//! `epoch` and a `seq` that restarts at 1 in each epoch (contract §2.2): nothing has to be
//! handed over, and a deposed instance's commands are refused by the station.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tracing::{error, warn};

use super::seq::SeqStore;
use crate::clock::mono_us;
use crate::cluster::membership::Fence;
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
    /// MQTT command topic (`{prefix}/station/{id}/command`, or the mapping's); `None`: a
    /// monitor-only station (a mapping without commands), to which nothing is sent.
    pub topic: Option<String>,
    /// A station behind a mapping: the command in its own names and units.
    pub template: Option<crate::ingest::mapping::CommandTemplate>,
    /// A Modbus station's poller or an OPC UA station's writer: latest command wins
    /// (`None`: an MQTT station).
    pub device: Option<watch::Sender<Option<Command>>>,
}

/// One command to send, and when the reading it answers was accepted ([`mono_us`]; `None`
/// for a command of the periodic tick).
#[derive(Debug)]
pub struct Outgoing {
    pub station: usize,
    pub command: Command,
    pub accepted_us: Option<u64>,
}

/// A partition this instance leads: its epoch, its MQTT session, and the fence that ends the
/// right to command.
#[derive(Debug, Clone)]
pub struct Lead {
    pub epoch: u64,
    pub link: Link,
    pub fence: Fence,
    /// The operator state etcd kept for the partition's stations when the lead began
    /// (station → JSON), for the control task to apply on takeover.
    pub settings: Arc<std::collections::HashMap<String, String>>,
}

/// Per partition, the lead this instance holds (`None`: another instance's, or nobody's).
pub type Leads = Vec<Option<Lead>>;

/// How commands are numbered and which connection carries them.
#[derive(Debug)]
pub enum Numbering {
    /// The only engine: `seq` per station, durable across restarts; the engine's connection.
    Durable { seqs: SeqStore, link: Link },
    /// One of several instances: only stations of led partitions, `(epoch, seq)` per station.
    Fenced {
        leads: watch::Receiver<Arc<Leads>>,
        /// Per station (config order), its partition.
        partition: Vec<u32>,
        /// Per station, the last `(epoch, seq)` sent.
        last: Vec<(u64, u64)>,
    },
}

/// Commands kept per station for the station view.
const RECENT_KEPT: usize = 10;

/// A station's last commands, newest last: shared by the dispatcher (which appends) and the
/// status snapshot (which carries the handle).
#[derive(Debug, Default, Clone)]
pub struct RecentCommands(Arc<Mutex<VecDeque<Command>>>);

impl RecentCommands {
    pub fn list(&self) -> Vec<Command> {
        self.0
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn push(&self, c: &Command) {
        if let Ok(mut r) = self.0.lock() {
            r.push_back(c.clone());
            if r.len() > RECENT_KEPT {
                r.pop_front();
            }
        }
    }
}

/// Sends commands to stations, in config order.
#[derive(Debug)]
pub struct Dispatcher {
    routes: Vec<Route>,
    /// Per station, its last commands handed out.
    recent: Vec<RecentCommands>,
    numbering: Numbering,
    valid_for_s: u32,
    store: StoreHandle,
    stats: Arc<Stats>,
}

impl Dispatcher {
    pub fn new(
        routes: Vec<Route>,
        numbering: Numbering,
        valid_for_s: u32,
        store: StoreHandle,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            // One ring each (`vec![x; n]` would clone one shared handle n times).
            recent: routes.iter().map(|_| RecentCommands::default()).collect(),
            routes,
            numbering,
            valid_for_s,
            store,
            stats,
        }
    }

    /// How long a command stays valid at the station, s.
    pub fn valid_for_s(&self) -> u32 {
        self.valid_for_s
    }

    /// Station `i`'s last commands handed out (a shared handle).
    pub fn recent(&self, i: usize) -> RecentCommands {
        self.recent[i].clone()
    }

    /// The last `seq` given to station `i` (0: none yet).
    pub fn last_seq(&self, i: usize) -> u64 {
        match &self.numbering {
            Numbering::Durable { seqs, .. } => seqs.last(&self.routes[i].id),
            Numbering::Fenced { last, .. } => last[i].1,
        }
    }

    /// In a cluster, station `i`'s partition and the epoch this instance leads it under now,
    /// with the operator state etcd kept for the station when the lead began.
    pub fn lead_of(&self, i: usize) -> Option<(u32, u64, Option<String>)> {
        let Numbering::Fenced {
            leads, partition, ..
        } = &self.numbering
        else {
            return None;
        };
        let p = partition[i];
        let leads = leads.borrow();
        let lead = leads
            .get(p as usize)
            .and_then(Option::as_ref)
            .filter(|l| l.fence.holds())?;
        let settings = lead.settings.get(self.routes[i].id.as_str()).cloned();
        Some((p, lead.epoch, settings))
    }

    /// The epoch this instance leads partition `p` under now (`Some(0)` for partition 0 of
    /// the only engine, `None` for its others).
    pub fn partition_epoch(&self, p: u32) -> Option<u64> {
        match &self.numbering {
            Numbering::Durable { .. } => (p == 0).then_some(0),
            Numbering::Fenced { leads, .. } => leads
                .borrow()
                .get(p as usize)
                .and_then(Option::as_ref)
                .filter(|l| l.fence.holds())
                .map(|l| l.epoch),
        }
    }

    /// The epoch station `i` is commanded under now, if this instance may command it (`Some(0)`
    /// for the only engine).
    pub fn epoch_of(&self, i: usize) -> Option<u64> {
        match &self.numbering {
            Numbering::Durable { .. } => Some(0),
            Numbering::Fenced {
                leads, partition, ..
            } => leads
                .borrow()
                .get(partition[i] as usize)
                .and_then(Option::as_ref)
                .filter(|l| l.fence.holds())
                .map(|l| l.epoch),
        }
    }

    /// Gives each command its `seq` (and epoch), with the connection that carries it; drops
    /// (and counts) the ones this instance may not send now.
    fn number(&mut self, commands: Vec<Outgoing>) -> Vec<(Outgoing, Link)> {
        let mut numbered = Vec::with_capacity(commands.len());
        match &mut self.numbering {
            Numbering::Durable { seqs, link } => {
                for mut out in commands {
                    out.command.seq = seqs.next(&self.routes[out.station].id);
                    numbered.push((out, link.clone()));
                }
            }
            Numbering::Fenced {
                leads,
                partition,
                last,
            } => {
                let leads = leads.borrow().clone();
                for mut out in commands {
                    let i = out.station;
                    let lead = leads
                        .get(partition[i] as usize)
                        .and_then(Option::as_ref)
                        .filter(|l| l.fence.holds());
                    let Some(lead) = lead else {
                        self.stats.commands_fenced.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let (epoch, seq) = last[i];
                    last[i] = (lead.epoch, if epoch == lead.epoch { seq + 1 } else { 1 });
                    out.command.epoch = Some(lead.epoch);
                    out.command.seq = last[i].1;
                    numbered.push((out, lead.link.clone()));
                }
            }
        }
        numbered
    }

    /// Numbers each command, then publishes it (MQTT) or hands it to the poller (Modbus), and
    /// stores the ones that went out. Alone, the numbers are persisted first (if they cannot
    /// be, nothing is sent); in a cluster a command for a station this instance does not lead
    /// now is dropped and counted. A command answering a reading records its latency.
    pub fn send(&mut self, commands: Vec<Outgoing>) {
        if commands.is_empty() {
            return;
        }
        let numbered = self.number(commands);
        if let Numbering::Durable { seqs, .. } = &mut self.numbering {
            // Durable before anything is sent; no async worker waits for the disk meanwhile.
            if let Err(e) = crate::files::off_runtime(|| seqs.persist()) {
                error!(error = %e, "Cannot persist command sequence numbers; commands withheld.");
                return;
            }
        }
        let mut sent = Vec::with_capacity(numbered.len());
        let now_us = mono_us();
        for (out, link) in numbered {
            let i = out.station;
            if let Some(accepted) = out.accepted_us {
                self.stats
                    .control_latency
                    .record(now_us.saturating_sub(accepted));
            }
            let route = &self.routes[i];
            if let Some(tx) = &route.device {
                // The poller writes it now and counts and stores it once the device confirmed.
                self.recent[i].push(&out.command);
                tx.send_replace(Some(out.command));
                continue;
            }
            let Some(topic) = &route.topic else {
                continue; // monitor only: computed and shown, never sent
            };
            let payload = match &route.template {
                Some(t) => t.payload(&out.command),
                None => serde_json::to_vec(&out.command).unwrap_or_default(),
            };
            match link.try_publish(topic, true, false, payload) {
                Ok(()) => {
                    self.stats.commands_sent.fetch_add(1, Ordering::Relaxed);
                    self.recent[i].push(&out.command);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::mqtt;
    use crate::model::Mode;
    use crate::store::spool::{FsyncPolicy, Spool, SpoolConfig};

    fn command(seq: u64) -> Command {
        Command {
            seq,
            ts: 1_764_262_805_000,
            mode: Mode::Auto,
            supply_setpoint_c: 53.0,
            valve_pct: 43.5,
            pump_pct: 76.0,
            flow_setpoint_m3h: 236.0,
            valid_for_s: 300,
            epoch: None,
        }
    }

    /// A dispatcher over an MQTT station `m` and a Modbus station `p`, seq state in `seq_dir`,
    /// storage in `spool_dir`. The MQTT client is never polled: a publish is only queued.
    fn dispatcher(
        seq_dir: &std::path::Path,
        spool_dir: &std::path::Path,
    ) -> (
        Dispatcher,
        watch::Receiver<Option<Command>>,
        Arc<Spool>,
        mqtt::EventLoop,
    ) {
        let cfg =
            crate::config::Config::parse("[[station]]\nid = \"m\"\nheated_area_m2 = 1\n", &|_| {
                None
            })
            .unwrap();
        // The event loop is kept (not polled): while it lives, a publish is queued.
        let (link, el) = mqtt::connect(&cfg.mqtt, "dispatch-test", None);
        let spool = Spool::open(SpoolConfig {
            dir: spool_dir.to_path_buf(),
            segment_bytes: 1 << 20,
            max_bytes: 1 << 30,
            fsync: FsyncPolicy::Never,
        })
        .unwrap();
        let stats = Arc::new(Stats::default());
        let (tx, rx) = watch::channel(None);
        let route = |id: &str, device| Route {
            id: StationId::new(id).unwrap(),
            tags: BTreeMap::new(),
            topic: Some(format!("heating/station/{id}/command")),
            template: None,
            device,
        };
        let d = Dispatcher::new(
            vec![route("m", None), route("p", Some(tx))],
            Numbering::Durable {
                seqs: SeqStore::open(seq_dir, FsyncPolicy::Always).unwrap(),
                link,
            },
            300,
            StoreHandle::new(spool.clone(), stats.clone()),
            stats,
        );
        (d, rx, spool, el)
    }

    #[tokio::test]
    async fn numbers_are_on_disk_before_commands_go_out_and_only_sent_ones_are_stored() {
        let (seq_dir, spool_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (mut d, rx, spool, _el) = dispatcher(seq_dir.path(), spool_dir.path());
        let (a, b) = (0, 0);
        d.send(vec![
            Outgoing {
                station: 0,
                command: command(a),
                accepted_us: None,
            },
            Outgoing {
                station: 1,
                command: command(b),
                accepted_us: Some(mono_us()),
            },
        ]);
        // Both numbers are durable: a restart continues after them.
        let again = SeqStore::open(seq_dir.path(), FsyncPolicy::Always).unwrap();
        assert_eq!(again.last(&StationId::new("m").unwrap()), 1);
        assert_eq!(again.last(&StationId::new("p").unwrap()), 1);
        // MQTT: queued, counted and stored; Modbus: handed to the poller, which stores it
        // once the device confirmed.
        assert_eq!(Stats::get(&d.stats.commands_sent), 1);
        assert_eq!(spool.depth().points, 1);
        assert_eq!(rx.borrow().as_ref().map(|c| c.seq), Some(1));
        assert_eq!(d.stats.control_latency.count(), 1);
        // Each station's own last commands, for the station view.
        d.send(vec![Outgoing {
            station: 0,
            command: command(0),
            accepted_us: None,
        }]);
        let seqs = |i: usize| d.recent(i).list().iter().map(|c| c.seq).collect::<Vec<_>>();
        assert_eq!((seqs(0), seqs(1)), (vec![1, 2], vec![1]));
    }

    #[tokio::test]
    async fn nothing_goes_out_when_the_numbers_cannot_be_persisted() {
        let (seq_dir, spool_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (mut d, rx, spool, _el) = dispatcher(seq_dir.path(), spool_dir.path());
        // The data directory disappears under the engine: the number log cannot be written.
        std::fs::remove_dir_all(seq_dir.path()).unwrap();
        let (seq, p) = (0, 0);
        d.send(vec![
            Outgoing {
                station: 0,
                command: command(seq),
                accepted_us: None,
            },
            Outgoing {
                station: 1,
                command: command(p),
                accepted_us: None,
            },
        ]);
        assert_eq!(Stats::get(&d.stats.commands_sent), 0);
        assert_eq!(spool.depth().points, 0);
        assert!(
            rx.borrow().is_none(),
            "no command handed to the Modbus poller"
        );
    }
}
