//! The network model against DESTEST (IBPSA Project 1): the 16-house network's steady
//! design-load case (CE0) and its one-week case (CE1), each scored by the published
//! `score.py` against the reference tools' band. The case files are read where they are
//! published (`../shared/validation/destest`), written as our network file and inputs, and
//! replayed as `heatgrid-sim --network` replays any file ([`super::replay`]); the results go to
//! a CSV in the scorer's format, and the scorer's verdict is the test's.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use super::file::{FluidFile, NetworkFile, NodeFile, PipeFile};
use super::replay::{replay, ReplayOptions};

fn destest_dir() -> PathBuf {
    super::validation::validation_dir().join("destest")
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the validation data must be there)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn f(v: &serde_json::Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number {key} in {v}"))
}

/// The case as a network file: its nodes (buildings are stations named by their id) and its
/// runs, each pipe's resistance and wall made by `pipe` from its JSON entry.
fn network_file(
    case: &serde_json::Value,
    fluid: FluidFile,
    ground_c: f64,
    roughness_m: f64,
    pipe: impl Fn(&serde_json::Value) -> (f64, f64),
) -> NetworkFile {
    let nodes = case["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| NodeFile {
            id: n["id"].as_str().unwrap().to_owned(),
            kind: match n["kind"].as_str() {
                Some("plant") => "plant",
                Some("building") => "station",
                _ => "junction",
            }
            .to_owned(),
            station: None,
            design_load_kW: n["design_peak_load_kW"].as_f64(),
            valve_kvs_m3h: None,
        })
        .collect();
    let pipes = case["pipes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let (resistance, wall) = pipe(p);
            PipeFile {
                id: p["id"].as_str().unwrap().to_owned(),
                from: p["from"].as_str().unwrap().to_owned(),
                to: p["to"].as_str().unwrap().to_owned(),
                length_m: f(p, "length_m"),
                inner_diameter_m: f(p, "inner_diameter_m"),
                roughness_m,
                thermal_resistance_mK_per_W: Some(resistance),
                loss_coefficient_W_per_mK: None,
                wall_heat_capacity_J_per_mK: wall,
                ground_temperature_C: None,
            }
        })
        .collect();
    NetworkFile {
        fluid,
        ground_temperature_C: ground_c,
        plant: None,
        nodes,
        pipes,
    }
}

/// The houses' ids.
fn houses(file: &NetworkFile) -> Vec<String> {
    file.nodes
        .iter()
        .filter(|n| n.kind == "station")
        .map(|n| n.id.clone())
        .collect()
}

/// A replay's output: its columns by name, one row per output instant.
struct Output {
    header: Vec<String>,
    rows: Vec<Vec<f64>>,
}

impl Output {
    fn parse(text: &str) -> Output {
        let mut lines = text.lines();
        let header = lines
            .next()
            .unwrap_or_default()
            .split(',')
            .map(str::to_owned)
            .collect();
        let rows = lines
            .map(|l| {
                l.split(',')
                    .map(|v| v.parse().unwrap_or(f64::NAN))
                    .collect()
            })
            .collect();
        Output { header, rows }
    }

    fn get(&self, row: usize, name: &str) -> f64 {
        let i = self
            .header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no {name} in the replay's output"));
        self.rows[row][i]
    }
}

/// Runs `score.py` on `csv`; returns (passed, failed, the scorer's whole output).
fn score(case: &str, csv: &Path) -> (u32, u32, String) {
    let python = std::env::var("HEATGRID_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(python)
        .arg(destest_dir().join("score.py"))
        .arg(case)
        .arg(csv)
        .output()
        .expect("python3 runs the DESTEST scorer");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let last = text
        .lines()
        .rev()
        .find(|l| l.contains("passed") && l.contains("failed"))
        .unwrap_or_else(|| panic!("no verdict from the scorer:\n{text}"));
    let nums: Vec<u32> = last
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    assert!(nums.len() >= 2, "{last}");
    (nums[0], nums[1], text)
}

#[test]
fn destest_ce0_the_steady_design_load_lies_inside_every_band() {
    let case = json(&destest_dir().join("ce0/network.json"));
    let fl = &case["fluid"];
    let bc = &case["boundary_conditions"];
    let fluid = FluidFile {
        specific_heat_J_per_kgK: f(fl, "specific_heat_J_per_kgK"),
        density_kg_per_m3: f(fl, "density_kg_per_m3"),
        dynamic_viscosity_Pa_s: f(fl, "dynamic_viscosity_Pa_s"),
    };
    let (l_ins, l_wall) = (
        f(bc, "insulation_conductivity_W_per_mK"),
        f(bc, "pipe_wall_conductivity_W_per_mK"),
    );
    let file = network_file(
        &case,
        fluid,
        f(bc, "ground_temperature_C"),
        f(bc, "pipe_roughness_mm") / 1000.0,
        |p| {
            let (d, wall, ins) = (
                f(p, "inner_diameter_m"),
                f(p, "wall_thickness_m"),
                f(p, "insulation_thickness_m"),
            );
            let (r0, r1) = (d / 2.0, d / 2.0 + wall);
            let resistance =
                (r1 / r0).ln() / (2.0 * PI * l_wall) + ((r1 + ins) / r1).ln() / (2.0 * PI * l_ins);
            (resistance, 0.0)
        },
    );
    // Two input rows a long time apart: the network runs into its steady state.
    let m = f(bc, "building_mass_flow_kg_per_h") / 3600.0;
    let drop = f(bc, "substation_temperature_drop_K");
    let supply = f(bc, "plant_supply_temperature_C");
    let houses = houses(&file);
    let mut inputs = String::from("time_s,plant_supply_C");
    for h in &houses {
        inputs.push_str(&format!(",{h}_kg_per_s,{h}_delta_T_K"));
    }
    for t in [0, 120_000] {
        inputs.push_str(&format!("\n{t},{supply}"));
        for _ in &houses {
            inputs.push_str(&format!(",{m},{drop}"));
        }
    }
    let o = ReplayOptions {
        step_s: 60.0,
        cell_m: 1.0,
        ..ReplayOptions::default()
    };
    let out = Output::parse(&replay(&file, &inputs, &o).unwrap());
    let last = out.rows.len() - 1;
    let v = |name: &str| out.get(last, name);
    let dp = |path: &[&str]| path.iter().map(|r| v(&format!("dp_{r}_Pa"))).sum::<f64>();
    let mut cols: Vec<(String, f64)> = vec![
        (
            "mass_flow_plant_kg_per_h".into(),
            v("plant_flow_kg_per_s") * 3600.0,
        ),
        (
            "dp_supply_i_to_e_Pa".into(),
            dp(&["i-h", "h-g", "g-f", "f-e"]),
        ),
        (
            "dp_return_a_to_i_Pa".into(),
            dp(&["i-d", "d-c", "c-b", "b-a"]),
        ),
        ("dp_return_i_to_h_Pa".into(), dp(&["i-h"])),
    ];
    for line in ["supply", "return"] {
        for n in ["i", "h", "g", "f", "e", "SimpleDistrict_1"] {
            let name = format!("T_{line}_{n}_C");
            cols.push((name.clone(), v(&name)));
        }
    }
    cols.push(("heat_loss_supply_i_to_h_W".into(), v("loss_supply_i-h_W")));
    cols.push(("heat_plant_W".into(), v("plant_heat_W")));
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("ce0.csv");
    let header: Vec<&str> = cols.iter().map(|(k, _)| k.as_str()).collect();
    let row: Vec<String> = cols.iter().map(|(_, v)| format!("{v:.4}")).collect();
    std::fs::write(&csv, format!("{}\n{}\n", header.join(","), row.join(","))).unwrap();
    let (passed, failed, text) = score("ce0", &csv);
    eprintln!("{text}");
    assert_eq!((passed, failed), (18, 0), "{text}");
}

#[test]
fn destest_ce1_the_winter_week_lies_inside_every_band() {
    let dir = destest_dir().join("ce1");
    let case = json(&dir.join("network.json"));
    let fl = &case["fluid"];
    let bc = &case["boundary_conditions"];
    let fluid = FluidFile {
        specific_heat_J_per_kgK: f(fl, "specific_heat_J_per_kgK"),
        density_kg_per_m3: f(fl, "density_kg_per_m3"),
        dynamic_viscosity_Pa_s: 5e-4,
    };
    // The case gives no wall: a 3.5 mm PE wall (930 kg/m³, 2300 J/(kg·K)) holds heat as a
    // real service pipe does (the night-time cooling depends on it).
    let file = network_file(&case, fluid, f(bc, "ground_temperature_C"), 1e-5, |p| {
        let (d, ins) = (f(p, "inner_diameter_m"), f(p, "insulation_thickness_m"));
        let r0 = d / 2.0;
        let wall = 0.0035;
        let resistance =
            ((r0 + ins) / r0).ln() / (2.0 * PI * f(p, "insulation_conductivity_W_per_mK"));
        (
            resistance,
            PI * ((r0 + wall).powi(2) - r0 * r0) * 930.0 * 2300.0,
        )
    });
    let supply = f(bc, "plant_supply_temperature_C");
    let drop = f(bc, "substation_temperature_drop_K");
    let demand = super::validation::Table::read(&dir.join("heat_demand_per_building.csv"));
    let (dt_s, dw) = (demand.col("time_s"), demand.col("heat_demand_W"));
    let houses = houses(&file);
    let mut inputs = String::from("time_s,plant_supply_C");
    for h in &houses {
        inputs.push_str(&format!(",{h}_heat_W,{h}_delta_T_K"));
    }
    let horizon = f(bc, "horizon_s");
    for (t, w) in dt_s.iter().zip(&dw).filter(|(t, _)| **t <= horizon) {
        inputs.push_str(&format!("\n{t},{supply}"));
        for _ in &houses {
            inputs.push_str(&format!(",{w},{drop}"));
        }
    }
    let o = ReplayOptions {
        step_s: 10.0,
        cell_m: 1.0,
        every_s: Some(f(bc, "output_interval_s")),
        delta_t_k: drop,
        bypass_kg_s: 0.0009,
    };
    let out = Output::parse(&replay(&file, &inputs, &o).unwrap());
    let mut rows = vec!["time_s,heat_injection_W,heat_losses_W,critical_temperature_K".to_owned()];
    for r in 0..out.rows.len() {
        let critical = houses
            .iter()
            .map(|h| out.get(r, &format!("T_supply_{h}_C")))
            .fold(f64::INFINITY, f64::min);
        rows.push(format!(
            "{},{:.3},{:.3},{:.4}",
            out.get(r, "time_s"),
            out.get(r, "plant_heat_W"),
            out.get(r, "heat_losses_W"),
            critical + 273.15
        ));
    }
    assert_eq!(rows.len(), 674, "673 outputs and the header");
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("ce1.csv");
    std::fs::write(&csv, rows.join("\n") + "\n").unwrap();
    let (passed, failed, text) = score("ce1", &csv);
    eprintln!("{text}");
    assert_eq!((passed, failed), (12, 0), "{text}");
}
