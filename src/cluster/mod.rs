//! Several instances sharing one fleet (issue 15): the building blocks, not yet wired into
//! the engine.
//!
//! Where it sits: beside the stages, used by none of them yet. [`partition`] says which
//! partition a station is in and which instances should own a partition (pure);
//! [`membership`] is an instance's etcd lease and member key, and the fence that stops it
//! commanding before its lease can expire; [`ownership`] is one leader per partition and its
//! fencing epoch. Using them in the engine (the epoch on every command, control of owned
//! stations only, one MQTT session per partition) is the next step: without a
//! `[cluster]` table heatgrid runs as a single instance, as it always has.

pub mod membership;
pub mod ownership;
pub mod partition;
pub mod state;
pub mod task;
