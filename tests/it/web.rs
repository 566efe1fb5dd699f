//! The web control room in a real browser: Debian's Chromium, driven through chromedriver
//! (WebDriver), against a running engine with simulated stations on mosquitto.
//!
//! One scenario, run once: sign in as viewer and as operator; the overview shows every station
//! with its state (one stale and alarmed, one manual); a station's trend has points; the
//! viewer gets no change form and a change forged with its token is refused; an operator
//! changes an offset through the confirmation step and the station's next commands carry it;
//! an alarm is acknowledged. Screenshots go to a temporary directory (its path is printed);
//! `HEATGRID_SCREENSHOTS=dir` keeps them there instead.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use heatgrid::app;
use heatgrid::config::Config;
use heatgrid_sim::SimConfig;
use serde_json::{json, Value};

use crate::util::{self, free_port, Proc};

const OPERATOR: &str = "web-operator-token-0123456789";
const VIEWER: &str = "web-viewer-token-0123456789";
const SPEED: f64 = 30.0;
const SIMULATED: usize = 12;

/// chromedriver on a free port, stopped by PID.
fn chromedriver() -> Proc {
    let bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("chromedriver not found: run the tests with scripts/test.sh, which installs it");
    let port = free_port();
    let child = std::process::Command::new(bin)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Proc {
        child,
        port,
        _dir: None,
    }
}

async fn browser(driver: &Proc, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            // Headless, and none of the background connections a closed network refuses.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-quic", "--no-first-run", "--window-size=1600,1000",
                format!("--user-data-dir={}", profile.display())],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session")
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `limit`.
async fn until<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.expect(script)
}

async fn shot(c: &Client, dir: &Path, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    std::fs::write(dir.join(name), png).unwrap();
}

async fn sign_in(c: &Client, token: &str) {
    let input = c.wait().for_element(Locator::Id("token")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(token).await.unwrap();
    click(c, Locator::Id("sign-in")).await;
}

async fn click(c: &Client, locator: Locator<'_>) {
    c.find(locator).await.unwrap().click().await.unwrap();
}

async fn text_of(c: &Client, id: &str) -> Option<String> {
    c.find(Locator::Id(id)).await.ok()?.text().await.ok()
}

/// The stale alarm of the station that never reports, as the API lists it.
async fn silent_alarm(base: &str) -> Option<Value> {
    let (_, v) = api(base, VIEWER, "/api/v1/alarms", None).await;
    v["active"]
        .as_array()?
        .iter()
        .find(|a| a["station"] == "st-silent" && a["kind"] == "stale")
        .cloned()
}

async fn api(base: &str, token: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let http = reqwest::Client::new();
    let req = match body {
        Some(b) => http.post(format!("{base}{path}")).json(&b),
        None => http.get(format!("{base}{path}")),
    };
    let r = req.bearer_auth(token).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_room_in_a_browser() {
    let broker = util::mosquitto();
    let vm = util::victoria_metrics();
    let dir = tempfile::tempdir().unwrap();
    let shots: PathBuf = std::env::var_os("HEATGRID_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.path().join("screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    // The simulated stations' network, given to the engine as its layout too.
    let sim_cfg = SimConfig {
        port: broker.port,
        stations: SIMULATED,
        speed: SPEED,
        record_commands: true,
        ..SimConfig::default()
    };
    let net_file = sim_cfg.generated_network(3);
    let net_path = dir.path().join("network.json");
    std::fs::write(&net_path, serde_json::to_string(&net_file).unwrap()).unwrap();
    let mut text = format!(
        "[engine]\ndata_dir = {:?}\ntick_s = {}\nstaleness_s = 2\ncommand_valid_for_s = 30\ntime_scale = {SPEED}\n\
         [mqtt]\nport = {}\nclient_id = \"engine-web\"\n[storage]\nflush_interval_ms = 200\n\
         [storage.influxdb]\nurl = \"http://127.0.0.1:{vm}\"\norg = \"o\"\nbucket = \"b\"\nhistory_url = \"http://127.0.0.1:{vm}\"\n\
         [api]\nlisten = \"127.0.0.1:0\"\n\
         [[api.token]]\nname = \"olga\"\nrole = \"operator\"\ntoken_env = \"T_OP\"\n\
         [[api.token]]\nname = \"victor\"\nrole = \"viewer\"\ntoken_env = \"T_VIEW\"\n\
         [plant]\nid = \"main\"\nperiod_s = 5\ncommand_valid_for_s = 6\nnetwork = {:?}\n",
        dir.path().join("data").display().to_string(),
        5.0 / SPEED,
        broker.port,
        net_path.display().to_string(),
        vm = vm.port,
    );
    // The simulated stations, and one that never reports (stale, with its alarm).
    let mut ids: Vec<String> = (1..=SIMULATED).map(|i| format!("st-{i:03}")).collect();
    ids.push("st-silent".into());
    for (i, id) in ids.iter().enumerate() {
        let district = if i % 2 == 0 { "north" } else { "south" };
        text.push_str(&format!(
            "[[station]]\nid = {id:?}\ntags = {{ district = \"{district}\" }}\n"
        ));
    }
    let env = |k: &str| match k {
        "T_OP" => Some(OPERATOR.to_owned()),
        "T_VIEW" => Some(VIEWER.to_owned()),
        _ => None,
    };
    let engine = app::start(Config::parse(&text, &env).unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", engine.api_addr().unwrap());
    // The simulated stations on that network, with its plant (contract §7).
    let pipes = net_file.pipes.len();
    let sim = heatgrid_sim::spawn(SimConfig {
        network: Some(heatgrid_sim::SimNetwork {
            file: net_file,
            loads: heatgrid_sim::network::district::Loads::PEAKY,
            cell_m: 50.0,
            plant_id: "main".into(),
            plant_modbus: None,
        }),
        ..sim_cfg
    })
    .await;
    // st-002 in manual, from the API; st-silent's stale alarm raised.
    let (code, _) = api(
        &base,
        OPERATOR,
        "/api/v1/stations/st-002/mode",
        Some(json!({"mode": "manual", "valve_pct": 40, "pump_pct": 50})),
    )
    .await;
    assert_eq!(code, 200);
    until(Duration::from_secs(30), "the stale alarm", || {
        silent_alarm(&base)
    })
    .await;

    let driver = chromedriver();
    let c = browser(&driver, &dir.path().join("profile")).await;
    c.goto(&format!("{base}/")).await.unwrap();

    // A wrong token is refused with a message; the viewer's is accepted.
    sign_in(&c, "not-a-token").await;
    until(Duration::from_secs(10), "the refusal", || async {
        text_of(&c, "signin-error")
            .await
            .filter(|t| t.contains("refused"))
    })
    .await;
    sign_in(&c, VIEWER).await;
    // Every station on the overview, with its state.
    let n = ids.len();
    until(
        Duration::from_secs(60),
        "every tile in its state",
        || async {
            let v = js(
            &c,
            "return [...document.querySelectorAll('.tile')].map(t => [t.dataset.id, t.className]);",
        )
        .await;
            let tiles = v.as_array()?.clone();
            let class = |id: &str| {
                tiles
                    .iter()
                    .find(|t| t[0] == id)
                    .and_then(|t| t[1].as_str().map(str::to_owned))
            };
            let silent = class("st-silent")?;
            let manual = class("st-002")?;
            let in_control = tiles
                .iter()
                .filter(|t| t[1].as_str().is_some_and(|c| c.contains("s-in_control")))
                .count();
            (tiles.len() == n
                && silent.contains("s-stale")
                && silent.contains(" al ")
                && manual.contains("s-manual")
                && in_control >= SIMULATED / 2)
                .then_some(())
        },
    )
    .await;
    // Filtered by tag: the north district only (every other station of the test).
    let north = js(
        &c,
        "const s = document.getElementById('tag-filter'); s.value = 'district=north'; \
         s.dispatchEvent(new Event('change')); \
         return document.querySelectorAll('.tile:not(.hidden)').length;",
    )
    .await;
    assert_eq!(north, json!(n.div_ceil(2)), "the north district's tiles");
    js(
        &c,
        "const s = document.getElementById('tag-filter'); s.value = ''; s.dispatchEvent(new Event('change')); return 0;",
    )
    .await;
    until(Duration::from_secs(5), "the feed shown live", || async {
        text_of(&c, "feed").await.filter(|t| t == "live")
    })
    .await;
    let totals = text_of(&c, "totals").await.unwrap();
    assert!(
        totals.contains("MW") && totals.contains("alarms"),
        "{totals}"
    );
    shot(&c, &shots, "overview.png").await;

    // The viewer sees a station but no change form, and a forged change is refused.
    c.goto(&format!("{base}/#/station/st-001")).await.unwrap();
    until(Duration::from_secs(15), "the station page", || async {
        c.find(Locator::Css("svg.trend")).await.ok().map(|_| ())
    })
    .await;
    assert!(
        c.find(Locator::Id("changes")).await.is_err(),
        "no change form for a viewer"
    );
    let forged = js(
        &c,
        "return fetch('/api/v1/stations/st-001/supply', {method: 'POST', headers: {'Content-Type': 'application/json', \
         Authorization: 'Bearer ' + sessionStorage.getItem('heatgrid.token')}, body: JSON.stringify({offset_k: 5})}).then(r => r.status);",
    )
    .await;
    assert_eq!(forged, json!(403), "a viewer's forged change");
    // The token is in this tab's session storage, never in the address.
    assert!(!c.current_url().await.unwrap().as_str().contains("token"));

    // Sign out, then in as the operator.
    click(&c, Locator::Id("sign-out")).await;
    sign_in(&c, OPERATOR).await;
    c.goto(&format!("{base}/#/station/st-001")).await.unwrap();
    let points = until(Duration::from_secs(30), "trend points", || async {
        let v = js(
            &c,
            "const p = document.querySelector('svg.trend polyline.sup'); return p ? p.getAttribute('points').split(' ').length : 0;",
        )
        .await;
        v.as_u64().filter(|n| *n >= 2)
    })
    .await;
    // The last commands, with their acknowledgement.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = js(
            &c,
            "return [...document.querySelectorAll('td')].some(td => td.textContent === 'acknowledged');",
        )
        .await;
        if v == json!(true) {
            break;
        }
        if Instant::now() > deadline {
            let (_, st) = api(&base, VIEWER, "/api/v1/stations/st-001", None).await;
            panic!(
                "no acknowledged command listed: {} / acked {}",
                st["recent_commands"], st["acked_seq"]
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shot(&c, &shots, "station.png").await;

    // An offset through the confirmation step; the station's next commands carry it.
    let before = sim.command_log().len();
    let last_set = |log: &[heatgrid_sim::CommandRecord]| {
        log.iter()
            .rev()
            .find(|r| r.station == "st-001" && r.accepted)
            .map(|r| r.supply_setpoint_c)
    };
    let set_before = last_set(&sim.command_log()).expect("st-001 commanded");
    let offset = c.wait().for_element(Locator::Id("offset")).await.unwrap();
    offset.clear().await.unwrap();
    offset.send_keys("3").await.unwrap();
    click(&c, Locator::Css("#offset-form button")).await;
    let question = c
        .wait()
        .for_element(Locator::Id("confirm-text"))
        .await
        .unwrap();
    assert!(question.text().await.unwrap().contains("3 K"));
    click(&c, Locator::Id("confirm-yes")).await;
    until(
        Duration::from_secs(20),
        "a command carrying the offset",
        || async {
            let log = sim.command_log();
            let after = &log[before.min(log.len())..];
            let now = last_set(after)?;
            (now >= set_before + 2.5).then_some(())
        },
    )
    .await;
    let (_, st) = api(&base, VIEWER, "/api/v1/stations/st-001", None).await;
    assert_eq!(st["controller"]["supply_offset_k"], 3.0);

    // A refusal is shown, with the limit that said no.
    offset.clear().await.unwrap();
    offset.send_keys("99").await.unwrap();
    click(&c, Locator::Css("#offset-form button")).await;
    click(&c, Locator::Id("confirm-yes")).await;
    let refusal = until(Duration::from_secs(10), "the refusal", || async {
        text_of(&c, "confirm-error")
            .await
            .filter(|t| t.starts_with("Refused"))
    })
    .await;
    click(&c, Locator::Id("confirm-no")).await;

    // A heating curve, typed as outdoor:supply pairs.
    let curve = c.find(Locator::Id("curve")).await.unwrap();
    curve.clear().await.unwrap();
    curve.send_keys("-20:70, 0:55, 15:35").await.unwrap();
    click(&c, Locator::Css("#curve-form button")).await;
    click(&c, Locator::Id("confirm-yes")).await;
    until(Duration::from_secs(10), "the new curve", || async {
        let (_, st) = api(&base, VIEWER, "/api/v1/stations/st-001", None).await;
        (st["controller"]["curve"] == json!([[-20.0, 70.0], [0.0, 55.0], [15.0, 35.0]]))
            .then_some(())
    })
    .await;

    // A station the engine has no trend of, with an hour in the database (as a previous run
    // would have left it): the page draws the database's and says so.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let lines: String = (1..=60)
        .map(|m| {
            let ts = now - m * 60_000;
            format!(
                "telemetry,station=st-silent supply_temp_c={},return_temp_c=40 {ts}\n\
                 command,station=st-silent,mode=auto supply_setpoint_c=60 {ts}\n",
                60.0 + (m % 5) as f64 * 0.2
            )
        })
        .collect();
    util::vm_write(vm.port, lines).await;
    c.goto(&format!("{base}/#/station/st-silent"))
        .await
        .unwrap();
    let source = until(Duration::from_secs(30), "the database's trend", || async {
        let v = js(
            &c,
            "const t = document.getElementById('trend'); return t ? [t.dataset.source, t.querySelector('h3').textContent] : null;",
        )
        .await;
        let pair = v.as_array()?.clone();
        if pair[0] != "database" {
            // Read once per visit: look again.
            let _ = c.refresh().await;
            return None;
        }
        pair[1].as_str().map(str::to_owned)
    })
    .await;
    assert!(source.contains("from the database"), "{source}");
    shot(&c, &shots, "station-history.png").await;

    // The stale alarm, acknowledged on the alarms page.
    c.goto(&format!("{base}/#/alarms")).await.unwrap();
    let ack = c
        .wait()
        .for_element(Locator::Css("tr[data-alarm] button.ack"))
        .await
        .unwrap();
    ack.click().await.unwrap();
    click(&c, Locator::Id("confirm-yes")).await;
    until(Duration::from_secs(15), "the acknowledgement", || async {
        silent_alarm(&base)
            .await
            .filter(|a| a["acked_by"] == "olga")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await; // the page's next refresh
    shot(&c, &shots, "alarms.png").await;

    // The diagnosis page: every station counted, none suspected on this healthy fleet.
    c.goto(&format!("{base}/#/diagnosis")).await.unwrap();
    let page = until(Duration::from_secs(15), "the diagnosis page", || async {
        text_of(&c, "view")
            .await
            .filter(|t| t.contains("Suspected faults") && t.contains("stations, worst first"))
    })
    .await;
    assert!(
        page.contains(&format!("0 of {n} stations")) && page.contains("no fault suspected"),
        "{page}"
    );
    shot(&c, &shots, "diagnosis.png").await;

    // The plant page: the plant now, what the loop asks, its trend, and the network drawn from
    // its pipes with the stations' primary side, the most demanding station and the pressure
    // point marked.
    c.goto(&format!("{base}/#/plant")).await.unwrap();
    let plant = until(Duration::from_secs(20), "the plant page", || async {
        let v = js(
            &c,
            "const n = document.querySelectorAll('#network circle.st').length; \
             return [document.getElementById('view').innerText, n, \
             !!document.getElementById('critical-mark'), !!document.getElementById('point-mark'), \
             document.querySelectorAll('#plant-trend polyline').length, \
             document.querySelectorAll('#network path.pipe').length];",
        )
        .await;
        let ok = v[1].as_u64() == Some(SIMULATED as u64)
            && v[5].as_u64() == Some(pipes as u64)
            && v[2] == true
            && v[3] == true
            && v[0].as_str().is_some_and(|t| t.contains("seq"));
        ok.then_some(v)
    })
    .await;
    let page = plant[0].as_str().unwrap();
    for part in [
        "Plant main",
        "What the loop asks (fleet)",
        "supply setpoint",
        "Network",
        "critical",
        "Δp point",
        "from the network file",
    ] {
        assert!(
            page.contains(part),
            "{part:?} not on the plant page:\n{page}"
        );
    }
    assert!(
        plant[4].as_u64().unwrap() >= 2,
        "the trend's lines: {plant:?}"
    );
    shot(&c, &shots, "plant.png").await;

    // The reports page: the last 7 days from the database, a row per station and the
    // district's, and the league table's place.
    c.goto(&format!("{base}/#/reports")).await.unwrap();
    let rows = until(Duration::from_secs(20), "the report", || async {
        js(
            &c,
            "const t = document.getElementById('report-stations'); \
             return t ? [t.querySelectorAll('tr').length, document.getElementById('view').innerText] : null;",
        )
        .await
        .as_array()
        .cloned()
    })
    .await;
    assert_eq!(rows[0], json!(n + 2), "header, every station, the district");
    let text = rows[1].as_str().unwrap();
    assert!(
        text.contains("heating degree-days") && text.contains("district"),
        "{text}"
    );
    shot(&c, &shots, "reports.png").await;

    // A reading shows on its tile within a second of being sent: st-silent speaks at last.
    js(&c, "location.hash = '#/'; return 1;").await;
    let (client, poller) = util::publisher(broker.port, "web-lag");
    let mut lags = Vec::new();
    for k in 0..3 {
        let supply = 55.5 + k as f64;
        let payload = format!(
            "{{\"ts\":{},\"supply_temp_c\":{supply},\"return_temp_c\":40.0,\"flow_m3h\":3.0,\"heated_area_m2\":8000}}",
            heatgrid::clock::now_ms()
        );
        let sent = Instant::now();
        client
            .publish(
                "heating/station/st-silent/telemetry",
                rumqttc::QoS::AtLeastOnce,
                false,
                payload.into_bytes(),
            )
            .await
            .unwrap();
        let script = format!(
            "const t = app.tiles.get('st-silent'); const e = document.querySelector('.tile[data-id=\"st-silent\"]'); \
             return !!t && Math.abs(t.sup - {supply}) < 0.01 && !!e && !e.className.includes('s-stale');"
        );
        until(
            Duration::from_secs(10),
            "st-silent's reading on its tile",
            || async { (js(&c, &script).await == true).then_some(()) },
        )
        .await;
        lags.push(sent.elapsed().as_secs_f64());
    }
    poller.abort();
    assert!(
        lags.iter().all(|l| *l < 1.0),
        "readings took {lags:.2?} s to show on their tile"
    );
    in_chinese(&c, &base, &shots).await;
    eprintln!(
        "web control room: {n} tiles, {points} trend points, refusal {refusal:?}, reading to tile {lags:.2?} s; screenshots in {}",
        shots.display()
    );
    c.close().await.unwrap();
}

/// The same control room in Simplified Chinese, chosen in the page: every page's words from
/// the Chinese catalogue (no English phrase of the catalogue left outside what the engine
/// itself writes: alarm messages, evidence), dates in the Chinese format, the choice
/// remembered across a reload; a screenshot of each page.
async fn in_chinese(c: &Client, base: &str, shots: &Path) {
    let catalogue = |json: &str| -> std::collections::BTreeMap<String, String> {
        serde_json::from_str(json).unwrap()
    };
    let en = catalogue(include_str!("../../web/i18n/en.json"));
    let zh = catalogue(include_str!("../../web/i18n/zh-CN.json"));
    let english: Vec<&str> = en
        .iter()
        .filter(|(k, v)| v.contains(' ') && !v.contains('{') && zh[*k] != **v)
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(english.len() > 50, "{} phrases to look for", english.len());
    c.goto(&format!("{base}/#/")).await.unwrap();
    js(
        c,
        "const s = document.getElementById('lang'); s.value = 'zh-CN'; \
         s.dispatchEvent(new Event('change')); return 1;",
    )
    .await;
    let text = "const b = document.body.cloneNode(true); \
                b.querySelectorAll('.msg, script').forEach(e => e.remove()); return b.textContent;";
    for (hash, name, ready) in [
        ("#/", "zh-overview.png", "受控（±1 K）"),
        ("#/station/st-001", "zh-station.png", "趋势（"),
        ("#/alarms", "zh-alarms.png", "最近解除"),
        ("#/diagnosis", "zh-diagnosis.png", "个换热站中有"),
        ("#/plant", "zh-plant.png", "控制回路的要求"),
        ("#/reports", "zh-reports.png", "采暖度日数"),
    ] {
        c.goto(&format!("{base}/{hash}")).await.unwrap();
        let page = until(Duration::from_secs(20), name, || async {
            js(c, text)
                .await
                .as_str()
                .filter(|t| t.contains(ready))
                .map(str::to_owned)
        })
        .await;
        let left: Vec<&&str> = english.iter().filter(|e| page.contains(**e)).collect();
        assert!(left.is_empty(), "{hash}: English left {left:?} in:\n{page}");
        assert!(
            page.contains("总览") && page.contains("告警"),
            "{hash}: {page}"
        );
        shot(c, shots, name).await;
    }
    // A date in the Chinese format (year/month/day), on the alarms page.
    c.goto(&format!("{base}/#/alarms")).await.unwrap();
    let date = until(Duration::from_secs(10), "a raise time", || async {
        js(
            c,
            "const td = document.querySelector('td[title]'); return td ? td.title : null;",
        )
        .await
        .as_str()
        .map(str::to_owned)
    })
    .await;
    assert!(
        date.starts_with("20") && date.contains('/'),
        "not a Chinese date: {date}"
    );
    // Remembered: after a reload the page is still Chinese.
    c.refresh().await.unwrap();
    until(Duration::from_secs(10), "Chinese after a reload", || async {
        let v = js(
            c,
            "return [document.documentElement.lang, document.getElementById('nav-overview').textContent];",
        )
        .await;
        (v == json!(["zh-CN", "总览"])).then_some(())
    })
    .await;
}
