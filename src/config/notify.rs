//! Validation of `[notify]`: the alarm notifications' channels (`[[notify.webhook]]`,
//! `[[notify.email]]`), their routes (`[[notify.route]]`) and the grouping, into
//! [`NotifyConfig`]. Secrets come from the environment; every mistake is named with its place.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::{Env, Errors};
use crate::alarms::{AlarmKind, Severity};
use crate::notify::{
    Channel, ChannelKind, EmailConfig, EmailTls, NotifyConfig, Route, WebhookConfig,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawNotify {
    group_wait_s: f64,
    group_max_s: f64,
    flood_threshold: usize,
    max_attempts: u32,
    #[serde(rename = "webhook")]
    webhooks: Vec<RawWebhook>,
    #[serde(rename = "email")]
    emails: Vec<RawEmail>,
    #[serde(rename = "route")]
    routes: Vec<RawRoute>,
}

impl Default for RawNotify {
    fn default() -> Self {
        Self {
            group_wait_s: 10.0,
            group_max_s: 60.0,
            flood_threshold: 10,
            max_attempts: 8,
            webhooks: Vec::new(),
            emails: Vec::new(),
            routes: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    name: String,
    url: String,
    secret_env: Option<String>,
    #[serde(default = "ten")]
    timeout_s: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    name: String,
    server: String,
    port: Option<u16>,
    #[serde(default = "starttls")]
    tls: String,
    ca_file: Option<std::path::PathBuf>,
    user_env: Option<String>,
    password_env: Option<String>,
    from: String,
    to: Vec<String>,
    #[serde(default = "thirty")]
    timeout_s: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    #[serde(default)]
    severity: Vec<Severity>,
    #[serde(default)]
    kind: Vec<AlarmKind>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    to: Vec<String>,
    #[serde(default = "yes")]
    cleared: bool,
    escalate_after_min: Option<f64>,
    #[serde(default)]
    escalate_to: Vec<String>,
}

fn ten() -> f64 {
    10.0
}
fn thirty() -> f64 {
    30.0
}
fn yes() -> bool {
    true
}
fn starttls() -> String {
    "starttls".into()
}

/// `[notify]`, or `None` when it names no channel.
pub(super) fn notify(
    n: &RawNotify,
    env: Env<'_>,
    base: &Path,
    v: &mut Errors,
) -> Option<NotifyConfig> {
    v.positive("notify.group_wait_s", n.group_wait_s);
    v.positive("notify.group_max_s", n.group_max_s);
    v.check(
        n.group_max_s >= n.group_wait_s,
        "notify.group_max_s: must be at least group_wait_s",
    );
    v.check(
        n.max_attempts >= 1,
        "notify.max_attempts: must be at least 1",
    );
    let mut channels = Vec::new();
    let mut names = HashSet::new();
    let secret =
        |place: &str, var: &Option<String>, v: &mut Errors| v.secret(place, var.as_ref()?, env);
    for (i, w) in n.webhooks.iter().enumerate() {
        let place = format!("notify.webhook[{i}] {:?}", w.name);
        v.check(
            names.insert(w.name.clone()),
            format!("{place}.name: another channel has this name"),
        );
        v.http_url(&format!("{place}.url"), &w.url);
        v.positive(&format!("{place}.timeout_s"), w.timeout_s);
        let key = secret(&format!("{place}.secret_env"), &w.secret_env, v);
        channels.push(Channel {
            name: w.name.clone(),
            kind: ChannelKind::Webhook(WebhookConfig {
                url: w.url.clone(),
                secret: key,
                timeout: Duration::from_secs_f64(w.timeout_s.clamp(0.001, 3600.0)),
            }),
        });
    }
    for (i, e) in n.emails.iter().enumerate() {
        let place = format!("notify.email[{i}] {:?}", e.name);
        v.check(
            names.insert(e.name.clone()),
            format!("{place}.name: another channel has this name"),
        );
        v.check(
            !e.server.is_empty(),
            format!("{place}.server: must not be empty"),
        );
        let tls = match e.tls.as_str() {
            "starttls" => EmailTls::StartTls,
            "tls" => EmailTls::Tls,
            "none" => EmailTls::None,
            other => {
                v.push(format!(
                    "{place}.tls: {other:?} is not \"starttls\", \"tls\" or \"none\""
                ));
                EmailTls::StartTls
            }
        };
        let ca_pem = e.ca_file.as_ref().and_then(|f| {
            let path = base.join(f);
            std::fs::read(&path)
                .map_err(|err| {
                    v.push(format!(
                        "{place}.ca_file: cannot read {}: {err}",
                        path.display()
                    ))
                })
                .ok()
        });
        let credentials =
            match (&e.user_env, &e.password_env) {
                (None, None) => None,
                (Some(_), Some(_)) => secret(&format!("{place}.user_env"), &e.user_env, v)
                    .zip(secret(&format!("{place}.password_env"), &e.password_env, v)),
                _ => {
                    v.push(format!(
                        "{place}: give both user_env and password_env, or neither"
                    ));
                    None
                }
            };
        v.check(
            credentials.is_none() || tls != EmailTls::None || is_loopback(&e.server),
            format!("{place}: a password is sent only over TLS (tls = \"none\" is for a relay on loopback)"),
        );
        for a in std::iter::once(&e.from).chain(&e.to) {
            if let Err(err) = crate::notify::valid_mailbox(a) {
                v.push(format!("{place}: not a mail address: {err}"));
            }
        }
        v.check(
            !e.to.is_empty(),
            format!("{place}.to: name at least one recipient"),
        );
        v.positive(&format!("{place}.timeout_s"), e.timeout_s);
        channels.push(Channel {
            name: e.name.clone(),
            kind: ChannelKind::Email(EmailConfig {
                server: e.server.clone(),
                port: e.port.unwrap_or(match tls {
                    EmailTls::Tls => 465,
                    EmailTls::StartTls => 587,
                    EmailTls::None => 25,
                }),
                tls,
                ca_pem,
                credentials,
                from: e.from.clone(),
                to: e.to.clone(),
                timeout: Duration::from_secs_f64(e.timeout_s.clamp(0.001, 3600.0)),
            }),
        });
    }
    let index = |place: &str, list: &[String], v: &mut Errors| -> Vec<usize> {
        list.iter()
            .filter_map(|name| {
                let i = channels.iter().position(|c| &c.name == name);
                if i.is_none() {
                    v.push(format!("{place}: no channel is named {name:?}"));
                }
                i
            })
            .collect()
    };
    let mut routes = Vec::new();
    for (i, r) in n.routes.iter().enumerate() {
        let place = format!("notify.route[{i}]");
        let to = index(&format!("{place}.to"), &r.to, v);
        let escalate_to = index(&format!("{place}.escalate_to"), &r.escalate_to, v);
        v.check(
            !to.is_empty() || !escalate_to.is_empty(),
            format!("{place}: names no channel (to, escalate_to)"),
        );
        v.check(
            r.escalate_after_min.is_some() != r.escalate_to.is_empty(),
            format!("{place}: give both escalate_after_min and escalate_to, or neither"),
        );
        if let Some(m) = r.escalate_after_min {
            v.positive(&format!("{place}.escalate_after_min"), m);
        }
        routes.push(Route {
            severities: r.severity.clone(),
            kinds: r.kind.clone(),
            tags: r.tags.clone(),
            to,
            cleared: r.cleared,
            escalate_after: r
                .escalate_after_min
                .filter(|m| m.is_finite() && *m > 0.0)
                .map(|m| Duration::from_secs_f64(m * 60.0)),
            escalate_to,
        });
    }
    v.check(
        channels.is_empty() || !routes.is_empty(),
        "notify: channels are configured but no [[notify.route]] sends anything to them",
    );
    (!channels.is_empty()).then(|| NotifyConfig {
        channels,
        routes,
        group_wait: Duration::from_secs_f64(n.group_wait_s.clamp(0.001, 3600.0)),
        group_max: Duration::from_secs_f64(n.group_max_s.clamp(0.001, 3600.0)),
        flood_threshold: n.flood_threshold,
        max_attempts: n.max_attempts.max(1),
    })
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

#[cfg(test)]
#[path = "notify_tests.rs"]
mod tests;
