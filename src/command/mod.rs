//! Commands going out: dispatch to MQTT and Modbus ([`dispatch`]) and sequence numbers kept
//! across restarts ([`seq`]).
//!
//! Where it sits: after control. The control task hands each tick's commands here; they are
//! numbered, persisted, then published to MQTT or handed to the station's Modbus poller.

pub mod dispatch;
pub mod seq;
