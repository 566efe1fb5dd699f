//! The operators' control room: HTTP API and CLI verbs end to end against a running engine
//! with simulated stations (mosquitto), storing in VictoriaMetrics.

use std::process::Command;
use std::time::Duration;

use heatgrid::app;
use heatgrid::config::Config;
use heatgrid_sim::SimConfig;

use crate::util::{self, error_k};

const OPERATOR: &str = "alice-operator-token-0123456789";
const VIEWER: &str = "bob-viewer-token-0123456789";

struct Cli {
    api: String,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Cli {
    async fn run(&self, token: Option<&str>, args: &[&str]) -> Out {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_heatgrid"));
        cmd.args(args)
            .env("HEATGRID_API", &self.api)
            .env_remove("HEATGRID_TOKEN");
        if let Some(t) = token {
            cmd.env("HEATGRID_TOKEN", t);
        }
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.run(Some(VIEWER), args).await;
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        serde_json::from_str(&out.stdout).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_sees_the_fleet_changes_a_station_and_finds_it_in_the_audit_trail() {
    let broker = util::mosquitto();
    let vm = util::victoria_metrics();
    let dir = tempfile::tempdir().unwrap();
    let speed = 20.0;
    let mut text = format!(
        "[engine]\ndata_dir = {:?}\ntick_s = {}\nstaleness_s = 2\ncommand_valid_for_s = 30\ntime_scale = {speed}\n\
         [mqtt]\nport = {}\nclient_id = \"engine-operator\"\n[storage]\nflush_interval_ms = 200\n\
         [storage.influxdb]\nurl = \"http://127.0.0.1:{}\"\norg = \"o\"\nbucket = \"b\"\nhistory_url = \"http://127.0.0.1:{}\"\n\
         [api]\nlisten = \"127.0.0.1:0\"\n\
         [[api.token]]\nname = \"alice\"\nrole = \"operator\"\ntoken_env = \"T_ALICE\"\n\
         [[api.token]]\nname = \"bob\"\nrole = \"viewer\"\ntoken_env = \"T_BOB\"\n",
        dir.path().display().to_string(),
        5.0 / speed,
        broker.port,
        vm.port,
        vm.port
    );
    for (i, district) in [(1, "north"), (2, "north"), (3, "south")] {
        text.push_str(&format!(
            "[[station]]\nid = \"st-{i:03}\"\nsupply_max_c = 70\ntags = {{ district = \"{district}\" }}\n"
        ));
    }
    let env = |k: &str| match k {
        "T_ALICE" => Some(OPERATOR.to_owned()),
        "T_BOB" => Some(VIEWER.to_owned()),
        _ => None,
    };
    let engine = app::start(Config::parse(&text, &env).unwrap())
        .await
        .unwrap();
    let cli = Cli {
        api: format!("http://{}", engine.api_addr().unwrap()),
    };
    let sim = heatgrid_sim::spawn(SimConfig {
        port: broker.port,
        stations: 3,
        speed,
        ..SimConfig::default()
    })
    .await;
    assert!(
        util::eventually(Duration::from_secs(60), || engine
            .status()
            .iter()
            .all(|s| error_k(s).is_some_and(|e| e < 1.0)))
        .await,
        "fleet did not settle"
    );

    // Read verbs, human and JSON.
    let out = cli.run(Some(VIEWER), &["status"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("3 total, 3 online, 0 stale"),
        "{}",
        out.stdout
    );
    let rate = cli.json(&["status", "--json"]).await["ingest"]["readings_per_s"]
        .as_f64()
        .unwrap();
    assert!(
        rate > 1.0,
        "ingest rate {rate}/s (3 stations at 4 readings/s)"
    );
    assert_eq!(
        cli.json(&["status", "--json"]).await["stations"]["total"],
        3
    );
    let out = cli.run(Some(VIEWER), &["stations"]).await;
    assert_eq!(out.code, 0);
    assert_eq!(
        out.stdout
            .lines()
            .filter(|l| l.trim_start().starts_with("st-"))
            .count(),
        3,
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.lines().all(|l| l.chars().count() <= 80),
        "stations table wider than 80 columns:\n{}",
        out.stdout
    );
    let rows = cli.json(&["stations", "--json"]).await;
    assert_eq!(rows["stations"].as_array().unwrap().len(), 3);
    let out = cli.run(Some(VIEWER), &["station", "st-002"]).await;
    assert!(
        out.stdout.contains("limits    supply 30..70 °C"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.lines().all(|l| l.chars().count() <= 80),
        "{}",
        out.stdout
    );
    let st2 = cli.json(&["station", "st-002", "--json"]).await;
    assert!(
        st2["controller"]["valve_loop"]["output"].is_number(),
        "{st2}"
    );

    // An operator change reaches the station as a command, the audit log and the TSDB.
    let out = cli
        .run(Some(OPERATOR), &["set", "st-001", "--offset", "3"])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        "st-001: offset +0 K, curve -> offset +3 K, curve"
    );
    let raised = util::eventually(Duration::from_secs(30), || {
        let snap = sim.snapshot();
        match (snap[0].commanded_setpoint_c, snap[1].commanded_setpoint_c) {
            (Some(a), Some(b)) => a - b > 2.9,
            _ => false,
        }
    })
    .await;
    assert!(raised, "the offset never reached st-001 as a command");
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    let rec: serde_json::Value = serde_json::from_str(audit.lines().next().unwrap()).unwrap();
    assert_eq!(
        (
            rec["user"].as_str(),
            rec["station"].as_str(),
            rec["action"].as_str()
        ),
        (Some("alice"), Some("st-001"), Some("set_supply"))
    );
    assert_eq!(rec["after"], "offset +3 K, curve");
    let actions = util::vm_wait_total(
        vm.port,
        "operator_action_detail",
        1,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(actions, 1, "operator_action in the TSDB");

    // The station's history read back from the database (the web trend after a restart):
    // supply and setpoint in every step that has them, oldest first.
    let http = reqwest::Client::new();
    let history = |path: &'static str| {
        let (http, url) = (http.clone(), format!("{}{path}", cli.api));
        async move {
            let _ = http
                .get(format!("http://127.0.0.1:{}/internal/force_flush", vm.port))
                .send()
                .await;
            let v: serde_json::Value = http
                .get(url)
                .bearer_auth(VIEWER)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let points = v["points"].as_array()?.clone();
            let full = points
                .iter()
                .filter(|p| p["supply_temp_c"].is_f64() && p["supply_setpoint_c"].is_f64())
                .count();
            (v["source"] == "database" && full >= 3).then_some(points)
        }
    };
    let mut points = None;
    for _ in 0..60 {
        points = history("/api/v1/stations/st-001/history?hours=1&step_s=2").await;
        if points.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let points = points.expect("a history from the database");
    let times: Vec<i64> = points.iter().filter_map(|p| p["t_ms"].as_i64()).collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {times:?}"
    );

    // Refusals change nothing and say why on one line with a non-zero exit.
    let before = cli.json(&["station", "st-001", "--json"]).await["controller"].clone();
    let out = cli
        .run(Some(VIEWER), &["set", "st-001", "--offset", "1"])
        .await;
    assert_eq!(out.code, 4);
    assert!(
        out.stderr.contains("forbidden") && out.stderr.lines().count() == 1,
        "{}",
        out.stderr
    );
    let out = cli
        .run(Some(OPERATOR), &["set", "st-001", "--fixed", "95"])
        .await;
    assert_eq!(out.code, 4);
    assert!(
        out.stderr.contains("supply_min_c..supply_max_c = 30..70"),
        "{}",
        out.stderr
    );
    let out = cli
        .run(
            Some(OPERATOR),
            &["mode", "st-001", "manual", "--valve", "120", "--pump", "50"],
        )
        .await;
    assert_eq!(out.code, 4);
    assert!(
        out.stderr.contains("valve 120 % is outside"),
        "{}",
        out.stderr
    );
    let after = cli.json(&["station", "st-001", "--json"]).await;
    assert_eq!(
        after["controller"]["supply_offset_k"],
        before["supply_offset_k"]
    );
    assert_eq!(after["mode"], "auto");
    let out = cli.run(Some(OPERATOR), &["station", "st-999"]).await;
    assert!(
        out.code == 4 && out.stderr.contains("unknown station"),
        "{}",
        out.stderr
    );
    let out = cli.run(None, &["stations"]).await;
    assert!(
        out.code == 4 && out.stderr.contains("unauthorized"),
        "{}",
        out.stderr
    );
    let out = cli
        .run(Some("wrong-token-xxxxxxxxxxxxxxxx"), &["stations"])
        .await;
    assert!(
        out.code == 4 && out.stderr.contains("unknown token"),
        "{}",
        out.stderr
    );
    let down = Cli {
        api: format!("http://127.0.0.1:{}", util::free_port()),
    };
    let out = down.run(Some(VIEWER), &["status"]).await;
    assert!(
        out.code == 3 && out.stderr.contains("engine unreachable"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("audit.log"))
            .unwrap()
            .lines()
            .count(),
        1,
        "refusals are not changes"
    );

    // Station detail: acknowledgements, heat today, a short trend.
    assert!(
        util::eventually(Duration::from_secs(10), || engine.status()[1].acked_seq > 0).await,
        "the simulator acknowledges commands on …/ack"
    );
    let out = cli.run(Some(VIEWER), &["station", "st-002"]).await;
    assert!(out.stdout.contains("acknowledged up to"), "{}", out.stdout);
    assert!(
        out.stdout.contains("GJ since 00:00 UTC") && out.stdout.contains("trend     "),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(" W/m²)"), "{}", out.stdout);
    assert!(
        out.stdout.contains("today     supply ±1 K ") && out.stdout.contains(", 18–22 °C "),
        "{}",
        out.stdout
    );
    let st2 = cli.json(&["station", "st-002", "--json"]).await;
    assert!(
        st2["heat_today_gj"].as_f64().unwrap() > 0.0
            && !st2["trend"].as_array().unwrap().is_empty(),
        "{st2}"
    );
    // The day's KPIs from telemetry: the same heat, time covered, shares within 0..1, and the
    // simulator reports an indoor temperature, so the comfort share is there.
    let k = &st2["kpis_today"];
    assert_eq!(k["heat_gj"], st2["heat_today_gj"]);
    assert!(k["hours"].as_f64().unwrap() > 0.0, "{k}");
    for share in ["supply_within_1k", "indoor_comfort"] {
        assert!((0.0..=1.0).contains(&k[share].as_f64().unwrap()), "{k}");
    }
    assert!(k["pump_full_speed_h"].as_f64().unwrap() > 0.0, "{k}");

    // Filters, and a heating-curve change for a group (each station checked on its own limits).
    let out = cli
        .run(Some(VIEWER), &["stations", "--group", "district=north"])
        .await;
    assert_eq!(
        out.stdout
            .lines()
            .filter(|l| l.trim_start().starts_with("st-"))
            .count(),
        2,
        "{}",
        out.stdout
    );
    let out = cli.run(Some(VIEWER), &["stations", "--alarm"]).await;
    assert_eq!(
        out.stdout
            .lines()
            .filter(|l| l.trim_start().starts_with("st-"))
            .count(),
        0,
        "{}",
        out.stdout
    );
    let out = cli
        .run(
            Some(OPERATOR),
            &["set", "st-003", "--curve", "-10:80,10:40"],
        )
        .await;
    assert!(
        out.code == 4 && out.stderr.contains("curve point [-10, 80] is outside"),
        "{}",
        out.stderr
    );
    let out = cli
        .run(
            Some(OPERATOR),
            &[
                "set",
                "--group",
                "district=north",
                "--curve",
                "-10:62,0:49,10:35",
            ],
        )
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout
            .lines()
            .filter(|l| l.ends_with("-> -10:62,0:49,10:35"))
            .count(),
        2,
        "{}",
        out.stdout
    );
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert_eq!(audit.lines().filter(|l| l.contains("set_curve")).count(), 2);

    // Manual, then back to auto without a bump.
    let out = cli
        .run(
            Some(OPERATOR),
            &["mode", "st-003", "manual", "--valve", "45", "--pump", "70"],
        )
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let valve_of = |e: &app::EngineHandle| e.status()[2].outputs.map(|o| (o.mode, o.valve_pct));
    assert!(
        util::eventually(Duration::from_secs(10), || valve_of(&engine)
            == Some((heatgrid::model::Mode::Manual, 45.0)))
        .await
    );
    tokio::time::sleep(Duration::from_secs(2)).await; // the supply drifts away under the fixed valve
    let out = cli.run(Some(OPERATOR), &["mode", "st-003", "auto"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut first_auto = None;
    assert!(
        util::eventually(Duration::from_secs(10), || {
            first_auto = valve_of(&engine)
                .filter(|(m, _)| *m == heatgrid::model::Mode::Auto)
                .map(|(_, v)| v);
            first_auto.is_some()
        })
        .await
    );
    let v = first_auto.unwrap();
    assert!(
        (v - 45.0).abs() <= 2.0,
        "manual → auto bumped the valve from 45 % to {v} %"
    );

    // Prometheus metrics, behind the same tokens.
    let http = reqwest::Client::new();
    let metrics = http
        .get(format!("{}/metrics", cli.api))
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    for name in [
        "heatgrid_readings_accepted_total",
        "heatgrid_commands_sent_total",
        "heatgrid_storage_backlog_points",
        "heatgrid_control_tick_lateness_us",
        "heatgrid_stations_stale 0",
        // Latencies as histograms, not quantile gauges.
        "# TYPE heatgrid_control_latency_seconds histogram",
        "heatgrid_control_latency_seconds_bucket{le=\"+Inf\"}",
        "heatgrid_control_latency_seconds_sum",
    ] {
        assert!(text.contains(name), "{name} missing in /metrics:\n{text}");
    }
    assert_eq!(
        http.get(format!("{}/metrics", cli.api))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // `top` in a real terminal (tmux): the fleet is on screen, keys sort and filter, q quits.
    let session = format!("heatgrid-top-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(args)
            .output()
            .expect("tmux (installed by scripts/test.sh)")
    };
    let cmd = format!(
        "HEATGRID_API={} HEATGRID_TOKEN={VIEWER} {} top --interval-ms 300",
        cli.api,
        env!("CARGO_BIN_EXE_heatgrid")
    );
    assert!(tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "100",
        "-y",
        "30",
        &cmd
    ])
    .status
    .success());
    let screen = || {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout).into_owned()
    };
    let shows = |want: &[&str]| {
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        let mut last = String::new();
        let ok = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            last = screen();
            want.iter().all(|w| last.contains(w.as_str()))
        });
        (ok, last)
    };
    let (ok, s1) = tokio::task::block_in_place(|| {
        shows(&[
            "heatgrid top  3 stations",
            "st-001",
            "st-002",
            "st-003",
            "sort: id",
        ])
    });
    assert!(ok, "top screen:\n{s1}");
    let keys = |k: &str| {
        tmux(&["send-keys", "-t", &session, k]);
    };
    keys("s");
    let (ok, s2) = tokio::task::block_in_place(|| shows(&["sort: error"]));
    assert!(ok, "{s2}");
    keys("f");
    let (ok, s3) = tokio::task::block_in_place(|| shows(&["filter: attention"]));
    assert!(ok, "{s3}");
    assert!(
        !s3.contains("st-002"),
        "the attention filter hides stations in auto:\n{s3}"
    );
    keys("q");
    let gone = util::eventually(Duration::from_secs(5), || {
        !tmux(&["has-session", "-t", &session]).status.success()
    })
    .await;
    if !gone {
        tmux(&["kill-session", "-t", &session]);
    }
    assert!(gone, "top did not quit on q");

    sim.stop().await;
    engine.shutdown().await;
}
