//! Shared Modbus lines: an RS-485 bus (Modbus RTU on a serial port), a transparent serial
//! server (RTU frames over TCP), or a Modbus TCP address whose device takes one request at a
//! time (`requests = "one_at_a_time"`, e.g. a simple RTU-to-TCP gateway). A line carries one
//! request at a time, so its stations' pollers hand their requests to the line's task, which
//! sends them in turn. (A Modbus TCP address by default takes its units' requests side by
//! side: each station there has its own connection and no line.)
//!
//! Where it sits: between [`super::poller`] and the wire. `app/` starts one task per line
//! ([`spawn`]); each poller on it gets a [`Context`] from [`attach`] whose requests are queued
//! to that task. The task applies the station's timeout to the request itself, once it is its
//! turn; a timeout reopens the transport (a late answer would otherwise be taken for the next
//! request's). Between two requests the line keeps the inter-frame gap (`frame_gap_ms`; on a
//! serial line by default 3.5 characters, at least 2 ms, as many RTU devices need).
//!
//! A unit that does not answer must delay no other. Its poller backs off, and while it fails
//! its requests are probes: the line sends a probe only when no other unit's poll is due
//! before the probe's timeout has run out (each unit's next poll is expected one interval after
//! its last), and otherwise lets the requests of the units that answer go first. The pollers
//! of one line poll at one phase, so the line's polls come together once per interval and
//! leave it idle in between: that is where probes go. A line so busy that it never has such
//! a gap still sends a unit's probe once it has waited [`PROBE_AT_LEAST`].

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_modbus::client::{Client, Context};
use tokio_modbus::slave::SlaveContext;
use tokio_modbus::{Request, Response, Slave};
use tokio_util::sync::CancellationToken;

/// How a line reaches its devices.
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    /// Modbus TCP (MBAP framing) to `host:port`, its units' requests side by side (each
    /// station its own connection).
    Tcp(String),
    /// Modbus TCP to a device that takes one request at a time: its units share a line.
    TcpOneAtATime(String),
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
            Transport::Tcp(a) | Transport::TcpOneAtATime(a) => format!("tcp://{a}"),
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

/// A line too busy to ever leave a failing unit's timeout free still sends its probe once it
/// has waited this long (costing the others at most one timeout per this period).
pub const PROBE_AT_LEAST: Duration = Duration::from_secs(30);

/// One request for the line: a unit, its request, how long it may take, where the answer goes;
/// the unit's poll interval, and whether the unit is failing (a probe).
#[derive(Debug)]
struct Job {
    unit: u8,
    request: Request<'static>,
    timeout: Duration,
    interval: Duration,
    probe: bool,
    reply: oneshot::Sender<tokio_modbus::Result<Response>>,
}

/// A handle on a running line: what its pollers send their requests through.
#[derive(Debug, Clone)]
pub struct LineHandle {
    tx: mpsc::Sender<Job>,
    /// Stations on the line (a poller waits for up to this many requests ahead of its own).
    pub members: usize,
    /// What the line's pollers take their common phase from (the line's key).
    pub key: String,
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
    let key = transport.key();
    (
        LineHandle { tx, members, key },
        run(transport, gap, rx, stop),
    )
}

/// What the line knows of one unit: when its last request from a unit that answers came, and
/// since when its probe has been waiting.
#[derive(Debug)]
struct Unit {
    interval: Duration,
    last_live: Option<Instant>,
    probe_waiting_since: Option<Instant>,
}

/// The requests waiting for the line: those of answering units first, in arrival order,
/// then the probes of failing ones when [`Queue::next`] finds room for them.
#[derive(Debug, Default)]
struct Queue {
    live: VecDeque<Job>,
    probes: VecDeque<Job>,
    units: HashMap<u8, Unit>,
}

impl Queue {
    fn file(&mut self, job: Job, now: Instant) {
        let u = self.units.entry(job.unit).or_insert(Unit {
            interval: job.interval,
            last_live: None,
            probe_waiting_since: None,
        });
        u.interval = job.interval;
        if job.probe {
            u.probe_waiting_since.get_or_insert(now);
            self.probes.push_back(job);
        } else {
            u.last_live = Some(now);
            self.live.push_back(job);
        }
    }

    /// The next request to send now, if any: a live one, else the oldest probe whose timeout
    /// (and the gap after it) ends before any other unit's next poll is due, or that has
    /// waited [`PROBE_AT_LEAST`]. Probes nobody waits for any more are dropped.
    fn next(&mut self, now: Instant, gap: Duration) -> Option<Job> {
        if let Some(j) = self.live.pop_front() {
            return Some(j);
        }
        self.probes.retain(|p| !p.reply.is_closed());
        let probe = self.probes.front()?;
        let busy_until = now + probe.timeout + gap;
        let room = self.units.iter().all(|(unit, u)| {
            let Some(last) = u.last_live.filter(|_| *unit != probe.unit) else {
                return true;
            };
            let due = last + u.interval;
            // A unit two intervals late polls no more (it fails too, or stopped).
            busy_until <= due || due + u.interval < now
        });
        let waited = self
            .units
            .get(&probe.unit)
            .and_then(|u| u.probe_waiting_since)
            .is_some_and(|t| now.duration_since(t) >= PROBE_AT_LEAST);
        if !(room || waited) {
            return None;
        }
        let job = self.probes.pop_front()?;
        if let Some(u) = self.units.get_mut(&job.unit) {
            u.probe_waiting_since = None;
        }
        Some(job)
    }

    fn is_empty(&self) -> bool {
        self.live.is_empty() && self.probes.is_empty()
    }
}

async fn run(
    transport: Transport,
    gap: Duration,
    mut rx: mpsc::Receiver<Job>,
    stop: CancellationToken,
) {
    let mut ctx: Option<Context> = None;
    let mut queue = Queue::default();
    let mut receiving = true;
    loop {
        // Everything that came, then the next request there is room for.
        while let Ok(j) = rx.try_recv() {
            queue.file(j, Instant::now());
        }
        let Some(job) = queue.next(Instant::now(), gap) else {
            if !receiving && queue.is_empty() {
                break;
            }
            // Nothing to send now: wait for a request (a probe may fit after it).
            tokio::select! {
                j = rx.recv(), if receiving => match j {
                    Some(j) => queue.file(j, Instant::now()),
                    None => receiving = false,
                },
                _ = stop.cancelled() => break,
                // Every handle gone, probes left: let their waiters give up.
                _ = tokio::time::sleep(Duration::from_millis(100)), if !receiving => {}
            }
            continue;
        };
        if stop.is_cancelled() {
            break;
        }
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
        Transport::Tcp(a) | Transport::TcpOneAtATime(a) | Transport::RtuOverTcp(a) => {
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
            if !matches!(transport, Transport::RtuOverTcp(_)) {
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
    interval: Duration,
    failing: Arc<AtomicBool>,
}

/// A [`Context`] for unit `unit` on `line`, polled every `interval`, each request answered
/// within `timeout` once it is sent; while `failing` is set its requests are probes.
pub fn attach(
    line: &LineHandle,
    unit: u8,
    timeout: Duration,
    interval: Duration,
    failing: Arc<AtomicBool>,
) -> Context {
    let client: Box<dyn Client> = Box::new(LineClient {
        line: line.clone(),
        unit,
        timeout,
        interval,
        failing,
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
            interval: self.interval,
            probe: self.failing.load(Ordering::Relaxed),
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

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_millis(250);
    const TIMEOUT: Duration = Duration::from_millis(150);

    /// A read of unit `unit`, a probe or not, and the receiver its answer goes to.
    fn job(unit: u8, probe: bool) -> (Job, oneshot::Receiver<tokio_modbus::Result<Response>>) {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            unit,
            request: Request::ReadInputRegisters(0, 4),
            timeout: TIMEOUT,
            interval: PERIOD,
            probe,
            reply,
        };
        (job, answer)
    }

    #[test]
    fn a_probe_waits_for_the_answering_units_and_for_room_before_their_next_poll() {
        let t0 = Instant::now();
        let gap = Duration::ZERO;
        let mut q = Queue::default();
        let (a, _ra) = job(1, false);
        let (dead, _rd) = job(2, true);
        let (c, _rc) = job(3, false);
        // The line's polls come together; the dead unit's probe among them.
        q.file(a, t0);
        q.file(dead, t0);
        q.file(c, t0);
        assert_eq!(q.next(t0, gap).map(|j| j.unit), Some(1));
        assert_eq!(q.next(t0, gap).map(|j| j.unit), Some(3), "live first");
        // Units 1 and 3 are due again at t0 + 250 ms: the probe's 150 ms fit until t0 + 100.
        assert_eq!(
            q.next(t0 + Duration::from_millis(90), gap).map(|j| j.unit),
            Some(2)
        );
        // Later in the interval it would run into their next poll: it waits.
        let (dead, _rd) = job(2, true);
        q.file(dead, t0 + Duration::from_millis(120));
        assert!(q.next(t0 + Duration::from_millis(120), gap).is_none());
        // After their next polls, there is room again.
        let t1 = t0 + PERIOD;
        let (a, _ra) = job(1, false);
        let (c, _rc) = job(3, false);
        q.file(a, t1);
        q.file(c, t1);
        assert_eq!(q.next(t1, gap).map(|j| j.unit), Some(1));
        assert_eq!(q.next(t1, gap).map(|j| j.unit), Some(3));
        assert_eq!(
            q.next(t1 + Duration::from_millis(10), gap).map(|j| j.unit),
            Some(2)
        );
        assert!(q.is_empty());
    }

    #[test]
    fn a_probe_nobody_waits_for_is_dropped_and_one_waiting_too_long_goes() {
        let t0 = Instant::now();
        let mut q = Queue::default();
        // A unit polled so often that a 150 ms probe never fits before its next poll.
        let busy = |q: &mut Queue, at: Instant| {
            let (j, _r) = job(1, false);
            q.file(
                Job {
                    interval: Duration::from_millis(100),
                    ..j
                },
                at,
            );
            q.next(at, Duration::ZERO).map(|j| j.unit)
        };
        assert_eq!(busy(&mut q, t0), Some(1));
        let (dead, answer) = job(2, true);
        q.file(dead, t0);
        assert!(q.next(t0, Duration::ZERO).is_none());
        drop(answer); // its poller gave up
        assert!(q.next(t0, Duration::ZERO).is_none());
        assert!(q.probes.is_empty(), "dropped");
        // Probes keep coming and never find room; after PROBE_AT_LEAST one goes anyway.
        let mut t = t0;
        let mut sent = None;
        let mut answers = Vec::new();
        while t < t0 + PROBE_AT_LEAST + Duration::from_secs(1) {
            t += Duration::from_millis(100);
            assert_eq!(busy(&mut q, t), Some(1));
            let (dead, answer) = job(2, true);
            answers.push(answer);
            q.file(dead, t);
            if let Some(j) = q.next(t, Duration::ZERO) {
                sent = Some((j.unit, t));
                break;
            }
        }
        let (unit, at) = sent.expect("the probe went after waiting");
        assert_eq!(unit, 2);
        assert!(at.duration_since(t0) >= PROBE_AT_LEAST);
    }
}
