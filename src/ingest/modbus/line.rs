//! Shared Modbus lines: an RS-485 bus (Modbus RTU on a serial port), a transparent serial
//! server (RTU frames over TCP), or one Modbus TCP address with several unit ids behind it (an
//! RTU-to-TCP gateway). A line carries one request at a time, so its stations' pollers hand
//! their requests to the line's task, which sends them in turn.
//!
//! Where it sits: between [`super::poller`] and the wire. `app/` starts one task per line
//! ([`spawn`]); each poller on it gets a [`Context`] from [`attach`] whose requests are queued
//! to that task (latest poll, write or whatever comes, in arrival order). The task applies the
//! station's timeout to the request itself, once it is its turn; a unit that does not answer
//! costs the line that timeout and nothing more: the transport is reopened (a late answer
//! would otherwise be taken for the next request's) and the next request goes out. Between
//! two requests the line keeps the inter-frame gap (`frame_gap_ms`; on a serial line by
//! default 3.5 characters, at least 2 ms, as many RTU devices need).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_modbus::client::{Client, Context};
use tokio_modbus::slave::SlaveContext;
use tokio_modbus::{Request, Response, Slave};
use tokio_util::sync::CancellationToken;

/// How a line reaches its devices.
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    /// Modbus TCP (MBAP framing) to `host:port`.
    Tcp(String),
    /// RTU frames over a TCP socket (a transparent serial server).
    RtuOverTcp(String),
    /// Modbus RTU on a serial port.
    Serial(SerialSettings),
}

/// A serial port's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SerialSettings {
    pub port: String,
    pub baud_rate: u32,
    pub parity: Parity,
    pub stop_bits: u8,
    pub data_bits: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

impl Transport {
    /// What identifies the line: stations with the same key share it.
    pub fn key(&self) -> String {
        match self {
            Transport::Tcp(a) => format!("tcp://{a}"),
            Transport::RtuOverTcp(a) => format!("rtu+tcp://{a}"),
            Transport::Serial(s) => format!("rtu://{}", s.port),
        }
    }

    /// The default inter-frame gap: 3.5 characters of 11 bits on a serial line (at least
    /// 2 ms), none on TCP.
    pub fn default_gap(&self) -> Duration {
        match self {
            Transport::Serial(s) => {
                let ms = 3.5 * 11.0 * 1000.0 / s.baud_rate.max(1) as f64;
                Duration::from_secs_f64(ms.max(2.0) / 1000.0)
            }
            _ => Duration::ZERO,
        }
    }
}

/// One request for the line: a unit, its request, how long it may take, where the answer goes.
#[derive(Debug)]
struct Job {
    unit: u8,
    request: Request<'static>,
    timeout: Duration,
    reply: oneshot::Sender<tokio_modbus::Result<Response>>,
}

/// A handle on a running line: what its pollers send their requests through.
#[derive(Debug, Clone)]
pub struct LineHandle {
    tx: mpsc::Sender<Job>,
    /// Stations on the line (a poller waits for up to this many requests ahead of its own).
    pub members: usize,
}

/// Starts the line's task; it ends when `stop` is cancelled or every handle is gone.
pub fn spawn(
    transport: Transport,
    gap: Duration,
    members: usize,
    stop: CancellationToken,
) -> (
    LineHandle,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = mpsc::channel(members.max(1) * 4);
    (LineHandle { tx, members }, run(transport, gap, rx, stop))
}

async fn run(
    transport: Transport,
    gap: Duration,
    mut rx: mpsc::Receiver<Job>,
    stop: CancellationToken,
) {
    let mut ctx: Option<Context> = None;
    loop {
        let job = tokio::select! {
            j = rx.recv() => match j { Some(j) => j, None => break },
            _ = stop.cancelled() => break,
        };
        let result = async {
            if ctx.is_none() {
                ctx = Some(open(&transport, job.timeout).await?);
            }
            let c = ctx
                .as_mut()
                .ok_or_else(|| io::Error::other("line not open"))?;
            c.set_slave(Slave(job.unit));
            match tokio::time::timeout(job.timeout, c.call(job.request)).await {
                Ok(r) => r,
                Err(_) => Err(tokio_modbus::Error::Transport(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "unit {} gave no answer within {} ms",
                        job.unit,
                        job.timeout.as_millis()
                    ),
                ))),
            }
        }
        .await;
        // A timeout or a broken transport: reopen before the next request, so a late or
        // partial answer can never be read as the next one's.
        if matches!(result, Err(tokio_modbus::Error::Transport(_))) {
            ctx = None;
        }
        let _ = job.reply.send(result);
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
    }
}

/// Opens the line's transport (unit 0 until a request sets its own).
async fn open(transport: &Transport, timeout: Duration) -> Result<Context, tokio_modbus::Error> {
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "no connection within the timeout");
    let ctx = match transport {
        Transport::Tcp(a) | Transport::RtuOverTcp(a) => {
            let addr: SocketAddr =
                tokio::time::timeout(timeout, tokio::net::lookup_host(a.as_str()))
                    .await
                    .map_err(|_| timed_out())??
                    .next()
                    .ok_or_else(|| io::Error::other("address resolves to nothing"))?;
            let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| timed_out())??;
            let _ = stream.set_nodelay(true);
            if matches!(transport, Transport::Tcp(_)) {
                tokio_modbus::client::tcp::attach(stream)
            } else {
                tokio_modbus::client::rtu::attach(stream)
            }
        }
        Transport::Serial(s) => {
            let builder = tokio_serial::new(&s.port, s.baud_rate)
                .parity(match s.parity {
                    Parity::None => tokio_serial::Parity::None,
                    Parity::Even => tokio_serial::Parity::Even,
                    Parity::Odd => tokio_serial::Parity::Odd,
                })
                .stop_bits(if s.stop_bits == 2 {
                    tokio_serial::StopBits::Two
                } else {
                    tokio_serial::StopBits::One
                })
                .data_bits(if s.data_bits == 7 {
                    tokio_serial::DataBits::Seven
                } else {
                    tokio_serial::DataBits::Eight
                });
            let port = tokio_serial::SerialStream::open(&builder).map_err(io::Error::from)?;
            tokio_modbus::client::rtu::attach(port)
        }
    };
    Ok(ctx)
}

/// A client for one unit on a line: its requests go through the line's task.
#[derive(Debug)]
struct LineClient {
    line: LineHandle,
    unit: u8,
    timeout: Duration,
}

/// A [`Context`] for unit `unit` on `line`, each request answered within `timeout` once it
/// is sent.
pub fn attach(line: &LineHandle, unit: u8, timeout: Duration) -> Context {
    let client: Box<dyn Client> = Box::new(LineClient {
        line: line.clone(),
        unit,
        timeout,
    });
    Context::from(client)
}

impl SlaveContext for LineClient {
    fn set_slave(&mut self, slave: Slave) {
        self.unit = slave.0;
    }
}

#[async_trait::async_trait]
impl Client for LineClient {
    async fn call(&mut self, request: Request<'_>) -> tokio_modbus::Result<Response> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            unit: self.unit,
            request: request.into_owned(),
            timeout: self.timeout,
            reply,
        };
        let gone = || tokio_modbus::Error::Transport(io::Error::other("the line has stopped"));
        self.line.tx.send(job).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    async fn disconnect(&mut self) -> io::Result<()> {
        // The line is shared: it stays open for the other units.
        Ok(())
    }
}
