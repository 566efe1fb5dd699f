//! heatgrid: a district-heating telemetry and control engine.
//!
//! Stations report secondary supply/return temperature, flow and heated area over MQTT; the
//! engine computes, per station and per tick, the supply setpoint (heating curve + return
//! limitation), the primary valve position (temperature loop) and the pump speed (volume loop),
//! publishes them back as commands with a validity time, and stores every reading and command
//! as InfluxDB line protocol.
//!
//! # Layout / data flow
//! ```text
//!  mqtt (event loop) ─► ingest (decode + validate) ─► latest reading per station
//!                                 │                          │
//!                                 ▼                          ▼ every tick
//!                      store (batch ─► InfluxDB │ files)  control (curve, PI loops, staleness)
//!                                 ▲                          │
//!                                 └──── command lines ◄──────┴─► mqtt publish (commands)
//! ```
//! * [`model`], [`physics`]: domain types and arithmetic.
//! * [`decode`]: telemetry payload → [`model::Reading`] or a rejection reason.
//! * [`control`]: heating curve, PI loop, per-station controller (pure).
//! * [`mqtt`], [`ingest`]: the broker connection and what happens to each message.
//! * [`store`]: line protocol, batching writer, InfluxDB and file sinks.
//! * [`engine`]: wiring and ordered shutdown; [`config`]: TOML → validated [`config::Config`].
//! * `demo` (feature `demo`): embedded broker + simulator + engine in one process.

pub mod alarms;
pub mod api;
pub mod audit;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod control;
pub mod decode;
#[cfg(feature = "demo")]
pub mod demo;
pub mod engine;
pub mod files;
pub mod ingest;
pub mod kpi;
pub mod metrics;
pub mod modbus;
pub mod model;
pub mod mqtt;
pub mod physics;
#[cfg(feature = "demo")]
pub mod report;
#[cfg(feature = "demo")]
pub mod scenario;
pub mod seq;
pub mod stats;
pub mod store;
pub mod top;
