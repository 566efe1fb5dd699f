//! The `heatgrid` binary's configuration verbs, run as a user would.

use std::process::Command;

fn heatgrid() -> Command {
    Command::new(env!("CARGO_BIN_EXE_heatgrid"))
}

#[test]
fn init_writes_an_example_that_check_accepts_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("heatgrid.toml");
    let out = heatgrid().arg("init").arg(&file).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = heatgrid()
        .args(["check", "--config"])
        .arg(&file)
        .env("HEATGRID_INFLUX_TOKEN", "secret")
        .env(
            "HEATGRID_TOKEN_CONTROL_ROOM",
            "a-long-enough-operator-token",
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (2 stations"));
    let out = heatgrid().arg("init").arg(&file).output().unwrap();
    assert!(!out.status.success(), "init must not overwrite");
}

#[test]
fn check_reports_every_error_on_one_run_with_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[engine]\ntick_s = 0\n[[station]]\nid = \"a/b\"\n[[station]]\nid = \"ok\"\nvalve_min_pct = 90\nvalve_max_pct = 10\n",
    )
    .unwrap();
    let out = heatgrid()
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("3 error(s)"), "{err}");
    for needle in [
        "engine.tick_s",
        "station[0] \"a/b\".id",
        "station[1] \"ok\".valve_min_pct",
    ] {
        assert!(err.contains(needle), "{needle} missing in {err}");
    }
    let out = heatgrid()
        .args(["check", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn completions_and_manual_pages_come_from_the_cli_definition() {
    // bash loads the script and registers the completion; every verb is offered.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source <({:?} completions bash) && complete -p heatgrid",
            env!("CARGO_BIN_EXE_heatgrid")
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("heatgrid"));
    for shell in ["bash", "zsh", "fish"] {
        let out = heatgrid().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8_lossy(&out.stdout);
        for verb in ["run", "check", "stations", "alarms", "completions", "man"] {
            assert!(script.contains(verb), "{shell}: {verb} missing");
        }
    }
    assert!(!heatgrid()
        .args(["completions", "tcsh"])
        .output()
        .unwrap()
        .status
        .success());
    // One page per verb, each in roff with its options.
    let dir = tempfile::tempdir().unwrap();
    let out = heatgrid().arg("man").arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let page = std::fs::read_to_string(dir.path().join("heatgrid.1")).unwrap();
    assert!(
        page.starts_with(".ie") && page.contains(".TH heatgrid 1"),
        "{page}"
    );
    assert!(page.contains("log\\-format"), "{page}");
    let run = std::fs::read_to_string(dir.path().join("heatgrid-run.1")).unwrap();
    assert!(run.contains("\\-\\-config"), "{run}");
    for verb in ["check", "stations", "set", "alarms-ack", "completions"] {
        assert!(
            dir.path().join(format!("heatgrid-{verb}.1")).exists(),
            "{verb}"
        );
    }
}

/// The first log lines of `heatgrid run` with `args`, until "Engine started" (bounded).
fn first_log_lines(config: &str, args: &[&str], env: Option<(&str, &str)>) -> Vec<String> {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("heatgrid.toml");
    let text = format!(
        "[engine]\ndata_dir = {:?}\n{config}\n[mqtt]\nport = {}\n[api]\nlisten = \"127.0.0.1:0\"\n[[station]]\nid = \"a\"\n",
        dir.path().join("data"),
        crate::util::free_port()
    );
    std::fs::write(&file, text).unwrap();
    let mut cmd = heatgrid();
    cmd.args(args).arg("run").arg("--config").arg(&file);
    cmd.env_remove("HEATGRID_LOG_FORMAT");
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let child = cmd
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut proc = crate::util::Proc {
        child,
        port: 0,
        _dir: Some(dir),
    };
    // Read on a thread, wait on a channel: the wait is bounded even if the engine hangs.
    let stderr = proc.child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(20)) {
        let done = line.contains("Engine started");
        lines.push(line);
        if done || lines.len() > 50 {
            break;
        }
    }
    drop(proc);
    lines
}

#[test]
fn logs_are_json_lines_when_configured_or_asked_and_text_otherwise() {
    let json = first_log_lines("log_format = \"json\"", &[], None);
    assert!(
        json.iter().any(|l| l.contains("Engine started")),
        "{json:?}"
    );
    for line in &json {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
    }
    let started: serde_json::Value = serde_json::from_str(json.last().unwrap()).unwrap();
    assert_eq!(started["message"], "Engine started.");
    assert_eq!(
        started["stations"], 1,
        "fields flattened beside the message"
    );
    // The flag (or its variable) wins over the file, both ways.
    let text = first_log_lines("log_format = \"json\"", &["--log-format", "text"], None);
    assert!(text.iter().all(|l| !l.starts_with('{')), "{text:?}");
    let json = first_log_lines("", &[], Some(("HEATGRID_LOG_FORMAT", "json")));
    assert!(json.iter().all(|l| l.starts_with('{')), "{json:?}");
    assert!(
        json.iter().any(|l| l.contains("Engine started")),
        "{json:?}"
    );
}
