//! A channel's delivery task: what the grouping hands on is sent in order, each tried up to
//! `max_attempts` times with backoff (1 s doubling to 60 s); what cannot be delivered is a
//! dead letter, counted (`notify_dead_letters`) and logged with its content, and the engine's
//! `notify_failed` alarm is raised (alarms/evaluate.rs). It also writes what is sent: the
//! webhook's JSON body and the mail's subject and text.
//!
//! Where it sits: after the grouping (`group.rs`), one per channel, so a channel that is down delays
//! only its own messages.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::email::{Email, EmailConfig};
use super::message::{Message, Outgoing, SendError};
use super::webhook::{Webhook, WebhookConfig};
use crate::backoff::Backoff;
use crate::clock::now_ms;
use crate::stats::Stats;

/// A named destination.
#[derive(Debug, Clone)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
}

#[derive(Debug, Clone)]
pub enum ChannelKind {
    Webhook(WebhookConfig),
    Email(EmailConfig),
}

/// A summary lists at most this many alarms; the rest are counted.
const SUMMARY_LIST: usize = 50;

/// A channel's way out.
#[derive(Debug)]
pub(super) enum Sender {
    Webhook(Webhook, String),
    Email(Box<Email>, String),
}

impl Sender {
    pub(super) fn new(kind: &ChannelKind, source: &str) -> Result<Self, String> {
        Ok(match kind {
            ChannelKind::Webhook(c) => Sender::Webhook(Webhook::new(c)?, source.to_owned()),
            ChannelKind::Email(c) => Sender::Email(Box::new(Email::new(c)?), source.to_owned()),
        })
    }

    async fn send(&self, delivery: &str, o: &Outgoing) -> Result<(), SendError> {
        match self {
            Sender::Webhook(w, source) => {
                let body = body(o, source, delivery).to_string();
                w.post(delivery, body.as_bytes()).await
            }
            Sender::Email(e, source) => {
                let (subject, text) = mail(o, source);
                e.send(&subject, text).await
            }
        }
    }
}

/// The webhook's JSON body of `o`.
pub(super) fn body(o: &Outgoing, source: &str, delivery: &str) -> Value {
    let head = json!({
        "version": 1,
        "delivery": delivery,
        "source": source,
        "sent_ms": now_ms(),
    });
    let mut v = match o {
        Outgoing::One(m) => json!({ "event": m.event, "alarm": m.alarm }),
        Outgoing::Summary(all) => {
            let (events, kinds, severities) = tally(all);
            json!({
                "event": "summary",
                "count": all.len(),
                "events": events,
                "kinds": kinds,
                "severities": severities,
                "alarms": all.iter().take(SUMMARY_LIST).map(|m| json!({
                    "event": m.event,
                    "station": m.alarm.station,
                    "kind": m.alarm.kind,
                    "severity": m.alarm.severity,
                    "message": m.alarm.message,
                })).collect::<Vec<_>>(),
                "more": all.len().saturating_sub(SUMMARY_LIST),
            })
        }
    };
    if let (Value::Object(v), Value::Object(h)) = (&mut v, head) {
        v.extend(h);
    }
    v
}

type Counts = BTreeMap<&'static str, usize>;

/// Per event, kind and severity: how many of `all`.
fn tally(all: &[Message]) -> (Counts, Counts, Counts) {
    let (mut e, mut k, mut s) = (Counts::new(), Counts::new(), Counts::new());
    for m in all {
        *e.entry(m.event.as_str()).or_default() += 1;
        *k.entry(m.alarm.kind.as_str()).or_default() += 1;
        *s.entry(m.alarm.severity.as_str()).or_default() += 1;
    }
    (e, k, s)
}

/// The mail's subject and text of `o`.
pub(super) fn mail(o: &Outgoing, source: &str) -> (String, String) {
    let line = |m: &Message| {
        format!(
            "{} {} {} at {}: {}",
            m.event.as_str(),
            m.alarm.severity.as_str().to_uppercase(),
            m.alarm.kind.as_str(),
            m.alarm.station,
            m.alarm.message
        )
    };
    match o {
        Outgoing::One(m) => {
            let a = &m.alarm;
            let subject = format!(
                "[heatgrid] {} {} at {} {}",
                a.severity.as_str().to_uppercase(),
                a.kind.as_str(),
                a.station,
                m.event.as_str()
            );
            let at = |ms: Option<i64>| ms.map_or("-".to_owned(), crate::clock::rfc3339_ms);
            let text = format!(
                "{}\n\nalarm {}\nraised {}\nacknowledged {}{}\ncleared {}\n\nfrom {source}\n",
                line(m),
                a.id,
                at(Some(a.raised_ms)),
                at(a.acked_ms),
                a.acked_by
                    .as_deref()
                    .map_or(String::new(), |u| format!(" by {u}")),
                at(a.cleared_ms),
            );
            (subject, text)
        }
        Outgoing::Summary(all) => {
            let (events, kinds, _) = tally(all);
            let list = |c: &Counts| {
                c.iter()
                    .map(|(k, n)| format!("{k} ×{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let subject = format!(
                "[heatgrid] {} alarm events ({}): {}",
                all.len(),
                list(&events),
                list(&kinds)
            );
            let mut text: String = all
                .iter()
                .take(SUMMARY_LIST)
                .map(|m| line(m) + "\n")
                .collect();
            if all.len() > SUMMARY_LIST {
                text.push_str(&format!("… and {} more\n", all.len() - SUMMARY_LIST));
            }
            text.push_str(&format!(
                "\nSent as one summary: more events at once than the flood threshold.\nfrom {source}\n"
            ));
            (subject, text)
        }
    }
}

/// Numbers each delivery of this process (with the start time, unique per source).
static DELIVERIES: AtomicU64 = AtomicU64::new(0);

/// Runs until `stop` or the grouping has gone.
pub(super) async fn run(
    channel: String,
    sender: Sender,
    max_attempts: u32,
    mut rx: mpsc::Receiver<Outgoing>,
    stats: Arc<Stats>,
    stop: CancellationToken,
) {
    let started = now_ms();
    while let Some(o) = tokio::select! {
        o = rx.recv() => o,
        _ = stop.cancelled() => None,
    } {
        let delivery = format!("{started:x}-{}", DELIVERIES.fetch_add(1, Ordering::Relaxed));
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let failure = loop {
            match sender.send(&delivery, &o).await {
                Ok(()) => break None,
                Err(SendError::Permanent(why)) => break Some(why),
                Err(SendError::Retry(why)) if backoff.attempts() + 1 >= max_attempts => {
                    break Some(why)
                }
                Err(SendError::Retry(why)) => {
                    stats.notify_retries.fetch_add(1, Ordering::Relaxed);
                    let wait = backoff.next_delay();
                    warn!(%channel, %delivery, error = %why, retry_in_ms = wait.as_millis() as u64,
                        "Notification not delivered; retrying.");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.cancelled() => break Some(format!("{why} (engine stopping)")),
                    }
                }
            }
        };
        match failure {
            None => {
                stats.notifications_sent.fetch_add(1, Ordering::Relaxed);
                if backoff.attempts() > 0 {
                    info!(%channel, %delivery, attempts = backoff.attempts() + 1,
                        "Notification delivered after retries.");
                }
            }
            Some(why) => {
                stats.notify_dead_letters.fetch_add(1, Ordering::Relaxed);
                let (subject, _) = mail(&o, "");
                error!(%channel, %delivery, error = %why, attempts = backoff.attempts() + 1,
                    notification = %subject, "ALARM notification could not be delivered (dead letter).");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarms::{Alarm, AlarmKind, Event};

    fn msg(station: &str, kind: AlarmKind, event: Event) -> Message {
        Message {
            event,
            alarm: Alarm {
                id: 7,
                station: station.into(),
                kind,
                severity: kind.severity(),
                message: "no telemetry for 62 s".into(),
                value: 62.0,
                raised_ms: 1_796_659_200_000,
                acked_by: None,
                acked_ms: None,
                cleared_ms: None,
                escalated_ms: None,
            },
        }
    }

    #[test]
    fn one_alarm_and_a_summary_as_json_and_as_mail() {
        let one = Outgoing::One(msg("st-001", AlarmKind::Stale, Event::Raised));
        let b = body(&one, "a", "d-1");
        assert_eq!(b["event"], "raised");
        assert_eq!(b["alarm"]["station"], "st-001");
        assert_eq!(b["alarm"]["severity"], "major");
        assert_eq!(b["delivery"], "d-1");
        assert_eq!(b["source"], "a");
        let (subject, text) = mail(&one, "a");
        assert_eq!(subject, "[heatgrid] MAJOR stale at st-001 raised");
        assert!(text.contains("raised 2026-12-07T"), "{text}");

        let mut all: Vec<Message> = (0..480)
            .map(|i| msg(&format!("s{i}"), AlarmKind::Stale, Event::Raised))
            .collect();
        all.extend((0..20).map(|i| msg(&format!("s{i}"), AlarmKind::Stale, Event::Cleared)));
        let s = Outgoing::Summary(all);
        let b = body(&s, "a", "d-2");
        assert_eq!(b["event"], "summary");
        assert_eq!(b["count"], 500);
        assert_eq!(b["events"]["raised"], 480);
        assert_eq!(b["events"]["cleared"], 20);
        assert_eq!(b["kinds"]["stale"], 500);
        assert_eq!(b["alarms"].as_array().unwrap().len(), SUMMARY_LIST);
        assert_eq!(b["more"], 450);
        let (subject, text) = mail(&s, "a");
        assert_eq!(
            subject,
            "[heatgrid] 500 alarm events (cleared ×20, raised ×480): stale ×500"
        );
        assert!(text.contains("… and 450 more"), "{text}");
    }
}
