//! The network model against DESTEST (IBPSA Project 1): the 16-house network's steady
//! design-load case (CE0) and its one-week case (CE1), each scored by the published
//! `score.py` against the reference tools' band. The case files are read where they are
//! published (`../shared/validation/destest`) and turned into a [`TreeSpec`] here; the
//! results go to a CSV in the scorer's format, and the scorer's verdict is the test's.

use std::collections::HashMap;
use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use super::pipe::{Fluid, PipeSpec};
use super::tree::{Draw, NodeKind, NodeSpec, RunSpec, Tree, TreeSpec};

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

/// The case's nodes and runs; `pipe` makes each run's pipe from its JSON entry.
fn tree_spec(
    case: &serde_json::Value,
    fluid: Fluid,
    viscosity: f64,
    roughness_m: f64,
    pipe: impl Fn(&serde_json::Value) -> PipeSpec,
) -> TreeSpec {
    let nodes = case["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let id = n["id"].as_str().unwrap().to_owned();
            let kind = match n["kind"].as_str() {
                Some("plant") => NodeKind::Plant,
                Some("building") => NodeKind::Station {
                    station: id.clone(),
                },
                _ => NodeKind::Junction,
            };
            NodeSpec { id, kind }
        })
        .collect();
    let runs = case["pipes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| RunSpec {
            id: p["id"].as_str().unwrap().to_owned(),
            from: p["from"].as_str().unwrap().to_owned(),
            to: p["to"].as_str().unwrap().to_owned(),
            pipe: pipe(p),
            roughness_m,
        })
        .collect();
    TreeSpec {
        fluid,
        viscosity_pa_s: viscosity,
        nodes,
        runs,
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
    let fluid = Fluid {
        cp: f(fl, "specific_heat_J_per_kgK"),
        density: f(fl, "density_kg_per_m3"),
    };
    let (l_ins, l_wall) = (
        f(bc, "insulation_conductivity_W_per_mK"),
        f(bc, "pipe_wall_conductivity_W_per_mK"),
    );
    let spec = tree_spec(
        &case,
        fluid,
        f(fl, "dynamic_viscosity_Pa_s"),
        f(bc, "pipe_roughness_mm") / 1000.0,
        |p| {
            let (d, wall, ins) = (
                f(p, "inner_diameter_m"),
                f(p, "wall_thickness_m"),
                f(p, "insulation_thickness_m"),
            );
            let (r0, r1) = (d / 2.0, d / 2.0 + wall);
            PipeSpec {
                length_m: f(p, "length_m"),
                inner_diameter_m: d,
                resistance_mk_per_w: (r1 / r0).ln() / (2.0 * PI * l_wall)
                    + ((r1 + ins) / r1).ln() / (2.0 * PI * l_ins),
                wall_capacity_j_per_mk: 0.0,
            }
        },
    );
    let mut tree = Tree::new(spec, 1.0, f(bc, "plant_supply_temperature_C")).unwrap();
    let m = f(bc, "building_mass_flow_kg_per_h") / 3600.0;
    let draws: HashMap<usize, Draw> = tree
        .spec
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n.kind, NodeKind::Station { .. }))
        .map(|(i, _)| {
            (
                i,
                Draw::Flow {
                    kg_s: m,
                    delta_t_k: f(bc, "substation_temperature_drop_K"),
                },
            )
        })
        .collect();
    for _ in 0..2000 {
        tree.step(
            f(bc, "plant_supply_temperature_C"),
            &draws,
            f(bc, "ground_temperature_C"),
            60.0,
        );
    }
    let s = tree.state().clone();
    let node = |id: &str| tree.node(id).unwrap();
    let run = |id: &str| tree.run(id).unwrap();
    let dp = |path: &[&str]| path.iter().map(|r| s.dp_pa[run(r)]).sum::<f64>();
    let mut cols: Vec<(String, f64)> = vec![
        (
            "mass_flow_plant_kg_per_h".into(),
            s.plant_flow_kg_s * 3600.0,
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
    for n in ["i", "h", "g", "f", "e", "SimpleDistrict_1"] {
        cols.push((format!("T_supply_{n}_C"), s.supply_c[node(n)]));
    }
    for n in ["i", "h", "g", "f", "e", "SimpleDistrict_1"] {
        cols.push((format!("T_return_{n}_C"), s.return_c[node(n)]));
    }
    cols.push((
        "heat_loss_supply_i_to_h_W".into(),
        s.loss_supply_w[run("i-h")],
    ));
    cols.push(("heat_plant_W".into(), s.plant_heat_w));
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
    let fluid = Fluid {
        cp: f(fl, "specific_heat_J_per_kgK"),
        density: f(fl, "density_kg_per_m3"),
    };
    // The case gives no wall: a 3.5 mm PE wall (930 kg/m³, 2300 J/(kg·K)) holds heat as a
    // real service pipe does (the night-time cooling depends on it).
    let spec = tree_spec(&case, fluid, 5e-4, 1e-5, |p| {
        let (d, ins) = (f(p, "inner_diameter_m"), f(p, "insulation_thickness_m"));
        let r0 = d / 2.0;
        let wall = 0.0035;
        PipeSpec {
            length_m: f(p, "length_m"),
            inner_diameter_m: d,
            resistance_mk_per_w: ((r0 + ins) / r0).ln()
                / (2.0 * PI * f(p, "insulation_conductivity_W_per_mK")),
            wall_capacity_j_per_mk: PI * ((r0 + wall).powi(2) - r0 * r0) * 930.0 * 2300.0,
        }
    });
    let supply = f(bc, "plant_supply_temperature_C");
    let ground = f(bc, "ground_temperature_C");
    let drop = f(bc, "substation_temperature_drop_K");
    let mut tree = Tree::new(spec, 1.0, supply).unwrap();
    let demand = super::validation::Table::read(&dir.join("heat_demand_per_building.csv"));
    let (dt_s, dw) = (demand.col("time_s"), demand.col("heat_demand_W"));
    let houses: Vec<usize> = tree
        .spec
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n.kind, NodeKind::Station { .. }))
        .map(|(i, _)| i)
        .collect();
    let bypass = 0.0009;
    let step = 10.0;
    let mut rows = vec!["time_s,heat_injection_W,heat_losses_W,critical_temperature_K".to_owned()];
    let mut t = 0.0;
    let record = |t: f64, tree: &Tree, rows: &mut Vec<String>| {
        let s = tree.state();
        let critical = houses
            .iter()
            .map(|h| s.supply_c[*h])
            .fold(f64::INFINITY, f64::min);
        rows.push(format!(
            "{t},{:.3},{:.3},{:.4}",
            s.plant_heat_w,
            s.losses_w(),
            critical + 273.15
        ));
    };
    // t = 0: one short step so that every figure exists.
    let draws = |t: f64| -> HashMap<usize, Draw> {
        let w = super::validation::at(&dt_s, &dw, t);
        houses
            .iter()
            .map(|h| {
                (
                    *h,
                    Draw::Heat {
                        w,
                        delta_t_k: drop,
                        bypass_kg_s: bypass,
                    },
                )
            })
            .collect()
    };
    tree.step(supply, &draws(0.0), ground, 1e-3);
    record(0.0, &tree, &mut rows);
    while t < 604_800.0 - 1e-6 {
        t += step;
        tree.step(supply, &draws(t), ground, step);
        if (t / 900.0 - (t / 900.0).round()).abs() < 1e-9 {
            record(t, &tree, &mut rows);
        }
    }
    let out = tempfile::tempdir().unwrap();
    let csv = out.path().join("ce1.csv");
    std::fs::write(&csv, rows.join("\n") + "\n").unwrap();
    let (passed, failed, text) = score("ce1", &csv);
    eprintln!("{text}");
    assert_eq!((passed, failed), (12, 0), "{text}");
}
