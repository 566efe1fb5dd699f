//! The simulator's stations as units 1…N of one bus: a Modbus RTU serial line (an RS-485
//! bus, for the engine's RTU tests over a `socat` pseudo-terminal pair), the same line reached
//! over TCP (a transparent serial server: RTU frames on the socket), or one Modbus TCP address
//! in front of them (an RTU-to-TCP gateway, each connection served on its own).
//!
//! A request for unit k goes to station k − 1's PLC ([`super::modbus`]: the same registers
//! and command logic as over TCP). As on a real bus, a unit that does not exist or whose
//! station is `Dead` stays silent (no frame at all) and the bus goes on serving the next
//! request; `Refuse` answers with exception 2.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_modbus::server::rtu::Server;
use tokio_modbus::{ExceptionCode, Response, SlaveRequest};

use crate::modbus::{Plc, SimMap};
use crate::shared::Shared;

/// Every station's PLC on one bus, by unit id − 1.
#[derive(Debug)]
struct Bus {
    plcs: Vec<Plc>,
}

type Reply = Pin<Box<dyn Future<Output = Result<Option<Response>, ExceptionCode>> + Send>>;

impl tokio_modbus::server::Service for Bus {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Reply;

    fn call(&self, req: Self::Request) -> Self::Future {
        let plc = (req.slave as usize)
            .checked_sub(1)
            .and_then(|i| self.plcs.get(i))
            .filter(|p| !p.dead());
        let r = match plc {
            Some(p) => p.handle(req.request).map(Some),
            None => Ok(None),
        };
        Box::pin(std::future::ready(r))
    }
}

fn bus(shared: Arc<Mutex<Shared>>, map: Arc<SimMap>, n: usize) -> Bus {
    let plcs = (0..n)
        .map(|index| Plc {
            shared: shared.clone(),
            index,
            map: map.clone(),
        })
        .collect();
    Bus { plcs }
}

/// Serves `n` stations as the unit ids behind one TCP listener until the task is aborted:
/// Modbus TCP frames (a gateway), or with `rtu_frames` RTU frames on each connection (a
/// transparent serial server). Each connection is served on its own.
pub(crate) fn serve_tcp(
    shared: Arc<Mutex<Shared>>,
    map: Arc<SimMap>,
    listener: TcpListener,
    n: usize,
    rtu_frames: bool,
) -> JoinHandle<()> {
    let bus = Arc::new(bus(shared, map, n));
    tokio::spawn(async move {
        let on_connected = |stream, _addr| {
            let bus = bus.clone();
            async move { Ok(Some((bus, stream))) }
        };
        let _ = if rtu_frames {
            tokio_modbus::server::rtu_over_tcp::Server::new(listener)
                .serve(&on_connected, |_e| {})
                .await
        } else {
            tokio_modbus::server::tcp::Server::new(listener)
                .serve(&on_connected, |_e| {})
                .await
        };
    })
}

/// Opens `path` at `baud_rate` (8 data bits, even parity, 1 stop bit: Modbus RTU's default)
/// and serves `n` stations on it until the task is aborted.
pub(crate) fn serve(
    shared: Arc<Mutex<Shared>>,
    map: Arc<SimMap>,
    path: &str,
    baud_rate: u32,
    n: usize,
) -> std::io::Result<JoinHandle<()>> {
    let builder = tokio_serial::new(path, baud_rate)
        .parity(tokio_serial::Parity::Even)
        .stop_bits(tokio_serial::StopBits::One)
        .data_bits(tokio_serial::DataBits::Eight);
    let port = tokio_serial::SerialStream::open(&builder)?;
    let bus = bus(shared, map, n);
    Ok(tokio::spawn(async move {
        let _ = Server::new(port).serve_forever(bus).await;
    }))
}
