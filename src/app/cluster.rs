//! Several instances sharing one fleet: the cluster stage and each led partition's data plane.
//!
//! Where it sits: beside ingest and control. The cluster task (`cluster::task`) decides which
//! partitions this instance leads; [`EnginePartitions`] is its hands in the engine: for a
//! partition it comes to lead it opens the partition's own persistent MQTT session
//! (`client_id = {mqtt.client_id}-p{NN}`, QoS 1, each message acknowledged once its point is in the
//! database, so that an instance dying with its disk takes nothing acknowledged with it: what
//! the broker queued while nobody led the partition arrives now, and the previous owner's
//! connection is closed by the broker), and publishes the lead (epoch, session, fence) to the
//! dispatcher, which then commands the partition's stations. The session names come from
//! `[mqtt] client_id` (`{client_id}-p{NN}`), the same on every instance of a cluster (etcd
//! refuses an instance with another); on joining, the instance claims them on the broker with
//! the cluster's identity (a retained message on `heatgrid/sessions/{client_id}`), leads
//! nothing before the claim is confirmed, and stops if another cluster holds it. For a partition it loses, the
//! lead is withdrawn first (no command after that instant), then the session is closed and
//! never reconnected. Each lead and loss is appended to `data_dir/ownership.jsonl`
//! (`{"t_ms", "event": "lead"|"lost", "partition", "epoch"}`): who commanded which partition
//! when, for an operator after an incident and for the failover checker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::io::Write as _;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use tracing::{info, warn};

use crate::clock::now_ms;

use super::common::Common;
use super::stage::Stage;
use crate::cluster::membership::{Fence, MemberSettings};
use crate::cluster::partition::partition_of;
use crate::cluster::state::StateRequest;
use crate::cluster::task::{ClusterTask, Partitions};
use crate::cluster::view::ClusterView;
use crate::command::dispatch::{Lead, Leads, Numbering};
use crate::ingest::event_loop::{run_event_loop, Acks, LoopSettings};
use crate::ingest::mqtt::{self, Link, MqttConfig};
use crate::ingest::slot::{StationSlot, Weather};
use crate::ingest::Ingest;
use crate::model::StationId;

/// How long a lost partition's session has to send its DISCONNECT before it is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The longest a partition session holds a message's acknowledgement waiting for its point
/// to be written (a database that answers this slowly is treated as out): beyond it the
/// message is acknowledged from the spool, and the readings keep flowing to control.
const ACK_HOLD: Duration = Duration::from_secs(10);

/// An instance whose own broker connection has been down this long hands its partitions
/// over: it could neither hear its stations nor command them.
const BROKER_DOWN_LIMIT_MS: i64 = 5_000;

/// What a started cluster stage gives the rest of the engine.
pub(super) struct Started {
    pub numbering: Numbering,
    pub view: watch::Receiver<Arc<ClusterView>>,
    /// Where the control task sends what it keeps in and reads from etcd.
    pub requests: mpsc::Sender<StateRequest>,
    /// Set when the cluster task stopped for good (a duplicate name, another partition
    /// count): the engine must stop.
    pub fatal: watch::Receiver<Option<String>>,
}

/// Starts the cluster task on `stage`; the partitions' sessions run on `mqtt_stage`.
pub(super) fn start_cluster(
    c: &Common<'_>,
    member: &MemberSettings,
    slots: &[Arc<StationSlot>],
    weather: &Weather,
    broker_down_since: &Arc<AtomicI64>,
    stages: (&Stage, &Stage),
) -> Started {
    let (stage, mqtt_stage) = stages;
    let cfg = c.cfg;
    let parts = member.partitions;
    let partition: Vec<u32> = cfg
        .stations
        .iter()
        .map(|s| partition_of(s.id.as_str(), parts))
        .collect();
    let mut members: Vec<HashMap<StationId, Arc<StationSlot>>> =
        vec![HashMap::new(); parts as usize];
    for ((s, slot), p) in cfg.stations.iter().zip(slots).zip(&partition) {
        // Nobody's until this instance leads the partition.
        slot.active.store(false, Ordering::Relaxed);
        members[*p as usize].insert(s.id.clone(), slot.clone());
    }
    let (leads_tx, leads) = watch::channel(Arc::new(vec![None; parts as usize]));
    let mut mqtt = cfg.mqtt.clone();
    mqtt.ack_after_spool = true; // persistent sessions, acknowledged after the spool
    let (fatal_tx, fatal) = watch::channel(None);
    let fatal_tx = Arc::new(fatal_tx);
    let log_path = cfg.data_dir.join("ownership.jsonl");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| warn!(path = %log_path.display(), error = %e, "Cannot open the ownership log; leads are only logged."))
        .ok();
    let engine = EnginePartitions {
        broker_down_since: broker_down_since.clone(),
        log,
        epochs: HashMap::new(),
        mqtt,
        members,
        weather: weather.clone(),
        common: CommonOwned {
            store: c.store.clone(),
            stats: c.stats.clone(),
            decode: cfg.decode,
        },
        leads: leads_tx,
        sessions: HashMap::new(),
        stage: mqtt_stage.clone(),
        claim: Claim {
            instance: member.name.clone(),
            confirmed: Arc::new(AtomicBool::new(false)),
            started: false,
            fatal: fatal_tx.clone(),
        },
    };
    let (task, view, requests) = ClusterTask::new(member.clone(), engine);
    let stop = stage.token();
    stage.spawn(async move {
        if let Err(e) = task.run(stop).await {
            tracing::error!(error = %e, "This instance cannot be part of the cluster; stopping.");
            let _ = fatal_tx.send(Some(e.to_string()));
        }
    });
    let n = cfg.stations.len();
    Started {
        numbering: Numbering::Fenced {
            leads,
            partition,
            last: vec![(0, 0); n],
        },
        view,
        requests,
        fatal,
    }
}

/// The parts of [`Common`] a partition session needs, owned.
struct CommonOwned {
    store: crate::store::StoreHandle,
    stats: Arc<crate::stats::Stats>,
    decode: crate::ingest::decode::DecodeLimits,
}

/// The engine's side of the partitions this instance leads.
struct EnginePartitions {
    /// Since when this instance's own broker connection has been down (Unix ms; 0: up).
    broker_down_since: Arc<AtomicI64>,
    /// `data_dir/ownership.jsonl`, if it could be opened.
    log: Option<std::fs::File>,
    /// The epoch of each led partition (for the log).
    epochs: HashMap<u32, u64>,
    mqtt: MqttConfig,
    /// Per partition, its stations' slots.
    members: Vec<HashMap<StationId, Arc<StationSlot>>>,
    weather: Weather,
    common: CommonOwned,
    leads: watch::Sender<Arc<Leads>>,
    sessions: HashMap<u32, (Link, CancellationToken)>,
    stage: Stage,
    claim: Claim,
}

/// The claim on the broker of this cluster's session names.
struct Claim {
    instance: String,
    /// The broker holds this cluster's claim (until then the instance leads nothing).
    confirmed: Arc<AtomicBool>,
    started: bool,
    /// Where a clash with another cluster stops the engine.
    fatal: Arc<watch::Sender<Option<String>>>,
}

/// Why a claim was not confirmed.
#[derive(Debug)]
enum ClaimError {
    /// Another cluster holds the names: a mistake a retry cannot fix.
    Taken(String),
    /// The broker could not be asked now.
    Unknown(String),
}

/// Where a cluster claims its session names `{sessions}-pNN`: outside any topic prefix, since
/// client ids are one namespace per broker.
fn claim_topic(sessions: &str) -> String {
    let safe: String = sessions
        .chars()
        .map(|c| if matches!(c, '+' | '#' | '/') { '_' } else { c })
        .collect();
    format!("heatgrid/sessions/{safe}")
}

/// Reads the claim on `sessions` (retained); if there is none, makes it for `cluster`.
async fn claim_sessions(
    mqtt: &MqttConfig,
    sessions: &str,
    cluster: &str,
    instance: &str,
) -> Result<(), ClaimError> {
    let topic = claim_topic(sessions);
    let mut cfg = mqtt.clone();
    cfg.ack_after_spool = false; // a clean, short session
    let (link, el) = mqtt::connect(&cfg, &format!("{sessions}-{instance}-claim"), None);
    let (tx, mut rx) = mpsc::unbounded_channel::<Option<Vec<u8>>>();
    let handler = move |ev: crate::ingest::event_loop::Event<'_>| match ev {
        crate::ingest::event_loop::Event::Subscribed => drop(tx.send(None)),
        crate::ingest::event_loop::Event::Message { payload, .. } => {
            drop(tx.send(Some(payload.to_vec())))
        }
        _ => {}
    };
    let settings = LoopSettings {
        acks: Acks::Auto,
        watchdog: None,
        subscriptions: vec![(topic.clone(), true)],
        presence: None,
        connect_while: Some(Arc::new(|| false)),
        down_since: None,
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_event_loop(
        el,
        link.clone(),
        settings,
        stop.clone(),
        handler,
    ));
    let outcome = async {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(None)) => {}
            _ => return Err(ClaimError::Unknown("the broker did not answer".into())),
        }
        // A retained claim comes right after the subscription's acknowledgement.
        let held = match tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            Ok(Some(Some(payload))) => serde_json::from_slice::<serde_json::Value>(&payload)
                .ok()
                .and_then(|v| v["cluster"].as_str().map(str::to_owned)),
            _ => None,
        };
        match held {
            Some(other) if other != cluster => Err(ClaimError::Taken(format!(
                "another cluster (id {other}) uses the MQTT client ids {sessions}-pNN on this broker;                  give this cluster another [mqtt] client_id, or, if that cluster is gone, clear its                  claim: mosquitto_pub -r -n -q 1 -t {topic}"
            ))),
            Some(_) => Ok(()),
            None => {
                let body = serde_json::json!({ "cluster": cluster, "by": instance }).to_string();
                link.try_publish(&topic, true, true, body.into_bytes())
                    .map_err(|e| ClaimError::Unknown(e.to_string()))
            }
        }
    }
    .await;
    let _ = link.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    stop.cancel();
    outcome
}

impl EnginePartitions {
    /// One line of the ownership log; a write error is logged once.
    fn record(&mut self, event: &str, p: u32, epoch: u64) {
        let Some(f) = self.log.as_mut() else {
            return;
        };
        let line = format!(
            "{{\"t_ms\":{},\"event\":\"{event}\",\"partition\":{p},\"epoch\":{epoch}}}\n",
            now_ms()
        );
        if let Err(e) = f.write_all(line.as_bytes()) {
            warn!(error = %e, "Cannot append to the ownership log; no longer written.");
            self.log = None;
        }
    }
}

impl Partitions for EnginePartitions {
    fn healthy(&self) -> bool {
        let since = self.broker_down_since.load(Ordering::Relaxed);
        self.claim.confirmed.load(Ordering::Relaxed)
            && (since == 0 || now_ms() - since < BROKER_DOWN_LIMIT_MS)
    }

    fn joined(&mut self, cluster_id: &str) {
        if std::mem::replace(&mut self.claim.started, true) {
            return;
        }
        let (mqtt, cluster) = (self.mqtt.clone(), cluster_id.to_owned());
        let (instance, sessions) = (self.claim.instance.clone(), self.mqtt.client_id.clone());
        let (confirmed, fatal) = (self.claim.confirmed.clone(), self.claim.fatal.clone());
        let stop = self.stage.token();
        self.stage.spawn(async move {
            let mut backoff = crate::backoff::Backoff::new(
                Duration::from_millis(500),
                Duration::from_secs(10),
            );
            loop {
                match claim_sessions(&mqtt, &sessions, &cluster, &instance).await {
                    Ok(()) => {
                        info!(sessions = %format!("{sessions}-pNN"), cluster = %cluster,
                            "Partition session names claimed on the broker.");
                        confirmed.store(true, Ordering::Relaxed);
                        return;
                    }
                    Err(ClaimError::Taken(why)) => {
                        tracing::error!(error = %why, "This cluster cannot use the broker; stopping.");
                        let _ = fatal.send(Some(why));
                        return;
                    }
                    Err(ClaimError::Unknown(why)) => {
                        if backoff.attempts() == 0 {
                            warn!(error = %why, "Cannot claim the partition session names on the broker yet; leading nothing until then.");
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(backoff.next_delay()) => {}
                            _ = stop.cancelled() => return,
                        }
                    }
                }
            }
        });
    }

    fn led(&mut self, p: u32, epoch: u64, fence: Fence, kept: HashMap<String, String>) {
        self.record("lead", p, epoch);
        for slot in self.members[p as usize].values() {
            *slot.fence.lock().unwrap_or_else(|e| e.into_inner()) = Some(fence.clone());
            slot.active.store(true, Ordering::Relaxed);
        }
        self.epochs.insert(p, epoch);
        let client_id = format!("{}-p{p:02}", self.mqtt.client_id);
        let (link, el) = mqtt::connect(&self.mqtt, &client_id, None);
        let ingest = Ingest::new(
            &self.mqtt.topic_prefix,
            self.members[p as usize].clone(),
            self.weather.clone(),
            self.common.store.clone(),
            self.common.stats.clone(),
            self.common.decode,
        );
        let leads = self.leads.subscribe();
        let settings = LoopSettings {
            acks: Acks::AfterWrite {
                spool: self.common.store.spool().clone(),
                hold: ACK_HOLD,
                stats: self.common.stats.clone(),
            },
            watchdog: Some(self.mqtt.watchdog),
            subscriptions: ingest.station_subscriptions(),
            presence: None,
            // Never take the session back from the next owner (the broker hands a client id
            // to whoever connected last).
            down_since: None,
            connect_while: Some(Arc::new(move || {
                leads
                    .borrow()
                    .get(p as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|l| l.epoch == epoch && l.fence.holds())
            })),
        };
        let stop = self.stage.token().child_token();
        self.stage.spawn(run_event_loop(
            el,
            link.clone(),
            settings,
            stop.clone(),
            ingest,
        ));
        self.leads.send_modify(|l| {
            let mut v = (**l).clone();
            v[p as usize] = Some(Lead {
                epoch,
                link: link.clone(),
                fence,
                settings: Arc::new(kept),
            });
            *l = Arc::new(v);
        });
        info!(
            partition = p,
            epoch,
            client_id,
            stations = self.members[p as usize].len(),
            "Partition session opened."
        );
        self.sessions.insert(p, (link, stop));
    }

    fn lost(&mut self, p: u32) {
        self.leads.send_modify(|l| {
            let mut v = (**l).clone();
            v[p as usize] = None;
            *l = Arc::new(v);
        });
        let epoch = self.epochs.remove(&p).unwrap_or(0);
        self.record("lost", p, epoch);
        for slot in self.members[p as usize].values() {
            slot.active.store(false, Ordering::Relaxed);
            *slot.fence.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        if let Some((link, stop)) = self.sessions.remove(&p) {
            let _ = link.try_disconnect();
            self.stage.spawn(async move {
                tokio::time::sleep(CLOSE_GRACE).await;
                stop.cancel();
            });
            info!(partition = p, "Partition session closed.");
        }
    }
}
