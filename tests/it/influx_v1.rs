//! InfluxDB 1.x, the server Debian ships (`influxdb` 1.6): the engine writes with `api = "v1"`
//! into a database and retention policy as a user without admin rights, replays what it kept
//! through an outage, and reads a station's history back by InfluxQL.

use std::collections::BTreeMap;
use std::time::Duration;

use heatgrid::config::Config;
use heatgrid::stats::Stats;
use heatgrid_sim::SimConfig;
use serde_json::Value;

use crate::util;

const SPEED: f64 = 20.0;
pub const ADMIN: (&str, &str) = ("admin", "admin-password");
const WRITER: (&str, &str) = ("heatgrid", "writer-password");

/// One InfluxQL statement as `user`; the answer's JSON (panics on an HTTP or query error).
pub async fn influxql(port: u16, user: (&str, &str), db: &str, q: &str) -> Value {
    let mut req = reqwest::Client::new().post(format!("http://127.0.0.1:{port}/query"));
    if !user.0.is_empty() {
        req = req.basic_auth(user.0, Some(user.1));
    }
    let answer: Value = req
        .form(&[("db", db), ("q", q), ("epoch", "ms")])
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("{q}: {e}"))
        .json()
        .await
        .unwrap();
    assert!(answer["results"][0]["error"].is_null(), "{q}: {answer}");
    answer
}

/// The admin ([`ADMIN`]) and the database `heat` on a new server on `port`: the first user
/// may be created without credentials; then everything needs them.
pub async fn create_heat(port: u16) {
    influxql(
        port,
        ("", ""),
        "",
        &format!(
            "CREATE USER {} WITH PASSWORD '{}' WITH ALL PRIVILEGES",
            ADMIN.0, ADMIN.1
        ),
    )
    .await;
    influxql(port, ADMIN, "", "CREATE DATABASE heat").await;
}

/// The points of `field` in `week.telemetry`, per station.
async fn stored(port: u16, field: &str) -> BTreeMap<String, u64> {
    let a = influxql(
        port,
        WRITER,
        "heat",
        &format!("SELECT count({field}) FROM week.telemetry GROUP BY station"),
    )
    .await;
    let mut counts = BTreeMap::new();
    for s in a["results"][0]["series"].as_array().into_iter().flatten() {
        let station = s["tags"]["station"].as_str().unwrap_or("").to_owned();
        counts.insert(station, s["values"][0][1].as_u64().unwrap_or(0));
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_1x_takes_the_points_through_an_outage_and_gives_the_history_back() {
    let broker = util::mosquitto();
    let db_dir = tempfile::tempdir().unwrap();
    let db_port = util::free_port();
    let db = util::start_influxdb(db_dir.path(), db_port);
    // The engine's user may write and read its database and nothing else.
    create_heat(db_port).await;
    for q in [
        "CREATE RETENTION POLICY week ON heat DURATION 7d REPLICATION 1".to_owned(),
        format!("CREATE USER {} WITH PASSWORD '{}'", WRITER.0, WRITER.1),
        format!("GRANT ALL ON heat TO {}", WRITER.0),
    ] {
        influxql(db_port, ADMIN, "", &q).await;
    }

    let n = 3;
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "[engine]\ndata_dir = {:?}\ntick_s = {}\nstaleness_s = 2\ncommand_valid_for_s = 30\n\
         time_scale = {SPEED}\n[mqtt]\nport = {}\nclient_id = \"engine-influx-v1\"\n\
         [storage]\nflush_interval_ms = 200\n\
         [storage.influxdb]\napi = \"v1\"\nurl = \"http://127.0.0.1:{db_port}\"\n\
         database = \"heat\"\nretention_policy = \"week\"\nuser_env = \"IU\"\n\
         password_env = \"IP\"\ntimeout_s = 2\n",
        dir.path().display().to_string(),
        5.0 / SPEED,
        broker.port,
    );
    for i in 1..=n {
        text.push_str(&format!("[[station]]\nid = \"st-{i:03}\"\n"));
    }
    let env = |k: &str| match k {
        "IU" => Some(WRITER.0.to_owned()),
        "IP" => Some(WRITER.1.to_owned()),
        _ => None,
    };
    let cfg = Config::parse(&text, &env).unwrap_or_else(|e| panic!("{e:#?}"));
    let (engine, api) = util::start_viewed(cfg).await;
    let sim = heatgrid_sim::spawn(SimConfig {
        port: broker.port,
        stations: n,
        seed: 9,
        speed: SPEED,
        telemetry_period_s: 5.0,
        ..SimConfig::default()
    })
    .await;
    let stats = engine.stats().clone();
    assert!(
        util::eventually(Duration::from_secs(20), || Stats::get(&stats.store_written)
            > 30)
        .await,
        "nothing written to InfluxDB 1.x"
    );
    assert!(
        stored(db_port, "supply_temp_c").await.len() == n,
        "the points are not in the retention policy named"
    );

    // The outage: the database stops; the points wait in the spool and are replayed when it
    // is back on the same port with the same data.
    db.stop_gracefully();
    let errors_before = Stats::get(&stats.store_write_errors);
    assert!(
        util::eventually(Duration::from_secs(20), || {
            Stats::get(&stats.store_write_errors) > errors_before
                && engine.spool_depth().points > 30
        })
        .await,
        "the points did not wait in the spool while the database was down"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _db = util::start_influxdb(db_dir.path(), db_port);
    let views = sim.stop().await;
    let published: u64 = views.iter().map(|v| v.published).sum();
    assert!(
        util::eventually(Duration::from_secs(30), || {
            Stats::get(&stats.readings_accepted) >= published
                && Stats::get(&stats.store_written) >= Stats::get(&stats.spool_appended)
        })
        .await,
        "the spool was not drained into the restarted database"
    );
    assert_eq!(Stats::get(&stats.dead_letters), 0);
    let accepted = Stats::get(&stats.readings_accepted);
    let counts = stored(db_port, "supply_temp_c").await;
    assert_eq!(
        counts.values().sum::<u64>(),
        accepted,
        "every accepted reading stored once: {counts:?}"
    );

    // The history read back by InfluxQL, through the API, as the web trend asks for it.
    let h: Value = reqwest::Client::new()
        .get(format!(
            "{api}/api/v1/stations/st-002/history?hours=0.25&step_s=1"
        ))
        .bearer_auth(util::VIEWER_TOKEN)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["source"], "database");
    let points = h["points"].as_array().unwrap();
    let with_supply = points
        .iter()
        .filter(|p| p["supply_temp_c"].is_f64())
        .count();
    let with_setpoint = points
        .iter()
        .filter(|p| p["supply_setpoint_c"].is_f64())
        .count();
    let seconds = influxql(
        db_port,
        WRITER,
        "heat",
        "SELECT count(supply_temp_c) FROM week.telemetry WHERE station = 'st-002' \
         AND time > now() - 15m GROUP BY time(1s) fill(none)",
    )
    .await;
    let seconds = seconds["results"][0]["series"][0]["values"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(
        seconds > 5 && with_supply == seconds && with_setpoint > 0,
        "{with_supply} samples with a supply temperature where {seconds} seconds have one, \
         {with_setpoint} with a setpoint: {h}"
    );
    // Each sample is the step's last value: the newest one is the database's last point.
    let last = influxql(
        db_port,
        WRITER,
        "heat",
        "SELECT last(supply_temp_c) FROM week.telemetry WHERE station = 'st-002'",
    )
    .await;
    let newest = points
        .iter()
        .rev()
        .find_map(|p| p["supply_temp_c"].as_f64())
        .unwrap();
    assert_eq!(
        Some(newest),
        last["results"][0]["series"][0]["values"][0][1].as_f64()
    );
    engine.shutdown().await;
}
