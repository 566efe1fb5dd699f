//! Alarm notifications: each raise, clear and escalation of an alarm routed to webhooks and
//! e-mail, grouped so that a flood becomes one summary, and delivered with retries.
//!
//! ```text
//!  alarm task ──Notify::send(Event)──► routes (severity, kind, station tags)
//!                                           │ one queue per channel (try_send: never waits)
//!                                           ▼
//!                        group (group.rs): messages gathered until group_wait of quiet
//!                        (at most group_max); more than flood_threshold → one summary
//!                                           │
//!                        deliver (deliver.rs): in order, retried with backoff; a message
//!                        that cannot be delivered is a dead letter (counted, logged, and
//!                        the engine's notify_failed alarm)
//!                                           ▼
//!                           webhook.rs (HMAC-signed JSON POST) │ email.rs (SMTP)
//! ```
//!
//! Where it sits: downstream of the alarm task, which calls [`crate::alarms::Notify::send`] for every raise
//! and clear it makes and every escalation it decides (an unacknowledged alarm older than its
//! route's `escalate_after_min`, once: the time is kept with the alarm). In a cluster only a
//! station's owner evaluates its alarms, and a takeover adopts them without a raise, so each
//! alarm is notified once, by the instance that raised it. Each channel has its own queue
//! and tasks: a dead webhook delays no e-mail.

mod deliver;
mod email;
mod group;
mod message;
mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::error;

pub use crate::alarms::Event;
use crate::alarms::{Alarm, AlarmKind, Severity};
use crate::stats::Stats;

pub use deliver::{Channel, ChannelKind};
pub use email::{valid_mailbox, EmailConfig, EmailTls};
pub use message::{Message, Outgoing, SendError};
pub use webhook::WebhookConfig;

/// `[notify]`: where alarms are sent and how.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub channels: Vec<Channel>,
    pub routes: Vec<Route>,
    /// A group is sent after this long without a new message …
    pub group_wait: Duration,
    /// … or when its first message is this old.
    pub group_max: Duration,
    /// A group of more messages than this is sent as one summary.
    pub flood_threshold: usize,
    /// Tries of one message before it is a dead letter.
    pub max_attempts: u32,
}

/// Which alarms go where (`[[notify.route]]`); every matching route sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Empty: every severity.
    pub severities: Vec<Severity>,
    /// Empty: every kind.
    pub kinds: Vec<AlarmKind>,
    /// Each must be one of the station's tags (an engine or plant alarm has none).
    pub tags: BTreeMap<String, String>,
    /// Channel indices.
    pub to: Vec<usize>,
    /// Whether clears are sent too.
    pub cleared: bool,
    /// An alarm still unacknowledged this long after its raise is sent to `escalate_to`.
    pub escalate_after: Option<Duration>,
    pub escalate_to: Vec<usize>,
}

impl Route {
    fn matches(&self, a: &Alarm, tags: Option<&BTreeMap<String, String>>) -> bool {
        (self.severities.is_empty() || self.severities.contains(&a.severity))
            && (self.kinds.is_empty() || self.kinds.contains(&a.kind))
            && self
                .tags
                .iter()
                .all(|(k, v)| tags.and_then(|t| t.get(k)) == Some(v))
    }
}

/// The alarm task's side: routes each event to the channels' queues without waiting.
#[derive(Debug, Clone)]
pub struct Notifier {
    routes: Arc<Vec<Route>>,
    queues: Arc<Vec<mpsc::Sender<Message>>>,
    names: Arc<Vec<String>>,
    /// Each station's static tags, for the routes.
    tags: Arc<HashMap<String, BTreeMap<String, String>>>,
    stats: Arc<Stats>,
}

/// A task of the notifier, for the engine to run.
pub type Task = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Messages a channel's queue holds before new ones are dropped (counted and logged).
const QUEUE: usize = 10_000;

impl Notifier {
    /// The notifier of `cfg`, and its tasks to run (one grouping and one delivery task per
    /// channel; they run until `stop`). `source` names this engine (its cluster instance) in
    /// every message.
    pub fn new(
        cfg: &NotifyConfig,
        tags: HashMap<String, BTreeMap<String, String>>,
        source: String,
        stats: Arc<Stats>,
        stop: &CancellationToken,
    ) -> Result<(Self, Vec<Task>), String> {
        let mut queues = Vec::new();
        let mut tasks: Vec<Task> = Vec::new();
        for ch in &cfg.channels {
            let sender = deliver::Sender::new(&ch.kind, &source)
                .map_err(|e| format!("notify channel {:?}: {e}", ch.name))?;
            let (tx, rx) = mpsc::channel(QUEUE);
            let (out_tx, out_rx) = mpsc::channel(QUEUE);
            let grouping = group::Grouping {
                wait: cfg.group_wait,
                max: cfg.group_max,
                flood_threshold: cfg.flood_threshold,
            };
            tasks.push(Box::pin(group::run(grouping, rx, out_tx, stop.clone())));
            tasks.push(Box::pin(deliver::run(
                ch.name.clone(),
                sender,
                cfg.max_attempts,
                out_rx,
                stats.clone(),
                stop.clone(),
            )));
            queues.push(tx);
        }
        let notifier = Self {
            routes: Arc::new(cfg.routes.clone()),
            queues: Arc::new(queues),
            names: Arc::new(cfg.channels.iter().map(|c| c.name.clone()).collect()),
            tags: Arc::new(tags),
            stats,
        };
        Ok((notifier, tasks))
    }

    /// Routes `event` of `alarm` to every channel a matching route names (each channel once).
    fn route(&self, event: Event, alarm: &Alarm) {
        let tags = self.tags.get(&alarm.station);
        let mut channels: Vec<usize> = self
            .routes
            .iter()
            .filter(|r| r.matches(alarm, tags))
            .flat_map(|r| match event {
                Event::Raised => r.to.as_slice(),
                Event::Cleared if r.cleared => r.to.as_slice(),
                Event::Cleared => &[],
                Event::Escalated => r.escalate_to.as_slice(),
            })
            .copied()
            .collect();
        channels.sort_unstable();
        channels.dedup();
        for c in channels {
            let m = Message {
                event,
                alarm: alarm.clone(),
            };
            if self.queues[c].try_send(m).is_err() {
                let n = self.stats.notify_dropped.fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() {
                    error!(channel = %self.names[c], station = %alarm.station,
                        kind = alarm.kind.as_str(), dropped = n + 1,
                        "ALARM notification dropped: the channel's queue is full.");
                }
            }
        }
    }

    /// After how long unacknowledged `alarm` is escalated: the shortest delay of the matching
    /// routes that escalate (`None`: it never is).
    fn escalate_after(&self, alarm: &Alarm) -> Option<Duration> {
        let tags = self.tags.get(&alarm.station);
        self.routes
            .iter()
            .filter(|r| !r.escalate_to.is_empty() && r.matches(alarm, tags))
            .filter_map(|r| r.escalate_after)
            .min()
    }
}

impl crate::alarms::Notify for Notifier {
    fn send(&self, event: Event, alarm: &Alarm) {
        self.route(event, alarm);
    }

    fn escalation(&self, alarm: &Alarm) -> Option<Duration> {
        self.escalate_after(alarm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(station: &str, kind: AlarmKind) -> Alarm {
        Alarm {
            id: 1,
            station: station.into(),
            kind,
            severity: kind.severity(),
            message: "m".into(),
            value: 0.0,
            raised_ms: 0,
            acked_by: None,
            acked_ms: None,
            cleared_ms: None,
            escalated_ms: None,
        }
    }

    #[test]
    fn routes_match_by_severity_kind_and_station_tags() {
        let north: BTreeMap<String, String> = [("district".to_owned(), "north".to_owned())].into();
        let r = Route {
            severities: vec![Severity::Major],
            kinds: vec![],
            tags: north.clone(),
            to: vec![0],
            cleared: true,
            escalate_after: None,
            escalate_to: vec![],
        };
        let stale = alarm("s1", AlarmKind::Stale);
        assert!(r.matches(&stale, Some(&north)));
        assert!(!r.matches(&stale, None), "an untagged station");
        let south = [("district".to_owned(), "south".to_owned())].into();
        assert!(!r.matches(&stale, Some(&south)));
        assert!(
            !r.matches(&alarm("s1", AlarmKind::LowDeltaT), Some(&north)),
            "a warning"
        );
        let any = Route {
            severities: vec![],
            kinds: vec![AlarmKind::LowDeltaT],
            tags: BTreeMap::new(),
            ..r
        };
        assert!(any.matches(&alarm("engine", AlarmKind::LowDeltaT), None));
        assert!(!any.matches(&stale, None));
    }
}
