//! Energy reports against figures computed by hand on a small stored series, read from each
//! place the engine can keep it: VictoriaMetrics (PromQL), InfluxDB 1.6 (InfluxQL) and the
//! engine's own line-protocol files; through the API (JSON) and `heatgrid report` (CSV, HTML).

use std::path::Path;
use std::time::Duration;

use heatgrid::config::Config;
use serde_json::Value;

use crate::influx_v1::{create_heat, ADMIN};
use crate::util;

/// 2026-12-01T00:00:00Z.
const T0: i64 = 1_796_083_200_000;
const HOUR: i64 = 3_600_000;

/// Three hours of two stations, six readings an hour (at 5, 15 … 55 min), each hour's values
/// constant: a has two hours (indoor 20 and 23 °C, 1,000 m²), b three (400 m², no indoor, no
/// outdoor in its third); a raised two alarms and cleared one. Hand-computed in
/// `report::tests` of the library for the same hours.
fn series() -> String {
    let mut lines = String::new();
    let hours: [(&str, i64, &str); 5] = [
        ("a", 0, "supply_temp_c=70,return_temp_c=50,heat_kw=100,outdoor_temp_c=-2,indoor_temp_c=20,heated_area_m2=1000"),
        ("a", 1, "supply_temp_c=72,return_temp_c=48,heat_kw=200,outdoor_temp_c=-4,indoor_temp_c=23,heated_area_m2=1000"),
        ("b", 0, "supply_temp_c=60,return_temp_c=45,heat_kw=50,outdoor_temp_c=0,heated_area_m2=400"),
        ("b", 1, "supply_temp_c=62,return_temp_c=45,heat_kw=50,outdoor_temp_c=-2,heated_area_m2=400"),
        ("b", 2, "supply_temp_c=64,return_temp_c=45,heat_kw=50,heated_area_m2=400"),
    ];
    for (station, h, fields) in hours {
        for k in 0..6 {
            let ts = T0 + h * HOUR + (5 + 10 * k) * 60_000;
            lines.push_str(&format!("telemetry,station={station} {fields} {ts}\n"));
        }
    }
    for (active, m) in [(true, 7), (false, 30), (true, 95)] {
        lines.push_str(&format!(
            "alarm,station=a,kind=stale,severity=major active={active},message=\"no telemetry\",value=1,id=3i {}\n",
            T0 + m * 60_000
        ));
    }
    lines
}

fn close(v: &Value, want: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() < 1e-6)
}

/// The hand-computed figures (see `report::tests`).
fn check(r: &Value, source: &str) {
    let dd = 40.0 / 24.0;
    let st = |id: &str| {
        r["stations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["station"] == id)
            .unwrap_or_else(|| panic!("{source}: no row for {id}: {r}"))
            .clone()
    };
    let (a, b, c, d) = (st("a"), st("b"), st("c"), &r["district"]);
    let ok = [
        ("degree-days", close(&r["degree_days"], dd)),
        ("a heat", close(&a["heat_gj"], 1.08)),
        ("a GJ/m²", close(&a["gj_per_m2"], 0.00108)),
        (
            "a per degree-day",
            close(&a["gj_per_degree_day"], 1.08 / dd),
        ),
        ("a supply", close(&a["supply_mean_c"], 71.0)),
        ("a ΔT", close(&a["delta_t_mean_k"], 22.0)),
        ("a comfort", close(&a["comfort"], 0.5)),
        ("a coverage", close(&a["coverage"], 2.0 / 3.0)),
        ("a alarms", a["alarms"] == 2),
        ("b heat", close(&b["heat_gj"], 0.54)),
        (
            "b above the fleet",
            close(&b["above_fleet_pct"], 100.0 / 6.0),
        ),
        ("b coverage", close(&b["coverage"], 1.0)),
        ("b comfort", b["comfort"].is_null()),
        ("c", close(&c["heat_gj"], 0.0) && close(&c["coverage"], 0.0)),
        ("district heat", close(&d["heat_gj"], 1.62)),
        ("district area", close(&d["area_m2"], 1400.0)),
        ("district alarms", d["alarms"] == 2),
        (
            "league",
            r["league"][0]["station"] == "b" && r["league"].as_array().unwrap().len() == 1,
        ),
    ];
    let wrong: Vec<&str> = ok
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(what, _)| *what)
        .collect();
    assert!(wrong.is_empty(), "{source}: wrong {wrong:?} in {r:#}");
}

fn config(dir: &Path, mqtt: u16, storage: &str) -> Config {
    let text = format!(
        "[engine]\ndata_dir = {:?}\n[mqtt]\nport = {mqtt}\nclient_id = \"engine-report-{}\"\n{storage}\
         [[station]]\nid = \"a\"\n[[station]]\nid = \"b\"\n[[station]]\nid = \"c\"\n",
        dir.display().to_string(),
        util::free_port(),
    );
    let env = |k: &str| match k {
        "IU" => Some(ADMIN.0.to_owned()),
        "IP" => Some(ADMIN.1.to_owned()),
        _ => None,
    };
    Config::parse(&text, &env).unwrap_or_else(|e| panic!("{e:#?}"))
}

/// The report of the three hours through the API.
async fn report(api: &str, format: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!(
            "{api}/api/v1/report?from=2026-12-01T00:00:00Z&to=2026-12-01T03:00:00Z&format={format}"
        ))
        .bearer_auth(util::VIEWER_TOKEN)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_matches_the_hand_computed_figures_from_every_source() {
    let broker = util::mosquitto();
    let lines = series();
    let http = reqwest::Client::new();

    // VictoriaMetrics, through the v2 write API; read back with PromQL.
    let vm = util::victoria_metrics();
    util::vm_write(vm.port, lines.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let storage = format!(
        "[storage.influxdb]\nurl = \"http://127.0.0.1:{0}\"\norg = \"o\"\nbucket = \"b\"\n\
         history_url = \"http://127.0.0.1:{0}\"\n",
        vm.port
    );
    let (engine, api) = util::start_viewed(config(dir.path(), broker.port, &storage)).await;
    let mut r = Value::Null;
    // The database indexes what it was given within a second or two.
    for _ in 0..40 {
        r = report(&api, "json").await.json().await.unwrap();
        if r["district"]["heat_gj"].as_f64().is_some_and(|h| h > 1.6) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    check(&r, "VictoriaMetrics");
    assert!(
        r["source"].as_str().unwrap().contains("PromQL"),
        "{}",
        r["source"]
    );
    // The CLI: CSV and the printable page, from the same report.
    let csv = tokio::task::spawn_blocking({
        let api = api.clone();
        move || {
            util::viewer_cli(
                &api,
                &[
                    "report",
                    "--from",
                    "2026-12-01T00:00:00Z",
                    "--to",
                    "2026-12-01T03:00:00Z",
                ],
            )
        }
    })
    .await
    .unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 5, "{csv}");
    assert!(rows[1].starts_with("a,1.080,1000,0.001080,"), "{csv}");
    assert!(rows[4].starts_with("district,1.620,1400,"), "{csv}");
    let page = dir.path().join("report.html");
    let said = tokio::task::spawn_blocking({
        let api = api.clone();
        let page = page.clone();
        move || {
            util::viewer_cli(
                &api,
                &[
                    "report",
                    "--from",
                    "2026-12-01",
                    "--to",
                    "2026-12-01T03:00:00Z",
                    "--format",
                    "html",
                    "--out",
                    page.to_str().unwrap(),
                ],
            )
        }
    })
    .await
    .unwrap();
    assert!(said.contains("report written"), "{said}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("+16.7 %") && html.contains("<td>district</td>"),
        "{html}"
    );
    // A period the API refuses, with the reason.
    let refused = reqwest::Client::new()
        .get(format!("{api}/api/v1/report?from=2026-12-02&to=2026-12-01"))
        .bearer_auth(util::VIEWER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 400);
    engine.shutdown().await;

    // InfluxDB 1.6, through its own write API; read back with InfluxQL.
    let influx_dir = tempfile::tempdir().unwrap();
    let influx_port = util::free_port();
    let _influx = util::start_influxdb(influx_dir.path(), influx_port);
    create_heat(influx_port).await;
    let wrote = http
        .post(format!(
            "http://127.0.0.1:{influx_port}/write?db=heat&precision=ms"
        ))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .body(lines.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(wrote.status().as_u16(), 204);
    let dir = tempfile::tempdir().unwrap();
    let storage = format!(
        "[storage.influxdb]\napi = \"v1\"\nurl = \"http://127.0.0.1:{influx_port}\"\n\
         database = \"heat\"\nuser_env = \"IU\"\npassword_env = \"IP\"\n"
    );
    let (engine, api) = util::start_viewed(config(dir.path(), broker.port, &storage)).await;
    let r: Value = report(&api, "json").await.json().await.unwrap();
    check(&r, "InfluxDB 1.6");
    assert!(
        r["source"].as_str().unwrap().contains("InfluxQL"),
        "{}",
        r["source"]
    );
    engine.shutdown().await;

    // No database: the engine's own files.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("lp")).unwrap();
    std::fs::write(dir.path().join("lp/points-2026-12-01.lp"), &lines).unwrap();
    let (engine, api) = util::start_viewed(config(dir.path(), broker.port, "")).await;
    let r: Value = report(&api, "json").await.json().await.unwrap();
    check(&r, "files");
    assert!(
        r["source"].as_str().unwrap().contains("files"),
        "{}",
        r["source"]
    );
    let csv = report(&api, "csv").await;
    assert_eq!(
        csv.headers()["content-type"].to_str().unwrap(),
        "text/csv; charset=utf-8"
    );
    engine.shutdown().await;
}
