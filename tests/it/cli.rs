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
