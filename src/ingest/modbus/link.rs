//! The wire side of one Modbus station's poller: how a request failed ([`Failure`]), its own
//! TCP connection ([`connect`]), and bit replies carried as words ([`bits`]).
//!
//! Where it sits: used by [`super::poller`] and [`super::write`]; a station on a shared line
//! gets its connection from [`super::line`] instead of [`connect`].

use std::net::SocketAddr;
use std::time::Duration;

use tokio_modbus::client::Context;
use tokio_modbus::Slave;

/// Why a request failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// The device answered with a Modbus exception: it refused.
    Exception(String),
    /// No answer in time.
    Timeout,
    /// Connection refused/reset, or a reply that does not match the request.
    Link(String),
}

impl Failure {
    /// A transport error (a shared line says when a unit did not answer in time).
    pub(super) fn from_transport(e: tokio_modbus::Error) -> Self {
        match e {
            tokio_modbus::Error::Transport(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                Failure::Timeout
            }
            e => Failure::Link(e.to_string()),
        }
    }

    pub(super) fn keeps_connection(&self) -> bool {
        matches!(self, Failure::Exception(_))
    }

    pub(super) fn describe(&self, what: &str, timeout: Duration) -> String {
        match self {
            Failure::Exception(e) => format!("device refused {what}: Modbus exception {e}"),
            Failure::Timeout => format!("{what}: no answer within {} ms", timeout.as_millis()),
            Failure::Link(e) => format!("{what}: link failure: {e}"),
        }
    }
}

/// Whether a problem of `kind` differs from the last one logged (`logged`, which it becomes
/// if so): a failing device is logged once per kind of problem, not once per cycle.
pub(super) fn first_of_kind(logged: &mut Option<String>, kind: &str) -> bool {
    if logged.as_deref() == Some(kind) {
        return false;
    }
    *logged = Some(kind.to_owned());
    true
}

/// A bit read's reply (timeout, link, exception layers) as words of 0 or 1.
pub(super) fn bits<T, L, E>(r: Result<Result<Result<Vec<bool>, E>, L>, T>) -> Reply<T, L, E> {
    r.map(|r| r.map(|r| r.map(|v| v.into_iter().map(u16::from).collect())))
}

pub(super) type Reply<T, L, E> = Result<Result<Result<Vec<u16>, E>, L>, T>;

pub(super) async fn connect(address: &str, unit: u8, t: Duration) -> Result<Context, Failure> {
    let addr: SocketAddr = tokio::time::timeout(t, tokio::net::lookup_host(address))
        .await
        .map_err(|_| Failure::Timeout)?
        .map_err(|e| Failure::Link(format!("cannot resolve: {e}")))?
        .next()
        .ok_or_else(|| Failure::Link("address resolves to nothing".into()))?;
    tokio::time::timeout(
        t,
        tokio_modbus::client::tcp::connect_slave(addr, Slave(unit)),
    )
    .await
    .map_err(|_| Failure::Timeout)?
    .map_err(|e| Failure::Link(e.to_string()))
}
