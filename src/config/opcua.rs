//! `[[opcua.server]]` and a station's `opcua = { … }`: servers checked (endpoint, security,
//! certificates, identity with its secrets from the environment or files), node maps read
//! and validated once per file however many stations use them.
//!
//! Where it sits: called by [`super`] for the servers and by [`super::station`] for each
//! station with an `opcua` table; the results are `ingest::opcua`'s settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::raw_opcua::{RawOpcua, RawServer, RawStationOpcua};
use super::{Env, Errors};
use crate::ingest::opcua::map::NodeMap;
use crate::ingest::opcua::{Identity, Mode, Security, ServerConfig, StationNodes};
use crate::model::StationId;

/// Node maps read so far, by path (`None`: refused).
pub(super) type NodeMaps = BTreeMap<PathBuf, Option<Arc<NodeMap>>>;

/// Every `[[opcua.server]]`, validated; `data_dir` holds each one's certificate store.
pub(super) fn servers(
    raw: &RawOpcua,
    data_dir: &Path,
    base: &Path,
    env: Env<'_>,
    v: &mut Errors,
) -> Vec<ServerConfig> {
    let mut out: Vec<ServerConfig> = Vec::new();
    for (i, s) in raw.server.iter().enumerate() {
        let place = format!("opcua.server[{i}] {:?}", s.name);
        if let Some(c) = server(s, &place, data_dir, base, env, v) {
            if out.iter().any(|o| o.name == c.name) {
                v.push(format!("{place}.name: another server has this name"));
            }
            out.push(c);
        }
    }
    out
}

fn server(
    s: &RawServer,
    place: &str,
    data_dir: &Path,
    base: &Path,
    env: Env<'_>,
    v: &mut Errors,
) -> Option<ServerConfig> {
    let n = v.0.len();
    v.check(
        !s.name.is_empty()
            && s.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        format!("{place}.name: letters, digits, - and _ only (it names a directory)"),
    );
    let host = s
        .endpoint
        .strip_prefix("opc.tcp://")
        .and_then(|rest| rest.split('/').next())
        .filter(|h| !h.is_empty());
    v.check(
        host.is_some_and(|h| match h.rsplit_once(':') {
            Some((name, port)) => !name.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
            None => true,
        }),
        format!(
            "{place}.endpoint: {:?} is not opc.tcp://host[:port][/path]",
            s.endpoint
        ),
    );
    let loopback = host.is_some_and(|h| {
        let name = h.rsplit_once(':').map_or(h, |(n, _)| n);
        name == "localhost" || name.starts_with("127.") || name == "[::1]"
    });
    let file = |p: &PathBuf| base.join(p);
    let security = match s.security.as_str() {
        "none" => Security::None,
        "sign_encrypt" => Security::SignEncrypt,
        other => {
            v.push(format!(
                "{place}.security: {other:?} is neither \"none\" nor \"sign_encrypt\" (Basic256Sha256)"
            ));
            Security::None
        }
    };
    let server_certificate = s.server_certificate.as_ref().map(file);
    if security == Security::SignEncrypt {
        v.check(
            server_certificate.is_some(),
            format!("{place}.server_certificate: required with sign_encrypt: the server's certificate (DER or PEM) is the only one trusted"),
        );
    }
    for (key, p) in [
        ("server_certificate", &server_certificate),
        (
            "client_certificate",
            &s.client_certificate.as_ref().map(file),
        ),
        (
            "client_private_key",
            &s.client_private_key.as_ref().map(file),
        ),
        (
            "identity_certificate",
            &s.identity_certificate.as_ref().map(file),
        ),
        (
            "identity_private_key",
            &s.identity_private_key.as_ref().map(file),
        ),
    ] {
        if let Some(p) = p {
            v.check(
                p.is_file(),
                format!("{place}.{key}: {} is not a readable file", p.display()),
            );
        }
    }
    let client_certificate = match (&s.client_certificate, &s.client_private_key) {
        (Some(c), Some(k)) => Some((file(c), file(k))),
        (None, None) => None,
        _ => {
            v.push(format!(
                "{place}.client_certificate: give both client_certificate and client_private_key, or neither (one is made on first start)"
            ));
            None
        }
    };
    let identity = identity(
        s,
        place,
        loopback || security == Security::SignEncrypt,
        base,
        env,
        v,
    );
    let mode = match s.mode.as_str() {
        "subscribe" => Mode::Subscribe,
        "poll" => Mode::Poll,
        m => {
            v.push(format!(
                "{place}.mode: {m:?} is neither \"subscribe\" nor \"poll\""
            ));
            Mode::Subscribe
        }
    };
    v.check(
        s.interval_s.is_finite() && s.interval_s >= 0.05,
        format!("{place}.interval_s: must be at least 0.05"),
    );
    v.check(
        (100..=60_000).contains(&s.timeout_ms),
        format!("{place}.timeout_ms: must be 100–60000"),
    );
    if v.0.len() > n {
        return None;
    }
    Some(ServerConfig {
        name: s.name.clone(),
        endpoint: s.endpoint.clone(),
        security,
        server_certificate,
        client_certificate,
        application_uri: s.application_uri.clone(),
        identity: identity?,
        mode,
        interval: Duration::from_secs_f64(s.interval_s),
        timeout: Duration::from_millis(s.timeout_ms),
        pki_dir: data_dir.join("opcua").join(&s.name),
    })
}

/// Anonymous, a user with a password (from the environment or a file), or a certificate.
/// `protected`: the password does not cross a network in the clear (encrypted channel, or a
/// loopback endpoint).
fn identity(
    s: &RawServer,
    place: &str,
    protected: bool,
    base: &Path,
    env: Env<'_>,
    v: &mut Errors,
) -> Option<Identity> {
    let user = match (&s.user, &s.user_env) {
        (Some(u), None) => Some(u.clone()),
        (None, Some(var)) => v.secret(&format!("{place}.user_env"), var, env),
        (None, None) => None,
        (Some(_), Some(_)) => {
            v.push(format!("{place}.user: give user or user_env, not both"));
            None
        }
    };
    let password = match (&s.password_env, &s.password_file) {
        (Some(var), None) => v.secret(&format!("{place}.password_env"), var, env),
        (None, Some(p)) => match std::fs::read_to_string(base.join(p)) {
            Ok(t) => Some(t.trim_end_matches(['\n', '\r']).to_owned()),
            Err(e) => {
                v.push(format!("{place}.password_file: {}: {e}", p.display()));
                None
            }
        },
        (None, None) => None,
        (Some(_), Some(_)) => {
            v.push(format!(
                "{place}.password_env: give password_env or password_file, not both"
            ));
            None
        }
    };
    let cert = match (&s.identity_certificate, &s.identity_private_key) {
        (Some(c), Some(k)) => Some((base.join(c), base.join(k))),
        (None, None) => None,
        _ => {
            v.push(format!(
                "{place}.identity_certificate: give both identity_certificate and identity_private_key"
            ));
            return None;
        }
    };
    let named = s.user.is_some() || s.user_env.is_some();
    let secret = s.password_env.is_some() || s.password_file.is_some();
    match (named || secret, cert) {
        (false, None) => Some(Identity::Anonymous),
        (false, Some((cert, key))) => Some(Identity::Certificate { cert, key }),
        (true, Some(_)) => {
            v.push(format!(
                "{place}: give a user and password or an identity certificate, not both"
            ));
            None
        }
        (true, None) => {
            v.check(
                named && secret,
                format!("{place}.user: a user needs a password (password_env or password_file), and a password a user"),
            );
            v.check(
                protected,
                format!("{place}.password_env: a password would cross the network in the clear with security = \"none\"; use sign_encrypt"),
            );
            Some(Identity::User {
                user: user?,
                password: password?,
            })
        }
    }
}

/// A station's `opcua` table: its server (by name) and its node map (read once per file).
pub(super) fn station(
    o: &RawStationOpcua,
    id: &StationId,
    servers: &[ServerConfig],
    base: &Path,
    maps: &mut NodeMaps,
    place: &str,
    v: &mut Errors,
) -> Option<(usize, StationNodes)> {
    let place = format!("{place}.opcua");
    let server = servers.iter().position(|s| s.name == o.server);
    if server.is_none() {
        v.push(format!(
            "{place}.server: no [[opcua.server]] is named {:?}",
            o.server
        ));
    }
    let map = v.map_file(
        maps,
        (base.join(&o.map), "node map"),
        NodeMap::parse,
        &place,
    );
    let node = o.node.clone().unwrap_or_else(|| id.as_str().to_owned());
    if let Some(m) = &map {
        for n in &m.nodes {
            if let Err(e) = m.node_id(n, &node, 0) {
                v.push(format!("{place}.node: {e}"));
            }
        }
    }
    Some((
        server?,
        StationNodes {
            station: id.clone(),
            node,
            map: map?,
        },
    ))
}
