//! Replaying a network file with given inputs: `heatgrid-sim --network FILE --inputs CSV`.
//! The published cases (DESTEST, measured pipes) are run this way, and so can any
//! engineer's own.
//!
//! Where it sits: between the file ([`super::file`]) and the model ([`super::tree`]). Inputs
//! are a CSV with `time_s`, `plant_supply_C`, optionally `ground_C`, and per station id S
//! either `S_kg_per_s` (a fixed flow), `S_heat_W` (a heat at a design ΔT) or `S_opening`
//! (its valve's opening, 0–1: the network's pressures set the flow), each optionally with
//! `S_delta_T_K`; with the plant's pump, `pump_speed` or `dp_setpoint_Pa` (held at the
//! file's control node). Values are linear between rows. Results are a CSV at every input row
//! (or every `every_s`): the plant's supply, return, flow, heat and pump, the stations' heat,
//! the pipes' losses, every node's temperatures and pressure difference, and every run's
//! flow and pressure drop.

use std::collections::HashMap;

use super::file::NetworkFile;
use super::hydraulics::{Pump, PumpControl, Valve};
use super::tree::{Draw, NodeKind, Tree};

/// How a replay runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayOptions {
    /// Integration step, s.
    pub step_s: f64,
    /// Cell length of every pipe, m.
    pub cell_m: f64,
    /// Output interval, s (`None`: at every input row).
    pub every_s: Option<f64>,
    /// Cooling at a station when its inputs give no `S_delta_T_K`, K.
    pub delta_t_k: f64,
    /// Flow a station with `S_heat_W` keeps at zero demand, kg/s.
    pub bypass_kg_s: f64,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            step_s: 10.0,
            cell_m: 1.0,
            every_s: None,
            delta_t_k: 30.0,
            bypass_kg_s: 0.0,
        }
    }
}

/// Input columns, by name, linear between rows.
struct Inputs {
    time: Vec<f64>,
    cols: HashMap<String, Vec<f64>>,
}

impl Inputs {
    fn parse(text: &str) -> Result<Inputs, String> {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<String> = lines
            .next()
            .ok_or("inputs: empty")?
            .split(',')
            .map(|s| s.trim().to_owned())
            .collect();
        let mut cols: HashMap<String, Vec<f64>> =
            header.iter().map(|h| (h.clone(), Vec::new())).collect();
        for (row, line) in lines.enumerate() {
            let values: Vec<&str> = line.split(',').collect();
            if values.len() != header.len() {
                return Err(format!(
                    "inputs row {}: {} values for {} columns",
                    row + 2,
                    values.len(),
                    header.len()
                ));
            }
            for (h, v) in header.iter().zip(values) {
                let x: f64 = v.trim().parse().map_err(|_| {
                    format!("inputs row {}, column {h}: {v:?} is not a number", row + 2)
                })?;
                cols.entry(h.clone()).or_default().push(x);
            }
        }
        let time = cols.remove("time_s").ok_or("inputs: no time_s column")?;
        if time.is_empty() || time.windows(2).any(|w| w[1] <= w[0]) {
            return Err("inputs: time_s must have rows and grow".into());
        }
        Ok(Inputs { time, cols })
    }

    fn at(&self, name: &str, t: f64) -> Option<f64> {
        let ys = self.cols.get(name)?;
        let ts = &self.time;
        let k = ts.partition_point(|x| *x <= t);
        Some(if k == 0 {
            ys[0]
        } else if k >= ts.len() {
            ys[ts.len() - 1]
        } else {
            let w = (t - ts[k - 1]) / (ts[k] - ts[k - 1]);
            ys[k - 1] + (ys[k] - ys[k - 1]) * w
        })
    }
}

/// Runs `file` with the inputs in `inputs_csv`; returns the results as CSV text.
pub fn replay(file: &NetworkFile, inputs_csv: &str, o: &ReplayOptions) -> Result<String, String> {
    let inputs = Inputs::parse(inputs_csv)?;
    if !inputs.cols.contains_key("plant_supply_C") {
        return Err("inputs: no plant_supply_C column".into());
    }
    if !(o.step_s > 0.0 && o.cell_m > 0.0) {
        return Err("step and cell length must be positive".into());
    }
    let t0 = inputs.time[0];
    let start = inputs.at("plant_supply_C", t0).unwrap_or(0.0);
    let mut tree = file.tree(o.cell_m, start)?;
    // Each station node's columns.
    let stations: Vec<(usize, String)> = tree
        .spec
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match &n.kind {
            NodeKind::Station { station } => Some((i, station.clone())),
            _ => None,
        })
        .collect();
    let pump = file.pump(&tree);
    let kvs = file.valve_kvs();
    for (i, s) in &stations {
        let (flow, heat, opening) = (
            format!("{s}_kg_per_s"),
            format!("{s}_heat_W"),
            format!("{s}_opening"),
        );
        if inputs.cols.contains_key(&opening) {
            if !kvs.contains_key(i) {
                return Err(format!(
                    "inputs: {opening}, but station {s} has no valve_kvs_m3h in the network file"
                ));
            }
            if pump.is_none() {
                return Err(format!("inputs: {opening}, but the network file has no plant pump to push water through valves"));
            }
        } else if !inputs.cols.contains_key(&flow) && !inputs.cols.contains_key(&heat) {
            return Err(format!("inputs: station {s} has neither {flow} nor {heat}"));
        }
    }
    let control = |t: f64| -> Option<(Pump, PumpControl)> {
        let (pump, node) = pump?;
        let c = match (inputs.at("pump_speed", t), inputs.at("dp_setpoint_Pa", t)) {
            (Some(speed), _) => PumpControl::Speed(speed),
            (None, Some(setpoint_pa)) => PumpControl::DiffPressure { node, setpoint_pa },
            (None, None) => PumpControl::Speed(1.0),
        };
        Some((pump, c))
    };
    let draws = |t: f64| -> HashMap<usize, Draw> {
        stations
            .iter()
            .map(|(i, s)| {
                let dt_k = inputs
                    .at(&format!("{s}_delta_T_K"), t)
                    .unwrap_or(o.delta_t_k);
                let opening = inputs.at(&format!("{s}_opening"), t);
                let draw = match (opening, inputs.at(&format!("{s}_kg_per_s"), t)) {
                    (Some(opening), _) => Draw::Valve {
                        valve: Valve {
                            kvs_m3h: kvs.get(i).copied().unwrap_or(0.0),
                            opening,
                        },
                        delta_t_k: dt_k,
                        plus_kg_s: 0.0,
                    },
                    (None, Some(kg_s)) => Draw::Flow {
                        kg_s,
                        delta_t_k: dt_k,
                    },
                    (None, None) => Draw::Heat {
                        w: inputs.at(&format!("{s}_heat_W"), t).unwrap_or(0.0),
                        delta_t_k: dt_k,
                        bypass_kg_s: o.bypass_kg_s,
                    },
                };
                (*i, draw)
            })
            .collect()
    };
    let ground = |t: f64| {
        inputs
            .at("ground_C", t)
            .unwrap_or(file.ground_temperature_C)
    };
    let supply = |t: f64| inputs.at("plant_supply_C", t).unwrap_or(start);
    let end = inputs.time[inputs.time.len() - 1];
    let outputs: Vec<f64> = match o.every_s {
        Some(e) if e > 0.0 => (0..)
            .map(|k| t0 + k as f64 * e)
            .take_while(|t| *t <= end + 1e-9)
            .collect(),
        _ => inputs.time.clone(),
    };
    let mut out = vec![header(&tree)];
    // The first output: the state after an instant's step (every figure exists).
    let mut t = t0;
    if let Some((p, c)) = control(t) {
        tree.set_pump(p, c);
    }
    tree.step(supply(t), &draws(t), ground(t), 1e-3);
    for &at in &outputs {
        while t + 1e-9 < at {
            let h = o.step_s.min(at - t);
            t += h;
            if let Some((p, c)) = control(t) {
                tree.set_pump(p, c);
            }
            tree.step(supply(t), &draws(t), ground(t), h);
        }
        out.push(row(at, &tree));
    }
    Ok(out.join("\n") + "\n")
}

fn header(tree: &Tree) -> String {
    let mut h = vec![
        "time_s".to_owned(),
        "plant_supply_C".into(),
        "plant_return_C".into(),
        "plant_flow_kg_per_s".into(),
        "plant_heat_W".into(),
        "stations_heat_W".into(),
        "heat_losses_W".into(),
        "pump_speed".into(),
        "plant_dp_Pa".into(),
        "pump_saturated".into(),
        "base_heat_W".into(),
        "peak_heat_W".into(),
        "peak_boiler_h".into(),
    ];
    for n in &tree.spec.nodes {
        h.push(format!("T_supply_{}_C", n.id));
        h.push(format!("T_return_{}_C", n.id));
        h.push(format!("dp_node_{}_Pa", n.id));
    }
    for r in &tree.spec.runs {
        h.push(format!("flow_{}_kg_per_s", r.id));
        h.push(format!("dp_{}_Pa", r.id));
        h.push(format!("loss_supply_{}_W", r.id));
    }
    h.join(",")
}

fn row(t: f64, tree: &Tree) -> String {
    let s = tree.state();
    let plant = tree
        .spec
        .nodes
        .iter()
        .position(|n| n.kind == NodeKind::Plant)
        .unwrap_or(0);
    let mut v = vec![
        format!("{t}"),
        format!("{:.4}", s.supply_c[plant]),
        format!("{:.4}", s.return_c[plant]),
        format!("{:.6}", s.plant_flow_kg_s),
        format!("{:.3}", s.plant_heat_w),
        format!("{:.3}", s.stations_heat_w),
        format!("{:.3}", s.losses_w()),
        format!("{:.4}", s.pump_speed),
        format!("{:.1}", s.plant_dp_pa),
        format!("{}", u8::from(s.pump_saturated)),
        format!("{:.3}", s.base_heat_w),
        format!("{:.3}", s.peak_heat_w),
        format!("{:.4}", s.peak_boiler_s / 3600.0),
    ];
    for i in 0..tree.spec.nodes.len() {
        v.push(format!("{:.4}", s.supply_c[i]));
        v.push(format!("{:.4}", s.return_c[i]));
        v.push(format!("{:.1}", s.node_dp_pa[i]));
    }
    for r in 0..tree.spec.runs.len() {
        v.push(format!("{:.6}", s.flow_kg_s[r]));
        v.push(format!("{:.2}", s.dp_pa[r]));
        v.push(format!("{:.3}", s.loss_supply_w[r]));
    }
    v.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::file::generate;

    #[test]
    fn a_generated_network_replays_a_day_and_its_heat_balances() {
        let file = generate(6, "st-", 3, 50.0);
        let ids: Vec<String> = (1..=6).map(|n| format!("st-{n:03}")).collect();
        let mut csv = String::from("time_s,plant_supply_C,ground_C");
        for s in &ids {
            csv.push_str(&format!(",{s}_heat_W,{s}_delta_T_K"));
        }
        csv.push('\n');
        for h in 0..=24 {
            csv.push_str(&format!("{},{},8", h * 3600, if h < 12 { 95 } else { 85 }));
            for _ in &ids {
                csv.push_str(&format!(",{},45", 2.0e6 + 1.0e6 * ((h % 6) as f64)));
            }
            csv.push('\n');
        }
        let o = ReplayOptions {
            step_s: 30.0,
            cell_m: 10.0,
            bypass_kg_s: 0.5,
            ..ReplayOptions::default()
        };
        let out = replay(&file, &csv, &o).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 26, "a header and one row per input row");
        let header: Vec<&str> = lines[0].split(',').collect();
        let last: Vec<f64> = lines[25].split(',').map(|v| v.parse().unwrap()).collect();
        let col = |name: &str| last[header.iter().position(|h| *h == name).unwrap()];
        assert_eq!(col("time_s"), 86_400.0);
        assert_eq!(col("plant_supply_C"), 85.0);
        // Heat went in at the plant, to the stations and through the pipes' walls; the
        // balance is not exact in motion (the pipes store heat) but close.
        let (plant, stations, losses) = (
            col("plant_heat_W"),
            col("stations_heat_W"),
            col("heat_losses_W"),
        );
        assert!(stations > 10.0e6 && losses > 0.0, "{stations} {losses}");
        assert!(
            (plant - stations - losses).abs() < 0.1 * plant,
            "{plant} {stations} {losses}"
        );
        assert!(col("T_supply_n-st-001_C") < 85.0 + 1e-9);
    }

    #[test]
    fn inputs_that_do_not_fit_are_refused_with_a_reason() {
        let file = generate(2, "st-", 3, 50.0);
        let o = ReplayOptions::default();
        let no_station = "time_s,plant_supply_C\n0,90\n60,90\n";
        assert!(replay(&file, no_station, &o)
            .unwrap_err()
            .contains("station st-001 has neither st-001_kg_per_s nor st-001_heat_W"));
        let backwards =
            "time_s,plant_supply_C,st-001_kg_per_s,st-002_kg_per_s\n60,90,1,1\n0,90,1,1\n";
        assert!(replay(&file, backwards, &o).unwrap_err().contains("grow"));
        let bad = "time_s,plant_supply_C,st-001_kg_per_s,st-002_kg_per_s\n0,90,x,1\n";
        assert!(replay(&file, bad, &o)
            .unwrap_err()
            .contains("row 2, column st-001_kg_per_s"));
    }

    #[test]
    fn the_generated_pump_holds_its_setpoint_at_its_control_station_through_the_valves() {
        let file = generate(30, "st-", 11, 50.0);
        let plant = file
            .plant
            .clone()
            .expect("a generated network has its pump");
        let control = plant.control_node.clone().unwrap();
        let ids: Vec<String> = (1..=30).map(|n| format!("st-{n:03}")).collect();
        let mut csv = String::from("time_s,plant_supply_C,dp_setpoint_Pa");
        for s in &ids {
            csv.push_str(&format!(",{s}_opening,{s}_delta_T_K"));
        }
        for (t, opening) in [(0, 0.3), (3600, 0.3), (7200, 0.45)] {
            csv.push_str(&format!("\n{t},100,100000"));
            for _ in &ids {
                csv.push_str(&format!(",{opening},50"));
            }
        }
        let o = ReplayOptions {
            step_s: 300.0,
            cell_m: 20.0,
            ..ReplayOptions::default()
        };
        let out = replay(&file, &csv, &o).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        let header: Vec<&str> = lines[0].split(',').collect();
        let row =
            |k: usize| -> Vec<f64> { lines[k].split(',').map(|v| v.parse().unwrap()).collect() };
        let col = |r: &[f64], name: &str| r[header.iter().position(|h| *h == name).unwrap()];
        let (mid, end) = (row(2), row(3));
        for r in [&mid, &end] {
            let at_control = col(r, &format!("dp_node_{control}_Pa"));
            assert!(
                (at_control - 1.0e5).abs() < 100.0,
                "{at_control} Pa at {control}, speed {}, saturated {}",
                col(r, "pump_speed"),
                col(r, "pump_saturated")
            );
            assert_eq!(col(r, "pump_saturated"), 0.0);
            // Every station has pressure across it, none more than the plant makes. (Which
            // station sees the least moves with the load: the one worst placed at design flow
            // need not be the one at these openings.)
            for s in &ids {
                let dp = col(r, &format!("dp_node_n-{s}_Pa"));
                assert!(dp > 0.0 && dp < col(r, "plant_dp_Pa"), "{s}: {dp} Pa");
            }
        }
        // Wider valves draw more, and the pump runs faster to hold the bar.
        assert!(col(&end, "plant_flow_kg_per_s") > col(&mid, "plant_flow_kg_per_s"));
        assert!(col(&end, "pump_speed") > col(&mid, "pump_speed"));
        assert!(col(&end, "pump_speed") < 1.0 && col(&mid, "pump_speed") > plant.pump_min_speed);
    }
}
