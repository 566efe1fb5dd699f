//! The primary network between the plant and the stations: pipes that carry water with its
//! transport delay and lose heat to the ground ([`pipe`]), joined into a radial network with
//! its hydraulics ([`tree`]; with the stations' valves and the plant's pump: [`hydraulics`]), described in a network file ([`mod@file`], which also generates one
//! for N stations) and replayed with given inputs ([`replay`]).
//!
//! Where it sits: beside the stations' plant model ([`crate::plant`]). The network gives each
//! station the primary supply temperature that reaches it and takes back its return; the
//! model is checked against published data in the tests: the pipe against measurements
//! (`validation`: the ULg test bench's step tests and a week of the AIT network branch), the
//! network against DESTEST's reference tools (`destest`: its steady and one-week cases).

pub mod district;
pub mod file;
pub mod hydraulics;
pub mod pipe;
pub mod plc;
pub(crate) mod plc_modbus;
pub mod replay;
pub mod tree;

#[cfg(test)]
mod destest;
#[cfg(test)]
mod validation;
