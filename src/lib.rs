//! heatgrid: a district-heating telemetry and control engine.
//!
//! Stations report secondary supply/return temperature, flow and heated area over MQTT (or are
//! polled over Modbus TCP); the engine computes, per station, the supply setpoint (heating
//! curve + return limitation), the primary valve position (temperature loop) and the pump
//! speed (volume loop), sends them back as commands with a validity time, and stores every
//! reading and command as InfluxDB line protocol.
//!
//! # Layout: one folder per stage of the data flow
//! ```text
//!  ingest ──► latest reading per station ──► control ──► command ──► MQTT / Modbus
//!    │                                          │  │
//!    │                                          │  └──► alarms
//!    ▼                                          ▼
//!  store (spool ──► InfluxDB │ files) ◄─────── typed records
//!                      api / cli: the operator's view and changes
//! ```
//! * [`app`]: the wiring: starts every stage, owns every queue, stops them in order.
//! * [`ingest`]: MQTT connection, Modbus polling, payload decoding, per-station slots.
//! * [`control`]: heating curve, PI loops, per-station controller, district coordinator (pure),
//!   and the control task that runs them.
//! * [`command`]: commands out to MQTT and Modbus, sequence numbers.
//! * [`alarms`]: alarm conditions (pure) and their lifecycle; [`notify`]: alarms sent to
//!   webhooks and e-mail.
//! * [`store`]: typed records → line protocol → spool → InfluxDB or files.
//! * [`report`]: energy reports over a period, from the database or the local files.
//! * [`api`], [`cli`]: the operator's HTTP API, metrics, audit log; the command line and `top`.
//! * [`config`]: TOML → each stage's settings.
//! * Leaves: [`model`] (shared types), [`network`] (the primary network's layout), [`clock`], [`physics`], [`stats`], [`files`],
//!   [`backoff`], [`heatgrid_kpi`] (the scenario KPIs, a crate of the workspace).
//! * `demo` (feature `demo`): embedded broker + simulator + engine, scenarios, reports.

pub mod alarms;
pub mod api;
pub mod app;
pub mod backoff;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod command;
pub mod config;
pub mod control;
#[cfg(feature = "demo")]
pub mod demo;
pub mod diagnose;
pub mod files;
pub mod ingest;

pub mod model;
pub mod network;
pub mod notify;
pub mod physics;
pub mod predict;
pub mod report;
pub mod stats;
pub mod store;
