//! The simulator's Modbus TCP face: each station is a PLC on its own port, serving the
//! register map in `config/modbus/heatgrid-sim.toml` (tokio-modbus server).
//!
//! Input registers are computed from the plant at the moment they are read; holding registers
//! keep what was written. A write that covers the `seq` register (the engine writes it last)
//! completes a command, which the station's PLC logic takes like an MQTT command: it follows it
//! for `valid_for_s`, refuses an old `seq` (answered with exception 3) and falls back to its
//! local curve when it expires.
//!
//! The map reader here is the simulator's own, deliberately not the engine's: both sides read
//! the same file with independent code, so an encoding bug cannot hide on both at once.
//!
//! Faults per station ([`ModbusFault`]): `Dead` accepts connections and never answers; `Refuse`
//! answers every request with exception 2 (illegal data address).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_modbus::server::tcp::Server;
use tokio_modbus::{ExceptionCode, Request, Response};

use crate::shared::Shared;
use crate::station::Command;

/// How a station's PLC behaves on Modbus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModbusFault {
    #[default]
    None,
    /// Accepts the connection, never answers.
    Dead,
    /// Answers everything with exception 2.
    Refuse,
}

#[derive(Debug, Deserialize)]
struct FileMap {
    address_base: toml::Value,
    #[serde(rename = "register")]
    registers: Vec<FileRegister>,
}

#[derive(Debug, Deserialize)]
struct FileRegister {
    field: String,
    table: String,
    address: u32,
    #[serde(rename = "type")]
    ty: String,
    order: Option<String>,
    scale: Option<f64>,
    offset: Option<f64>,
    access: Option<String>,
}

/// One register of the map, at its wire address.
#[derive(Debug, Clone)]
pub struct SimRegister {
    pub field: String,
    pub holding: bool,
    pub address: u16,
    ty: String,
    order: String,
    scale: f64,
    offset: f64,
}

impl SimRegister {
    pub(crate) fn words(&self) -> u16 {
        if self.ty.ends_with("16") {
            1
        } else {
            2
        }
    }

    /// Engineering value → words (rounded; saturating, a simulator never refuses its own).
    pub fn encode(&self, v: f64) -> Vec<u16> {
        let raw = (v - self.offset) / self.scale;
        let be: [u8; 4] = match self.ty.as_str() {
            "u16" => ((raw.round().clamp(0.0, 65535.0) as u32) << 16).to_be_bytes(),
            "i16" => {
                ((raw.round().clamp(-32768.0, 32767.0) as i16 as u16 as u32) << 16).to_be_bytes()
            }
            "u32" => (raw.round().clamp(0.0, u32::MAX as f64) as u32).to_be_bytes(),
            "i32" => (raw.round() as i32).to_be_bytes(),
            _ => (raw as f32).to_be_bytes(),
        };
        let [a, b, c, d] = be;
        if self.words() == 1 {
            let w = if matches!(self.order.as_str(), "BADC" | "DCBA") {
                [b, a]
            } else {
                [a, b]
            };
            return vec![u16::from_be_bytes(w)];
        }
        let bytes = match self.order.as_str() {
            "CDAB" | "LITTLE" => [c, d, a, b],
            "BADC" => [b, a, d, c],
            "DCBA" => [d, c, b, a],
            _ => [a, b, c, d],
        };
        vec![
            u16::from_be_bytes([bytes[0], bytes[1]]),
            u16::from_be_bytes([bytes[2], bytes[3]]),
        ]
    }

    /// Words → engineering value.
    pub fn decode(&self, w: &[u16]) -> f64 {
        let mut be = [0u8; 4];
        if self.words() == 1 {
            let [a, b] = w[0].to_be_bytes();
            let [a, b] = if matches!(self.order.as_str(), "BADC" | "DCBA") {
                [b, a]
            } else {
                [a, b]
            };
            let raw = if self.ty == "i16" {
                i16::from_be_bytes([a, b]) as f64
            } else {
                u16::from_be_bytes([a, b]) as f64
            };
            return raw * self.scale + self.offset;
        }
        let [p, q] = w[0].to_be_bytes();
        let [r, s] = w[1].to_be_bytes();
        let got = [p, q, r, s];
        let idx = match self.order.as_str() {
            "CDAB" | "LITTLE" => [2, 3, 0, 1],
            "BADC" => [1, 0, 3, 2],
            "DCBA" => [3, 2, 1, 0],
            _ => [0, 1, 2, 3],
        };
        for (k, i) in idx.iter().enumerate() {
            be[*i] = got[k];
        }
        let raw = match self.ty.as_str() {
            "u32" => u32::from_be_bytes(be) as f64,
            "i32" => i32::from_be_bytes(be) as f64,
            _ => f32::from_be_bytes(be) as f64,
        };
        raw * self.scale + self.offset
    }
}

/// A register map as the simulator reads it.
#[derive(Debug, Clone)]
pub struct SimMap {
    pub registers: Vec<SimRegister>,
}

impl SimMap {
    pub fn parse(text: &str) -> Result<Self, String> {
        let f: FileMap = toml::from_str(text).map_err(|e| e.to_string())?;
        let registers = f
            .registers
            .into_iter()
            .map(|r| {
                let holding = r.table == "holding";
                let address = match &f.address_base {
                    toml::Value::Integer(1) => r.address - 1,
                    toml::Value::String(s) if s == "modicon" => {
                        r.address - if holding { 40_001 } else { 30_001 }
                    }
                    _ => r.address,
                } as u16;
                SimRegister {
                    field: if r.access.as_deref().unwrap_or("read") == "read" {
                        r.field
                    } else {
                        format!("cmd:{}", r.field)
                    },
                    holding,
                    address,
                    ty: r.ty,
                    order: r.order.unwrap_or_default().to_ascii_uppercase(),
                    scale: r.scale.unwrap_or(1.0),
                    offset: r.offset.unwrap_or(0.0),
                }
            })
            .collect();
        Ok(Self { registers })
    }

    pub(crate) fn command_register(&self, field: &str) -> Option<&SimRegister> {
        self.registers
            .iter()
            .find(|r| r.holding && r.field.strip_prefix("cmd:") == Some(field))
    }

    /// Whether every word of a write of `n` words at `addr` is in a mapped holding register.
    pub(crate) fn holding_covers(&self, addr: u16, n: usize) -> bool {
        (addr as u32..addr as u32 + n as u32).all(|a| {
            self.registers.iter().any(|r| {
                r.holding && a >= r.address as u32 && a < r.address as u32 + r.words() as u32
            })
        })
    }

    /// Whether a write of `n` words at `addr` covers the last word of `seq` (the command is
    /// then complete), or, without a seq register, always.
    pub(crate) fn completes(&self, addr: u16, n: usize) -> bool {
        self.command_register("seq").is_none_or(|r| {
            let last = r.address as u32 + r.words() as u32 - 1;
            (addr as u32..addr as u32 + n as u32).contains(&last)
        })
    }

    /// Command field `field` as the holding registers now hold it.
    pub(crate) fn command_value(&self, holding: &HashMap<u16, u16>, field: &str) -> Option<f64> {
        self.command_register(field).map(|r| {
            let w: Vec<u16> = (0..r.words())
                .map(|k| holding.get(&(r.address + k)).copied().unwrap_or(0))
                .collect();
            r.decode(&w)
        })
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

type Reply = Pin<Box<dyn Future<Output = Result<Response, ExceptionCode>> + Send>>;

/// One station's PLC.
#[derive(Debug)]
pub(crate) struct Plc {
    pub(crate) shared: Arc<Mutex<Shared>>,
    pub(crate) index: usize,
    pub(crate) map: Arc<SimMap>,
}

impl Plc {
    fn input_image(&self, sh: &mut Shared) -> HashMap<u16, u16> {
        let outdoor = sh.outdoor_c;
        let st = &mut sh.stations[self.index];
        let values = st.telemetry(now_ms(), outdoor).fields();
        let mut image = HashMap::new();
        for r in self.map.registers.iter().filter(|r| !r.holding) {
            if let Some((_, v)) = values.iter().find(|(k, _)| *k == r.field) {
                for (k, w) in r.encode(*v).into_iter().enumerate() {
                    image.insert(r.address + k as u16, w);
                }
            }
        }
        image
    }

    /// Whether the station's fault is `Dead` (it never answers).
    pub(crate) fn dead(&self) -> bool {
        self.shared
            .lock()
            .map(|sh| sh.modbus_faults[self.index] == ModbusFault::Dead)
            .unwrap_or(false)
    }

    pub(crate) fn handle(&self, req: Request<'static>) -> Result<Response, ExceptionCode> {
        let mut sh = self
            .shared
            .lock()
            .map_err(|_| ExceptionCode::ServerDeviceFailure)?;
        let is_read = matches!(
            req,
            Request::ReadInputRegisters(..)
                | Request::ReadHoldingRegisters(..)
                | Request::ReadCoils(..)
                | Request::ReadDiscreteInputs(..)
        );
        let index = self.index;
        if let Some(reads) = sh.reads.as_mut().filter(|_| is_read) {
            reads.push((index, std::time::Instant::now()));
        }
        match sh.modbus_faults[self.index] {
            ModbusFault::Refuse => return Err(ExceptionCode::IllegalDataAddress),
            ModbusFault::Dead | ModbusFault::None => {}
        }
        match req {
            Request::ReadInputRegisters(addr, n) => {
                let image = self.input_image(&mut sh);
                read(&image, addr, n).map(Response::ReadInputRegisters)
            }
            Request::ReadHoldingRegisters(addr, n) => {
                read(&sh.holding[self.index], addr, n).map(Response::ReadHoldingRegisters)
            }
            Request::WriteSingleRegister(addr, w) => {
                self.write(&mut sh, addr, &[w])?;
                Ok(Response::WriteSingleRegister(addr, w))
            }
            Request::WriteMultipleRegisters(addr, words) => {
                self.write(&mut sh, addr, &words)?;
                Ok(Response::WriteMultipleRegisters(addr, words.len() as u16))
            }
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }

    fn write(&self, sh: &mut Shared, addr: u16, words: &[u16]) -> Result<(), ExceptionCode> {
        if !self.map.holding_covers(addr, words.len()) {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let holding = &mut sh.holding[self.index];
        for (k, w) in words.iter().enumerate() {
            holding.insert(addr + k as u16, *w);
        }
        // The command is complete when the last word of `seq` is written (or, without a seq
        // register, with every write).
        if !self.map.completes(addr, words.len()) {
            return Ok(());
        }
        let value = |field: &str| self.map.command_value(holding, field);
        let cmd = Command {
            seq: value("seq").unwrap_or(0.0) as u64,
            ts: now_ms(),
            mode: match value("mode").unwrap_or(0.0) as u16 {
                1 => "manual",
                2 => "hold",
                _ => "auto",
            }
            .into(),
            supply_setpoint_c: value("supply_setpoint_c").unwrap_or(f64::NAN),
            valve_pct: value("valve_pct").unwrap_or(f64::NAN),
            pump_pct: value("pump_pct").unwrap_or(f64::NAN),
            valid_for_s: value("valid_for_s").unwrap_or(60.0) as u32,
            epoch: value("epoch").map(|e| e as u64),
        };
        sh.command(self.index, cmd, now_ms())
            .map(|_| ())
            .map_err(|_| ExceptionCode::IllegalDataValue)
    }
}

/// `n` words from `addr` of a register image; exception 2 if any is not there.
pub(crate) fn read(
    image: &HashMap<u16, u16>,
    addr: u16,
    n: u16,
) -> Result<Vec<u16>, ExceptionCode> {
    (addr as u32..addr as u32 + n as u32)
        .map(|a| image.get(&(a as u16)).copied())
        .collect::<Option<Vec<u16>>>()
        .ok_or(ExceptionCode::IllegalDataAddress)
}

impl tokio_modbus::server::Service for Plc {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Reply;

    fn call(&self, req: Self::Request) -> Self::Future {
        if self.dead() {
            return Box::pin(std::future::pending());
        }
        let r = self.handle(req);
        Box::pin(std::future::ready(r))
    }
}

/// Starts one listener per station on `host`, at `base_port + index` (or an ephemeral port
/// each when `base_port` is 0). Returns the bound addresses and the server tasks.
pub(crate) async fn serve(
    shared: Arc<Mutex<Shared>>,
    map: Arc<SimMap>,
    host: &str,
    base_port: u16,
    n: usize,
) -> std::io::Result<(Vec<SocketAddr>, Vec<JoinHandle<()>>)> {
    let mut addrs = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(n);
    for index in 0..n {
        let port = if base_port == 0 {
            0
        } else {
            base_port + index as u16
        };
        let listener = TcpListener::bind((host, port)).await?;
        addrs.push(listener.local_addr()?);
        tasks.push(serve_one(shared.clone(), map.clone(), index, listener));
    }
    Ok((addrs, tasks))
}

/// Serves station `index` on `listener` until the task is aborted, which closes the listener
/// and every connection it accepted (tokio-modbus cancels them when `serve` is dropped).
pub(crate) fn serve_one(
    shared: Arc<Mutex<Shared>>,
    map: Arc<SimMap>,
    index: usize,
    listener: TcpListener,
) -> JoinHandle<()> {
    serve_plc(Arc::new(Plc { shared, index, map }), listener)
}

/// Serves `plc` to every connection on `listener` until the task is aborted.
pub(crate) fn serve_plc<P>(plc: Arc<P>, listener: TcpListener) -> JoinHandle<()>
where
    P: tokio_modbus::server::Service<
            Request = Request<'static>,
            Response = Response,
            Exception = ExceptionCode,
        > + Send
        + Sync
        + 'static,
    P::Future: Send,
{
    tokio::spawn(async move {
        let server = Server::new(listener);
        let on_connected = |stream, _addr| {
            let plc = plc.clone();
            async move { Ok(Some((plc, stream))) }
        };
        let _ = server.serve(&on_connected, |_e| {}).await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_orders_round_trip() {
        for order in ["ABCD", "CDAB", "BADC", "DCBA"] {
            for ty in ["u32", "i32", "f32", "i16", "u16"] {
                let r = SimRegister {
                    field: "x".into(),
                    holding: false,
                    address: 0,
                    ty: ty.into(),
                    order: order.into(),
                    scale: 0.5,
                    offset: 0.0,
                };
                assert_eq!(r.decode(&r.encode(1234.5)), 1234.5, "{ty} {order}");
            }
        }
    }
}
