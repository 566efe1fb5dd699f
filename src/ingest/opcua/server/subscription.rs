//! The subscription of one server's items (or, when it cannot subscribe, polling them):
//! monitored items created in calls of [`PER_CALL`], each publish response's data changes
//! forwarded whole to the server's task.
//!
//! Where it sits: methods of the server's task ([`super::Server`]) and the callback the
//! async-opcua client calls on each publish response.

use std::sync::Arc;

use opcua::client::{MonitoredItemMap, OnSubscriptionNotificationCore, Session};
use opcua::types::{
    DataChangeFilter, DataChangeNotification, DataChangeTrigger, DataValue, DeadbandType,
    ExtensionObject, MonitoredItemCreateRequest, MonitoringMode, MonitoringParameters,
    NotificationMessage, ReadValueId, StatusCode, TimestampsToReturn,
};
use tokio::sync::mpsc;
use tracing::warn;

use super::{Batch, Item, Server};

/// What a server answers when it cannot subscribe (then it is polled).
const REFUSALS: [StatusCode; 5] = [
    StatusCode::BadServiceUnsupported,
    StatusCode::BadTooManySubscriptions,
    StatusCode::BadTooManyMonitoredItems,
    StatusCode::BadNotSupported,
    StatusCode::BadMonitoredItemFilterUnsupported,
];

/// Items per CreateMonitoredItems or Read call: servers cap what one call may carry (and
/// the client what one answer may hold).
const PER_CALL: usize = 500;

/// The request that monitors `item` under client handle `handle`: sampled every `sampling`
/// ms, the latest value only, with the node's absolute deadband if it has one.
fn monitor(item: &Item, handle: u32, sampling: f64) -> MonitoredItemCreateRequest {
    let filter = match item.deadband {
        Some(d) if d > 0.0 => ExtensionObject::from_message(DataChangeFilter {
            trigger: DataChangeTrigger::StatusValue,
            deadband_type: DeadbandType::Absolute as u32,
            deadband_value: d,
        }),
        _ => ExtensionObject::null(),
    };
    MonitoredItemCreateRequest {
        item_to_monitor: ReadValueId::from(item.id.clone()),
        monitoring_mode: MonitoringMode::Reporting,
        requested_parameters: MonitoringParameters {
            client_handle: handle,
            sampling_interval: sampling,
            filter,
            queue_size: 1,
            discard_oldest: true,
        },
    }
}

/// Forwards each publish response's data changes, whole, to the server's task.
struct Forward(mpsc::UnboundedSender<Batch>);

impl OnSubscriptionNotificationCore for Forward {
    fn on_subscription_notification(&mut self, n: NotificationMessage, _: MonitoredItemMap<'_>) {
        let mut batch = Vec::new();
        for obj in n.notification_data.into_iter().flatten() {
            if let Some(dc) = obj.into_inner_as::<DataChangeNotification>() {
                for m in dc.monitored_items.into_iter().flatten() {
                    batch.push((m.client_handle, m.value));
                }
            }
        }
        if !batch.is_empty() {
            let _ = self.0.send(batch);
        }
    }
}

impl Server {
    /// Subscribes to every item; a server that answers it cannot is polled instead. `Err`:
    /// the link failed (connect again).
    pub(super) async fn subscribe_or_poll(
        &mut self,
        session: &Arc<Session>,
        tx: mpsc::UnboundedSender<Batch>,
    ) -> Result<(), String> {
        match self.subscribe(session, tx).await {
            Ok(()) => Ok(()),
            Err((status, e)) if REFUSALS.contains(&status) => {
                warn!(server = %self.cfg.name, problem = %e,
                    "OPC UA server refuses the subscription; its stations are polled instead.");
                self.polling = true;
                Ok(())
            }
            Err((_, e)) => Err(e),
        }
    }

    /// A new subscription in place of the old (deleted, if the server still has it).
    pub(super) async fn resubscribe(
        &mut self,
        session: &Arc<Session>,
        tx: mpsc::UnboundedSender<Batch>,
    ) -> Result<(), String> {
        if let Some(old) = self.subscription.take() {
            let _ = tokio::time::timeout(self.cfg.timeout, session.delete_subscription(old)).await;
        }
        self.subscribe(session, tx).await.map_err(|(_, e)| e)
    }

    /// One subscription for every item, created in calls of [`PER_CALL`] items (servers cap
    /// monitored items per call). `Err`: the status (the server refused, or the link failed)
    /// and what was being done.
    pub(super) async fn subscribe(
        &mut self,
        session: &Arc<Session>,
        tx: mpsc::UnboundedSender<Batch>,
    ) -> Result<(), (StatusCode, String)> {
        let t = self.cfg.timeout;
        let timed_out = |what: &str| (StatusCode::BadTimeout, format!("{what}: timed out"));
        // Keep-alive every interval while nothing changes; at most 1,000 changes a response;
        // the server keeps it through a cut as long as the session (60 s), then drops it.
        let lifetime = (60.0 / self.cfg.interval.as_secs_f64()).ceil().max(30.0) as u32;
        let sub = tokio::time::timeout(
            t,
            session.create_subscription(self.cfg.interval, lifetime, 1, 1000, 0, true, Forward(tx)),
        )
        .await
        .map_err(|_| timed_out("create subscription"))?
        .map_err(|e| (e.status(), format!("create subscription: {e}")))?;
        self.subscription = Some(sub);
        let sampling = self.cfg.interval.as_secs_f64() * 1000.0;
        for (c, chunk) in self.items.chunks(PER_CALL).enumerate() {
            let requests: Vec<MonitoredItemCreateRequest> = chunk
                .iter()
                .enumerate()
                .map(|(k, item)| monitor(item, (c * PER_CALL + k) as u32 + 1, sampling))
                .collect();
            let created = tokio::time::timeout(
                t,
                session.create_monitored_items(sub, TimestampsToReturn::Both, requests),
            )
            .await
            .map_err(|_| timed_out("create monitored items"))?
            .map_err(|e| (e.status(), format!("create monitored items: {e}")))?;
            // A node the server does not have costs its own station only.
            for (item, c) in chunk.iter().zip(&created) {
                let status = c.result.status_code;
                if !status.is_good() {
                    let (st, slot) = &self.stations[item.station];
                    let field = &st.map.nodes[item.node].field;
                    let text = format!("node {} ({field}): {status}", item.id);
                    warn!(server = %self.cfg.name, station = %st.station, problem = %text,
                        "OPC UA node not monitored; the station has no reading without it.");
                    *slot.comm_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
                }
            }
        }
        Ok(())
    }

    /// One Read of every item, in calls of [`PER_CALL`]; the answers are applied as one
    /// publish response would be.
    pub(super) async fn poll(&mut self, session: &Arc<Session>) {
        let mut batch: Vec<(u32, DataValue)> = Vec::with_capacity(self.items.len());
        for (c, chunk) in self.items.chunks(PER_CALL).enumerate() {
            let ids: Vec<ReadValueId> = chunk
                .iter()
                .map(|i| ReadValueId::from(i.id.clone()))
                .collect();
            let read = tokio::time::timeout(
                self.cfg.timeout,
                session.read(&ids, TimestampsToReturn::Both, 0.0),
            )
            .await;
            match read {
                Ok(Ok(values)) if values.len() == ids.len() => batch.extend(
                    values
                        .into_iter()
                        .enumerate()
                        .map(|(k, v)| ((c * PER_CALL + k) as u32 + 1, v)),
                ),
                Ok(Ok(values)) => {
                    return self.down(&format!(
                        "read: {} values for {} nodes",
                        values.len(),
                        ids.len()
                    ))
                }
                Ok(Err(e)) => return self.down(&format!("read: {e}")),
                Err(_) => {
                    return self.down(&format!("read: no answer within {:?}", self.cfg.timeout))
                }
            }
        }
        self.published = true;
        self.apply(batch.into_iter());
    }
}
