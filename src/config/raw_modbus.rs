//! A Modbus device's table as written (`modbus = { … }` of a station or of the plant), with
//! its defaults; [`super::modbus`] and [`super::plant`] check it.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModbus {
    /// `host:port` or `host` (port 502); or else `serial`.
    pub(super) address: Option<String>,
    /// Modbus RTU on a serial port.
    pub(super) serial: Option<RawSerial>,
    /// With `address`: "tcp" (Modbus TCP, the default) or "rtu" (RTU frames over TCP, a
    /// transparent serial server).
    #[serde(default = "default_framing")]
    pub(super) framing: String,
    /// Gap between two requests on a shared line (default: 3.5 characters on serial).
    pub(super) frame_gap_ms: Option<u64>,
    /// Modbus TCP: "side_by_side" (default: each station its own connection, requests in
    /// parallel) or "one_at_a_time" (the stations at this address share one connection and
    /// send one request at a time). RTU lines are always one at a time.
    pub(super) requests: Option<String>,
    /// Register map file; a relative path is relative to the config file.
    pub(super) map: String,
    #[serde(default = "default_unit_id")]
    pub(super) unit_id: u16,
    #[serde(default = "default_poll_interval_s")]
    pub(super) poll_interval_s: f64,
    #[serde(default = "default_modbus_timeout_ms")]
    pub(super) timeout_ms: u64,
    #[serde(default = "default_max_registers")]
    pub(super) max_registers: u16,
    #[serde(default = "default_true")]
    pub(super) coalesce: bool,
    /// Unmapped registers a coalesced read may span between two mapped ones.
    #[serde(default = "default_max_gap")]
    pub(super) max_gap: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSerial {
    pub(super) port: String,
    #[serde(default = "default_baud_rate")]
    pub(super) baud_rate: u32,
    #[serde(default = "default_parity")]
    pub(super) parity: String,
    #[serde(default = "one_u8")]
    pub(super) stop_bits: u8,
    #[serde(default = "eight_u8")]
    pub(super) data_bits: u8,
}

fn default_framing() -> String {
    "tcp".into()
}
fn default_baud_rate() -> u32 {
    9600
}
fn default_parity() -> String {
    "even".into()
}
fn one_u8() -> u8 {
    1
}
fn eight_u8() -> u8 {
    8
}

fn default_max_gap() -> u16 {
    10
}

fn default_unit_id() -> u16 {
    1
}
fn default_poll_interval_s() -> f64 {
    5.0
}
fn default_modbus_timeout_ms() -> u64 {
    1000
}
fn default_max_registers() -> u16 {
    100
}
fn default_true() -> bool {
    true
}
