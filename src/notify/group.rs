//! A channel's grouping: messages are gathered until `group_wait` passes without a new one
//! (or the first is `group_max` old), then sent one by one, or as one summary when there are
//! more than `flood_threshold` (a broker outage making 500 stations stale at once is one
//! message, not 500).
//!
//! Where it sits: between the notifier's routing (the channel's queue) and the channel's
//! delivery task, one per channel.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::message::{Message, Outgoing};

#[derive(Debug, Clone, Copy)]
pub(super) struct Grouping {
    pub(super) wait: Duration,
    pub(super) max: Duration,
    pub(super) flood_threshold: usize,
}

/// What a closed group is sent as.
pub(super) fn close(group: Vec<Message>, flood_threshold: usize) -> Vec<Outgoing> {
    if group.len() > flood_threshold {
        vec![Outgoing::Summary(group)]
    } else {
        group.into_iter().map(Outgoing::One).collect()
    }
}

/// Runs until `stop` (what is gathered then is handed on) or the queue closes.
pub(super) async fn run(
    g: Grouping,
    mut rx: mpsc::Receiver<Message>,
    out: mpsc::Sender<Outgoing>,
    stop: CancellationToken,
) {
    let mut group: Vec<Message> = Vec::new();
    let mut first = Instant::now();
    let mut last = first;
    loop {
        let due = (!group.is_empty()).then(|| (last + g.wait).min(first + g.max));
        tokio::select! {
            m = rx.recv() => {
                let Some(m) = m else { break };
                last = Instant::now();
                if group.is_empty() {
                    first = last;
                }
                group.push(m);
            }
            _ = sleep_until(due) => {
                for o in close(std::mem::take(&mut group), g.flood_threshold) {
                    // The delivery task has gone only at shutdown.
                    if out.send(o).await.is_err() {
                        return;
                    }
                }
            }
            _ = stop.cancelled() => break,
        }
    }
    for o in close(group, g.flood_threshold) {
        let _ = out.try_send(o);
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarms::{Alarm, AlarmKind, Event};

    fn msg(station: &str) -> Message {
        Message {
            event: Event::Raised,
            alarm: Alarm {
                id: 1,
                station: station.into(),
                kind: AlarmKind::Stale,
                severity: AlarmKind::Stale.severity(),
                message: String::new(),
                value: 0.0,
                raised_ms: 0,
                acked_by: None,
                acked_ms: None,
                cleared_ms: None,
                escalated_ms: None,
            },
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_becomes_one_summary_and_a_lone_alarm_goes_alone() {
        let (tx, rx) = mpsc::channel(1000);
        let (out_tx, mut out) = mpsc::channel(1000);
        let stop = CancellationToken::new();
        let g = Grouping {
            wait: Duration::from_secs(10),
            max: Duration::from_secs(60),
            flood_threshold: 5,
        };
        let task = tokio::spawn(run(g, rx, out_tx, stop.clone()));
        // 500 stations stale within 8 s: one summary, 10 s after the last (at 18 s).
        let t0 = Instant::now();
        for i in 0..500 {
            tx.send(msg(&format!("s{i}"))).await.unwrap();
            if i % 100 == 99 {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        match out.recv().await.unwrap() {
            Outgoing::Summary(all) => assert_eq!(all.len(), 500),
            o => panic!("{o:?}"),
        }
        assert_eq!(t0.elapsed(), Duration::from_secs(18));
        // Later, one alarm alone: sent as itself after group_wait.
        tokio::time::sleep(Duration::from_secs(30)).await;
        tx.send(msg("lone")).await.unwrap();
        let t1 = Instant::now();
        assert!(matches!(out.recv().await.unwrap(), Outgoing::One(m) if m.alarm.station == "lone"));
        assert_eq!(t1.elapsed(), Duration::from_secs(10));
        // A trickle that never quiets is sent when its first message is group_max old.
        let t2 = Instant::now();
        let sender = tx.clone();
        tokio::spawn(async move {
            for i in 0..8 {
                sender.send(msg(&format!("t{i}"))).await.unwrap();
                tokio::time::sleep(Duration::from_secs(9)).await;
            }
        });
        match out.recv().await.unwrap() {
            Outgoing::Summary(all) => assert_eq!(all.len(), 7, "0 s … 54 s"),
            o => panic!("{o:?}"),
        }
        assert_eq!(t2.elapsed(), Duration::from_secs(60));
        assert!(matches!(out.recv().await.unwrap(), Outgoing::One(m) if m.alarm.station == "t7"));
        assert_eq!(t2.elapsed(), Duration::from_secs(73));
        // At shutdown what was gathered is handed on.
        tx.send(msg("last")).await.unwrap();
        tokio::task::yield_now().await;
        stop.cancel();
        task.await.unwrap();
        assert!(matches!(out.recv().await.unwrap(), Outgoing::One(m) if m.alarm.station == "last"));
    }
}
