//! Validation of `[plant]`: the heat plant the engine watches and, with `mode = "control"`,
//! commands (contract §7; the loop is [`crate::control::plant`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::raw_modbus::RawModbus;
use super::Errors;
use crate::control::curve::Curve;
use crate::control::plant::{PlantConfig, PlantSettings};
use crate::ingest::modbus::map::{Device, RegisterMap};
use crate::ingest::modbus::plant::PlantModbusConfig;
use crate::model::StationId;

/// `[plant]` as the file gives it; every field but `id` has the loop's default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlant {
    id: String,
    #[serde(default = "control")]
    mode: String,
    #[serde(default)]
    period_s: Option<f64>,
    #[serde(default)]
    command_valid_for_s: Option<u32>,
    #[serde(default)]
    plant_stale_after_s: Option<f64>,
    #[serde(default)]
    curve: Option<Vec<(f64, f64)>>,
    #[serde(default)]
    min_supply_c: Option<f64>,
    #[serde(default)]
    max_supply_c: Option<f64>,
    #[serde(default)]
    ramp_k_per_h: Option<f64>,
    #[serde(default)]
    valve_target_pct: Option<f64>,
    #[serde(default)]
    dp_valve_target_pct: Option<f64>,
    #[serde(default)]
    gain_k_per_h_per_pct: Option<f64>,
    #[serde(default)]
    min_dp_kpa: Option<f64>,
    #[serde(default)]
    dp_gain_kpa_per_h_per_pct: Option<f64>,
    #[serde(default)]
    switch_margin_kpa: Option<f64>,
    #[serde(default)]
    head_kpa: Option<f64>,
    #[serde(default)]
    lead_s: Option<f64>,
    #[serde(default)]
    stale_after_s: Option<f64>,
    #[serde(default)]
    min_fresh_share: Option<f64>,
    #[serde(default)]
    electricity_weight: Option<f64>,
    #[serde(default)]
    ground_c: Option<f64>,
    #[serde(default)]
    network_ua_kw_per_k: Option<f64>,
    #[serde(default)]
    pump_efficiency: Option<f64>,
    #[serde(default)]
    pressure_points: Option<Vec<String>>,
    /// The network file (docs/network.md): the layout, and the network's UA when not given.
    #[serde(default)]
    network: Option<String>,
    /// Poll the plant's PLC over Modbus TCP instead of its MQTT topics.
    #[serde(default)]
    modbus: Option<RawModbus>,
}

fn control() -> String {
    "control".into()
}

/// `[plant]`, validated: the loop's config and, with `modbus = { … }`, the plant's poller.
/// `stations`: the configured station ids (a pressure point must be one); `base`: where a
/// relative register map path starts.
pub(super) fn plant(
    p: &Option<RawPlant>,
    stations: &[String],
    base: &Path,
    v: &mut Errors,
) -> Option<(PlantConfig, Option<PlantModbusConfig>)> {
    let p = p.as_ref()?;
    let d = PlantSettings::default();
    let valid_id = !p.id.is_empty()
        && p.id.len() <= 64
        && p.id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    v.check(
        valid_id,
        "plant.id: 1–64 characters of letters, digits, '-', '_' or '.'",
    );
    let control = match p.mode.as_str() {
        "control" => true,
        "monitor" => false,
        other => {
            v.push(format!(
                "plant.mode: {other:?} is not \"control\" or \"monitor\""
            ));
            true
        }
    };
    let curve = match &p.curve {
        Some(points) => match Curve::new(points.clone()) {
            Ok(c) => c,
            Err(e) => {
                v.push(format!("plant.curve: {e}"));
                d.curve.clone()
            }
        },
        None => d.curve.clone(),
    };
    let s = PlantSettings {
        curve,
        min_supply_c: p.min_supply_c.unwrap_or(d.min_supply_c),
        max_supply_c: p.max_supply_c.unwrap_or(d.max_supply_c),
        ramp_k_per_h: p.ramp_k_per_h.unwrap_or(d.ramp_k_per_h),
        valve_target_pct: p.valve_target_pct.unwrap_or(d.valve_target_pct),
        dp_valve_target_pct: p.dp_valve_target_pct.unwrap_or(d.dp_valve_target_pct),
        gain_k_per_h_per_pct: p.gain_k_per_h_per_pct.unwrap_or(d.gain_k_per_h_per_pct),
        min_dp_kpa: p.min_dp_kpa.unwrap_or(d.min_dp_kpa),
        dp_gain_kpa_per_h_per_pct: p
            .dp_gain_kpa_per_h_per_pct
            .unwrap_or(d.dp_gain_kpa_per_h_per_pct),
        switch_margin_kpa: p.switch_margin_kpa.unwrap_or(d.switch_margin_kpa),
        head_kpa: p.head_kpa.unwrap_or(d.head_kpa),
        lead_s: p.lead_s.unwrap_or(d.lead_s),
        stale_after_s: p.stale_after_s.unwrap_or(d.stale_after_s),
        min_fresh_share: p.min_fresh_share.unwrap_or(d.min_fresh_share),
        electricity_weight: p.electricity_weight.unwrap_or(d.electricity_weight),
        ground_c: p.ground_c.unwrap_or(d.ground_c),
        network_ua_kw_per_k: p.network_ua_kw_per_k,
        pump_efficiency: p.pump_efficiency.unwrap_or(d.pump_efficiency),
        pressure_points: pressure_points(p, stations, v),
    };
    v.check(
        s.electricity_weight.is_finite() && s.electricity_weight >= 0.0,
        "plant.electricity_weight: must be 0 or more",
    );
    v.check(
        s.network_ua_kw_per_k
            .is_none_or(|x| x.is_finite() && x > 0.0),
        "plant.network_ua_kw_per_k: must be positive",
    );
    v.check(
        (-10.0..=30.0).contains(&s.ground_c),
        "plant.ground_c: must be within -10..30 °C",
    );
    v.check(
        s.pump_efficiency > 0.05 && s.pump_efficiency <= 1.0,
        "plant.pump_efficiency: must be within 0.05..1",
    );
    v.check(
        (20.0..=150.0).contains(&s.min_supply_c) && s.min_supply_c < s.max_supply_c,
        "plant.min_supply_c: must be within 20..150 °C and below max_supply_c (hot water needs \
         55–60 °C at the stations: keep it above that)",
    );
    v.check(
        s.max_supply_c <= 150.0,
        "plant.max_supply_c: must be at most 150 °C",
    );
    v.check(
        s.ramp_k_per_h > 0.0 && s.ramp_k_per_h <= 60.0,
        "plant.ramp_k_per_h: must be within 0..60 K/h",
    );
    v.check(
        (50.0..=100.0).contains(&s.valve_target_pct),
        "plant.valve_target_pct: must be within 50..100 %",
    );
    v.check(
        (30.0..=100.0).contains(&s.dp_valve_target_pct),
        "plant.dp_valve_target_pct: must be within 30..100 %",
    );
    for (place, x) in [
        ("plant.gain_k_per_h_per_pct", s.gain_k_per_h_per_pct),
        (
            "plant.dp_gain_kpa_per_h_per_pct",
            s.dp_gain_kpa_per_h_per_pct,
        ),
        ("plant.switch_margin_kpa", s.switch_margin_kpa),
        ("plant.lead_s", s.lead_s),
    ] {
        v.check(
            x.is_finite() && x >= 0.0,
            format!("{place}: must be 0 or more"),
        );
    }
    v.check(
        s.min_dp_kpa > 0.0 && s.min_dp_kpa < s.head_kpa && s.head_kpa <= 2500.0,
        "plant.min_dp_kpa and head_kpa: 0 < min_dp_kpa < head_kpa ≤ 2500 kPa",
    );
    v.positive("plant.stale_after_s", s.stale_after_s);
    v.check(
        s.min_fresh_share > 0.0 && s.min_fresh_share <= 1.0,
        "plant.min_fresh_share: must be within 0..1 (and above 0)",
    );
    let period_s = p.period_s.unwrap_or(60.0);
    let valid_for_s = p.command_valid_for_s.unwrap_or(300);
    v.positive("plant.period_s", period_s);
    v.check(
        f64::from(valid_for_s) > period_s,
        "plant.command_valid_for_s: must exceed plant.period_s, or every command expires before the next",
    );
    let plant_stale_after_s = p.plant_stale_after_s.unwrap_or(120.0);
    v.positive("plant.plant_stale_after_s", plant_stale_after_s);
    let modbus = p.modbus.as_ref().and_then(|m| modbus(m, base, v));
    let layout = p.network.as_ref().and_then(|f| layout(&base.join(f), v));
    let mut s = s;
    if s.network_ua_kw_per_k.is_none() {
        s.network_ua_kw_per_k = layout
            .as_ref()
            .map(|l| l.ua_kw_per_k())
            .filter(|ua| *ua > 0.0);
    }
    if p.modbus.is_some() && s.pressure_points.is_none() {
        // A PLC knows its pressure points by number: without a list, only its outlet.
        s.pressure_points = Some(Vec::new());
    }
    Some((
        PlantConfig {
            id: p.id.clone(),
            control,
            period_s,
            command_valid_for_s: valid_for_s,
            plant_stale_after_s,
            settings: s,
            layout,
        },
        modbus,
    ))
}

/// `network = "…"`: the network file's layout, every problem named.
fn layout(path: &Path, v: &mut Errors) -> Option<Arc<crate::network::Layout>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            v.push(format!(
                "plant.network: cannot read {}: {e}",
                path.display()
            ));
            return None;
        }
    };
    match crate::network::Layout::parse(&text) {
        Ok(l) => Some(Arc::new(l)),
        Err(errors) => {
            for e in errors {
                v.push(format!("plant.network {}: {e}", path.display()));
            }
            None
        }
    }
}

/// `pressure_points`: configured stations, each once, at most 65,535 (a register's range).
fn pressure_points(p: &RawPlant, stations: &[String], v: &mut Errors) -> Option<Vec<StationId>> {
    let list = p.pressure_points.as_ref()?;
    let mut out: Vec<StationId> = Vec::new();
    for id in list {
        match StationId::new(id) {
            Ok(sid) if stations.contains(id) && !out.contains(&sid) => out.push(sid),
            Ok(sid) if out.contains(&sid) => {
                v.push(format!("plant.pressure_points: {id:?} is listed twice"))
            }
            _ => v.push(format!(
                "plant.pressure_points: {id:?} is not a configured station"
            )),
        }
    }
    v.check(
        out.len() < 65_535,
        "plant.pressure_points: at most 65,534 (a PLC's register numbers them)",
    );
    Some(out)
}

/// `[plant] modbus = { … }`: Modbus TCP only, its map a plant's.
fn modbus(m: &RawModbus, base: &Path, v: &mut Errors) -> Option<PlantModbusConfig> {
    let place = "plant.modbus";
    let n = v.0.len();
    let address = match (&m.address, &m.serial) {
        (Some(a), None) if a.contains(':') => a.clone(),
        (Some(a), None) => format!("{a}:502"),
        _ => {
            v.push(format!(
                "{place}: give address (host:port); a plant is polled over Modbus TCP (a serial plant PLC: put a Modbus TCP gateway in front)"
            ));
            String::new()
        }
    };
    v.check(
        address
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0)),
        format!("{place}.address: {address:?} is not host:port"),
    );
    v.check(
        m.framing == "tcp" && m.requests.is_none() && m.frame_gap_ms.is_none(),
        format!("{place}: framing, requests and frame_gap_ms are for stations' shared lines; a plant has its own Modbus TCP connection"),
    );
    v.check(
        (1..=255).contains(&m.unit_id),
        format!("{place}.unit_id: {} must be 1–255", m.unit_id),
    );
    v.positive(&format!("{place}.poll_interval_s"), m.poll_interval_s);
    v.check(
        m.timeout_ms > 0 && (m.timeout_ms as f64) < m.poll_interval_s * 1000.0,
        format!("{place}.timeout_ms: must be positive and shorter than poll_interval_s"),
    );
    v.check(
        (1..=125).contains(&m.max_registers) && m.max_gap <= 124,
        format!("{place}: max_registers must be 1–125 and max_gap 0–124"),
    );
    let path = base.join(&m.map);
    let map = std::fs::read_to_string(&path)
        .map_err(|e| vec![format!("cannot read: {e}")])
        .and_then(|t| RegisterMap::parse_for(&t, Device::Plant));
    let map = match map {
        Ok(map) => Some(Arc::new(map)),
        Err(errs) => {
            for e in errs {
                v.push(format!("{place}.map {}: {e}", path.display()));
            }
            None
        }
    };
    if v.0.len() > n {
        return None;
    }
    Some(PlantModbusConfig {
        address,
        unit_id: m.unit_id as u8,
        interval: Duration::from_secs_f64(m.poll_interval_s),
        timeout: Duration::from_millis(m.timeout_ms),
        max_registers: m.max_registers,
        coalesce: m.coalesce,
        max_gap: m.max_gap,
        map: map?,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const STATION: &str = "[[station]]\nid = \"st-1\"\nheated_area_m2 = 1000.0\n";

    #[test]
    fn a_plant_section_is_checked_with_every_mistake_named() {
        let ok = Config::parse(
            &format!("{STATION}[plant]\nid = \"main\"\nmin_dp_kpa = 60\n"),
            &no_env,
        )
        .unwrap();
        let p = ok.plant.unwrap();
        assert!(p.control);
        assert_eq!(p.settings.min_dp_kpa, 60.0);
        assert_eq!(p.period_s, 60.0);
        let errors = Config::parse(
            &format!("{STATION}[plant]\nid = \"a b\"\nmode = \"steer\"\nmin_supply_c = 10\nramp_k_per_h = 0\n\
             curve = [[5.0, 70.0], [0.0, 80.0]]\ncommand_valid_for_s = 30\n"),
            &no_env,
        )
        .unwrap_err();
        for place in [
            "plant.id",
            "plant.mode",
            "plant.min_supply_c",
            "plant.ramp_k_per_h",
            "plant.curve",
            "plant.command_valid_for_s",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(place)),
                "{place} not named in {errors:?}"
            );
        }
        assert!(Config::parse(STATION, &no_env).unwrap().plant.is_none());
    }

    #[test]
    fn a_network_file_gives_the_layout_and_the_networks_loss_per_kelvin() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("net.json");
        std::fs::write(
            &file,
            r#"{"nodes": [{"id": "plant", "kind": "plant"}, {"id": "st-1", "kind": "station"}],
                "pipes": [{"id": "p1", "from": "plant", "to": "st-1", "length_m": 2000.0,
                           "inner_diameter_m": 0.2, "thermal_resistance_mK_per_W": 4.0}]}"#,
        )
        .unwrap();
        let text = format!(
            "{STATION}[plant]\nid = \"main\"\nnetwork = {:?}\n",
            file.display().to_string()
        );
        let p = Config::parse(&text, &no_env).unwrap().plant.unwrap();
        assert_eq!(p.layout.unwrap().pipes.len(), 1);
        assert_eq!(p.settings.network_ua_kw_per_k, Some(1.0));
        // A UA given in the config wins over the file's.
        let given = Config::parse(&format!("{text}network_ua_kw_per_k = 3.0\n"), &no_env).unwrap();
        assert_eq!(given.plant.unwrap().settings.network_ua_kw_per_k, Some(3.0));
        let missing = Config::parse(
            &format!("{STATION}[plant]\nid = \"main\"\nnetwork = \"/nonexistent/net.json\"\n"),
            &no_env,
        )
        .unwrap_err();
        assert!(
            missing
                .iter()
                .any(|e| e.starts_with("plant.network: cannot read")),
            "{missing:?}"
        );
    }

    #[test]
    fn a_plant_on_modbus_needs_tcp_a_plants_map_and_configured_pressure_points() {
        let dir = env!("CARGO_MANIFEST_DIR");
        let ok = Config::parse(
            &format!(
                "{STATION}[plant]\nid = \"main\"\npressure_points = [\"st-1\"]\n\
                 modbus = {{ address = \"10.0.0.5\", map = \"{dir}/config/modbus/heatgrid-sim-plant.toml\" }}\n"
            ),
            &no_env,
        )
        .unwrap();
        let m = ok.plant_modbus.unwrap();
        assert_eq!(m.address, "10.0.0.5:502");
        assert_eq!(m.unit_id, 1);
        let points = ok.plant.unwrap().settings.pressure_points.unwrap();
        assert_eq!(points.len(), 1);
        // Without a list, a plant on Modbus holds its head at its outlet.
        let outlet = Config::parse(
            &format!(
                "{STATION}[plant]\nid = \"main\"\n\
                 modbus = {{ address = \"10.0.0.5:502\", map = \"{dir}/config/modbus/heatgrid-sim-plant.toml\" }}\n"
            ),
            &no_env,
        )
        .unwrap();
        assert_eq!(outlet.plant.unwrap().settings.pressure_points, Some(vec![]));
        let errors = Config::parse(
            &format!(
                "{STATION}[plant]\nid = \"main\"\npressure_points = [\"st-9\"]\n\
                 modbus = {{ serial = {{ port = \"/dev/ttyUSB0\" }}, map = \"{dir}/config/modbus/heatgrid-sim.toml\" }}\n"
            ),
            &no_env,
        )
        .unwrap_err();
        for needle in [
            "plant.pressure_points: \"st-9\" is not a configured station",
            "plant.modbus: give address",
            "diff_pressure_kpa is required",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(needle)),
                "{needle} not in {errors:?}"
            );
        }
    }
}
