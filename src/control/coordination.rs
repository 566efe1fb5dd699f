//! Which district coordinator the control task drives: the only engine's ([`District`]) or
//! the one several instances share ([`SharedDistrict`]).
//!
//! Where it sits: inside the control task, which calls the same three things on either:
//! observe each automatic step, advance with the tick, read a station's offset.

use super::district::District;
use super::shared_district::SharedDistrict;
use super::{Outputs, StationController};
use crate::model::Reading;

/// The district coordinator as the control task drives it: alone, or shared by a cluster.
#[derive(Debug)]
pub enum Coordination {
    /// The only engine: the whole fleet here, offsets kept on disk.
    Local(District),
    /// One of several instances: sums and offsets through etcd, updated on one instance.
    Shared(Box<SharedDistrict>),
}

impl Coordination {
    /// Station `i`'s district offset now, K.
    pub fn offset_k(&self, i: usize) -> f64 {
        match self {
            Self::Local(d) => d.offset_k(i),
            Self::Shared(d) => d.offset_k(i),
        }
    }

    /// Feeds one step of station `i`, commanded under `epoch`, that acted on reading `r`.
    pub fn observe(
        &mut self,
        i: usize,
        epoch: u64,
        step: (&StationController, &Reading, &Outputs, f64),
    ) {
        match self {
            Self::Local(d) => d.observe(i, step.0, step.1, step.2, step.3),
            Self::Shared(d) => d.observe(i, epoch, step),
        }
    }

    /// Advances by `dt_s` plant seconds; `lead(p)`: the epoch partition `p` is led under
    /// here. Every station's offset when they changed, and whether this instance updated them.
    pub fn advance(
        &mut self,
        dt_s: f64,
        now: i64,
        lead: &dyn Fn(u32) -> Option<u64>,
    ) -> Option<(Vec<f64>, bool)> {
        match self {
            Self::Local(d) => d.advance(dt_s, now).map(|o| (o, true)),
            Self::Shared(d) => d.advance(dt_s, now, lead),
        }
    }

    /// The indoor temperature station `i`'s predictive plan aims at now. The only engine's
    /// coordinator aims its indoor feedback there; a cluster's shared coordinator keeps the
    /// common target (its sums travel through etcd without it), so a pre-heat lift above the
    /// dead band is trimmed there.
    pub fn set_planned_indoor(&mut self, i: usize, indoor_c: Option<f64>) {
        if let Self::Local(d) = self {
            d.set_planned_indoor(i, indoor_c);
        }
    }

    /// Updates this instance ran.
    pub fn updates(&self) -> u64 {
        match self {
            Self::Local(d) => d.updates(),
            Self::Shared(d) => d.updates(),
        }
    }
}
