//! The alarm task: evaluates every status snapshot the control task publishes, keeps the
//! alarm book, stores each raise and clear, and takes the operator's acknowledgements.
//!
//! Where it sits: after control, beside the API. Its input is the status watch channel (it
//! sees the newest snapshot; one it missed would have given the same verdicts a tick later)
//! and the acknowledgement queue of [`crate::control::change::Inbox`]; its output is the
//! [`AlarmView`] watch channel and `alarm` points in storage.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::evaluate::{station_checks, Check, RejectWindow, StationAlarms, StorageWatch};
use super::{AlarmBook, AlarmView};
use crate::clock::now_ms;
use crate::control::change::{Change, ChangeError, ChangeRequest};
use crate::control::status::StationStatus;
use crate::model::Applied;
use crate::stats::Stats;
use crate::store::audit::OperatorLog;
use crate::store::record::{AlarmPoint, Record};
use crate::store::StoreHandle;

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
            stations,
            storage: StorageWatch::default(),
            started_ms: now_ms(),
            store,
            stats,
            log,
            view,
        };
        task.publish();
        (task, view_rx)
    }

    /// Runs until `stop` is cancelled or the control task has gone.
    pub async fn run(
        mut self,
        mut status: watch::Receiver<Arc<Vec<StationStatus>>>,
        mut acks: mpsc::Receiver<ChangeRequest>,
        stop: CancellationToken,
    ) {
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
                    let _ = req.reply.send(result);
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
        for ((st, settings), window) in status
            .iter()
            .zip(&self.stations)
            .zip(self.rejects.iter_mut())
        {
            let per_min = window.per_min(now, st.rejects);
            if st.epoch.is_none() {
                continue; // another instance of the cluster leads it, and raises its alarms
            }
            checks.clear();
            station_checks(st, settings, per_min, since_start, now, &mut checks);
            for c in &checks {
                lines.extend(feed(&mut self.book, st.id.as_str(), c, now));
            }
        }
        let storage = self.storage.check(
            Stats::get(&self.stats.store_write_errors),
            Stats::get(&self.stats.spool_refused),
            Stats::get(&self.stats.dead_letters),
            now,
        );
        lines.extend(feed(&mut self.book, "engine", &storage, now));
        if !lines.is_empty() {
            self.store.submit_many(lines.into_iter().map(Record::Alarm));
            self.book.persist();
            self.publish();
        }
    }

    fn ack(&mut self, id: u64, user: &str) -> Result<Applied, ChangeError> {
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
        Ok(applied)
    }

    fn publish(&self) {
        let _ = self.view.send(Arc::new(AlarmView {
            active: self.book.active(),
            recent: self.book.recent(),
        }));
    }
}

/// One check into the book; the storage point of a raise or clear.
fn feed(book: &mut AlarmBook, station: &str, c: &Check<'_>, now: i64) -> Option<AlarmPoint> {
    book.evaluate(station, c.kind, c.active, c.hold_ms, c.value, now, || {
        c.detail.to_string()
    })
}
