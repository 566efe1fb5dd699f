//! The MQTT event loop: the only task that polls rumqttc's event loop; it hands every event
//! to a synchronous [`Handler`] (the engine's is `ingest::Ingest`) and never awaits a publish
//! itself (rumqttc deadlocks when the polling task awaits `publish`). On every ConnAck it
//! subscribes again (a broker restart loses the session); on every connection error it sleeps
//! a capped, jittered backoff (rumqttc would otherwise reconnect in a hot loop).
//!
//! Messages come in bursts: rumqttc reads up to ten packets per socket read and hands them
//! out one per poll. When the last one of a burst was handed over the handler gets
//! [`Event::BurstEnd`] (ingest then does its disk write and control wake-up once for the
//! burst), and only after it the manual acknowledgements of the burst's messages are queued.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::mqtt::{EventLoop, Link, LinkError, Presence};
use crate::backoff::Backoff;
use crate::clock::now_ms;

/// What the event loop reports to its callback.
#[derive(Debug)]
pub enum Event<'a> {
    /// Connected (or reconnected); subscriptions were just requested again.
    Connected,
    /// The broker confirmed a subscription.
    Subscribed,
    /// Connected but silent for the watchdog period: subscriptions were requested again.
    Watchdog,
    Message {
        topic: &'a str,
        payload: &'a [u8],
    },
    /// Every message read so far was handed over; the next poll waits on the network. Also
    /// sent before the loop returns or backs off after an error, if a message came since the
    /// last one.
    BurstEnd,
    /// The burst's QoS 1 messages were acknowledged to the broker (`manual_acks`): always
    /// after its [`Event::BurstEnd`] returned, never after a connection error.
    Acked {
        count: usize,
    },
}

/// What the event loop hands every [`Event`] to, on the event loop's task: it must not block.
/// [`super::Ingest`] is the engine's; a closure will do for a test or a tool.
pub trait Handler {
    fn on_event(&mut self, ev: Event<'_>);
}

impl<F: FnMut(Event<'_>)> Handler for F {
    fn on_event(&mut self, ev: Event<'_>) {
        self(ev)
    }
}

/// A received publish whose acknowledgement waits for the end of its burst.
enum Unacked {
    V311(rumqttc::Publish),
    V5(rumqttc::v5::mqttbytes::v5::Publish),
}

/// What one poll of the connection gave.
enum Polled {
    ConnAck,
    SubAck,
    Publish4(rumqttc::Publish),
    Publish5(rumqttc::v5::mqttbytes::v5::Publish),
    Disconnected,
    Other,
}

/// Polls the connection once.
async fn poll_once(el: &mut EventLoop) -> Result<Polled, LinkError> {
    use rumqttc::v5::{Event as E5, Incoming as I5};
    use rumqttc::{Event as E4, Incoming as I4, Outgoing as O4};
    match el {
        EventLoop::V311(el) => Ok(match el.poll().await? {
            E4::Incoming(I4::ConnAck(_)) => Polled::ConnAck,
            E4::Incoming(I4::SubAck(_)) => Polled::SubAck,
            E4::Incoming(I4::Publish(p)) => Polled::Publish4(p),
            E4::Outgoing(O4::Disconnect) => Polled::Disconnected,
            _ => Polled::Other,
        }),
        EventLoop::V5(el) => Ok(match el.poll().await? {
            E5::Incoming(I5::ConnAck(_)) => Polled::ConnAck,
            E5::Incoming(I5::SubAck(_)) => Polled::SubAck,
            E5::Incoming(I5::Publish(p)) => Polled::Publish5(p),
            E5::Outgoing(rumqttc::Outgoing::Disconnect) => Polled::Disconnected,
            _ => Polled::Other,
        }),
    }
}

/// Whether the connection may be made again after it failed (a cluster partition's session
/// only while this instance still leads the partition).
pub type ConnectWhile = Arc<dyn Fn() -> bool + Send + Sync>;

/// What the event loop needs besides the connection.
#[derive(Clone)]
pub struct LoopSettings {
    /// Acknowledge QoS 1 messages only after their burst was handed over (`ack_after_spool`).
    pub manual_acks: bool,
    /// Connected but silent this long: subscribe again.
    pub watchdog: Option<Duration>,
    /// (filter, qos1) pairs requested on every ConnAck.
    pub subscriptions: Vec<(String, bool)>,
    /// Published (retained) on every ConnAck.
    pub presence: Option<Presence>,
    /// `None`: reconnect forever (until `stop`).
    pub connect_while: Option<ConnectWhile>,
    /// Where the loop records since when it has been disconnected (Unix ms; 0: connected).
    pub down_since: Option<Arc<AtomicI64>>,
}

impl std::fmt::Debug for LoopSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopSettings")
            .field("manual_acks", &self.manual_acks)
            .field("watchdog", &self.watchdog)
            .field("subscriptions", &self.subscriptions.len())
            .field("presence", &self.presence)
            .field("connect_while", &self.connect_while.is_some())
            .field("down_since", &self.down_since)
            .finish()
    }
}

/// Polls the connection until a DISCONNECT was sent (after [`Link::disconnect`]) or `stop`
/// is cancelled, handing every event to `handler` (which must not block).
pub async fn run_event_loop(
    el: EventLoop,
    link: Link,
    settings: LoopSettings,
    stop: CancellationToken,
    handler: impl Handler,
) {
    let mut s = Session {
        el,
        link,
        settings,
        handler,
        backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(10)),
        connected: false,
        last_message: tokio::time::Instant::now(),
        in_burst: false,
        unacked: Vec::new(),
    };
    loop {
        if s.in_burst && s.el.buffered() == 0 {
            s.end_burst();
            // Let the task the burst woke (control) run now. A task woken from this one
            // waits in this worker's not-stealable next-task slot until this one yields,
            // and under load this one would only yield when its cooperative budget ran out:
            // measured at 10,000 msg/s, reading → command p99 ≤ 10 ms with p50 ≤ 0.1 ms.
            tokio::task::yield_now().await;
        }
        let polled = tokio::select! {
            r = poll_once(&mut s.el) => r,
            _ = stop.cancelled() => {
                s.end_burst();
                return;
            }
        };
        s.check_watchdog();
        match polled {
            Ok(Polled::ConnAck) => s.connected(),
            Ok(Polled::Publish4(p)) => s.publish(Unacked::V311(p)),
            Ok(Polled::Publish5(p)) => s.publish(Unacked::V5(p)),
            Ok(Polled::SubAck) => s.handler.on_event(Event::Subscribed),
            Ok(Polled::Disconnected) => {
                s.end_burst();
                return;
            }
            Ok(Polled::Other) => {}
            Err(e) => {
                let delay = s.failed(&e);
                if s.settings.connect_while.as_ref().is_some_and(|ok| !ok()) {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    }
}

/// The event loop's state between polls.
struct Session<H> {
    el: EventLoop,
    link: Link,
    settings: LoopSettings,
    handler: H,
    backoff: Backoff,
    connected: bool,
    /// Watchdog against silent stalls: connected, yet nothing received for `watchdog`.
    /// Checked whenever the event loop yields (at least every keep-alive, by the pings), so
    /// the poll future is never cancelled mid-flight.
    last_message: tokio::time::Instant,
    /// Messages were handed over since the last BurstEnd; those of them to acknowledge after it.
    in_burst: bool,
    unacked: Vec<Unacked>,
}

impl<H: Handler> Session<H> {
    /// Ends a burst, if one is open: BurstEnd to the handler, then the burst's manual acks.
    /// With `ack_after_spool` an acknowledgement goes out only after its point is in the spool
    /// (or was rejected: bad input must never hold a slot in the broker's in-flight window).
    fn end_burst(&mut self) {
        if !self.in_burst {
            return;
        }
        self.in_burst = false;
        self.handler.on_event(Event::BurstEnd);
        let count = self.unacked.len();
        for u in self.unacked.drain(..) {
            match (&u, &self.link) {
                (Unacked::V311(p), Link::V311(c)) => drop(c.try_ack(p)),
                (Unacked::V5(p), Link::V5(c)) => drop(c.try_ack(p)),
                _ => {}
            }
        }
        if count > 0 {
            self.handler.on_event(Event::Acked { count });
        }
    }

    /// A message: handed over now, acknowledged at the end of its burst (`manual_acks`).
    fn publish(&mut self, p: Unacked) {
        match &p {
            Unacked::V311(m) => self.message(&m.topic, &m.payload),
            Unacked::V5(m) => self.message(&String::from_utf8_lossy(&m.topic), &m.payload),
        }
        if self.settings.manual_acks {
            self.unacked.push(p);
        }
    }

    fn message(&mut self, topic: &str, payload: &[u8]) {
        self.last_message = tokio::time::Instant::now();
        self.in_burst = true;
        self.handler.on_event(Event::Message { topic, payload });
    }

    fn check_watchdog(&mut self) {
        let Some(w) = self.settings.watchdog else {
            return;
        };
        let silent = self.last_message.elapsed();
        if self.connected && !self.settings.subscriptions.is_empty() && silent >= w {
            warn!(
                silent_s = silent.as_secs(),
                "MQTT connected but nothing received; subscribing again (watchdog)."
            );
            for (filter, qos1) in &self.settings.subscriptions {
                let _ = self.link.try_subscribe(filter, *qos1);
            }
            self.last_message = tokio::time::Instant::now();
            self.handler.on_event(Event::Watchdog);
        }
    }

    /// ConnAck: subscribe again (a broker restart loses the session), announce presence.
    fn connected(&mut self) {
        self.connected = true;
        if let Some(d) = &self.settings.down_since {
            d.store(0, Ordering::Relaxed);
        }
        self.last_message = tokio::time::Instant::now();
        self.backoff.reset();
        let subs = &self.settings.subscriptions;
        info!(subscriptions = subs.len(), "MQTT connected; subscribing.");
        for (filter, qos1) in subs {
            if let Err(e) = self.link.try_subscribe(filter, *qos1) {
                warn!(filter, error = %e, "MQTT subscribe request failed.");
            }
        }
        if let Some(p) = &self.settings.presence {
            let _ = self
                .link
                .try_publish(&p.topic, true, true, p.online.as_bytes().to_vec());
        }
        self.handler.on_event(Event::Connected);
    }

    /// A connection error: the open burst ends without acks (a packet id of the lost
    /// connection means nothing on the next one; the broker redelivers them); returns how long
    /// to back off.
    fn failed(&mut self, e: &LinkError) -> Duration {
        if self.in_burst {
            self.in_burst = false;
            self.unacked.clear();
            self.handler.on_event(Event::BurstEnd);
        }
        if let Some(d) = &self.settings.down_since {
            let _ = d.compare_exchange(0, now_ms(), Ordering::Relaxed, Ordering::Relaxed);
        }
        let delay = self.backoff.next_delay();
        let attempts = self.backoff.attempts();
        if self.connected || attempts == 1 || attempts.is_power_of_two() {
            warn!(error = %e, attempt = attempts, retry_in_ms = delay.as_millis() as u64,
                "MQTT connection error; reconnecting after backoff.");
        }
        self.connected = false;
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::{MqttOptions, QoS};

    /// A session over a client that is never connected, recording what its handler is told.
    fn session(manual_acks: bool) -> (Session<impl Handler>, Arc<std::sync::Mutex<Vec<String>>>) {
        let (client, el) = rumqttc::AsyncClient::new(MqttOptions::new("t", "127.0.0.1", 1), 16);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let handler = move |ev: Event<'_>| {
            let text = match ev {
                Event::Message { topic, .. } => format!("message {topic}"),
                Event::Acked { count } => format!("acked {count}"),
                other => format!("{other:?}"),
            };
            log.lock().unwrap().push(text);
        };
        let settings = LoopSettings {
            manual_acks,
            watchdog: None,
            subscriptions: Vec::new(),
            presence: None,
            connect_while: None,
            down_since: None,
        };
        let s = Session {
            el: EventLoop::V311(Box::new(el)),
            link: Link::V311(client),
            settings,
            handler,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(10)),
            connected: true,
            last_message: tokio::time::Instant::now(),
            in_burst: false,
            unacked: Vec::new(),
        };
        (s, seen)
    }

    fn telemetry(station: &str) -> Unacked {
        let topic = format!("heating/station/{station}/telemetry");
        Unacked::V311(rumqttc::Publish::new(topic, QoS::AtLeastOnce, "{}"))
    }

    #[tokio::test]
    async fn a_burst_is_acknowledged_only_after_its_end_was_handled() {
        let (mut s, seen) = session(true);
        s.publish(telemetry("st-1"));
        s.publish(telemetry("st-2"));
        assert_eq!(s.unacked.len(), 2, "held until the burst ends");
        s.end_burst();
        s.end_burst(); // no burst open: nothing more
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "message heating/station/st-1/telemetry",
                "message heating/station/st-2/telemetry",
                "BurstEnd",
                "acked 2"
            ]
        );
        assert!(s.unacked.is_empty());
    }

    #[tokio::test]
    async fn a_connection_error_ends_the_burst_without_acknowledging_it() {
        let (mut s, seen) = session(true);
        s.publish(telemetry("st-1"));
        let e = LinkError::Connection(Box::new(rumqttc::ConnectionError::NetworkTimeout));
        let delay = s.failed(&e);
        assert!(delay > Duration::ZERO && delay <= Duration::from_millis(100));
        assert_eq!(
            *seen.lock().unwrap(),
            ["message heating/station/st-1/telemetry", "BurstEnd"],
            "the broker redelivers what was not acknowledged"
        );
        assert!(s.unacked.is_empty() && !s.connected);
    }

    #[tokio::test]
    async fn without_manual_acks_nothing_waits() {
        let (mut s, seen) = session(false);
        s.publish(telemetry("st-1"));
        assert!(s.unacked.is_empty());
        s.end_burst();
        assert_eq!(
            *seen.lock().unwrap(),
            ["message heating/station/st-1/telemetry", "BurstEnd"]
        );
    }
}
