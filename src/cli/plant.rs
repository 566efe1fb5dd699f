//! `heatgrid plant`: the heat plant as the engine sees it — its latest reading, what the
//! plant loop asks of it and why, its last command and acknowledgement, and the network's
//! pressure (`--json`: the API's JSON unchanged).

use std::fmt::Write as _;

use reqwest::Method;
use serde_json::Value;

use super::remote::{call, Failure, Remote};
use super::render::pretty;

pub(super) async fn plant(remote: &Remote, json: bool) -> Result<String, Failure> {
    let v = call(remote, Method::GET, "/api/v1/plant", None).await?;
    if json {
        return Ok(pretty(&v));
    }
    Ok(render(&v))
}

fn num(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "–".to_owned(), |x| format!("{x:.digits$}"))
}

fn render(v: &Value) -> String {
    let mut out = String::new();
    let r = &v["reading"];
    let _ = writeln!(
        out,
        "plant {} ({}){}{}",
        v["id"].as_str().unwrap_or("?"),
        v["mode"].as_str().unwrap_or("?"),
        if v["stale"] == true {
            " · STALE: no telemetry"
        } else {
            ""
        },
        if v["online"] == false {
            " · offline"
        } else {
            ""
        },
    );
    if let Some(e) = v["comm_error"].as_str() {
        let _ = writeln!(out, "  link: {e}");
    }
    if r.is_object() {
        let _ = writeln!(
            out,
            "  supply {} °C · return {} °C · flow {} m³/h · heat {} kW · Δp {} kPa · pump {} %",
            num(&r["supply_temp_c"], 1),
            num(&r["return_temp_c"], 1),
            num(&r["flow_m3h"], 0),
            num(&r["heat_kw"], 0),
            num(&r["diff_pressure_kpa"], 0),
            num(&r["pump_pct"], 0),
        );
        if let Some(units) = r["units"].as_object().filter(|u| !u.is_empty()) {
            let list: Vec<String> = units
                .iter()
                .map(|(k, x)| format!("{k} {} kW", num(x, 0)))
                .collect();
            let _ = writeln!(out, "  units: {}", list.join(" · "));
        }
    }
    let p = &v["plan"];
    if p.is_object() {
        let critical = &p["critical"];
        let _ = writeln!(
            out,
            "plan ({}): supply {} °C (curve {} °C, trim {} K) · Δp {} kPa at {}",
            p["basis"].as_str().unwrap_or("?"),
            num(&p["supply_setpoint_c"], 1),
            num(&p["curve_c"], 1),
            p["trim_k"]
                .as_f64()
                .map_or_else(|| "–".to_owned(), |x| format!("{x:+.1}")),
            num(&p["diff_pressure_setpoint_kpa"], 0),
            p["pressure_point"].as_str().unwrap_or("?"),
        );
        let _ = writeln!(
            out,
            "  most demanding station {} ({} %), {} stations fresh; curve read {} min ahead ({})",
            critical[0].as_str().unwrap_or("–"),
            num(&critical[1], 0),
            p["fresh_stations"],
            p["lead_s"]
                .as_f64()
                .map_or_else(|| "–".to_owned(), |s| format!("{:.0}", s / 60.0)),
            if p["lead_learned"] == true {
                "the transport time learned"
            } else {
                "as configured"
            },
        );
        if p["loss_kw"].is_number() || p["pump_kw"].is_number() {
            let _ = writeln!(
                out,
                "  network loss {} kW · pumps {} kW · a lower supply {}",
                num(&p["loss_kw"], 0),
                num(&p["pump_kw"], 0),
                match p["lower_pays"].as_bool() {
                    Some(true) => "pays",
                    Some(false) => "does not pay (pumping would cost more than the loss saved)",
                    None => "is not weighed (no network_ua_kw_per_k)",
                }
            );
        }
    }
    let c = &v["last_command"];
    if c.is_object() {
        let acked = v["acked_seq"].as_u64();
        let _ = writeln!(
            out,
            "last command seq {} · {}{}",
            c["seq"],
            match acked {
                Some(a) if Some(a) >= c["seq"].as_u64() => "acknowledged".to_owned(),
                Some(a) => format!("acknowledged up to {a}"),
                None => "no acknowledgement".to_owned(),
            },
            v["ack_error"]
                .as_str()
                .map(|e| format!(" · refused: {e}"))
                .unwrap_or_default(),
        );
    }
    let low = &v["lowest_station_dp"];
    if low.is_array() {
        let _ = writeln!(
            out,
            "lowest station Δp {} kPa at {} (minimum {} kPa)",
            num(&low[1], 0),
            low[0].as_str().unwrap_or("?"),
            num(&v["min_dp_kpa"], 0),
        );
    }
    if let Some(points) = v["points"].as_object().filter(|p| !p.is_empty()) {
        for (k, x) in points {
            let _ = writeln!(out, "pressure point {k}: {} kPa", num(x, 0));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plant_reads_as_one_screen() {
        let v = serde_json::json!({
            "id": "main", "mode": "control", "stale": false, "online": true,
            "reading": {"supply_temp_c": 92.4, "return_temp_c": 51.0, "flow_m3h": 5400.0,
                "heat_kw": 260000.0, "diff_pressure_kpa": 610.0, "pump_pct": 64.0,
                "units": {"base": 200000.0, "peak": 60000.0}},
            "plan": {"basis": "fleet", "supply_setpoint_c": 90.0, "curve_c": 95.0, "trim_k": -5.0,
                "diff_pressure_setpoint_kpa": 55.0, "pressure_point": "st-096",
                "critical": ["st-008", 91.0], "fresh_stations": 100,
                "lead_s": 2700.0, "lead_learned": true,
                "loss_kw": 2300.0, "pump_kw": 1800.0, "lower_pays": false},
            "last_command": {"seq": 12}, "acked_seq": 12, "ack_error": null,
            "lowest_station_dp": ["st-096", 56.0], "min_dp_kpa": 50.0, "points": {}
        });
        let text = render(&v);
        for part in [
            "plant main (control)",
            "supply 92.4 °C",
            "base 200000 kW",
            "supply 90.0 °C (curve 95.0 °C, trim -5.0 K) · Δp 55 kPa at st-096",
            "most demanding station st-008 (91 %), 100 stations fresh; curve read 45 min ahead (the transport time learned)",
            "does not pay",
            "last command seq 12 · acknowledged",
            "lowest station Δp 56 kPa at st-096",
        ] {
            assert!(text.contains(part), "{part:?} not in\n{text}");
        }
    }
}
