//! The few etcd v3 calls the cluster makes, over etcd's JSON gateway (`POST /v3/...` on the
//! client port) with the HTTP client the engine already has for InfluxDB.
//!
//! Where it sits: under [`super::membership`], [`super::ownership`] and [`super::state`], which
//! are the only users. Why not a gRPC client: the Rust ones generate their code from etcd's
//! `.proto` files at build time, so every build of heatgrid needed `protoc`, a system tool a new
//! user does not have (issue 27). The gateway is part of every etcd since 3.4, speaks the same
//! requests in JSON (keys and values in base64, 64-bit integers as strings), and needs nothing
//! beyond what we build already.
//!
//! What is here: lease grant, keep-alive (one request, one answer) and revoke; ranges (by
//! prefix, sorted by creation revision); delete; transactions that compare creation revisions
//! and put or get; the member status (for tests that look for the Raft leader); password
//! authentication (the token is fetched at connect and again when etcd says it expired).
//! Endpoints are tried in turn from the one that last answered: a request that cannot reach
//! one node goes to the next.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use crate::files::TlsPem;

/// Why a request to etcd failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// No endpoint could be reached (the last transport error).
    #[error("no etcd endpoint reachable ({0})")]
    Unreachable(String),
    /// An endpoint answered with an error (etcd's message).
    #[error("etcd refused the request: {0}")]
    Refused(String),
    /// An answer that is not what the gateway sends.
    #[error("etcd's answer could not be read: {0}")]
    BadAnswer(String),
    /// The client could not be set up (a TLS file that is not PEM, no endpoint).
    #[error("cannot set up the etcd client: {0}")]
    Setup(String),
}

/// How to reach etcd.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    pub connect_timeout: Option<Duration>,
    /// Each request's limit.
    pub timeout: Option<Duration>,
    /// User and password, if etcd has authentication on.
    pub credentials: Option<(String, String)>,
    /// The CA to trust for `https://` endpoints, and the client's certificate and key.
    pub tls: Option<TlsPem>,
}

/// One key with its value and creation revision. Keys and values that are not UTF-8 are
/// never returned (heatgrid writes none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    pub create_revision: i64,
}

/// A transaction: if every compare holds, the success operations run, else the failure ones.
#[derive(Debug, Default)]
pub struct Txn {
    compare: Vec<Value>,
    success: Vec<Value>,
    failure: Vec<Value>,
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }

    /// Compares `key`'s creation revision with `revision` (0: the key does not exist).
    pub fn when_created_at(mut self, key: &str, revision: i64) -> Self {
        self.compare.push(json!({
            "key": B64.encode(key),
            "result": "EQUAL",
            "target": "CREATE",
            "create_revision": revision.to_string(),
        }));
        self
    }

    /// On success, puts `key` = `value`, on `lease` if given.
    pub fn and_put(mut self, key: &str, value: &str, lease: Option<i64>) -> Self {
        self.success.push(put_op(key, value, lease));
        self
    }

    /// On failure, reads `key`.
    pub fn or_get(mut self, key: &str) -> Self {
        self.failure
            .push(json!({ "request_range": { "key": B64.encode(key) } }));
        self
    }
}

fn put_op(key: &str, value: &str, lease: Option<i64>) -> Value {
    let mut put = json!({ "key": B64.encode(key), "value": B64.encode(value) });
    if let Some(l) = lease {
        put["lease"] = Value::String(l.to_string());
    }
    json!({ "request_put": put })
}

/// What a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResponse {
    pub succeeded: bool,
    /// The keys each get operation of the branch that ran found, in order.
    pub ranges: Vec<Vec<KeyValue>>,
}

/// An etcd client: cheap to clone, every clone shares the endpoints and the token.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    endpoints: Vec<String>,
    /// The endpoint that answered last: tried first.
    current: AtomicUsize,
    credentials: Option<(String, String)>,
    token: Mutex<Option<String>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("etcd::Client")
            .field("endpoints", &self.inner.endpoints)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `endpoints` (`http://host:port` or `https://…`). With credentials it signs
    /// in at once, so a wrong password is an error here; without, nothing is sent yet.
    pub async fn connect<S: AsRef<str>>(
        endpoints: &[S],
        opts: ConnectOptions,
    ) -> Result<Self, Error> {
        let endpoints: Vec<String> = endpoints
            .iter()
            .map(|e| e.as_ref().trim_end_matches('/').to_owned())
            .collect();
        if endpoints.is_empty() {
            return Err(Error::Setup("no endpoint given".into()));
        }
        let mut b = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout.unwrap_or(Duration::from_secs(2)))
            .timeout(opts.timeout.unwrap_or(Duration::from_secs(5)));
        if let Some(t) = &opts.tls {
            let ca = reqwest::Certificate::from_pem(&t.ca_pem)
                .map_err(|e| Error::Setup(format!("the CA certificate: {e}")))?;
            b = b.tls_built_in_root_certs(false).add_root_certificate(ca);
            if let Some((cert, key)) = &t.client_auth {
                let mut pem = cert.clone();
                pem.push(b'\n');
                pem.extend_from_slice(key);
                let id = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| Error::Setup(format!("the client certificate or key: {e}")))?;
                b = b.identity(id);
            }
        }
        let http = b.build().map_err(|e| Error::Setup(e.to_string()))?;
        let client = Self {
            inner: Arc::new(Inner {
                http,
                endpoints,
                current: AtomicUsize::new(0),
                credentials: opts.credentials,
                token: Mutex::new(None),
            }),
        };
        if client.inner.credentials.is_some() {
            client.authenticate().await?;
        }
        Ok(client)
    }

    /// Grants a lease of `ttl_s` seconds; its id.
    pub async fn lease_grant(&self, ttl_s: i64) -> Result<i64, Error> {
        let v = self.call("lease/grant", &json!({ "TTL": ttl_s })).await?;
        match int(&v["ID"]) {
            0 => Err(Error::BadAnswer(format!("a lease without an id: {v}"))),
            id => Ok(id),
        }
    }

    /// Renews `lease` once; the TTL etcd gives it now (0: the lease has expired).
    pub async fn lease_keep_alive(&self, lease: i64) -> Result<i64, Error> {
        let v = self
            .call("lease/keepalive", &json!({ "ID": lease.to_string() }))
            .await?;
        if let Some(e) = v.get("error") {
            return Err(Error::Refused(message(e)));
        }
        Ok(int(&v["result"]["TTL"]))
    }

    /// Revokes `lease`: every key on it is deleted now.
    pub async fn lease_revoke(&self, lease: i64) -> Result<(), Error> {
        self.call("lease/revoke", &json!({ "ID": lease.to_string() }))
            .await
            .map(drop)
    }

    /// Every key that starts with `prefix`, by creation revision (oldest first).
    pub async fn get_prefix(&self, prefix: &str) -> Result<Vec<KeyValue>, Error> {
        let body = json!({
            "key": B64.encode(prefix),
            "range_end": B64.encode(prefix_end(prefix.as_bytes())),
            "sort_order": "ASCEND",
            "sort_target": "CREATE",
        });
        let v = self.call("kv/range", &body).await?;
        Ok(kvs(&v))
    }

    /// Deletes `key` (nothing happens if it is absent).
    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        self.call("kv/deleterange", &json!({ "key": B64.encode(key) }))
            .await
            .map(drop)
    }

    /// Runs `txn`.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse, Error> {
        let body = json!({
            "compare": txn.compare,
            "success": txn.success,
            "failure": txn.failure,
        });
        let v = self.call("kv/txn", &body).await?;
        let ranges = v["responses"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .filter_map(|r| field(r, "response_range", "responseRange"))
                    .map(kvs)
                    .collect()
            })
            .unwrap_or_default();
        Ok(TxnResponse {
            succeeded: v["succeeded"].as_bool().unwrap_or(false),
            ranges,
        })
    }

    /// The answering member's id and the id of the Raft leader it knows (0: none).
    pub async fn status(&self) -> Result<(u64, u64), Error> {
        let v = self.call("maintenance/status", &json!({})).await?;
        let member = field(&v["header"], "member_id", "memberId").map_or(0, uint);
        Ok((member, uint(&v["leader"])))
    }

    async fn authenticate(&self) -> Result<(), Error> {
        let Some((name, password)) = &self.inner.credentials else {
            return Ok(());
        };
        let body = json!({ "name": name, "password": password });
        let v = self.post("auth/authenticate", &body, false).await?;
        let token = v["token"]
            .as_str()
            .ok_or_else(|| Error::BadAnswer(format!("no token in {v}")))?;
        *self.inner.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.to_owned());
        Ok(())
    }

    /// One request; with credentials, signs in again once if etcd says the token is no good.
    async fn call(&self, path: &str, body: &Value) -> Result<Value, Error> {
        match self.post(path, body, true).await {
            Err(Error::Refused(m)) if self.inner.credentials.is_some() && is_token_error(&m) => {
                self.authenticate().await?;
                self.post(path, body, true).await
            }
            other => other,
        }
    }

    /// POSTs `body` to `/v3/{path}`, trying each endpoint in turn from the last that answered.
    async fn post(&self, path: &str, body: &Value, with_token: bool) -> Result<Value, Error> {
        let n = self.inner.endpoints.len();
        let first = self.inner.current.load(Ordering::Relaxed);
        let token = with_token
            .then(|| {
                self.inner
                    .token
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
            })
            .flatten();
        let mut last = String::new();
        for i in 0..n {
            let at = (first + i) % n;
            let url = format!("{}/v3/{path}", self.inner.endpoints[at]);
            let mut req = self.inner.http.post(&url).json(body);
            if let Some(t) = &token {
                req = req.header("Authorization", t);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = if e.is_timeout() {
                        format!("{url}: no answer in time")
                    } else {
                        format!("{url}: {e}")
                    };
                    continue;
                }
            };
            let status = resp.status();
            let bytes = match resp.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    last = format!("{url}: {e}");
                    continue;
                }
            };
            self.inner.current.store(at, Ordering::Relaxed);
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
                Error::BadAnswer(format!(
                    "{url} ({status}): {e}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ))
            })?;
            if status.is_success() {
                return Ok(v);
            }
            return Err(Error::Refused(message(&v)));
        }
        Err(Error::Unreachable(last))
    }
}

fn is_token_error(message: &str) -> bool {
    message.contains("invalid auth token") || message.contains("user name is empty")
}

/// etcd's error message in a gateway error body (`{"error": …, "message": …, "code": …}`).
fn message(v: &Value) -> String {
    v["message"]
        .as_str()
        .or(v["error"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string())
}

/// `obj[snake]`, or `obj[camel]` (gateways differ in which names they print).
fn field<'a>(obj: &'a Value, snake: &str, camel: &str) -> Option<&'a Value> {
    obj.get(snake).or_else(|| obj.get(camel))
}

/// A 64-bit integer as the gateway prints it (a string) or as a number; 0 when absent (the
/// gateway leaves out fields that hold their default).
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// An unsigned 64-bit integer (member ids use the whole range); 0 when absent.
fn uint(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    let bytes = B64.decode(v?.as_str().unwrap_or("")).ok()?;
    String::from_utf8(bytes).ok()
}

/// The keys of a range answer.
fn kvs(v: &Value) -> Vec<KeyValue> {
    let Some(list) = v["kvs"].as_array() else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|kv| {
            Some(KeyValue {
                key: text(kv.get("key"))?,
                // An empty value is left out of the answer.
                value: text(kv.get("value")).unwrap_or_default(),
                create_revision: field(kv, "create_revision", "createRevision").map_or(0, int),
            })
        })
        .collect()
}

/// The end of the range of keys that start with `prefix`: the prefix with its last byte below
/// 0xff incremented (and what follows dropped); `\0` (every key) if there is none.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_at_its_last_byte_plus_one() {
        assert_eq!(prefix_end(b"heatgrid/part/"), b"heatgrid/part0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn integers_come_as_strings_or_numbers_and_default_to_zero() {
        assert_eq!(int(&json!("7587862054421418756")), 7587862054421418756);
        assert_eq!(int(&json!(10)), 10);
        assert_eq!(int(&Value::Null), 0);
        assert_eq!(int(&json!("x")), 0);
        // Member ids use all 64 bits.
        assert_eq!(
            uint(&json!("13660934810076835675")),
            13_660_934_810_076_835_675
        );
    }

    #[test]
    fn a_range_answer_is_decoded_and_non_utf8_keys_are_left_out() {
        let v = json!({ "kvs": [
            { "key": B64.encode("heatgrid/members/a"), "value": B64.encode("127.0.0.1:1"),
              "create_revision": "12" },
            { "key": B64.encode([0xffu8, 0xfe]), "value": B64.encode("x") },
            { "key": B64.encode("k"), "createRevision": "3" },
        ]});
        assert_eq!(
            kvs(&v),
            vec![
                KeyValue {
                    key: "heatgrid/members/a".into(),
                    value: "127.0.0.1:1".into(),
                    create_revision: 12
                },
                KeyValue {
                    key: "k".into(),
                    value: String::new(),
                    create_revision: 3
                },
            ]
        );
        assert!(kvs(&json!({})).is_empty());
    }

    #[test]
    fn a_transaction_is_written_as_the_gateway_reads_it() {
        let t = Txn::new()
            .when_created_at("k", 0)
            .and_put("k", "v", Some(255))
            .or_get("k");
        assert_eq!(
            t.compare,
            vec![json!({"key": "aw==", "result": "EQUAL", "target": "CREATE",
                        "create_revision": "0"})]
        );
        assert_eq!(
            t.success,
            vec![json!({"request_put": {"key": "aw==", "value": "dg==", "lease": "255"}})]
        );
        assert_eq!(t.failure, vec![json!({"request_range": {"key": "aw=="}})]);
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_an_error_that_names_it() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let c = Client::connect(&[format!("http://127.0.0.1:{port}")], Default::default())
            .await
            .unwrap();
        match c.lease_grant(5).await {
            Err(Error::Unreachable(m)) => assert!(m.contains(&port.to_string()), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Client::connect::<&str>(&[], Default::default()).await,
            Err(Error::Setup(_))
        ));
    }
}
