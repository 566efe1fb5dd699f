//! Ingest: everything that comes in from the stations, up to the per-station slot.
//!
//! Where it sits: first in the flow. [`mqtt`] keeps the broker connection and [`event_loop`]
//! polls it; [`messages`] decodes and validates each message it delivers ([`decode`]); each
//! Modbus station's poller ([`modbus`]) reads its registers into the same telemetry, and each
//! OPC UA server's task ([`opcua`]) its stations' nodes. Whichever way, an
//! accepted reading goes through [`slot::accept`]: it becomes the station's latest, its line
//! is gathered for the spool, and the control task is woken once per burst.

pub mod decode;
pub mod event_loop;
pub mod mapping;
pub mod messages;
pub mod modbus;
pub mod mqtt;
#[cfg(feature = "opcua")]
pub mod opcua;
pub mod plant;
pub mod slot;

pub use messages::{Ingest, SUBSCRIPTIONS};
pub use slot::{StationSlot, Weather};
