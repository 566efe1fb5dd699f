//! The operator's side of a running engine: the HTTP API ([`http`]), its Prometheus metrics
//! ([`metrics`]) and the audit log of every applied change ([`audit`]).
//!
//! Where it sits: it reads the status and alarm views the control task publishes and sends
//! operator changes to the control task's queue; it never touches a station directly.

pub mod auth;
pub mod http;
pub mod metrics;
