//! The heat plant's PLC on Modbus TCP (contract §7: "a plant PLC may equally be polled over
//! Modbus with a register map"), serving `config/modbus/heatgrid-sim-plant.toml`.
//!
//! Where it sits: beside the MQTT face of the same PLC ([`crate::live`]); both hand commands
//! to [`super::district::Networked`]'s [`super::plc::PlantPlc`], which fences, clamps, ramps
//! and falls back. Input registers are the plant's telemetry at the moment they are read;
//! holding registers keep what was written, and a write that covers the last word of `seq`
//! (the engine writes it last) completes a command. A refused command is answered with
//! exception 3 (illegal data value). `pressure_point` is a number: 0 the plant's outlet, k the
//! k-th station of the simulator's fleet. A silenced plant never answers (a dead link).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_modbus::{ExceptionCode, Request, Response};

use super::plc::PlantCommand;
use crate::modbus::{read, SimMap};
use crate::shared::Shared;

type Reply = Pin<Box<dyn Future<Output = Result<Response, ExceptionCode>> + Send>>;

/// The plant's PLC as a Modbus server.
struct PlantPlcServer {
    shared: Arc<Mutex<Shared>>,
    map: Arc<SimMap>,
    holding: Mutex<HashMap<u16, u16>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl PlantPlcServer {
    fn handle(&self, req: Request<'static>) -> Result<Response, ExceptionCode> {
        match req {
            Request::ReadInputRegisters(addr, n) => {
                read(&self.input_image()?, addr, n).map(Response::ReadInputRegisters)
            }
            Request::ReadHoldingRegisters(addr, n) => {
                let holding = self
                    .holding
                    .lock()
                    .map_err(|_| ExceptionCode::ServerDeviceFailure)?;
                read(&holding, addr, n).map(Response::ReadHoldingRegisters)
            }
            Request::WriteSingleRegister(addr, w) => {
                self.write(addr, &[w])?;
                Ok(Response::WriteSingleRegister(addr, w))
            }
            Request::WriteMultipleRegisters(addr, words) => {
                self.write(addr, &words)?;
                Ok(Response::WriteMultipleRegisters(addr, words.len() as u16))
            }
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }

    /// The plant's telemetry now, encoded into the map's input registers.
    fn input_image(&self) -> Result<HashMap<u16, u16>, ExceptionCode> {
        let sh = self
            .shared
            .lock()
            .map_err(|_| ExceptionCode::ServerDeviceFailure)?;
        let (w, _) = sh
            .network
            .as_ref()
            .ok_or(ExceptionCode::ServerDeviceFailure)?;
        let telemetry = serde_json::to_value(w.telemetry(now_ms()))
            .map_err(|_| ExceptionCode::ServerDeviceFailure)?;
        let mut image = HashMap::new();
        for r in self.map.registers.iter().filter(|r| !r.holding) {
            let v = telemetry
                .get(&r.field)
                .and_then(|v| v.as_f64())
                .unwrap_or(0.0);
            for (k, word) in r.encode(v).into_iter().enumerate() {
                image.insert(r.address + k as u16, word);
            }
        }
        Ok(image)
    }

    fn write(&self, addr: u16, words: &[u16]) -> Result<(), ExceptionCode> {
        if !self.map.holding_covers(addr, words.len()) {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let mut holding = self
            .holding
            .lock()
            .map_err(|_| ExceptionCode::ServerDeviceFailure)?;
        for (k, w) in words.iter().enumerate() {
            holding.insert(addr + k as u16, *w);
        }
        if !self.map.completes(addr, words.len()) {
            return Ok(());
        }
        let value = |field: &str| self.map.command_value(&holding, field);
        let mut sh = self
            .shared
            .lock()
            .map_err(|_| ExceptionCode::ServerDeviceFailure)?;
        let point = match value("pressure_point").map(|p| p as usize) {
            None | Some(0) => "plant".to_owned(),
            Some(k) => sh
                .stations
                .get(k - 1)
                .map(|s| s.id.clone())
                .ok_or(ExceptionCode::IllegalDataValue)?,
        };
        let cmd = PlantCommand {
            seq: value("seq").unwrap_or(0.0) as u64,
            epoch: value("epoch").map(|e| e as u64),
            ts: now_ms(),
            supply_setpoint_c: value("supply_setpoint_c").unwrap_or(f64::NAN),
            diff_pressure_setpoint_kpa: value("diff_pressure_setpoint_kpa"),
            pressure_point: Some(point),
            pump_pct: None,
            valid_for_s: value("valid_for_s").unwrap_or(60.0) as u32,
        };
        let (w, _) = sh
            .network
            .as_mut()
            .ok_or(ExceptionCode::ServerDeviceFailure)?;
        w.plc
            .on_command(cmd, now_ms())
            .map(|_| ())
            .map_err(|_| ExceptionCode::IllegalDataValue)
    }
}

impl tokio_modbus::server::Service for PlantPlcServer {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Reply;

    fn call(&self, req: Self::Request) -> Self::Future {
        let silenced = self.shared.lock().map(|s| s.plant_silenced).unwrap_or(true);
        if silenced {
            return Box::pin(std::future::pending());
        }
        let r = self.handle(req);
        Box::pin(std::future::ready(r))
    }
}

/// Serves the plant on `listener` until the task is aborted.
pub(crate) fn serve(
    shared: Arc<Mutex<Shared>>,
    map: Arc<SimMap>,
    listener: TcpListener,
) -> JoinHandle<()> {
    let plc = PlantPlcServer {
        shared,
        map,
        holding: Mutex::new(HashMap::new()),
    };
    crate::modbus::serve_plc(Arc::new(plc), listener)
}
