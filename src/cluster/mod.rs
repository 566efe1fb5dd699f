//! Several instances sharing one fleet: the pieces that need no coordination service.
//!
//! Where it sits: beside the stages, used by none of them yet. [`partition`] says which
//! partition a station is in and which instances should own a partition. The ownership
//! itself (etcd leases and elections, the fencing epoch on every command, one MQTT session per
//! partition) is the cluster issue's next step and is not here yet: without a `[cluster]`
//! table heatgrid runs as a single instance, as it always has.

pub mod partition;
