//! Validation of the engine-wide tables: `[engine]`, `[mqtt]`, `[storage]`, `[api]`,
//! `[coordinator]`. Each function checks one table, pushes every problem with its place, and
//! returns the stage's settings (or `None` where a problem leaves nothing to build).

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use super::raw::{RawApi, RawCoordinator, RawEngine, RawMqtt, RawStorage, RawTls};
use super::{Env, Errors};
use crate::api::auth::{ApiSettings, ApiToken};
use crate::control::coordinator::CoordinatorConfig;
use crate::files::TlsPem;
use crate::ingest::mqtt::{MqttConfig, MqttVersion};
use crate::store::influx::{InfluxApi, InfluxConfig};
use crate::store::spool::FsyncPolicy;
use crate::store::StorageConfig;

pub(super) fn engine(e: &RawEngine, v: &mut Errors) {
    v.positive("engine.tick_s", e.tick_s);
    v.positive("engine.staleness_s", e.staleness_s);
    v.positive("engine.time_scale", e.time_scale);
    v.check(
        e.staleness_s >= e.tick_s,
        "engine.staleness_s: must be at least engine.tick_s",
    );
    v.check(
        f64::from(e.command_valid_for_s) > e.tick_s,
        "engine.command_valid_for_s: must exceed engine.tick_s, or every command expires before the next",
    );
    v.check(
        e.max_payload_bytes >= 256,
        "engine.max_payload_bytes: must be at least 256",
    );
}

pub(super) fn mqtt(m: &RawMqtt, env: Env<'_>, v: &mut Errors) -> MqttConfig {
    let version = match m.version.as_str() {
        "3.1.1" | "4" | "v4" => Some(MqttVersion::V311),
        "5" | "v5" => Some(MqttVersion::V5),
        other => {
            v.push(format!("mqtt.version: {other:?} is not \"3.1.1\" or \"5\""));
            None
        }
    };
    v.check(!m.host.is_empty(), "mqtt.host: must not be empty");
    v.check(m.telemetry_qos <= 1, "mqtt.telemetry_qos: must be 0 or 1");
    v.check(
        !m.topic_prefix.is_empty()
            && !m.topic_prefix.contains(['+', '#'])
            && !m.topic_prefix.ends_with('/'),
        "mqtt.topic_prefix: must be non-empty, without wildcards or a trailing '/'",
    );
    let credentials = credentials("mqtt", &m.username, &m.password_env, env, v);

    MqttConfig {
        host: m.host.clone(),
        port: m.port,
        version: version.unwrap_or(MqttVersion::V311),
        client_id: m.client_id.clone(),
        topic_prefix: m.topic_prefix.clone(),
        telemetry_qos: m.telemetry_qos,
        keep_alive: Duration::from_secs(m.keep_alive_s.max(5)),
        ack_after_spool: m.ack_after_spool,
        watchdog: Duration::from_secs_f64(m.watchdog_s.max(1.0)),
        credentials,
        tls: m.tls.as_ref().and_then(|t| tls("mqtt.tls", t, v)),
    }
}

/// A user name and its password from an environment variable (`{place}.username`,
/// `{place}.password_env`); a user without a password gets an empty one.
pub(super) fn credentials(
    place: &str,
    user: &Option<String>,
    password_env: &Option<String>,
    env: Env<'_>,
    v: &mut Errors,
) -> Option<(String, String)> {
    match (user, password_env) {
        (Some(u), Some(var)) => v
            .secret(&format!("{place}.password_env"), var, env)
            .map(|p| (u.clone(), p)),
        (Some(u), None) => Some((u.clone(), String::new())),
        (None, Some(_)) => {
            v.push(format!("{place}.password_env: set {place}.username too"));
            None
        }
        (None, None) => None,
    }
}

/// The PEM files of a TLS table (`[mqtt.tls]`, `[cluster.tls]`: `place`), read now.
pub(super) fn tls(place: &str, t: &RawTls, v: &mut Errors) -> Option<TlsPem> {
    let mut read = |what: &str, p: &Path| {
        std::fs::read(p)
            .map_err(|e| v.push(format!("{place}.{what}: cannot read {}: {e}", p.display())))
            .ok()
    };
    let ca_pem = read("ca_file", &t.ca_file);
    let client_auth = match (&t.client_cert_file, &t.client_key_file) {
        (Some(c), Some(k)) => Some((read("client_cert_file", c), read("client_key_file", k))),
        (None, None) => None,
        _ => {
            v.push(format!(
                "{place}: give both client_cert_file and client_key_file, or neither"
            ));
            None
        }
    };
    match (ca_pem, client_auth) {
        (Some(ca_pem), None) => Some(TlsPem {
            ca_pem,
            client_auth: None,
        }),
        (Some(ca_pem), Some((Some(c), Some(k)))) => Some(TlsPem {
            ca_pem,
            client_auth: Some((c, k)),
        }),
        _ => None,
    }
}

pub(super) fn storage(s: &RawStorage, env: Env<'_>, v: &mut Errors) -> StorageConfig {
    v.check(s.batch_size > 0, "storage.batch_size: must be positive");
    v.check(
        s.max_spool_mb >= 1,
        "storage.max_spool_mb: must be at least 1",
    );
    v.check(
        (1..=1024).contains(&s.segment_mb),
        "storage.segment_mb: must be within 1..1024",
    );
    let fsync = match s.fsync.as_str() {
        "always" => Some(FsyncPolicy::Always),
        "interval" => Some(FsyncPolicy::Interval(Duration::from_millis(
            s.fsync_interval_ms.max(1),
        ))),
        "never" => Some(FsyncPolicy::Never),
        other => {
            v.push(format!(
                "storage.fsync: {other:?} is not \"always\", \"interval\" or \"never\""
            ));
            None
        }
    };
    v.check(
        s.flush_interval_ms > 0,
        "storage.flush_interval_ms: must be positive",
    );
    StorageConfig {
        batch_size: s.batch_size,
        flush_interval: Duration::from_millis(s.flush_interval_ms),
        max_spool_bytes: s.max_spool_mb.saturating_mul(1 << 20),
        segment_bytes: s.segment_mb.saturating_mul(1 << 20),
        fsync: fsync.unwrap_or(FsyncPolicy::Never),
        influxdb: s.influxdb.as_ref().and_then(|i| influx(i, env, v)),
    }
}

fn influx(i: &super::raw::RawInflux, env: Env<'_>, v: &mut Errors) -> Option<InfluxConfig> {
    let ok_url = v.http_url("storage.influxdb.url", &i.url);
    v.positive("storage.influxdb.timeout_s", i.timeout_s);
    let history_url = i
        .history_url
        .as_ref()
        .filter(|u| v.http_url("storage.influxdb.history_url", u));
    let api = match i.api.as_deref().unwrap_or("v2") {
        "v2" => influx_v2(i, env, v),
        "v1" => influx_v1(i, env, v),
        other => {
            v.push(format!(
                "storage.influxdb.api: {other:?} is not \"v2\" (InfluxDB 2 and 3, VictoriaMetrics) \
                 or \"v1\" (InfluxDB 1.x)"
            ));
            None
        }
    }?;
    ok_url.then(|| InfluxConfig {
        url: i.url.trim_end_matches('/').to_owned(),
        api,
        timeout: Duration::from_secs_f64(i.timeout_s.max(0.001)),
        history_url: history_url.map(|u| u.trim_end_matches('/').to_owned()),
    })
}

/// Keys of the other API's, refused with the key to use instead.
fn foreign_keys(api: &str, keys: &[(&str, &str, bool)], v: &mut Errors) {
    for (key, hint, given) in keys {
        v.check(
            !given,
            format!("storage.influxdb.{key}: not a setting of api = \"{api}\" ({hint})"),
        );
    }
}

fn influx_v2(i: &super::raw::RawInflux, env: Env<'_>, v: &mut Errors) -> Option<InfluxApi> {
    foreign_keys(
        "v2",
        &[
            ("database", "v1's; v2 has bucket", i.database.is_some()),
            ("retention_policy", "v1's", i.retention_policy.is_some()),
            ("user_env", "v1's; v2 has token_env", i.user_env.is_some()),
            (
                "password_env",
                "v1's; v2 has token_env",
                i.password_env.is_some(),
            ),
        ],
        v,
    );
    let org = i.org.clone().unwrap_or_default();
    let bucket = i.bucket.clone().unwrap_or_default();
    v.check(
        !bucket.is_empty(),
        "storage.influxdb.bucket: required with api = \"v2\"",
    );
    let token = match &i.token_env {
        Some(var) => v.secret("storage.influxdb.token_env", var, env)?,
        None => String::new(),
    };
    Some(InfluxApi::V2 { org, bucket, token })
}

fn influx_v1(i: &super::raw::RawInflux, env: Env<'_>, v: &mut Errors) -> Option<InfluxApi> {
    foreign_keys(
        "v1",
        &[
            ("org", "v2's", i.org.is_some()),
            ("bucket", "v2's; v1 has database", i.bucket.is_some()),
            (
                "token_env",
                "v2's; v1 has user_env and password_env",
                i.token_env.is_some(),
            ),
        ],
        v,
    );
    let database = i.database.clone().unwrap_or_default();
    v.check(
        !database.is_empty(),
        "storage.influxdb.database: required with api = \"v1\"",
    );
    let credentials = match (&i.user_env, &i.password_env) {
        (None, None) => None,
        (Some(u), Some(p)) => Some((
            v.secret("storage.influxdb.user_env", u, env)?,
            v.secret("storage.influxdb.password_env", p, env)?,
        )),
        _ => {
            v.push("storage.influxdb: give both user_env and password_env, or neither".into());
            None
        }
    };
    Some(InfluxApi::V1 {
        database,
        retention_policy: i.retention_policy.clone().filter(|r| !r.is_empty()),
        credentials,
    })
}

pub(super) fn api(a: &RawApi, env: Env<'_>, v: &mut Errors) -> ApiSettings {
    let listen = if a.listen.is_empty() {
        None
    } else {
        a.listen
            .parse()
            .map_err(|e| v.push(format!("api.listen: {:?}: {e}", a.listen)))
            .ok()
    };
    ApiSettings {
        listen,
        tokens: tokens(a, env, v),
    }
}

/// `[[api.token]]`: each token's hash, from its environment variable or given as hex.
fn tokens(a: &RawApi, env: Env<'_>, v: &mut Errors) -> Vec<ApiToken> {
    let mut tokens = Vec::new();
    let mut names = HashSet::new();
    for (i, t) in a.tokens.iter().enumerate() {
        let place = format!("api.token[{i}] {:?}", t.name);
        v.check(
            !t.name.is_empty(),
            format!("{place}.name: must not be empty"),
        );
        v.check(
            names.insert(t.name.clone()),
            format!("{place}.name: duplicate token name"),
        );
        let hash = match (&t.token_env, &t.token_sha256) {
            (Some(var), None) => match env(var) {
                Some(tok) if tok.len() >= 16 => Some(crate::api::auth::sha256(tok.as_bytes())),
                Some(_) => {
                    v.push(format!(
                        "{place}.token_env: the token in {var} must be at least 16 characters"
                    ));
                    None
                }
                None => {
                    v.push(format!(
                        "{place}.token_env: environment variable {var} is not set"
                    ));
                    None
                }
            },
            (None, Some(hex)) => match crate::api::auth::parse_sha256_hex(hex) {
                Some(h) => Some(h),
                None => {
                    v.push(format!("{place}.token_sha256: must be 64 hex characters"));
                    None
                }
            },
            _ => {
                v.push(format!(
                    "{place}: give exactly one of token_env and token_sha256"
                ));
                None
            }
        };
        if let Some(sha256) = hash {
            tokens.push(ApiToken {
                name: t.name.clone(),
                role: t.role,
                sha256,
            });
        }
    }
    tokens
}

pub(super) fn coordinator(c: &RawCoordinator, v: &mut Errors) -> Option<CoordinatorConfig> {
    for (place, x) in [
        ("coordinator.period_s", c.period_s),
        ("coordinator.filter_tau_s", c.filter_tau_s),
    ] {
        v.positive(place, x);
    }
    v.check(
        c.gain_k_per_h.is_finite() && c.gain_k_per_h >= 0.0,
        "coordinator.gain_k_per_h: must be 0 or more",
    );
    v.check(
        (0.0..=20.0).contains(&c.max_offset_k),
        "coordinator.max_offset_k: must be within 0..20 K",
    );
    v.check(
        (0.0..=10.0).contains(&c.max_rate_k_per_h),
        "coordinator.max_rate_k_per_h: must be within 0..10 K/h (it is meant to act over hours)",
    );
    v.check(
        (0.0..50.0).contains(&c.dead_band_pct),
        "coordinator.dead_band_pct: must be within 0..50",
    );
    v.check(
        c.indoor_target_c.is_none_or(|t| (10.0..=26.0).contains(&t)),
        "coordinator.indoor_target_c: must be within 10..26 °C",
    );
    v.check(
        c.min_stations >= 1,
        "coordinator.min_stations: must be at least 1",
    );
    c.enabled.then(|| CoordinatorConfig {
        period_s: c.period_s,
        filter_tau_s: c.filter_tau_s,
        gain_k_per_h: c.gain_k_per_h,
        max_offset_k: c.max_offset_k,
        max_rate_k_per_h: c.max_rate_k_per_h,
        dead_band: c.dead_band_pct / 100.0,
        indoor_target_c: c.indoor_target_c,
        min_stations: c.min_stations,
    })
}
