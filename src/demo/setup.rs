//! The engine configuration of the demo: the simulated stations, local files, accelerated
//! time, the coordinator on and the operator API with a fixed demo token.

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::error::DemoError;
use crate::config::Config;

/// The operator token of the demo's API (printed at start; the demo is loopback-only).
pub const DEMO_TOKEN: &str = "heatgrid-demo-operator-token";

/// The engine configuration of the demo: `n` MQTT stations `st-001…` and one Modbus station
/// `plc-001…` per address in `plcs` (register map at `map`), local files, accelerated, the
/// operator API on `api_listen` with [`DEMO_TOKEN`].
pub fn demo_config(
    n: usize,
    port: u16,
    speed: f64,
    data_dir: &std::path::Path,
    api_listen: &str,
    plcs: &[SocketAddr],
    map: &std::path::Path,
) -> Result<Config, DemoError> {
    let tick_s = 5.0 / speed; // 5 simulated seconds per tick
    let mut text = format!(
        r#"
[engine]
data_dir = {dir:?}
tick_s = {tick_s}
staleness_s = {stale}
command_valid_for_s = 30
time_scale = {speed}
[mqtt]
port = {port}
client_id = "heatgrid-demo-engine"
[storage]
flush_interval_ms = 500
[coordinator]
enabled = true
period_s = 300
indoor_target_c = 20.0
[api]
listen = "{api_listen}"
[[api.token]]
name = "demo"
role = "operator"
token_sha256 = "{token_hash}"
"#,
        token_hash = crate::api::auth::sha256(DEMO_TOKEN.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        dir = data_dir.display().to_string(),
        stale = (30.0 / speed).max(2.0),
    );
    for i in 1..=n {
        let _ = writeln!(
            text,
            "[[station]]\nid = \"st-{i:03}\"\ntags = {{ district = \"{}\" }}",
            ["north", "south", "east", "west"][i % 4]
        );
    }
    for (i, addr) in plcs.iter().enumerate() {
        let _ = writeln!(
            text,
            "[[station]]\nid = \"plc-{:03}\"\ntags = {{ district = \"plc\" }}\n\
             modbus = {{ address = \"{addr}\", map = {:?}, poll_interval_s = {}, timeout_ms = {} }}",
            i + 1,
            map.display().to_string(),
            tick_s,
            (tick_s * 600.0) as u64,
        );
    }
    Config::parse(&text, &|_| None).map_err(|e| DemoError::Config(e.join("; ")))
}
