//! The alarm task's acknowledgements: kept, refused and counted.

use super::*;
use crate::alarms::AlarmKind;

/// An alarm task whose book holds one active `stale` alarm of `st-1`; its id.
fn task(dir: &std::path::Path) -> (AlarmTask, watch::Receiver<Arc<AlarmView>>, u64, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    let store = StoreHandle::in_dir(dir, stats.clone());
    let mut book = AlarmBook::open(dir.join("alarms.json")).unwrap();
    book.evaluate("st-1", AlarmKind::Stale, true, 0, 0.0, now_ms(), || {
        "no telemetry".into()
    });
    let id = book.active().first().map(|a| a.id).expect("raised");
    let log = Arc::new(OperatorLog::open(&dir.join("audit.jsonl"), store.clone()).unwrap());
    let (task, view) = AlarmTask::new(book, Vec::new(), store, stats.clone(), log);
    (task, view, id, stats)
}

async fn ack(acks: &mpsc::Sender<ChangeRequest>, id: u64) -> Result<Applied, ChangeError> {
    let (reply, rx) = oneshot::channel();
    acks.send(ChangeRequest {
        station: String::new(),
        change: Change::AckAlarm { id },
        user: "ops".into(),
        reply,
    })
    .await
    .unwrap();
    rx.await.unwrap()
}

#[tokio::test]
async fn an_acknowledgement_is_kept_and_a_refused_one_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (task, mut view, id, stats) = task(dir.path());
    assert_eq!(view.borrow().active.len(), 1, "published at once");
    let (_status_tx, status) = watch::channel(Arc::new(Vec::new()));
    let (acks, acks_rx) = mpsc::channel(4);
    let stop = CancellationToken::new();
    let run = tokio::spawn(task.run(status, acks_rx, stop.clone()));

    // An alarm that does not exist: refused, counted.
    let refused = ack(&acks, id + 100).await;
    assert!(
        matches!(refused, Err(ChangeError::UnknownAlarm(_))),
        "{refused:?}"
    );
    assert_eq!(Stats::get(&stats.alarm_acks_failed), 1);

    // The real one: acknowledged by its user, shown and kept on disk.
    let applied = ack(&acks, id).await.expect("acknowledged");
    assert_eq!(applied.station, "st-1");
    assert!(applied.after.contains("ops"), "{applied:?}");
    view.changed().await.unwrap();
    assert_eq!(view.borrow().active[0].acked_by.as_deref(), Some("ops"));
    assert_eq!(
        Stats::get(&stats.alarm_acks_failed),
        1,
        "nothing more refused"
    );
    stop.cancel();
    run.await.unwrap();
    let kept = AlarmBook::open(dir.path().join("alarms.json")).unwrap();
    assert_eq!(kept.active()[0].acked_by.as_deref(), Some("ops"));
}
