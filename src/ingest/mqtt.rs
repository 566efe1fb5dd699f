//! The MQTT connection: one client (3.1.1 or 5) to the broker, split into a publishing handle
//! ([`Link`]) and its [`EventLoop`], which [`super::event_loop`] polls.
//!
//! First stage of the data flow, and the way out for commands: `command::dispatch` publishes
//! through the [`Link`]. Settings ([`MqttConfig`]), TLS, the engine's presence and last will,
//! and the client's errors ([`LinkError`]) are here.

use std::time::Duration;

use crate::files::TlsPem;
use rumqttc::v5::mqttbytes::v5::LastWill as LastWillV5;
use rumqttc::v5::mqttbytes::QoS as QoSV5;
use rumqttc::{LastWill, QoS};
use tracing::warn;

/// MQTT protocol version to speak to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttVersion {
    V311,
    V5,
}

/// The broker connection's settings (`[mqtt]`).
#[derive(Debug, Clone)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    pub version: MqttVersion,
    pub client_id: String,
    pub topic_prefix: String,
    pub telemetry_qos: u8,
    pub keep_alive: Duration,
    /// Acknowledge a QoS 1 telemetry message only after its point is in the spool, on a
    /// persistent session (the broker redelivers what a crashed engine had not acknowledged).
    pub ack_after_spool: bool,
    /// Connected but nothing received for this long: subscribe again and say so.
    pub watchdog: Duration,
    pub credentials: Option<(String, String)>,
    pub tls: Option<TlsPem>,
}

/// Capacity of rumqttc's request channel: publishes and subscribes queued for the event loop.
/// A full channel makes `try_publish` fail; the caller counts that as an undelivered command.
pub const REQUEST_CAPACITY: usize = 10_000;

/// Largest MQTT packet the engine accepts (16 MiB). Payloads over `max_payload_bytes` are
/// still rejected by the decoder; the broker should cap packets lower (README, operating
/// safely).
pub const MAX_INCOMING_PACKET: usize = 16 << 20;

/// The publishing handle, cheap to clone.
#[derive(Debug, Clone)]
pub enum Link {
    V311(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// Why the client refused a request or the connection failed (either protocol version). The
/// client's errors carry the refused request, so they are boxed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Client(Box<rumqttc::ClientError>),
    #[error(transparent)]
    Client5(Box<rumqttc::v5::ClientError>),
    #[error(transparent)]
    Connection(Box<rumqttc::ConnectionError>),
    #[error(transparent)]
    Connection5(Box<rumqttc::v5::ConnectionError>),
}

macro_rules! link_error_from {
    ($($from:ty => $variant:ident),*) => {
        $(impl From<$from> for LinkError {
            fn from(e: $from) -> Self {
                Self::$variant(Box::new(e))
            }
        })*
    };
}
link_error_from!(
    rumqttc::ClientError => Client,
    rumqttc::v5::ClientError => Client5,
    rumqttc::ConnectionError => Connection,
    rumqttc::v5::ConnectionError => Connection5
);

impl Link {
    /// Queues a publish without waiting (never blocks the caller).
    pub fn try_publish(
        &self,
        topic: &str,
        qos1: bool,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<(), LinkError> {
        match self {
            Link::V311(c) => c
                .try_publish(
                    topic,
                    if qos1 {
                        QoS::AtLeastOnce
                    } else {
                        QoS::AtMostOnce
                    },
                    retain,
                    payload,
                )
                .map_err(LinkError::from),
            Link::V5(c) => c
                .try_publish(
                    topic,
                    if qos1 {
                        QoSV5::AtLeastOnce
                    } else {
                        QoSV5::AtMostOnce
                    },
                    retain,
                    payload,
                )
                .map_err(LinkError::from),
        }
    }

    pub(super) fn try_subscribe(&self, filter: &str, qos1: bool) -> Result<(), LinkError> {
        match self {
            Link::V311(c) => c
                .try_subscribe(
                    filter,
                    if qos1 {
                        QoS::AtLeastOnce
                    } else {
                        QoS::AtMostOnce
                    },
                )
                .map_err(LinkError::from),
            Link::V5(c) => c
                .try_subscribe(
                    filter,
                    if qos1 {
                        QoSV5::AtLeastOnce
                    } else {
                        QoSV5::AtMostOnce
                    },
                )
                .map_err(LinkError::from),
        }
    }

    /// Asks the event loop to send DISCONNECT after what is already queued, without waiting.
    pub fn try_disconnect(&self) -> Result<(), LinkError> {
        match self {
            Link::V311(c) => c.try_disconnect().map_err(LinkError::from),
            Link::V5(c) => c.try_disconnect().map_err(LinkError::from),
        }
    }

    /// Asks the event loop to send DISCONNECT after what is already queued.
    pub async fn disconnect(&self) {
        let r = match self {
            Link::V311(c) => c.disconnect().await.map_err(|e| e.to_string()),
            Link::V5(c) => c.disconnect().await.map_err(|e| e.to_string()),
        };
        if let Err(e) = r {
            warn!(error = %e, "MQTT disconnect request failed.");
        }
    }
}

/// The event loop of either protocol version.
pub enum EventLoop {
    V311(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EventLoop::V311(_) => "EventLoop(3.1.1)",
            EventLoop::V5(_) => "EventLoop(5)",
        })
    }
}

impl EventLoop {
    /// Events rumqttc has read from the socket but not handed out yet.
    pub(super) fn buffered(&self) -> usize {
        match self {
            EventLoop::V311(el) => el.state.events.len(),
            EventLoop::V5(el) => el.state.events.len(),
        }
    }
}

/// A retained presence message with its last will: (topic, online payload, offline payload).
#[derive(Debug, Clone)]
pub struct Presence {
    pub topic: String,
    pub online: &'static str,
    pub offline: &'static str,
}

/// Builds the client for `cfg`; nothing is sent until the event loop is polled.
pub fn connect(
    cfg: &MqttConfig,
    client_id: &str,
    presence: Option<&Presence>,
) -> (Link, EventLoop) {
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    net.set_connection_timeout(10);
    match cfg.version {
        MqttVersion::V311 => {
            let mut o = rumqttc::MqttOptions::new(client_id, &cfg.host, cfg.port);
            o.set_keep_alive(cfg.keep_alive);
            // Above any broker's recommended limit (1 MiB): an oversize packet would otherwise
            // drop the connection and, on a persistent session, come back forever.
            o.set_max_packet_size(MAX_INCOMING_PACKET, 1 << 20);
            o.set_inflight(1000);
            if cfg.ack_after_spool {
                o.set_manual_acks(true).set_clean_session(false);
            }
            if let Some((u, p)) = &cfg.credentials {
                o.set_credentials(u, p);
            }
            if let Some(t) = &cfg.tls {
                o.set_transport(tls_transport(t));
            }
            if let Some(p) = presence {
                o.set_last_will(LastWill::new(&p.topic, p.offline, QoS::AtLeastOnce, true));
            }
            let (client, mut el) = rumqttc::AsyncClient::new(o, REQUEST_CAPACITY);
            el.set_network_options(net);
            (Link::V311(client), EventLoop::V311(Box::new(el)))
        }
        MqttVersion::V5 => {
            let mut o = rumqttc::v5::MqttOptions::new(client_id, &cfg.host, cfg.port);
            o.set_keep_alive(cfg.keep_alive);
            o.set_max_packet_size(Some(MAX_INCOMING_PACKET as u32));
            if cfg.ack_after_spool {
                // Keep the session (and what it queued) for a week of engine downtime.
                o.set_manual_acks(true)
                    .set_clean_start(false)
                    .set_session_expiry_interval(Some(7 * 24 * 3600));
            }
            if let Some((u, p)) = &cfg.credentials {
                o.set_credentials(u, p);
            }
            if let Some(t) = &cfg.tls {
                o.set_transport(tls_transport(t));
            }
            if let Some(p) = presence {
                o.set_last_will(LastWillV5::new(
                    &p.topic,
                    p.offline,
                    QoSV5::AtLeastOnce,
                    true,
                    None,
                ));
            }
            o.set_network_options(net);
            let (client, el) = rumqttc::v5::AsyncClient::new(o, REQUEST_CAPACITY);
            (Link::V5(client), EventLoop::V5(Box::new(el)))
        }
    }
}

/// TLS to the broker: the server is verified against the configured CA (and the host name in
/// `mqtt.host`); the client certificate is optional. rustls with the ring provider.
fn tls_transport(t: &TlsPem) -> rumqttc::Transport {
    // rumqttc builds its rustls config with the process-wide provider: make sure it is ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    rumqttc::Transport::tls(t.ca_pem.clone(), t.client_auth.clone(), None)
}
