//! The plant task: every `period_s` it feeds the plant loop ([`super::plant`]) the fleet's
//! latest readings and setpoints, plans, and (with `mode = "control"`) commands the plant on
//! `{prefix}/plant/{id}/command` (contract §7); it publishes what it knows as a
//! [`PlantStatus`] for the API and the alarms.
//!
//! Where it sits: on the control stage, beside the control task, whose status view it reads
//! (it never writes into it). The plant's telemetry and acknowledgements come from ingest
//! ([`PlantFeed`]); commands go out on the engine's own MQTT session, numbered by a `seq`
//! that starts above what the plant last accepted (its telemetry's `applied_seq`, and the
//! seq kept in `data_dir/plant_seq`), so a restarted engine is not refused.
//!
//! A plant on Modbus ([`crate::ingest::modbus::plant`]) is commanded through its poller instead:
//! the same command as a [`PlantWrite`], the pressure point by its number in
//! `pressure_points`.
//!
//! In a cluster each instance sums up the stations of the partitions it leads (how many are
//! fresh, the most demanding and the worst-off one) and keeps that in etcd under the
//! partition's epoch. The owner of partition 0 reads every partition's summary, plans on the
//! whole fleet, and commands the plant on partition 0's MQTT session under that partition's
//! epoch while its fence holds, as the district coordinator runs there: a deposed owner's
//! commands carry an older epoch and the plant refuses them.
//!
//! What it publishes and sends is in [`super::plant_status`]; a cluster's per-partition
//! summaries in `plant_summary`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::plant::{PlantConfig, PlantController, PlantPlan};
use super::plant_summary::{Summary, SUMMARY_PREFIX};
use super::status::StationStatus;
use crate::clock::now_ms;
use crate::cluster::membership::Fence;
use crate::cluster::state::StateRequest;
use crate::command::dispatch::{Lead, Leads};
use crate::ingest::modbus::plant::PlantWrite;
use crate::ingest::mqtt::Link;
use crate::ingest::plant::{PlantFeed, PlantSeen};
use crate::ingest::Weather;
use crate::store::record::Record;

pub use super::plant_status::{
    PlantStatus, PlantStatusView, SentPlantCommand, TrendPoint, TREND_POINTS,
};
use crate::store::StoreHandle;

/// The plant task.
#[derive(Debug)]
pub struct PlantTask {
    pub cfg: PlantConfig,
    ctrl: PlantController,
    feed: PlantFeed,
    weather: Weather,
    /// The engine's own session, when it may command (alone, `mode = "control"`).
    link: Option<Link>,
    /// A plant on Modbus: its poller, which writes the commands.
    modbus: Option<watch::Sender<Option<PlantWrite>>>,
    prefix: String,
    store: StoreHandle,
    seq: u64,
    seq_path: PathBuf,
    default_outdoor_c: f64,
    time_scale: f64,
    last_command: Option<SentPlantCommand>,
    trend: std::collections::VecDeque<TrendPoint>,
    tx: watch::Sender<Option<Arc<PlantStatus>>>,
    cluster: Option<ClusterParts>,
    /// In a cluster: the summaries' read this instance waits for, and the epoch of partition 0
    /// it commands the plant under.
    pending: Option<Reply>,
    commanding: Option<u64>,
}

/// What the task is built from, beside its config.
#[derive(Debug)]
pub struct PlantTaskParts {
    pub feed: PlantFeed,
    pub weather: Weather,
    pub link: Option<Link>,
    pub prefix: String,
    pub store: StoreHandle,
    pub data_dir: PathBuf,
    pub default_outdoor_c: f64,
    pub time_scale: f64,
    pub fleet_size: usize,
    /// A plant on Modbus: the channel to its poller.
    pub modbus: Option<watch::Sender<Option<PlantWrite>>>,
    /// In a cluster: who leads which partition, the way to etcd, and each station's partition.
    pub cluster: Option<ClusterParts>,
}

/// What the plant task needs in a cluster.
#[derive(Debug)]
pub struct ClusterParts {
    pub leads: watch::Receiver<Arc<Leads>>,
    pub requests: mpsc::Sender<StateRequest>,
    /// Per station (config order), its partition.
    pub partition: Vec<u32>,
}

type Reply = oneshot::Receiver<Result<Vec<(String, String)>, String>>;

impl PlantTask {
    pub fn new(cfg: PlantConfig, p: PlantTaskParts) -> (Self, PlantStatusView) {
        let (tx, rx) = watch::channel(None);
        let seq_path = p.data_dir.join("plant_seq");
        let seq = std::fs::read_to_string(&seq_path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let mut ctrl = PlantController::new(cfg.settings.clone(), p.fleet_size);
        ctrl.time_scale = p.time_scale;
        // Alone, the engine's own session; in a cluster, partition 0's while it is led here.
        let link = p.link.filter(|_| cfg.control && p.cluster.is_none());
        (
            Self {
                ctrl,
                cfg,
                feed: p.feed,
                weather: p.weather,
                link,
                modbus: p.modbus,
                prefix: p.prefix,
                store: p.store,
                seq,
                seq_path,
                default_outdoor_c: p.default_outdoor_c,
                time_scale: p.time_scale,
                last_command: None,
                trend: std::collections::VecDeque::with_capacity(TREND_POINTS),
                tx,
                cluster: p.cluster,
                pending: None,
                commanding: None,
            },
            rx,
        )
    }

    pub async fn run(
        mut self,
        status: watch::Receiver<Arc<Vec<StationStatus>>>,
        stop: CancellationToken,
    ) {
        let period = Duration::from_secs_f64(self.cfg.period_s / self.time_scale.max(1e-9));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        info!(plant = %self.cfg.id, mode = if self.link.is_some() { "control" } else { "monitor" },
            period_s = self.cfg.period_s, "Plant loop started.");
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            let stations = status.borrow().clone();
            self.period(&stations, now_ms()).await;
        }
    }

    /// One period at `now`: observe, plan, command, publish.
    async fn period(&mut self, stations: &[StationStatus], now: i64) {
        let mut lowest: Option<(String, f64)> = None;
        let mut outdoor = Vec::new();
        let mut summaries: BTreeMap<u32, (u64, Summary)> = BTreeMap::new();
        for (i, st) in stations.iter().enumerate().filter(|(_, s)| !s.stale) {
            let (Some(r), Some(o)) = (&st.reading, &st.outputs) else {
                continue;
            };
            // A station in manual or hold has its valve set by an operator: its opening says
            // nothing of what the network gives it, so it does not steer the plant (its
            // pressure is still shown and alarmed on).
            if st.mode == crate::model::Mode::Auto {
                match (&self.cluster, st.epoch) {
                    (None, _) => self.ctrl.observe(r, Some(o.supply_setpoint_c)),
                    // In a cluster, summed up per led partition for partition 0's owner.
                    (Some(c), Some(epoch)) => {
                        let p = c.partition.get(i).copied().unwrap_or(0);
                        let (_, sum) = summaries.entry(p).or_insert((epoch, Summary::default()));
                        sum.add(st.id.as_str(), r, o.supply_setpoint_c);
                    }
                    (Some(_), None) => {}
                }
            }
            outdoor.extend(r.outdoor_temp_c);
            if let Some(dp) =
                super::plant::dp_of(r).filter(|d| lowest.as_ref().is_none_or(|l| *d < l.1))
            {
                lowest = Some((st.id.as_str().to_owned(), dp));
            }
        }
        let seen = self.feed.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (weather_now, forecast) = {
            let w = self.weather.lock().unwrap_or_else(|p| p.into_inner());
            (w.now, w.forecast.clone())
        };
        let outdoor_c = weather_now
            .filter(|(ts, _)| now - ts < 3_600_000)
            .map(|(_, c)| c)
            .or_else(|| median(&mut outdoor))
            .unwrap_or(self.default_outdoor_c);
        if let Some(r) = &seen.reading {
            self.ctrl.observe_plant(r);
            if let Some((epoch, seq)) = r.applied.filter(|(e, _)| *e == 0) {
                let _ = epoch;
                self.seq = self.seq.max(seq);
            }
        }
        if let Some((seq, Some(_))) = &seen.ack {
            // Refused: never reuse a number the plant may have seen.
            self.seq = self.seq.max(*seq);
        }
        let plan = match self.cluster.is_some() {
            false => Some(self.ctrl.plan(now, outdoor_c, forecast.as_deref())),
            true => self.cluster_period(summaries, now, outdoor_c, forecast.as_deref()),
        };
        if let (Some(plan), Some(lead)) = (&plan, self.lead0()) {
            self.command_fenced(plan, &lead, &seen, now);
        }
        let plan = plan.unwrap_or_else(|| self.ctrl.plan(now, outdoor_c, forecast.as_deref()));
        if let Some(link) = self.link.clone() {
            self.seq += 1;
            let cmd = SentPlantCommand {
                plant: self.cfg.id.clone(),
                seq: self.seq,
                epoch: 0,
                ts_ms: now,
                valid_for_s: self.cfg.command_valid_for_s,
                plan: plan.clone(),
            };
            // The number is on disk before the plant can see it.
            if let Err(e) = tokio::fs::write(&self.seq_path, self.seq.to_string()).await {
                warn!(error = %e, path = %self.seq_path.display(), "Cannot keep the plant's command number; not commanding this period.");
            } else {
                self.send(cmd, &link, None);
            }
        }
        let stale_ms = (self.cfg.plant_stale_after_s * 1000.0) as i64;
        if self.trend.len() == TREND_POINTS {
            self.trend.pop_front();
        }
        self.trend.push_back(TrendPoint {
            ts_ms: now,
            supply_c: seen.reading.as_ref().map(|r| r.supply_temp_c),
            setpoint_c: plan.supply_setpoint_c,
            return_c: seen.reading.as_ref().map(|r| r.return_temp_c),
            dp_setpoint_kpa: plan.diff_pressure_setpoint_kpa,
            lowest_dp_kpa: lowest.as_ref().map(|l| l.1),
        });
        let status = PlantStatus {
            id: self.cfg.id.clone(),
            mode: if self.link.is_some() || self.commanding.is_some() {
                "control"
            } else {
                "monitor"
            },
            reading: seen.reading.clone(),
            stale: seen.received_ms.is_none_or(|t| now - t > stale_ms),
            online: seen.online,
            comm_error: seen.comm_error.clone(),
            plan: Some(plan),
            last_command: self.last_command.clone(),
            acked_seq: seen.ack.as_ref().map(|a| a.0),
            ack_error: seen.ack.and_then(|a| a.1),
            points: seen
                .points
                .iter()
                .filter(|(_, r)| now - r.ts_ms <= stale_ms)
                .map(|(k, r)| (k.clone(), r.diff_pressure_kpa))
                .collect(),
            lowest_station_dp: lowest,
            min_dp_kpa: self.cfg.settings.min_dp_kpa,
            ts_ms: now,
            trend: self.trend.iter().copied().collect(),
        };
        self.tx.send_replace(Some(Arc::new(status)));
    }
}

impl PlantTask {
    /// Partition 0's lead, if this instance holds it (and its fence) and may command.
    fn lead0(&self) -> Option<Lead> {
        let c = self.cluster.as_ref().filter(|_| self.cfg.control)?;
        let leads = c.leads.borrow();
        leads.first().cloned().flatten().filter(|l| l.fence.holds())
    }

    /// A cluster's period: this instance's led partitions' summaries go to etcd; the owner of
    /// partition 0 takes in the last read of every partition's and plans. `None` elsewhere.
    fn cluster_period(
        &mut self,
        summaries: BTreeMap<u32, (u64, Summary)>,
        now: i64,
        outdoor_c: f64,
        forecast: Option<&crate::predict::forecast::Forecast>,
    ) -> Option<PlantPlan> {
        let c = self.cluster.as_ref()?;
        for write in super::plant_summary::writes(summaries, now) {
            let _ = c.requests.try_send(StateRequest::Write(write));
        }
        let lead = self.lead0();
        if lead.is_none() {
            if self.commanding.take().is_some() {
                info!(plant = %self.cfg.id, "No longer commanding the plant (partition 0 passed on).");
            }
            self.pending = None;
            return None;
        }
        // The last read's answer, then the next read.
        let answer = match self.pending.as_mut().map(|r| r.try_recv()) {
            Some(Ok(kept)) => Some(kept),
            Some(Err(oneshot::error::TryRecvError::Closed)) => Some(Err("dropped".into())),
            Some(Err(oneshot::error::TryRecvError::Empty)) | None => None,
        };
        let answered = answer.is_some();
        if let Some(Ok(kept)) = answer {
            let stale_ms = (self.cfg.settings.stale_after_s * 1000.0) as i64;
            let fresh = super::plant_summary::take_in(&kept, now, stale_ms, &mut self.ctrl);
            self.ctrl.set_fresh_count(Some(fresh));
        }
        if answered || self.pending.is_none() {
            let (tx, rx) = oneshot::channel();
            let read = StateRequest::Read {
                prefix: SUMMARY_PREFIX.into(),
                reply: tx,
            };
            self.pending = c.requests.try_send(read).ok().map(|()| rx);
        }
        Some(self.ctrl.plan(now, outdoor_c, forecast))
    }

    /// Commands the plant under partition 0's epoch on its session, `seq` restarting above
    /// what the plant applied in this epoch: a deposed owner's commands carry an older epoch
    /// and the plant refuses them.
    fn command_fenced(&mut self, plan: &PlantPlan, lead: &Lead, seen: &PlantSeen, now: i64) {
        if self.commanding != Some(lead.epoch) {
            info!(plant = %self.cfg.id, epoch = lead.epoch, "Commanding the plant here now (partition 0 led here).");
            self.commanding = Some(lead.epoch);
            self.seq = 0;
        }
        if let Some((_, seq)) = seen
            .reading
            .as_ref()
            .and_then(|r| r.applied)
            .filter(|(e, _)| *e == lead.epoch)
        {
            self.seq = self.seq.max(seq);
        }
        self.seq += 1;
        let cmd = SentPlantCommand {
            plant: self.cfg.id.clone(),
            seq: self.seq,
            epoch: lead.epoch,
            ts_ms: now,
            valid_for_s: self.cfg.command_valid_for_s,
            plan: plan.clone(),
        };
        self.send(cmd, &lead.link, Some(lead.fence.clone()));
    }

    /// Hands `cmd` to the plant's poller (on Modbus) or publishes it on `link`; stored and
    /// kept as the last command once on its way.
    fn send(&mut self, cmd: SentPlantCommand, link: &Link, fence: Option<Fence>) {
        let sent = match &self.modbus {
            Some(tx) => {
                let points = self.cfg.settings.pressure_points.as_deref().unwrap_or(&[]);
                tx.send_replace(Some(cmd.write(points, self.cfg.settings.head_kpa, fence)));
                Ok(())
            }
            None => {
                let topic = format!("{}/plant/{}/command", self.prefix, self.cfg.id);
                link.try_publish(&topic, true, false, cmd.payload().to_string().into_bytes())
            }
        };
        match sent {
            Ok(()) => {
                self.store.submit(&Record::PlantCommand(cmd.point()));
                self.last_command = Some(cmd);
            }
            Err(e) => warn!(error = %e, "Plant command not queued."),
        }
    }
}

fn median(xs: &mut [f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    Some(xs[xs.len() / 2])
}
