//! The alarm task: evaluates every status snapshot the control task publishes, keeps the
//! alarm book, stores each raise and clear, and takes the operator's acknowledgements.
//!
//! Where it sits: after control, beside the API. Its input is the status watch channel (it
//! sees the newest snapshot; one it missed would have given the same verdicts a tick later)
//! and the acknowledgement queue of [`crate::control::change::Inbox`]; its output is the
//! [`AlarmView`] watch channel and `alarm` points in storage.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::engine::{NotifyWatch, StorageWatch};
use super::evaluate::{plant_checks, station_checks, Check, RejectWindow, StationAlarms};
use super::findings;
use super::shared::{Kept, SharedAlarms, Turn};
use super::{AlarmBook, AlarmView, ENGINE};
use super::{Event, Notify};
use crate::clock::now_ms;
use crate::control::change::{Change, ChangeError, ChangeRequest};
use crate::control::status::StationStatus;
use crate::model::Applied;
use crate::stats::Stats;
use crate::store::audit::OperatorLog;
use crate::store::record::{AlarmPoint, Record};
use crate::store::StoreHandle;

/// Says whether an acknowledgement was kept in etcd (in a cluster).
type KeptInEtcd = oneshot::Receiver<Result<(), String>>;

/// The alarm task's state.
#[derive(Debug)]
pub struct AlarmTask {
    book: AlarmBook,
    /// Per station, in config order (the status snapshot's order).
    stations: Vec<StationAlarms>,
    rejects: Vec<RejectWindow>,
    storage: StorageWatch,
    started_ms: i64,
    store: StoreHandle,
    stats: Arc<Stats>,
    log: Arc<OperatorLog>,
    view: watch::Sender<Arc<AlarmView>>,
    /// In a cluster: the partitions' alarms in etcd, and the answers to their reads.
    shared: Option<SharedAlarms>,
    kept: Option<mpsc::Receiver<Kept>>,
    /// Per station: the finding kinds of the last snapshot (a change is stored).
    findings: Vec<Vec<crate::diagnose::Kind>>,
    /// The plant loop's view, when a plant is configured.
    plant: Option<crate::control::plant_task::PlantStatusView>,
    /// Where raises, clears and escalations are sent (`[notify]`).
    notifier: Option<Arc<dyn Notify>>,
    notify_watch: NotifyWatch,
}

impl AlarmTask {
    /// The task over `book` (already loaded) for `stations`; publishes the book's alarms at
    /// once, so the API shows the ones kept across a restart before the first tick.
    pub fn new(
        book: AlarmBook,
        stations: Vec<StationAlarms>,
        store: StoreHandle,
        stats: Arc<Stats>,
        log: Arc<OperatorLog>,
    ) -> (Self, watch::Receiver<Arc<AlarmView>>) {
        let (view, view_rx) = watch::channel(Arc::new(AlarmView::default()));
        let task = Self {
            book,
            rejects: vec![RejectWindow::default(); stations.len()],
            findings: vec![Vec::new(); stations.len()],
            stations,
            storage: StorageWatch::default(),
            started_ms: now_ms(),
            store,
            stats,
            log,
            view,
            shared: None,
            kept: None,
            plant: None,
            notifier: None,
            notify_watch: NotifyWatch::default(),
        };
        task.publish();
        (task, view_rx)
    }

    /// Also raises the plant's alarms (`plant_stale`, `pressure_low`) from the plant loop's
    /// view, under the name `plant:{id}`.
    pub fn watching_plant(
        mut self,
        plant: Option<crate::control::plant_task::PlantStatusView>,
    ) -> Self {
        self.plant = plant;
        self
    }

    /// In a cluster: keeps each led partition's alarms in etcd and takes them over.
    pub fn sharing(mut self, shared: Option<(SharedAlarms, mpsc::Receiver<Kept>)>) -> Self {
        if let Some((shared, kept)) = shared {
            // etcd holds the stations' alarms now; what the last run kept on disk may be
            // another instance's by now.
            for a in self.book.active_of(|s| s != ENGINE) {
                self.book.forget(&a.station);
            }
            self.shared = Some(shared);
            self.kept = Some(kept);
        }
        self
    }

    /// Sends every raise, clear and escalation to `notifier`.
    pub fn notifying(mut self, notifier: Option<Arc<dyn Notify>>) -> Self {
        self.notifier = notifier;
        self
    }

    /// Runs until `stop` is cancelled or the control task has gone.
    pub async fn run(
        mut self,
        mut status: watch::Receiver<Arc<Vec<StationStatus>>>,
        mut acks: mpsc::Receiver<ChangeRequest>,
        stop: CancellationToken,
    ) {
        async fn next(rx: &mut Option<mpsc::Receiver<Kept>>) -> Option<Kept> {
            match rx {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        }
        let mut kept_rx = self.kept.take();
        loop {
            tokio::select! {
                changed = status.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let snapshot = status.borrow_and_update().clone();
                    self.evaluate(&snapshot, now_ms());
                }
                Some(req) = acks.recv() => {
                    let result = match req.change {
                        Change::AckAlarm { id } => self.ack(id, &req.user),
                        _ => Err(ChangeError::Invalid("not an alarm acknowledgement".into())),
                    };
                    let user = req.user.clone();
                    match result {
                        // In a cluster: answered once the acknowledgement is in etcd.
                        Ok((applied, Some(kept))) => {
                            let stats = self.stats.clone();
                            tokio::spawn(async move {
                                let r = match kept.await {
                                    Ok(Ok(())) => Ok(applied),
                                    Ok(Err(e)) => Err(ChangeError::Unavailable(format!(
                                        "acknowledged here, but not kept in the cluster: {e}"
                                    ))),
                                    Err(_) => Err(ChangeError::ShuttingDown),
                                };
                                if let Err(e) = &r {
                                    ack_failed(&stats, &user, e);
                                }
                                let _ = req.reply.send(r);
                            });
                        }
                        Ok((applied, None)) => {
                            let _ = req.reply.send(Ok(applied));
                        }
                        Err(e) => {
                            ack_failed(&self.stats, &user, &e);
                            let _ = req.reply.send(Err(e));
                        }
                    }
                }
                Some(kept) = next(&mut kept_rx) => {
                    if let Some(shared) = self.shared.as_mut() {
                        if shared.adopt(kept, &mut self.book) {
                            self.book.persist();
                            self.publish();
                        }
                    }
                }
                _ = stop.cancelled() => return,
            }
        }
    }

    /// Every station's conditions, and the engine's storage condition, at `now`.
    fn evaluate(&mut self, status: &[StationStatus], now: i64) {
        let mut lines = Vec::new();
        let mut checks: Vec<Check<'_>> = Vec::with_capacity(8);
        let since_start = now - self.started_ms;
        let mut forgot = false;
        let mut found = Vec::new();
        for (i, ((st, settings), window)) in status
            .iter()
            .zip(&self.stations)
            .zip(self.rejects.iter_mut())
            .enumerate()
        {
            let per_min = window.per_min(now, st.rejects);
            let turn = match self.shared.as_mut() {
                Some(shared) => shared.turn(i, st.id.as_str(), st.epoch, &mut self.book),
                None if st.epoch.is_none() => Turn::Skip,
                None => Turn::Evaluate,
            };
            match turn {
                Turn::Evaluate => {}
                // Another instance of the cluster leads it and raises its alarms, or its
                // partition's kept alarms are on their way.
                Turn::Skip => continue,
                Turn::Forgot => {
                    forgot = true;
                    continue;
                }
            }
            found.extend(findings::points(&mut self.findings[i], st, now));
            checks.clear();
            station_checks(st, settings, per_min, since_start, now, &mut checks);
            for c in &checks {
                lines.extend(feed(
                    &mut self.book,
                    self.notifier.as_ref(),
                    st.id.as_str(),
                    c,
                    now,
                ));
            }
        }
        let storage = self.storage.check(
            Stats::get(&self.stats.store_write_errors),
            Stats::get(&self.stats.spool_refused),
            Stats::get(&self.stats.dead_letters),
            now,
        );
        lines.extend(feed(
            &mut self.book,
            self.notifier.as_ref(),
            ENGINE,
            &storage,
            now,
        ));
        if self.notifier.is_some() {
            let lost = Stats::get(&self.stats.notify_dead_letters)
                + Stats::get(&self.stats.notify_dropped);
            let c = self.notify_watch.check(lost, now);
            lines.extend(feed(
                &mut self.book,
                self.notifier.as_ref(),
                ENGINE,
                &c,
                now,
            ));
        }
        let plant = self.plant.as_ref().and_then(|v| v.borrow().clone());
        if let Some(p) = &plant {
            let name = format!("plant:{}", p.id);
            for c in &plant_checks(p, now) {
                lines.extend(feed(&mut self.book, self.notifier.as_ref(), &name, c, now));
            }
        }
        let escalated = self.escalate(now);
        if let Some(shared) = self.shared.as_mut() {
            shared.ask();
            for station in lines.iter().map(|l| &l.station).chain(&escalated) {
                shared.changed(station);
            }
            shared.keep(&self.book);
        }
        if !escalated.is_empty() {
            self.book.persist();
            self.publish();
        }
        if !found.is_empty() {
            self.store
                .submit_many(found.into_iter().map(Record::Finding));
        }
        if !lines.is_empty() || forgot {
            self.store.submit_many(lines.into_iter().map(Record::Alarm));
            self.book.persist();
            self.publish();
        }
    }

    /// Escalates each active alarm left unacknowledged longer than its routes allow, once;
    /// the stations whose alarms were.
    fn escalate(&mut self, now: i64) -> Vec<String> {
        let Some(n) = &self.notifier else {
            return Vec::new();
        };
        let due: Vec<(String, crate::alarms::AlarmKind)> = self
            .book
            .active_of(|_| true)
            .into_iter()
            .filter(|a| a.acked_by.is_none() && a.escalated_ms.is_none())
            .filter(|a| {
                n.escalation(a)
                    .is_some_and(|d| now - a.raised_ms >= d.as_millis() as i64)
            })
            .map(|a| (a.station, a.kind))
            .collect();
        let mut stations = Vec::new();
        for (station, kind) in due {
            if let Some(a) = self.book.escalate(&station, kind, now) {
                warn!(station = %a.station, kind = kind.as_str(), id = a.id,
                    "Alarm escalated: unacknowledged too long.");
                n.send(Event::Escalated, &a);
                stations.push(station);
            }
        }
        stations
    }

    /// Acknowledges alarm `id`; in a cluster, with what says when it is kept in etcd.
    fn ack(&mut self, id: u64, user: &str) -> Result<(Applied, Option<KeptInEtcd>), ChangeError> {
        let now = now_ms();
        let a = self
            .book
            .ack(id, user, now)
            .map_err(|e| ChangeError::UnknownAlarm(e.to_string()))?;
        self.book.persist();
        self.publish();
        let applied = Applied {
            station: a.station.clone(),
            action: "ack_alarm".into(),
            before: format!("alarm {} {} raised", a.id, a.kind.as_str()),
            after: format!("acknowledged by {}", a.acked_by.as_deref().unwrap_or(user)),
        };
        self.log.record(now, user, &applied);
        let kept = self.shared.as_mut().map(|shared| {
            let (done, kept) = oneshot::channel();
            shared.keep_now(&a.station, &self.book, done);
            kept
        });
        Ok((applied, kept))
    }

    fn publish(&self) {
        let _ = self.view.send(Arc::new(AlarmView {
            active: self.book.active(),
            recent: self.book.recent(),
        }));
    }
}

/// One check into the book; the storage point of a raise or clear, which is notified.
fn feed(
    book: &mut AlarmBook,
    notifier: Option<&Arc<dyn Notify>>,
    station: &str,
    c: &Check<'_>,
    now: i64,
) -> Option<AlarmPoint> {
    let point = book.evaluate(station, c.kind, c.active, c.hold_ms, c.value, now, || {
        c.detail.to_string()
    })?;
    if let Some(n) = notifier {
        let (event, alarm) = if point.active {
            (Event::Raised, book.get(station, c.kind))
        } else {
            (Event::Cleared, book.last_cleared())
        };
        if let Some(a) = alarm {
            n.send(event, a);
        }
    }
    Some(point)
}

/// A manual acknowledgement that was refused: counted and logged with who asked and why.
fn ack_failed(stats: &Stats, user: &str, e: &ChangeError) {
    stats.alarm_acks_failed.fetch_add(1, Ordering::Relaxed);
    warn!(user, error = %e, "An alarm acknowledgement was refused.");
}

#[cfg(test)]
#[path = "task_tests.rs"]
mod tests;
