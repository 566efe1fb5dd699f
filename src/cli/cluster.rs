//! `heatgrid cluster`: the instances sharing the fleet, which partitions each leads and
//! stands by for, and this instance's last takeovers (`--json`: the API's JSON unchanged).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use reqwest::Method;
use serde_json::Value;

use super::remote::{call, Failure, Remote};
use super::render::{pretty, table};

pub(super) async fn cluster(
    remote: &Remote,
    json: bool,
    partitions: bool,
) -> Result<String, Failure> {
    let v = call(remote, Method::GET, "/api/v1/cluster", None).await?;
    if json {
        return Ok(pretty(&v));
    }
    Ok(render(&v, partitions))
}

fn render(v: &Value, partitions: bool) -> String {
    let rows = v["table"].as_array().cloned().unwrap_or_default();
    let (mut leads, mut standby) = (
        BTreeMap::<&str, usize>::new(),
        BTreeMap::<&str, usize>::new(),
    );
    let mut leaderless = 0;
    for r in &rows {
        match r["leader"].as_str() {
            Some(l) => *leads.entry(l).or_default() += 1,
            None => leaderless += 1,
        }
        if let Some(s) = r["standby"].get(0).and_then(Value::as_str) {
            *standby.entry(s).or_default() += 1;
        }
    }
    let members = v["members"].as_array().cloned().unwrap_or_default();
    let mut out =
        format!(
        "instance  {} ({}), {} members, {} partitions ({} without a leader), lease TTL {} s\n\n",
        v["name"].as_str().unwrap_or("?"),
        if v["joined"] == true { "member" } else { "NOT a member now" },
        members.len(),
        rows.len(),
        leaderless,
        v["lease_ttl_s"],
    );
    let mut t = table(&["member", "api", "leads", "standby for"]);
    for m in &members {
        let name = m[0].as_str().unwrap_or("?");
        t.add_row(vec![
            name.to_owned(),
            m[1].as_str().unwrap_or("").to_owned(),
            leads.get(name).copied().unwrap_or(0).to_string(),
            standby.get(name).copied().unwrap_or(0).to_string(),
        ]);
    }
    let _ = writeln!(out, "{t}");
    if let Some(c) = v["district_coordinator"].as_str() {
        let _ = writeln!(out, "district coordinator on {c} (partition 0's leader)");
    }
    if partitions {
        let mut t = table(&["partition", "leader", "epoch", "standby"]);
        for r in &rows {
            t.add_row(vec![
                r["partition"].to_string(),
                r["leader"].as_str().unwrap_or("-").to_owned(),
                r["epoch"].as_u64().map_or("-".into(), |e| e.to_string()),
                r["standby"]
                    .as_array()
                    .map(|s| {
                        s.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default(),
            ]);
        }
        let _ = writeln!(out, "\n{t}");
    }
    out.push_str(&takeovers(v));
    out
}

/// This instance's last takeovers, newest first (at most 10).
fn takeovers(v: &Value) -> String {
    let list = v["takeovers"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "\nno takeovers by this instance yet\n".into();
    }
    let mut t = table(&["partition", "epoch", "at (UTC)", "from", "waited s"]);
    for k in list.iter().rev().take(10) {
        let at = k["at_ms"]
            .as_i64()
            .and_then(|ms| {
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
            })
            .map(|d| {
                format!(
                    "{} {:02}:{:02}:{:02}",
                    d.date(),
                    d.hour(),
                    d.minute(),
                    d.second()
                )
            })
            .unwrap_or_default();
        t.add_row(vec![
            k["partition"].to_string(),
            k["epoch"].to_string(),
            at,
            k["from"].as_str().unwrap_or("(nobody)").to_owned(),
            format!("{:.2}", k["waited_ms"].as_f64().unwrap_or(0.0) / 1000.0),
        ]);
    }
    format!("\nlast takeovers by this instance (newest first)\n{t}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_leads_and_standbys_per_member() {
        let v = serde_json::json!({
            "name": "a", "joined": true, "lease_ttl_s": 10.0, "partitions": 3,
            "members": [["a", "127.0.0.1:1"], ["b", "127.0.0.1:2"]],
            "table": [
                {"partition": 0, "leader": "a", "epoch": 7, "standby": ["b"]},
                {"partition": 1, "leader": "b", "epoch": 9, "standby": ["a"]},
                {"partition": 2, "leader": null, "epoch": null, "standby": []},
            ],
            "led": {"0": 7},
            "district_coordinator": "a",
            "takeovers": [{"partition": 0, "epoch": 7, "at_ms": 0, "from": null, "waited_ms": 40}],
        });
        let out = render(&v, true);
        assert!(
            out.contains("2 members, 3 partitions (1 without a leader)"),
            "{out}"
        );
        let a = out
            .lines()
            .find(|l| l.trim_start().starts_with("a "))
            .unwrap();
        assert_eq!(
            a.split_whitespace().collect::<Vec<_>>(),
            ["a", "127.0.0.1:1", "1", "1"]
        );
        assert!(out.contains("1970-01-01 00:00:00"), "{out}");
        assert!(out.contains("(nobody)"), "{out}");
        assert!(out.contains("district coordinator on a"), "{out}");
    }
}
