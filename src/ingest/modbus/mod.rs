//! Modbus TCP stations: register maps ([`map`]) and one poller task per station ([`poller`]).
//!
//! Where it sits: a Modbus station is a second way in and out of the same engine. Its poller
//! reads the registers its map names on a fixed interval, turns them into the same telemetry
//! the MQTT path decodes (so the same validation, storage and controller apply), and writes
//! each command the control task hands it to the map's holding registers.

pub mod map;
pub mod map_file;
pub mod poller;
pub mod write;
