//! The control task in-process, on tokio's paused time: its tick, what it commands from
//! fresh, stale and absent data, durable numbering, and operator changes. The station is a
//! Modbus route, so a command is the value the dispatcher hands its poller (no network).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::command::dispatch::{Numbering, Route};
use crate::command::seq::SeqStore;
use crate::control::change::{Change, ChangeRequest};
use crate::control::fleet::Station;
use crate::control::station::tests::params;
use crate::control::station::StationController;
use crate::ingest::mqtt::Link;
use crate::ingest::slot::{self, Gathered, StationSlot};
use crate::model::{Mode, Reading, StationId};
use crate::store::spool::FsyncPolicy;
use crate::store::StoreHandle;

const TICK: Duration = Duration::from_secs(5);

struct Rig {
    slot: Arc<StationSlot>,
    commands: watch::Receiver<Option<Command>>,
    status: watch::Receiver<Arc<Vec<crate::control::status::StationStatus>>>,
    changes: mpsc::Sender<ChangeRequest>,
    store: StoreHandle,
    stats: Arc<Stats>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// One station, `st-1`, with the controller tests' parameters, commanded over a Modbus route.
fn rig(dir: &std::path::Path) -> Rig {
    let stats = Arc::new(Stats::default());
    let store = StoreHandle::in_dir(dir, stats.clone());
    let slot = Arc::new(StationSlot::new(
        0,
        BTreeMap::new(),
        Some(5000.0),
        true,
        None,
    ));
    let ctrl = StationController::new(params(), TICK.as_secs_f64());
    let id = StationId::new("st-1").expect("an id");
    let station = Station::new(
        id.clone(),
        BTreeMap::new(),
        "test".into(),
        slot.clone(),
        ctrl,
    );
    let (to_poller, commands) = watch::channel(None);
    let route = Route {
        id,
        tags: BTreeMap::new(),
        topic: None,
        template: None,
        device: Some(to_poller),
    };
    // An MQTT client that is never connected: the numbering needs one, a Modbus route never
    // uses it.
    let (client, _el) =
        rumqttc::AsyncClient::new(rumqttc::MqttOptions::new("t", "127.0.0.1", 1), 4);
    let seqs = SeqStore::open(dir, FsyncPolicy::Always).expect("a seq store");
    let numbering = Numbering::Durable {
        seqs,
        link: Link::V311(client),
    };
    let dispatcher = Dispatcher::new(vec![route], numbering, 60, store.clone(), stats.clone());
    let settings = ControlSettings {
        tick: TICK,
        time_scale: 1.0,
        control_on: ControlOn::Tick,
        default_outdoor_c: 0.0,
        weather_max_age_ms: 600_000,
        diagnosis: crate::diagnose::Settings::default(),
        predictive: crate::predict::Settings::default(),
    };
    let log = Arc::new(OperatorLog::open(&dir.join("audit.jsonl"), store.clone()).expect("log"));
    let (task, status) = ControlTask::new(
        vec![station],
        settings,
        dispatcher,
        Weather::default(),
        stats.clone(),
        log,
        None,
    );
    let (changes, changes_rx) = mpsc::channel(4);
    let stop = CancellationToken::new();
    let task = tokio::spawn(task.run(changes_rx, None, stop.clone()));
    Rig {
        slot,
        commands,
        status,
        changes,
        store,
        stats,
        stop,
        task,
    }
}

impl Rig {
    /// A reading measured at `ts_ms` is accepted, as ingest would.
    fn reading(&self, ts_ms: i64, supply: f64) {
        let r = Reading {
            station: StationId::new("st-1").expect("an id"),
            ts_ms,
            supply_temp_c: supply,
            return_temp_c: supply - 15.0,
            flow_m3h: 20.0,
            heated_area_m2: Some(5000.0),
            outdoor_temp_c: Some(-5.0),
            indoor_temp_c: None,
            valve_pct: None,
            pump_pct: None,
            heat_kw: None,
            extra: Vec::new(),
        };
        let mut out = Gathered::new(self.store.clone(), None);
        slot::accept(&self.slot, r, &mut out, &self.stats);
        out.flush(&self.stats);
    }

    fn last(&self) -> Option<Command> {
        self.commands.borrow().clone()
    }

    async fn change(&self, change: Change) -> Result<crate::model::Applied, String> {
        let (reply, rx) = oneshot::channel();
        self.changes
            .send(ChangeRequest {
                station: "st-1".into(),
                change,
                user: "ops".into(),
                reply,
            })
            .await
            .map_err(|e| e.to_string())?;
        rx.await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

#[tokio::test(start_paused = true)]
async fn nothing_is_commanded_from_absent_or_stale_data() {
    let dir = tempfile::tempdir().unwrap();
    let rig = rig(dir.path());
    tokio::time::sleep(TICK * 3).await;
    assert!(rig.last().is_none(), "commanded without a reading");
    // A reading older than the staleness limit (measured ten minutes ago).
    rig.reading(now_ms() - 600_000, 50.0);
    tokio::time::sleep(TICK * 3).await;
    assert!(
        rig.last().is_none(),
        "commanded from stale data: {:?}",
        rig.last()
    );
    let status = rig.status.borrow().clone();
    assert!(status[0].stale, "the status view says stale");
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_fresh_reading_is_commanded_within_a_tick_with_a_durable_seq() {
    let dir = tempfile::tempdir().unwrap();
    let rig = rig(dir.path());
    rig.reading(now_ms(), 50.0);
    // The first tick comes at once.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let first = rig.last().expect("a command at the first tick");
    assert_eq!(first.seq, 1);
    assert_eq!(first.valid_for_s, 60);
    assert_eq!(first.mode, Mode::Auto);
    assert!((0.0..=100.0).contains(&first.valve_pct), "{first:?}");
    // One command per tick, numbered on.
    rig.reading(now_ms(), 50.5);
    tokio::time::sleep(TICK).await;
    let second = rig.last().expect("a second command");
    assert_eq!(second.seq, 2);
    rig.stop().await;
    // The numbers are on disk: a restart continues after them.
    let seqs = SeqStore::open(dir.path(), FsyncPolicy::Never).unwrap();
    assert_eq!(seqs.last(&StationId::new("st-1").unwrap()), 2);
}

#[tokio::test(start_paused = true)]
async fn an_operator_change_is_applied_within_limits_and_carried_by_the_next_command() {
    let dir = tempfile::tempdir().unwrap();
    let rig = rig(dir.path());
    rig.reading(now_ms(), 50.0);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(rig.last().is_some_and(|c| c.mode == Mode::Auto));
    let manual = |valve| Change::Mode {
        mode: Mode::Manual,
        valve_pct: Some(valve),
        pump_pct: Some(60.0),
    };
    // Out of range: refused, nothing changes.
    let refused = rig.change(manual(180.0)).await;
    assert!(refused.is_err(), "{refused:?}");
    let applied = rig.change(manual(35.0)).await.expect("applied");
    assert_eq!(applied.station, "st-1");
    rig.reading(now_ms(), 50.0);
    tokio::time::sleep(TICK).await;
    let cmd = rig.last().expect("a command");
    assert_eq!(cmd.mode, Mode::Manual);
    assert!((cmd.valve_pct - 35.0).abs() < 1e-9, "{cmd:?}");
    // An unknown station is refused by name.
    let (reply, rx) = oneshot::channel();
    rig.changes
        .send(ChangeRequest {
            station: "st-9".into(),
            change: manual(35.0),
            user: "ops".into(),
            reply,
        })
        .await
        .unwrap();
    assert!(rx.await.unwrap().is_err());
    rig.stop().await;
}
