//! One writer task per OPC UA station: each command the control task hands it is written to
//! the map's write nodes, range-checked first, and counted (and stored) as delivered only
//! when the server answered Good for every node.
//!
//! Order: the command's values go in one Write request, then `epoch` and `seq` (where the map
//! has nodes for them) in a second one, so a PLC that watches `seq` sees a complete command.
//! A command the server could not take (link down, a Bad answer) is retried when the session
//! is back or every second while it is younger than the control tick (a newer one replaces
//! it); a value outside its node's range is not retried. Each station writes on its own task:
//! a slow write never delays the server's readings nor another station's commands.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use opcua::types::{AttributeId, DataValue, StatusCode, WriteValue};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::server::{Live, Parts};
use super::StationNodes;
use crate::ingest::slot::StationSlot;
use crate::model::Command;
use crate::store::record::Record;

/// What one try of a command came to.
enum Outcome {
    Delivered,
    /// Not now (no session, or the server failed it): try again while young.
    Retry(String),
    /// Never: the command does not fit the nodes.
    Refused(String),
}

/// Writes the station's commands until `stop` is cancelled.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    st: StationNodes,
    slot: Arc<StationSlot>,
    parts: Parts,
    timeout: Duration,
    retry_for: Duration,
    mut live: watch::Receiver<Option<Live>>,
    mut commands: watch::Receiver<Option<Command>>,
    stop: CancellationToken,
) {
    let mut pending: Option<Command> = None;
    let mut last_problem: Option<String> = None;
    loop {
        let retry = tokio::time::sleep(Duration::from_secs(1));
        tokio::select! {
            changed = commands.changed() => {
                if changed.is_err() {
                    return;
                }
                pending = commands.borrow_and_update().clone();
            }
            changed = live.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = retry, if pending.is_some() => {}
            _ = stop.cancelled() => return,
        }
        let Some(cmd) = pending.clone() else { continue };
        if !slot.may_command() {
            // In a cluster: the lead is gone or its fence ran out.
            pending = None;
            continue;
        }
        let age_ms = crate::clock::now_ms() - cmd.ts;
        if age_ms > retry_for.as_millis() as i64 {
            warn!(station = %st.station, seq = cmd.seq, age_ms, problem = ?last_problem,
                "Command could not be written in time; dropped undelivered.");
            pending = None;
            continue;
        }
        let session = live.borrow().clone();
        match write(&st, &cmd, session, timeout).await {
            Outcome::Delivered => {
                pending = None;
                last_problem = None;
                parts.stats.opcua_writes.fetch_add(1, Ordering::Relaxed);
                parts.stats.commands_sent.fetch_add(1, Ordering::Relaxed);
                slot.acked_seq.fetch_max(cmd.seq, Ordering::Relaxed);
                *slot.ack_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                parts.store.submit(&Record::Command {
                    station: &st.station,
                    tags: &slot.tags,
                    command: &cmd,
                });
            }
            Outcome::Retry(why) => {
                parts
                    .stats
                    .opcua_write_failures
                    .fetch_add(1, Ordering::Relaxed);
                if last_problem.as_deref() != Some(&why) {
                    warn!(station = %st.station, seq = cmd.seq, problem = %why,
                        "OPC UA command not written yet; retried while it is young.");
                    last_problem = Some(why);
                }
            }
            Outcome::Refused(why) => {
                pending = None;
                parts
                    .stats
                    .opcua_write_failures
                    .fetch_add(1, Ordering::Relaxed);
                parts.stats.commands_failed.fetch_add(1, Ordering::Relaxed);
                warn!(station = %st.station, seq = cmd.seq, error = %why,
                    "Command does not fit the node map; not written.");
                *slot.ack_error.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(format!("seq {}: {why}", cmd.seq));
            }
        }
    }
}

/// One try: the values, then (epoch, seq).
async fn write(st: &StationNodes, cmd: &Command, live: Option<Live>, timeout: Duration) -> Outcome {
    let Some(live) = live else {
        return Outcome::Retry("the server is not connected".into());
    };
    let mut body = Vec::new();
    let mut tail = Vec::new();
    for node in st.map.writes() {
        let Some(value) = cmd.field_value(&node.field) else {
            continue;
        };
        let variant = match node.encode(value) {
            Ok(v) => v,
            Err(e) => return Outcome::Refused(e.to_string()),
        };
        let node_id = match st.map.node_id(node, &st.node, live.ns) {
            Ok(id) => id,
            Err(e) => return Outcome::Refused(e),
        };
        let w = WriteValue {
            node_id,
            attribute_id: AttributeId::Value as u32,
            index_range: Default::default(),
            value: DataValue::value_only(variant),
        };
        if node.field == "seq" || node.field == "epoch" {
            tail.push((node.field.as_str(), w));
        } else {
            body.push(w);
        }
    }
    // The epoch before the seq: a PLC that watches seq then has the pair.
    tail.sort_by_key(|(f, _)| *f == "seq");
    let tail: Vec<WriteValue> = tail.into_iter().map(|(_, w)| w).collect();
    for part in [body, tail] {
        if part.is_empty() {
            continue;
        }
        let answer = tokio::time::timeout(timeout, live.session.write(&part)).await;
        let statuses = match answer {
            Err(_) => return Outcome::Retry(format!("no answer to the write within {timeout:?}")),
            Ok(Err(e)) => return Outcome::Retry(format!("write: {e}")),
            Ok(Ok(s)) => s,
        };
        for (w, s) in part.iter().zip(&statuses) {
            // The node or the value is wrong: the same write would fail again.
            let never = [
                StatusCode::BadTypeMismatch,
                StatusCode::BadNotWritable,
                StatusCode::BadUserAccessDenied,
                StatusCode::BadOutOfRange,
                StatusCode::BadNodeIdUnknown,
                StatusCode::BadWriteNotSupported,
            ];
            if never.contains(s) {
                return Outcome::Refused(format!("write {}: {s}", w.node_id));
            }
            if !s.is_good() {
                return Outcome::Retry(format!("write {}: {s}", w.node_id));
            }
        }
        if statuses.len() != part.len() {
            return Outcome::Retry(format!(
                "write: {} answers for {} nodes",
                statuses.len(),
                part.len()
            ));
        }
    }
    Outcome::Delivered
}
