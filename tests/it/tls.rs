//! MQTT over TLS with a password: mosquitto configured with certificates made here by openssl
//! and a password file, the engine verifying the broker against the CA.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use heatgrid::app;
use heatgrid::config::Config;
use heatgrid::stats::Stats;
use heatgrid_sim::SimConfig;

use crate::util;

/// The test certificates ([`util::certificates`]) and a password file for mosquitto.
fn certificates(dir: &Path) {
    util::certificates(dir);
    util::sh(
        dir,
        "mosquitto_passwd -b -c passwd heatgrid 'engine-secret-123' 2>/dev/null",
    );
}

struct Broker {
    child: std::process::Child,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(dir: &Path, tls_port: u16, ca: &str, password: &str) -> Config {
    let text = format!(
        "[engine]\ndata_dir = {:?}\ntick_s = 0.25\nstaleness_s = 2\ncommand_valid_for_s = 30\ntime_scale = 20\n\
         [mqtt]\nhost = \"localhost\"\nport = {tls_port}\nclient_id = \"engine-tls-{}\"\nusername = \"heatgrid\"\npassword_env = \"P\"\n\
         [mqtt.tls]\nca_file = {:?}\n[api]\nlisten = \"\"\n\
         [[station]]\nid = \"st-001\"\n[[station]]\nid = \"st-002\"\n",
        dir.join(format!("data-{ca}-{password}")).display().to_string(),
        util::free_port(),
        dir.join(ca).display().to_string(),
    );
    let pw = password.to_owned();
    Config::parse(&text, &move |k| (k == "P").then(|| pw.clone())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_talks_tls_with_a_password_and_refuses_an_untrusted_broker() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let (plain, tls) = (util::free_port(), util::free_port());
    let d = dir.path().display();
    std::fs::write(
        dir.path().join("mosquitto.conf"),
        format!(
            "user root\nper_listener_settings true\npersistence false\nlog_dest stderr\nmax_queued_messages 0\nset_tcp_nodelay true\n\
             listener {plain} 127.0.0.1\nallow_anonymous true\n\
             listener {tls} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n\
             allow_anonymous false\npassword_file {d}/passwd\n"
        ),
    )
    .unwrap();
    let bin = if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    };
    let _broker = Broker {
        child: Command::new(bin)
            .arg("-c")
            .arg(dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    };
    for port in [plain, tls] {
        assert!(
            util::eventually(Duration::from_secs(10), || std::net::TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok())
            .await,
            "mosquitto did not listen on {port}"
        );
    }

    // The simulator on the plain listener, the engine over TLS with its password.
    let sim = heatgrid_sim::spawn(SimConfig {
        port: plain,
        stations: 2,
        speed: 20.0,
        ..SimConfig::default()
    })
    .await;
    let engine = app::start(config(dir.path(), tls, "ca.pem", "engine-secret-123"))
        .await
        .unwrap();
    let commanded = util::eventually(Duration::from_secs(30), || {
        sim.snapshot()
            .iter()
            .all(|v| v.commands_received > 5 && v.engine_in_control)
    })
    .await;
    assert!(commanded, "no control over TLS: {:?}", engine.status());

    // A wrong password and an untrusted CA never get a session.
    let wrong_pw = app::start(config(dir.path(), tls, "ca.pem", "not-the-password"))
        .await
        .unwrap();
    let wrong_ca = app::start(config(dir.path(), tls, "other-ca.pem", "engine-secret-123"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        Stats::get(&wrong_pw.stats().mqtt_connects),
        0,
        "wrong password accepted"
    );
    assert_eq!(
        Stats::get(&wrong_ca.stats().mqtt_connects),
        0,
        "untrusted broker accepted"
    );
    assert_eq!(Stats::get(&wrong_pw.stats().readings_accepted), 0);
    assert!(Stats::get(&engine.stats().mqtt_connects) >= 1);

    wrong_pw.shutdown().await;
    wrong_ca.shutdown().await;
    sim.stop().await;
    engine.shutdown().await;
}
