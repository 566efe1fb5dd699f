//! The poller in-process against a Modbus TCP server of the test's own (tokio-modbus'
//! server, on port 0): a reading per cycle from a device that answers; timeouts, staleness and
//! reconnects with backoff from one that never answers; the fall back to block-by-block reads
//! for one that refuses reads across unmapped registers; commands written to its holding
//! registers and acknowledged only once it confirmed them, one that does not fit refused.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_modbus::server::tcp::Server;
use tokio_modbus::{ExceptionCode, Request, Response};
use tokio_util::sync::CancellationToken;

use super::*;

/// How the test device behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Device {
    /// Answers every read.
    Answers,
    /// Accepts connections, never answers a request.
    Silent,
    /// Refuses a read that spans an unmapped register (ILLEGAL DATA ADDRESS).
    RefusesGaps,
}

/// Input registers 0, 1 (supply, return × 0.01) and 3 (flow × 0.01), register 2 unmapped.
const MAP: &str = r#"
device = "test"
address_base = 0
[[register]]
field = "supply_temp_c"
table = "input"
address = 0
type = "i16"
scale = 0.01
[[register]]
field = "return_temp_c"
table = "input"
address = 1
type = "i16"
scale = 0.01
[[register]]
field = "flow_m3h"
table = "input"
address = 3
type = "u16"
scale = 0.01
[[register]]
field = "supply_setpoint_c"
table = "holding"
address = 10
type = "i16"
scale = 0.01
access = "read_write"
[[register]]
field = "valve_pct"
table = "holding"
address = 11
type = "u16"
scale = 0.1
access = "read_write"
"#;

struct Plc {
    device: Device,
    requests: Arc<AtomicU64>,
    written: Written,
}

type Reply = Pin<Box<dyn Future<Output = Result<Response, ExceptionCode>> + Send>>;

impl tokio_modbus::server::Service for Plc {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Reply;

    fn call(&self, req: Self::Request) -> Self::Future {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let values = [5_000u16, 3_500, 0, 2_000];
        let reply = match (self.device, req) {
            (Device::Silent, _) => return Box::pin(std::future::pending()),
            (Device::RefusesGaps, Request::ReadInputRegisters(a, n)) if (a..a + n).contains(&2) => {
                Err(ExceptionCode::IllegalDataAddress)
            }
            (_, Request::WriteMultipleRegisters(a, words)) => {
                let n = words.len() as u16;
                self.written.lock().unwrap().push((a, words.into_owned()));
                Ok(Response::WriteMultipleRegisters(a, n))
            }
            (_, Request::ReadInputRegisters(a, n)) => {
                let (a, n) = (a as usize, n as usize);
                match values.get(a..a + n) {
                    Some(v) => Ok(Response::ReadInputRegisters(v.to_vec())),
                    None => Err(ExceptionCode::IllegalDataAddress),
                }
            }
            _ => Err(ExceptionCode::IllegalFunction),
        };
        Box::pin(std::future::ready(reply))
    }
}

type Written = Arc<std::sync::Mutex<Vec<(u16, Vec<u16>)>>>;

/// Serves `device` on a loopback port; its address and request counter.
async fn plc(device: Device) -> (String, Arc<AtomicU64>) {
    let (addr, requests, _) = plc_recording(device).await;
    (addr, requests)
}

/// As [`plc`], with the writes it took.
async fn plc_recording(device: Device) -> (String, Arc<AtomicU64>, Written) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let requests = Arc::new(AtomicU64::new(0));
    let written: Written = Arc::default();
    let (counter, record) = (requests.clone(), written.clone());
    tokio::spawn(async move {
        let server = Server::new(listener);
        let on_connected = |stream, _addr| {
            let plc = Arc::new(Plc {
                device,
                requests: counter.clone(),
                written: record.clone(),
            });
            async move { Ok(Some((plc, stream))) }
        };
        let _ = server.serve(&on_connected, |_e| {}).await;
    });
    (addr, requests, written)
}

struct Polled {
    slot: Arc<StationSlot>,
    counters: Arc<Counters>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    commands: watch::Sender<Option<Command>>,
}

/// Unit `unit` at `addr` (on `line` if given), polled every 100 ms with a 50 ms timeout.
fn config(addr: &str, unit: u8, line: Option<LineHandle>) -> PollerConfig {
    PollerConfig {
        station: StationId::new(&format!("plc-{unit}")).unwrap(),
        address: addr.to_owned(),
        transport: Transport::Tcp(addr.to_owned()),
        frame_gap: None,
        line,
        unit_id: unit,
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(50),
        max_registers: 125,
        coalesce: true,
        max_gap: 4,
        map: Arc::new(RegisterMap::parse(MAP).expect("a valid map")),
    }
}

/// Starts polling as `cfg` says, storing under `dir`.
fn start(dir: &std::path::Path, cfg: PollerConfig) -> Polled {
    let stats = Arc::new(Stats::default());
    let store = StoreHandle::in_dir(dir, stats.clone());
    let slot = Arc::new(StationSlot::new(
        0,
        BTreeMap::new(),
        Some(5000.0),
        true,
        None,
    ));
    let counters = slot.modbus.clone().expect("a Modbus slot");
    let (tx, commands) = watch::channel(None);
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(
        cfg,
        slot.clone(),
        store,
        stats,
        DecodeLimits::default(),
        Duration::from_secs(10),
        commands,
        stop.clone(),
    ));
    Polled {
        slot,
        counters,
        stop,
        task,
        commands: tx,
    }
}

/// Polls the device at `addr` on a connection of its own.
fn poll(dir: &std::path::Path, addr: &str) -> Polled {
    start(dir, config(addr, 1, None))
}

impl Polled {
    fn latest_supply(&self) -> Option<f64> {
        self.slot
            .latest
            .lock()
            .unwrap()
            .as_ref()
            .map(|r| r.supply_temp_c)
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_device_that_answers_gives_a_reading_per_cycle_in_one_request() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _) = plc(Device::Answers).await;
    let p = poll(dir.path(), &addr);
    until("a reading", || p.latest_supply().is_some()).await;
    assert_eq!(p.latest_supply(), Some(50.0));
    // Registers 0–3 in one read, across the unmapped register 2.
    assert_eq!(p.counters.requests_per_poll.load(Ordering::Relaxed), 1);
    assert!(p.slot.comm_error.lock().unwrap().is_none());
    p.stop().await;
}

#[tokio::test]
async fn a_silent_device_times_out_goes_stale_and_is_retried_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, requests) = plc(Device::Silent).await;
    let p = poll(dir.path(), &addr);
    until("three timeouts", || {
        p.counters.timeouts.load(Ordering::Relaxed) >= 3
    })
    .await;
    assert!(
        p.latest_supply().is_none(),
        "no reading from a silent device"
    );
    let error = p
        .slot
        .comm_error
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_default();
    assert!(error.contains("no answer within 50 ms"), "{error}");
    // Each timeout drops the connection, and reconnects wait a growing backoff: over a second
    // of 100 ms cycles, far fewer requests than cycles.
    let (c0, r0) = (
        p.counters.cycles.load(Ordering::Relaxed),
        requests.load(Ordering::Relaxed),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cycles = p.counters.cycles.load(Ordering::Relaxed) - c0;
    let asked = requests.load(Ordering::Relaxed) - r0;
    assert!(cycles >= 10, "{cycles} cycles");
    assert!(
        asked * 2 < cycles,
        "{asked} requests in {cycles} cycles: no backoff"
    );
    p.stop().await;
}

#[tokio::test]
async fn a_device_refusing_reads_across_gaps_is_read_block_by_block() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _) = plc(Device::RefusesGaps).await;
    let p = poll(dir.path(), &addr);
    until("a reading", || p.latest_supply().is_some()).await;
    // Registers 0–1 and 3 on their own from the first refusal on.
    assert_eq!(p.counters.requests_per_poll.load(Ordering::Relaxed), 2);
    assert!(p.slot.comm_error.lock().unwrap().is_none());
    let exceptions = p.counters.exceptions.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        p.counters.exceptions.load(Ordering::Relaxed),
        exceptions,
        "refused again after the fall back"
    );
    p.stop().await;
}

fn command(seq: u64, setpoint: f64, valve: f64) -> Command {
    Command {
        seq,
        ts: crate::clock::now_ms(),
        mode: crate::model::Mode::Auto,
        supply_setpoint_c: setpoint,
        valve_pct: valve,
        pump_pct: 60.0,
        flow_setpoint_m3h: 20.0,
        valid_for_s: 60,
        epoch: None,
    }
}

#[tokio::test]
async fn a_command_is_written_and_acknowledged_once_the_device_confirmed_it() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _, written) = plc_recording(Device::Answers).await;
    let p = poll(dir.path(), &addr);
    p.commands.send_replace(Some(command(7, 55.5, 42.0)));
    until("the write confirmed", || {
        p.slot.acked_seq.load(Ordering::Relaxed) == 7
    })
    .await;
    // Registers 10 and 11 in one write: 55.5 / 0.01 and 42.0 / 0.1.
    assert_eq!(*written.lock().unwrap(), [(10, vec![5_550, 420])]);
    assert_eq!(p.counters.writes_ok.load(Ordering::Relaxed), 1);
    assert!(p.slot.ack_error.lock().unwrap().is_none());
    // A value the register cannot hold (an i16 × 0.01 past 327.67) is refused, not written.
    p.commands.send_replace(Some(command(8, 400.0, 42.0)));
    until("the refusal", || p.slot.ack_error.lock().unwrap().is_some()).await;
    let error = p.slot.ack_error.lock().unwrap().clone().unwrap_or_default();
    assert!(error.starts_with("seq 8:"), "{error}");
    assert_eq!(p.slot.acked_seq.load(Ordering::Relaxed), 7);
    assert_eq!(written.lock().unwrap().len(), 1, "nothing more written");
    p.stop().await;
}

#[tokio::test]
async fn a_command_to_a_silent_device_is_not_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _) = plc(Device::Silent).await;
    let p = poll(dir.path(), &addr);
    p.commands.send_replace(Some(command(3, 55.0, 40.0)));
    until("a failed write", || {
        p.counters.write_failures.load(Ordering::Relaxed) >= 1
    })
    .await;
    assert_eq!(p.slot.acked_seq.load(Ordering::Relaxed), 0);
    assert_eq!(p.counters.writes_ok.load(Ordering::Relaxed), 0);
    p.stop().await;
}

/// Units behind one gateway address: unit 1 answers, unit 2 is dead (no reply).
struct Gateway;

type GatewayReply = Pin<Box<dyn Future<Output = Result<Option<Response>, ExceptionCode>> + Send>>;

impl tokio_modbus::server::Service for Gateway {
    type Request = tokio_modbus::SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = GatewayReply;

    fn call(&self, req: Self::Request) -> Self::Future {
        let reply = match (req.slave, req.request) {
            (1, Request::ReadInputRegisters(0, 4)) => Ok(Some(Response::ReadInputRegisters(vec![
                4_800, 3_300, 0, 1_500,
            ]))),
            (1, _) => Err(ExceptionCode::IllegalFunction),
            _ => Ok(None),
        };
        Box::pin(std::future::ready(reply))
    }
}

#[tokio::test]
async fn units_on_a_shared_line_are_polled_through_it_and_a_dead_one_goes_stale() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let server = Server::new(listener);
        let on_connected = |stream, _addr| async move { Ok(Some((Arc::new(Gateway), stream))) };
        let _ = server.serve(&on_connected, |_e| {}).await;
    });
    let stop = CancellationToken::new();
    let transport = Transport::Tcp(addr.clone());
    let (handle, line_task) = line::spawn(transport, Duration::ZERO, 2, stop.clone());
    tokio::spawn(line_task);
    let unit = |n: u8| {
        let dir = dir.path().join(format!("u{n}"));
        start(&dir, config(&addr, n, Some(handle.clone())))
    };
    let (live, dead) = (unit(1), unit(2));
    until("unit 1 read through the line", || {
        live.latest_supply() == Some(48.0)
    })
    .await;
    until("unit 2 timed out", || {
        dead.counters.timeouts.load(Ordering::Relaxed) >= 2
    })
    .await;
    assert!(
        dead.latest_supply().is_none(),
        "no reading from a dead unit"
    );
    assert!(dead.slot.comm_error.lock().unwrap().is_some());
    assert!(live.slot.comm_error.lock().unwrap().is_none());
    live.stop().await;
    dead.stop().await;
    stop.cancel();
}
