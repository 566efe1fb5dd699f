//! The engine's address and token, and one request to its API with the CLI's exit codes.
//!
//! Where it sits: every operator verb ([`super`]) and `top` ([`super::top`]) reach the engine
//! through a [`Remote`].

use std::time::Duration;

use serde_json::Value;

#[derive(clap::Args, Debug, Clone)]
pub struct Remote {
    /// Base URL of the engine's API.
    #[arg(
        long,
        env = "HEATGRID_API",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub api: String,
    /// Bearer token (never shown in logs).
    #[arg(long, env = "HEATGRID_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

/// A verb that failed: its exit code (2 other, 3 unreachable, 4 refused) and the message.
#[derive(Debug)]
pub struct Failure(pub u8, pub String);

/// One request to the engine's API; the JSON answer, or the failure with its exit code.
pub async fn call(
    remote: &Remote,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, Failure> {
    call_within(remote, method, path, body, Duration::from_secs(10)).await
}

/// [`call`] with its own time limit (a report reads a period from the database).
pub async fn call_within(
    remote: &Remote,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    limit: Duration,
) -> Result<Value, Failure> {
    let base = remote.api.trim_end_matches('/');
    let url = format!("{base}{path}");
    let http = reqwest::Client::builder()
        .timeout(limit)
        .build()
        .map_err(|e| Failure(2, e.to_string()))?;
    let mut req = http.request(method, &url);
    if let Some(t) = &remote.token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.map_err(|e| {
        Failure(
            3,
            format!("engine unreachable at {base}: {}", root_cause(&e)),
        )
    })?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(v);
    }
    let msg = v["error"].as_str().unwrap_or("no detail").to_owned();
    Err(Failure(
        if status.is_client_error() { 4 } else { 2 },
        match status.as_u16() {
            401 => format!("unauthorized: {msg} (set --token or HEATGRID_TOKEN)"),
            403 => format!("forbidden: {msg}"),
            _ => msg,
        },
    ))
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
