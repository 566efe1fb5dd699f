//! Modbus stations: register maps ([`map`]), one poller task per station ([`poller`]), the
//! heat plant's poller ([`plant`]), and shared lines ([`mod@line`]: RTU on a serial port or over TCP, or several unit ids behind one
//! gateway address) that carry one request at a time.
//!
//! Where it sits: a Modbus station is a second way in and out of the same engine. Its poller
//! reads the registers its map names on a fixed interval, turns them into the same telemetry
//! the MQTT path decodes (so the same validation, storage and controller apply), and writes
//! each command the control task hands it to the map's holding registers.

pub mod line;
mod link;
pub mod map;
pub mod map_file;
pub mod plant;
pub mod poller;
pub mod write;
