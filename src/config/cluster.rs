//! Validation of `[cluster]`: where etcd is, who this instance is, how many partitions the
//! fleet is cut into, and how the other instances reach this one. Without the table the
//! engine runs alone, as it always has.

use std::time::Duration;

use super::raw::RawCluster;
use super::{Env, Errors};
use crate::cluster::membership::MemberSettings;

/// Checks `[cluster]`; `api_listen` is `api.listen` (empty: the API is off).
pub(super) fn cluster(
    c: &RawCluster,
    (api_listen, sessions): (&str, &str),
    env: Env<'_>,
    v: &mut Errors,
) -> Option<MemberSettings> {
    let n = v.0.len();
    v.check(
        !c.name.is_empty()
            && c.name.len() <= 64
            && c.name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)),
        "cluster.name: 1 to 64 characters from A-Z a-z 0-9 - _ .",
    );
    v.check(
        !c.etcd_endpoints.is_empty(),
        "cluster.etcd_endpoints: give at least one etcd client URL (all of the cluster's, ideally)",
    );
    for (k, e) in c.etcd_endpoints.iter().enumerate() {
        let https = e.starts_with("https://");
        v.check(
            https || e.starts_with("http://"),
            format!("cluster.etcd_endpoints[{k}]: {e:?} is not an http:// or https:// URL"),
        );
        v.check(
            !https || c.tls.is_some(),
            format!("cluster.etcd_endpoints[{k}]: https needs [cluster.tls] with the CA"),
        );
    }
    v.check(
        (1..=4096).contains(&c.partitions),
        "cluster.partitions: must be within 1..4096 (64 for a city, 512 for a province)",
    );
    v.check(
        c.lease_ttl_s.is_finite() && (2.0..=600.0).contains(&c.lease_ttl_s),
        "cluster.lease_ttl_s: must be within 2..600 seconds",
    );
    let api_addr = match &c.api_address {
        Some(a) => a.clone(),
        None => api_listen.to_owned(),
    };
    v.check(
        !api_listen.is_empty() && !api_addr.is_empty(),
        "cluster: the operator API must be on (api.listen): the instances forward operator changes to each other through it",
    );
    let credentials = super::sections::credentials("cluster", &c.username, &c.password_env, env, v);
    let tls = c
        .tls
        .as_ref()
        .and_then(|t| super::sections::tls("cluster.tls", t, v));
    if v.0.len() > n {
        return None;
    }
    Some(MemberSettings {
        endpoints: c.etcd_endpoints.clone(),
        name: c.name.clone(),
        partitions: c.partitions,
        sessions: sessions.to_owned(),
        lease_ttl: Duration::from_secs_f64(c.lease_ttl_s),
        api_addr,
        credentials,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const STATION: &str = "[[station]]\nid = \"s1\"\nheated_area_m2 = 1000\n";

    fn parse(cluster: &str) -> Result<Config, Vec<String>> {
        Config::parse(&format!("{cluster}\n{STATION}"), &|k| {
            (k == "ETCD_PW").then(|| "secret".to_owned())
        })
    }

    #[test]
    fn without_the_table_there_is_no_cluster() {
        assert!(parse("").unwrap().cluster.is_none());
    }

    #[test]
    fn a_good_table_gives_the_member_settings_with_defaults() {
        let c = parse(
            "[cluster]\nname = \"hg-a\"\netcd_endpoints = [\"http://127.0.0.1:2379\"]\n\
             username = \"heatgrid\"\npassword_env = \"ETCD_PW\"\n",
        )
        .unwrap()
        .cluster
        .unwrap();
        assert_eq!(c.partitions, 64);
        assert_eq!(c.lease_ttl.as_secs(), 10);
        assert_eq!(c.api_addr, "127.0.0.1:8080");
        assert_eq!(c.credentials, Some(("heatgrid".into(), "secret".into())));
    }

    #[test]
    fn every_mistake_is_reported_with_its_place() {
        let errors = parse(
            "[api]\nlisten = \"\"\n[cluster]\nname = \"a b\"\netcd_endpoints = [\"127.0.0.1:2379\", \"https://x:2379\"]\n\
             partitions = 0\nlease_ttl_s = 1\npassword_env = \"NOPE\"\n[coordinator]\nenabled = true\n",
        )
        .unwrap_err();
        for place in [
            "cluster.name",
            "cluster.etcd_endpoints[0]",
            "cluster.etcd_endpoints[1]: https needs [cluster.tls]",
            "cluster.partitions",
            "cluster.lease_ttl_s",
            "cluster: the operator API must be on",
            "cluster.password_env: set cluster.username too",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(place)),
                "{place} not in {errors:#?}"
            );
        }
    }
}
