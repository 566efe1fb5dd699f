//! Alarm notifications against real receivers: an HTTP receiver that checks each webhook's
//! HMAC itself (tests/peers/webhook.py) and a mail server, aiosmtpd, that requires STARTTLS
//! and AUTH (tests/peers/smtp.py). One station going stale is one signed webhook (delivered
//! after the receiver refused it twice) and one mail; left unacknowledged it escalates once;
//! acknowledged it does not; a broker outage that makes every station stale is one summary
//! per channel, and so is their recovery. A receiver that is not there costs only its own
//! messages: dead letters, counted and alarmed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use heatgrid::config::Config;
use heatgrid::control::change::Change;
use heatgrid_sim::SimConfig;
use serde_json::Value;

use crate::util;

const SECRET: &str = "webhook-secret-for-the-test";
const SMTP_USER: &str = "heatgrid-mailer";
const SMTP_PASSWORD: &str = "mail-password-123";

/// A Python peer, killed on drop.
pub struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `tests/peers/{script}` with `args` (and the test's secrets in its environment).
pub fn peer(script: &str, args: &[String]) -> Peer {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(script);
    Peer(
        Command::new(util::python())
            .arg(path)
            .args(args)
            .env("HEATGRID_TEST_WEBHOOK_SECRET", SECRET)
            .env("HEATGRID_TEST_SMTP_USER", SMTP_USER)
            .env("HEATGRID_TEST_SMTP_PASSWORD", SMTP_PASSWORD)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {script}: {e}")),
    )
}

/// The JSON lines a peer logged so far.
pub fn logged(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The delivered webhooks (answered 204) to `path` (the URL's path).
fn hooks(log: &Path, path: &str) -> Vec<Value> {
    hooks_in(&logged(log), path)
}

/// Waits until `f` of the webhook log holds (up to `s` seconds); the log then.
async fn wait_log(log: &Path, s: u64, what: &str, f: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let ok = util::eventually(Duration::from_secs(s), || f(&logged(log))).await;
    let all = logged(log);
    assert!(ok, "{what}; logged:\n{all:#?}");
    all
}

fn events(list: &[Value], event: &str, station: &str) -> usize {
    list.iter()
        .filter(|r| {
            let b = if r["body"].is_object() { &r["body"] } else { r };
            b["event"] == event && b["alarm"]["station"] == station
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_reach_a_webhook_and_a_mailbox_once_escalate_once_and_a_flood_is_one_summary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    util::certificates(d);
    let hook_log = d.join("hooks.jsonl");
    let mail_log = d.join("mails.jsonl");
    let hook_port = util::free_port();
    let smtp_port = util::free_port();
    let _hooks = peer(
        "webhook.py",
        &[
            format!("--port={hook_port}"),
            format!("--log={}", hook_log.display()),
            "--fail-first=2".into(),
        ],
    );
    let _smtp = peer(
        "smtp.py",
        &[
            format!("--port={smtp_port}"),
            format!("--cert={}", d.join("server.pem").display()),
            format!("--key={}", d.join("server.key").display()),
            format!("--log={}", mail_log.display()),
        ],
    );
    // A receiver that is not there: its messages are dead letters, and nothing else waits.
    let dead_port = util::free_port();
    let broker = util::mosquitto();
    let mut text = format!(
        "[engine]\ndata_dir = {:?}\ntick_s = 0.5\nstaleness_s = 2\n\
         [mqtt]\nport = {}\nclient_id = \"engine-notify\"\n\
         [notify]\ngroup_wait_s = 1\ngroup_max_s = 5\nflood_threshold = 3\nmax_attempts = 3\n\
         [[notify.webhook]]\nname = \"oncall\"\nurl = \"http://127.0.0.1:{hook_port}/oncall\"\n\
         secret_env = \"WH\"\n\
         [[notify.webhook]]\nname = \"manager\"\nurl = \"http://127.0.0.1:{hook_port}/manager\"\n\
         secret_env = \"WH\"\n\
         [[notify.email]]\nname = \"north-mail\"\nserver = \"127.0.0.1\"\nport = {smtp_port}\n\
         ca_file = \"ca.pem\"\nuser_env = \"MU\"\npassword_env = \"MP\"\n\
         from = \"heatgrid <heatgrid@example.com>\"\nto = [\"north@example.com\"]\n\
         [[notify.webhook]]\nname = \"dead\"\nurl = \"http://127.0.0.1:{dead_port}/\"\ntimeout_s = 1\n\
         [[notify.route]]\nseverity = [\"major\"]\nkind = [\"stale\"]\nto = [\"oncall\", \"dead\"]\n\
         escalate_after_min = 0.05\nescalate_to = [\"manager\"]\n\
         [[notify.route]]\nkind = [\"notify_failed\"]\nto = [\"manager\"]\n\
         [[notify.route]]\ntags = {{ district = \"north\" }}\nkind = [\"stale\"]\nto = [\"north-mail\"]\n",
        d.join("data").display().to_string(),
        broker.port,
    );
    for i in 1..=8 {
        let district = if i <= 4 { "north" } else { "south" };
        text.push_str(&format!(
            "[[station]]\nid = \"s{i:03}\"\ntags = {{ district = \"{district}\" }}\n"
        ));
    }
    let env = |k: &str| match k {
        "WH" => Some(SECRET.to_owned()),
        "MU" => Some(SMTP_USER.to_owned()),
        "MP" => Some(SMTP_PASSWORD.to_owned()),
        _ => None,
    };
    let cfg = Config::parse_in(&text, &env, d).unwrap_or_else(|e| panic!("{e:#?}"));
    let engine = heatgrid::app::start(cfg).await.unwrap();
    assert!(engine.wait_subscribed(Duration::from_secs(20)).await);
    let sim = heatgrid_sim::spawn(SimConfig {
        port: broker.port,
        stations: 8,
        id_prefix: "s".into(),
        telemetry_period_s: 0.25,
        ..SimConfig::default()
    })
    .await;
    assert!(
        util::eventually(Duration::from_secs(20), || {
            let st = engine.status();
            st.len() == 8 && st.iter().all(|s| !s.stale)
        })
        .await,
        "the stations never reported"
    );

    // One station of the north goes silent: one signed webhook, delivered at the third try
    // under one delivery id, and one mail over STARTTLS with AUTH; unacknowledged, it
    // escalates to the manager once.
    sim.set_silenced("s001", true);
    let all = wait_log(&hook_log, 20, "s001's raise never delivered", |l| {
        events(l, "raised", "s001") >= 3
    })
    .await;
    let tries: Vec<&Value> = all
        .iter()
        .filter(|r| r["body"]["event"] == "raised")
        .collect();
    assert_eq!(tries.len(), 3, "two refusals and a delivery: {tries:#?}");
    assert!(tries.iter().all(|r| r["delivery"] == tries[0]["delivery"]));
    assert_eq!(tries[2]["status"], 204);
    assert!(all.iter().all(|r| r["signature_ok"] == true), "{all:#?}");
    let raised = &tries[2]["body"];
    assert_eq!(raised["alarm"]["kind"], "stale");
    assert_eq!(raised["alarm"]["severity"], "major");
    assert!(util::eventually(Duration::from_secs(15), || !logged(&mail_log).is_empty()).await);
    let mails = logged(&mail_log);
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(mails[0]["subject"], "[heatgrid] MAJOR stale at s001 raised");
    assert_eq!(mails[0]["tls"], true);
    assert_eq!(mails[0]["user"], SMTP_USER);
    assert_eq!(mails[0]["to"], serde_json::json!(["north@example.com"]));
    assert!(
        mails[0]["text"]
            .as_str()
            .unwrap()
            .contains("no fresh telemetry"),
        "{mails:#?}"
    );
    wait_log(&hook_log, 15, "s001 never escalated", |l| {
        hooks_in(l, "/manager")
            .iter()
            .any(|r| r["body"]["event"] == "escalated" && r["body"]["alarm"]["station"] == "s001")
    })
    .await;

    // A station of the south acknowledged at once: notified, never escalated.
    sim.set_silenced("s006", true);
    let id = loop {
        if let Some(a) = engine
            .alarms()
            .active
            .iter()
            .find(|a| a.station == "s006" && a.kind == heatgrid::alarms::AlarmKind::Stale)
        {
            break a.id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    engine
        .apply("", Change::AckAlarm { id }, "ops")
        .await
        .expect("acknowledged");
    wait_log(&hook_log, 15, "s006's raise never delivered", |l| {
        events(&hooks_in(l, "/oncall"), "raised", "s006") == 1
    })
    .await;

    // Both recover: each clear is sent where its raise was.
    sim.set_silenced("s001", false);
    sim.set_silenced("s006", false);
    wait_log(&hook_log, 15, "the clears never delivered", |l| {
        let on = hooks_in(l, "/oncall");
        events(&on, "cleared", "s001") == 1 && events(&on, "cleared", "s006") == 1
    })
    .await;
    assert!(util::eventually(Duration::from_secs(10), || logged(&mail_log).len() == 2).await);
    // Well past s6's escalation time: it was acknowledged, so never escalated; s1 once.
    let manager = hooks(&hook_log, "/manager");
    assert_eq!(events(&manager, "escalated", "s001"), 1, "{manager:#?}");
    assert_eq!(events(&manager, "escalated", "s006"), 0, "{manager:#?}");

    // The broker goes down: every station stale at once. One summary per channel, not one
    // message per station; the same when they come back.
    let before = hooks(&hook_log, "/oncall").len();
    let mails_before = logged(&mail_log).len();
    let port = broker.port;
    drop(broker);
    let all = wait_log(&hook_log, 30, "no summary of the outage", |l| {
        hooks_in(l, "/oncall")[before..]
            .iter()
            .any(|r| r["body"]["event"] == "summary")
    })
    .await;
    let _broker = util::mosquitto_on(port);
    let outage: Vec<Value> = hooks_in(&all, "/oncall")[before..].to_vec();
    assert_eq!(outage.len(), 1, "one message for the outage: {outage:#?}");
    let summary = &outage[0]["body"];
    assert_eq!(summary["count"], 8, "{summary}");
    assert_eq!(summary["kinds"]["stale"], 8, "{summary}");
    assert!(
        util::eventually(Duration::from_secs(15), || {
            logged(&mail_log).len() > mails_before
        })
        .await
    );
    let mails = logged(&mail_log);
    let outage_mail = &mails[mails_before];
    assert!(
        outage_mail["subject"]
            .as_str()
            .unwrap()
            .starts_with("[heatgrid] 4 alarm events (raised ×4): stale ×4"),
        "{mails:#?}"
    );
    let all = wait_log(&hook_log, 40, "no summary of the recovery", |l| {
        hooks_in(l, "/oncall")[before..]
            .iter()
            .any(|r| r["body"]["event"] == "summary" && r["body"]["events"]["cleared"] == 8)
    })
    .await;
    assert_eq!(
        hooks_in(&all, "/oncall").len(),
        before + 2,
        "the outage and the recovery, one message each"
    );
    // The dead receiver cost only its own messages: each given up on after 3 tries, counted,
    // and the engine's notify_failed alarm raised and sent where its route says.
    let stats = engine.stats().clone();
    assert!(heatgrid::stats::Stats::get(&stats.notify_dead_letters) >= 1);
    assert!(engine
        .alarms()
        .active
        .iter()
        .any(|a| a.kind == heatgrid::alarms::AlarmKind::NotifyFailed));
    let manager = hooks(&hook_log, "/manager");
    assert!(
        manager.iter().any(
            |r| r["body"]["event"] == "raised" && r["body"]["alarm"]["kind"] == "notify_failed"
        ),
        "{manager:#?}"
    );
    sim.stop().await;
    engine.shutdown().await;
}

/// The delivered webhooks to `path` among `list`.
fn hooks_in(list: &[Value], path: &str) -> Vec<Value> {
    list.iter()
        .filter(|r| r["status"] == 204 && r["path"] == path)
        .cloned()
        .collect()
}
