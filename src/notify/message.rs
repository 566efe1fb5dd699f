//! What the notifications pass between their stages: one alarm event for one channel, what a
//! channel sends (one message or a summary), and why one attempt failed.
//!
//! Where it sits: the leaf of `notify`; grouping, delivery and the two channels share it.

use serde::Serialize;

use crate::alarms::{Alarm, Event};

/// One alarm event for one channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub event: Event,
    pub alarm: Alarm,
}

/// What a channel sends: one message, or a summary of a group too large to send one by one.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    One(Message),
    Summary(Vec<Message>),
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq)]
pub enum SendError {
    /// Worth another try (network, timeout, the server busy).
    Retry(String),
    /// Not (the receiver refuses this message).
    Permanent(String),
}
