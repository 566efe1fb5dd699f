//! One control room over several instances: a change reaches the station's owner wherever the
//! operator typed it, and the station views show the whole fleet on any instance.
//!
//! Where it sits: under the handlers, used only in a cluster. A change for a station this
//! instance does not lead goes to the leader's API (`POST /api/v1/cluster/apply/{id}`, with the
//! operator's own token, marked as forwarded so that it is never forwarded twice). A fleet
//! view asks every other member for its local view (`?local=1`) and takes each station's row
//! from the instance that leads it; a member that does not answer within
//! [`PEER_TIMEOUT`] is named in the answer (`"unreachable"`) and its stations are shown as
//! this instance knows them.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use tokio::sync::watch;

use super::ApiState;
use crate::cluster::partition::partition_of;
use crate::cluster::view::ClusterView;
use crate::control::change::{Change, ChangeError};
use crate::model::Applied;

/// How long a peer has to answer a fleet view or a forwarded change.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(3);

/// The header that marks a forwarded change (its value: the forwarding instance).
pub const FORWARDED: &str = "x-heatgrid-forwarded";

/// What the API needs in a cluster.
#[derive(Debug, Clone)]
pub struct Peers {
    pub view: watch::Receiver<Arc<ClusterView>>,
    pub http: reqwest::Client,
    /// Whether the district coordinator is on (it runs on partition 0's owner).
    pub coordinator: bool,
}

impl Peers {
    /// Fails only if the HTTP client cannot be built (no TLS backend): a start error, never a
    /// client without timeouts.
    pub fn new(
        view: watch::Receiver<Arc<ClusterView>>,
        coordinator: bool,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            view,
            coordinator,
            http: reqwest::Client::builder().timeout(PEER_TIMEOUT).build()?,
        })
    }

    /// The base URL of member `name`'s API.
    fn url_of(view: &ClusterView, name: &str) -> Option<String> {
        let addr = &view.members.iter().find(|(n, _)| n == name)?.1;
        Some(if addr.starts_with("http") {
            addr.trim_end_matches('/').to_owned()
        } else {
            format!("http://{addr}")
        })
    }

    /// Station `id`'s view from the instance that leads it (`None`: nobody else does, or it did
    /// not answer).
    pub async fn from_owner(&self, id: &str, headers: &HeaderMap) -> Option<Value> {
        let view = self.view.borrow().clone();
        let p = partition_of(id, view.partitions);
        let owner = view.table.get(p as usize)?.leader.clone()?;
        if owner == view.name {
            return None;
        }
        let base = Self::url_of(&view, &owner)?;
        let req = with_auth(
            self.http
                .get(format!("{base}/api/v1/stations/{id}?local=1")),
            headers,
        );
        let resp = req.send().await.ok()?;
        let mut v: Value = resp.json().await.ok()?;
        v["owner"] = Value::from(owner);
        Some(v)
    }

    /// Acknowledges alarm `id` on member `instance`: `None` if that is this instance.
    pub(super) async fn ack_at(
        &self,
        instance: &str,
        id: u64,
        headers: &HeaderMap,
    ) -> Result<Option<Value>, super::auth::ApiError> {
        let view = self.view.borrow().clone();
        if instance == view.name {
            return Ok(None);
        }
        let unavailable = |m: String| super::auth::ApiError(StatusCode::SERVICE_UNAVAILABLE, m);
        let base = Self::url_of(&view, instance)
            .ok_or_else(|| unavailable(format!("{instance} is not a member now")))?;
        let req = with_auth(
            self.http
                .post(format!("{base}/api/v1/alarms/{id}/ack"))
                .json(&serde_json::json!({})),
            headers,
        );
        let resp = req
            .send()
            .await
            .map_err(|e| unavailable(format!("cannot reach {instance}: {e}")))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(Some(body))
        } else {
            Err(super::auth::ApiError(
                status,
                format!("{instance}: {}", body["error"].as_str().unwrap_or("")),
            ))
        }
    }

    /// Asks every other member for `path` (its local view); (member, answer or error).
    pub async fn gather(
        &self,
        path: &str,
        headers: &HeaderMap,
    ) -> Vec<(String, Result<Value, String>)> {
        let view = self.view.borrow().clone();
        let others: Vec<(String, String)> = view
            .members
            .iter()
            .filter(|(n, _)| *n != view.name)
            .filter_map(|(n, _)| Some((n.clone(), Self::url_of(&view, n)?)))
            .collect();
        let mut calls = tokio::task::JoinSet::new();
        for (name, base) in others {
            let req = with_auth(self.http.get(format!("{base}{path}")), headers);
            calls.spawn(async move {
                let r = async {
                    let resp = req.send().await.map_err(|e| e.to_string())?;
                    if !resp.status().is_success() {
                        return Err(format!("answered {}", resp.status()));
                    }
                    resp.json::<Value>().await.map_err(|e| e.to_string())
                }
                .await;
                (name, r)
            });
        }
        let mut out = Vec::new();
        while let Some(r) = calls.join_next().await {
            if let Ok(r) = r {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

fn with_auth(req: reqwest::RequestBuilder, headers: &HeaderMap) -> reqwest::RequestBuilder {
    match headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(v) => req.header(reqwest::header::AUTHORIZATION, v),
        None => req,
    }
}

/// Applies `change` to `id` here if this instance leads it (or the request was forwarded
/// already), else at the station's owner.
pub(super) async fn send_change(
    st: &ApiState,
    headers: &HeaderMap,
    id: &str,
    change: Change,
    user: &str,
) -> Result<Applied, ChangeError> {
    // An acknowledgement is for this instance's alarm book (`ack_at` found the holder).
    let Some(peers) = st
        .peers
        .as_ref()
        .filter(|_| !matches!(change, Change::AckAlarm { .. }))
    else {
        return st.changes.send(id, change, user).await;
    };
    if !st.stations.iter().any(|s| s.id.as_str() == id) {
        return Err(ChangeError::UnknownStation(id.to_owned()));
    }
    let view = peers.view.borrow().clone();
    let p = partition_of(id, view.partitions);
    if view.led.contains_key(&p) || headers.contains_key(FORWARDED) {
        return st.changes.send(id, change, user).await;
    }
    let owner = view
        .table
        .get(p as usize)
        .and_then(|r| r.leader.clone())
        .ok_or_else(|| {
            ChangeError::Unavailable(format!("no instance leads station {id} now; try again"))
        })?;
    let base = Peers::url_of(&view, &owner).ok_or_else(|| {
        ChangeError::Unavailable(format!(
            "the owner of station {id}, {owner}, is not a member now"
        ))
    })?;
    let req = peers
        .http
        .post(format!("{base}/api/v1/cluster/apply/{id}"))
        .header(FORWARDED, view.name.as_str())
        .json(&change);
    let resp = with_auth(req, headers).send().await.map_err(|e| {
        ChangeError::Unavailable(format!(
            "cannot reach {owner}, the owner of station {id}: {e}"
        ))
    })?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return serde_json::from_value(body["applied"].clone())
            .map_err(|e| ChangeError::Unavailable(format!("{owner} answered oddly: {e}")));
    }
    let msg = body["error"].as_str().unwrap_or("").to_owned();
    Err(match status {
        StatusCode::NOT_FOUND => ChangeError::UnknownStation(id.to_owned()),
        StatusCode::UNPROCESSABLE_ENTITY => ChangeError::Limit(
            msg.strip_prefix("refused by safety limit: ")
                .unwrap_or(&msg)
                .to_owned(),
        ),
        StatusCode::BAD_REQUEST => ChangeError::Invalid(
            msg.strip_prefix("invalid change: ")
                .unwrap_or(&msg)
                .to_owned(),
        ),
        _ => ChangeError::Unavailable(format!("{owner}: {msg}")),
    })
}

/// The fleet's station rows: each station's row from the instance that leads it (`"epoch"`
/// not null), else this instance's; plus the members that did not answer.
pub(super) async fn fleet_rows(
    peers: &Peers,
    headers: &HeaderMap,
    local: Vec<Value>,
) -> (Vec<Value>, Vec<String>) {
    let mut rows = local;
    let mut unreachable = Vec::new();
    for (name, answer) in peers.gather("/api/v1/stations?local=1", headers).await {
        let theirs = match answer {
            Ok(v) => v["stations"].as_array().cloned().unwrap_or_default(),
            Err(e) => {
                unreachable.push(format!("{name}: {e}"));
                continue;
            }
        };
        for row in theirs.into_iter().filter(|r| !r["epoch"].is_null()) {
            if let Some(mine) = rows.iter_mut().find(|r| r["id"] == row["id"]) {
                if mine["epoch"].is_null() {
                    *mine = row;
                }
            }
        }
    }
    (rows, unreachable)
}

/// Tags every alarm of an alarms view (`active`, `recent`) with the instance holding it.
pub(super) fn tag(alarms: &mut Value, instance: &str) {
    for list in ["active", "recent"] {
        if let Some(a) = alarms[list].as_array_mut() {
            for alarm in a {
                alarm["instance"] = Value::from(instance);
            }
        }
    }
}

/// Adds every number in `theirs` to the same place in `mine` (counters of several
/// instances); an age takes the larger of the two.
pub(super) fn add_counts(mine: &mut Value, theirs: &Value) {
    match (mine, theirs) {
        (Value::Object(m), Value::Object(t)) => {
            for (k, tv) in t {
                match m.get_mut(k) {
                    Some(mv) if k.ends_with("_age_s") => {
                        if tv.as_f64() > mv.as_f64() {
                            *mv = tv.clone();
                        }
                    }
                    Some(mv) => add_counts(mv, tv),
                    None => {
                        m.insert(k.clone(), tv.clone());
                    }
                }
            }
        }
        (m @ Value::Number(_), Value::Number(t)) => {
            let sum = m.as_f64().unwrap_or(0.0) + t.as_f64().unwrap_or(0.0);
            *m = match (m.as_u64(), t.as_u64()) {
                (Some(a), Some(b)) => Value::from(a + b),
                _ => Value::from(sum),
            };
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_of_several_instances_add_up() {
        let mut a = serde_json::json!({"stations": {"led": 10, "online": 9},
            "ingest": {"readings_per_s": 1.5, "rejects_by_reason": {"range": 1}},
            "storage": {"oldest_point_age_s": 3}});
        let b = serde_json::json!({"stations": {"led": 5, "online": 5},
            "ingest": {"readings_per_s": 2.0, "rejects_by_reason": {"range": 2, "json": 1}},
            "storage": {"oldest_point_age_s": 7}});
        add_counts(&mut a, &b);
        assert_eq!(a["stations"]["led"], 15);
        assert_eq!(a["ingest"]["readings_per_s"], 3.5);
        assert_eq!(
            a["ingest"]["rejects_by_reason"],
            serde_json::json!({"range": 3, "json": 1})
        );
        assert_eq!(a["storage"]["oldest_point_age_s"], 7);
    }
}
