//! Control: what the engine computes for each station on every tick.
//!
//! Sits between ingest (latest accepted reading per station) and the command publisher.
//! Pure and synchronous: [`curve`] (outdoor → supply), [`pi`] (one loop with limits, rate
//! limit, dead band, anti-windup, bumpless transfer) and [`station`] (the whole per-station
//! controller, with staleness and modes); [`coordinator`] balances the stations of a district
//! against each other, slowly, through an offset on each one's curve; [`plant`] sets the heat
//! plant's supply temperature and the network's pressure from the whole fleet.

pub mod change;
pub mod coordination;
pub mod coordinator;
pub mod curve;
pub mod delay;
pub mod district;
pub mod fleet;
pub mod kpi;
pub mod pi;
pub mod plant;
pub mod plant_status;
mod plant_summary;
pub mod plant_task;
pub mod settings;
pub mod shared_district;
pub mod station;
pub mod status;
pub mod task;

pub use station::{Outputs, StationController, StationParams, Tick};
