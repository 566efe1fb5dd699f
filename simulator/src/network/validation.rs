//! The pipe model against published measurements (`../shared/validation/pipe_measurements`):
//! the seven ULg step tests (a 39 m steel pipe on a test bench: the outlet's timing within a
//! tenth of the water's transit time) and one week of the AIT network branch (Pongau: the
//! substations' temperatures beside the Modelica Buildings plug-flow pipe's on the same data).
//! The data are read where they are published, never copied into the project.

use std::path::PathBuf;

use super::pipe::{Fluid, Pipe, PipeSpec};

/// The published validation data: `HEATGRID_VALIDATION_DIR`, else the first `shared/validation`
/// beside the checkout or above it (`../shared/validation` for a clone next to `shared/`).
pub(super) fn validation_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HEATGRID_VALIDATION_DIR") {
        return PathBuf::from(dir);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|a| a.join("shared/validation"))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| manifest.join("../../shared/validation"))
}

/// A CSV file with a header: its columns by name.
pub(super) struct Table {
    names: Vec<String>,
    rows: Vec<Vec<f64>>,
}

impl Table {
    pub(super) fn read(path: &std::path::Path) -> Table {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the validation data must be there)",
                path.display()
            )
        });
        let mut lines = text.lines();
        let names = lines
            .next()
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_owned())
            .collect();
        let rows = lines
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.split(',')
                    .map(|v| v.trim().parse().unwrap_or(f64::NAN))
                    .collect()
            })
            .collect();
        Table { names, rows }
    }

    pub(super) fn col(&self, name: &str) -> Vec<f64> {
        let i = self
            .names
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.names));
        self.rows.iter().map(|r| r[i]).collect()
    }
}

/// `ys` at `t`, linear between the samples `ts` (held beyond them).
pub(super) fn at(ts: &[f64], ys: &[f64], t: f64) -> f64 {
    let k = ts.partition_point(|x| *x <= t);
    if k == 0 {
        return ys[0];
    }
    if k >= ts.len() {
        return ys[ts.len() - 1];
    }
    let (t0, t1) = (ts[k - 1], ts[k]);
    let w = if t1 > t0 { (t - t0) / (t1 - t0) } else { 0.0 };
    ys[k - 1] + (ys[k] - ys[k - 1]) * w
}

fn json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the validation data must be there)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One ULg test: the model's outlet at the record's instants, and the water's transit time.
fn ulg_run(id: &str) -> (Vec<f64>, Vec<f64>, Vec<f64>, f64) {
    let dir = validation_dir().join("pipe_measurements/ulg");
    let meta = json(&dir.join("pipe.json"));
    let p = &meta["pipe"];
    let (d_in, d_out) = (
        p["inner_diameter_m"].as_f64().unwrap(),
        p["steel_outer_diameter_m"].as_f64().unwrap(),
    );
    let steel = p["steel_density_kg_per_m3"].as_f64().unwrap()
        * p["steel_specific_heat_J_per_kgK"].as_f64().unwrap();
    let spec = PipeSpec {
        length_m: p["length_m"].as_f64().unwrap(),
        inner_diameter_m: d_in,
        resistance_mk_per_w: p["thermal_resistance_mK_per_W"].as_f64().unwrap(),
        wall_capacity_j_per_mk: std::f64::consts::PI / 4.0 * (d_out * d_out - d_in * d_in) * steel,
    };
    let ambient = meta["surroundings"]["documented_ambient_temperature_C"]
        .as_f64()
        .unwrap();
    let test = &meta["tests"][id];
    let data = Table::read(&dir.join(test["file"].as_str().unwrap()));
    let (ts, t_in, t_out) = (
        data.col("time_s"),
        data.col("T_in_water_C"),
        data.col("T_out_water_C"),
    );
    let flow = test["mass_flow_kg_per_s"].as_f64().unwrap();
    let fluid = Fluid::default();
    let mut pipe = Pipe::new(spec, fluid, 0.25, 0.0);
    pipe.fill(
        test["initial_inlet_temperature_C"].as_f64().unwrap(),
        test["initial_outlet_temperature_C"].as_f64().unwrap(),
    );
    let dt = 0.25;
    let mut t = 0.0;
    let mut model = Vec::with_capacity(ts.len());
    let mut out = pipe.outlet_c();
    for &sample in &ts {
        while t + dt <= sample + 1e-9 {
            t += dt;
            out = pipe.step(at(&ts, &t_in, t), flow, ambient, dt);
        }
        model.push(out);
    }
    (ts, t_out, model, spec.transit_s(fluid, flow))
}

/// The shift (s, within ±`span`) that best lays `model` over `measured`: positive when the
/// model is late. And the mean absolute error without a shift.
fn lag_and_mae(ts: &[f64], measured: &[f64], model: &[f64], span: f64) -> (f64, f64) {
    let mae = |shift: f64| {
        let mut n = 0.0_f64;
        let mut sum = 0.0;
        for (&t, &m) in ts.iter().zip(measured) {
            let s = t + shift;
            if s < ts[0] || s > ts[ts.len() - 1] {
                continue;
            }
            sum += (at(ts, model, s) - m).abs();
            n += 1.0;
        }
        sum / n.max(1.0)
    };
    let mut best = (0.0, mae(0.0));
    let steps = (span / 0.5) as i64;
    for k in -steps..=steps {
        let shift = k as f64 * 0.5;
        let e = mae(shift);
        if e < best.1 {
            best = (shift, e);
        }
    }
    (best.0, mae(0.0))
}

#[test]
fn every_ulg_step_reaches_the_outlet_within_a_tenth_of_the_transit_time() {
    let tests = [
        "150801", "151202", "151204_1", "151204_2", "151204_4", "160104_2", "160118_1",
    ];
    let mut report = Vec::new();
    let mut failed = Vec::new();
    for id in tests {
        let (ts, measured, model, transit) = ulg_run(id);
        assert!(ts.len() > 100, "{id}: {} rows", ts.len());
        let (lag, mae) = lag_and_mae(&ts, &measured, &model, transit);
        report.push(format!(
            "{id}: transit {transit:.0} s, outlet {lag:+.1} s ({:+.0} % of it), MAE {mae:.2} K",
            100.0 * lag / transit
        ));
        if lag.abs() > 0.1 * transit {
            failed.push(id);
        }
    }
    eprintln!("ULg:\n  {}", report.join("\n  "));
    assert!(failed.is_empty(), "{failed:?}:\n{}", report.join("\n"));
}

/// The AIT branch: every pipe from `network.json`, driven by the measured inlet temperature,
/// flows and outdoor temperature. Returns the model's temperatures at points 2, 3 and 4 at
/// `instants`.
fn ait_run(instants: &[f64]) -> [Vec<f64>; 3] {
    let dir = validation_dir().join("pipe_measurements/ait");
    let net = json(&dir.join("network.json"));
    let data = Table::read(&dir.join("measurements.csv"));
    let ts = data.col("time_s");
    let t1: Vec<f64> = data.col("T_point1_K").iter().map(|k| k - 273.15).collect();
    let outdoor: Vec<f64> = data.col("T_outdoor_K").iter().map(|k| k - 273.15).collect();
    // Under 0.001 kg/s a substation draws nothing (as the reference models take it).
    let flow = |name: &str| -> Vec<f64> {
        data.col(name)
            .into_iter()
            .map(|m| if m < 0.001 { 0.0 } else { m })
            .collect()
    };
    let (m1, m2, m3, m4) = (
        flow("m_point1_kg_per_s"),
        flow("m_point2_kg_per_s"),
        flow("m_point3_kg_per_s"),
        flow("m_point4_kg_per_s"),
    );
    let fluid = Fluid::default();
    let pipe = |id: &str| -> Pipe {
        let p = net["pipes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .unwrap_or_else(|| panic!("no {id}"));
        let spec = PipeSpec {
            length_m: p["length_m"].as_f64().unwrap(),
            inner_diameter_m: p["inner_diameter_m"].as_f64().unwrap(),
            resistance_mk_per_w: p["thermal_resistance_mK_per_W"].as_f64().unwrap(),
            wall_capacity_j_per_mk: p["wall_heat_capacity_J_per_mK"].as_f64().unwrap(),
        };
        // The reference models start every pipe at 20 °C.
        Pipe::new(spec, fluid, 1.0, 20.0)
    };
    let [mut p0, mut p1, mut p5, mut p2, mut p3, mut p4] =
        ["pipe0", "pipe1", "pipe5", "pipe2", "pipe3", "pipe4"].map(pipe);
    let dt = 10.0;
    let mut t = 0.0;
    let mut out = [Vec::new(), Vec::new(), Vec::new()];
    let mut now = [20.0; 3];
    for &instant in instants {
        while t + dt <= instant + 1e-9 {
            t += dt;
            let g = at(&ts, &outdoor, t);
            let (f2, f3, f4) = (at(&ts, &m2, t), at(&ts, &m3, t), at(&ts, &m4, t));
            let j0 = p0.step(at(&ts, &t1, t), at(&ts, &m1, t), g, dt);
            let j1 = p1.step(j0, f2 + f3 + f4, g, dt);
            let j2 = p5.step(j1, f2 + f3, g, dt);
            now = [
                p2.step(j2, f2, g, dt),
                p3.step(j2, f3, g, dt),
                p4.step(j1, f4, g, dt),
            ];
        }
        for k in 0..3 {
            out[k].push(now[k]);
        }
    }
    out
}

#[test]
fn the_ait_week_is_met_at_the_two_main_substations_as_well_as_the_modelica_plug_flow_pipe_meets_it()
{
    let dir = validation_dir().join("pipe_measurements/ait");
    let data = Table::read(&dir.join("measurements.csv"));
    let reference = Table::read(&dir.join("reference_simulations.csv"));
    let ts = data.col("time_s");
    let m4 = data.col("m_point4_kg_per_s");
    // The reference's own instants, after its first 10,800 s (the unknown initial state).
    let instants: Vec<f64> = reference
        .col("time_s")
        .into_iter()
        .filter(|t| *t > 10_800.0 && *t <= ts[ts.len() - 1])
        .collect();
    let ours = ait_run(&instants);
    let rt = reference.col("time_s");
    let mut report = Vec::new();
    let mut worse = Vec::new();
    for (k, point) in [2, 3, 4].into_iter().enumerate() {
        let measured: Vec<f64> = data
            .col(&format!("T_point{point}_K"))
            .iter()
            .map(|x| x - 273.15)
            .collect();
        let theirs: Vec<f64> = reference
            .col(&format!("plugflow_T_point{point}_K"))
            .iter()
            .map(|x| x - 273.15)
            .collect();
        let (mut e_ours, mut e_theirs, mut b_ours, mut n) = (0.0, 0.0, 0.0, 0.0);
        for (i, &t) in instants.iter().enumerate() {
            // Point 4 only while it draws water: otherwise its sensor drifts.
            if point == 4 && at(&ts, &m4, t) < 0.001 {
                continue;
            }
            let m = at(&ts, &measured, t);
            e_ours += (ours[k][i] - m).abs();
            b_ours += ours[k][i] - m;
            e_theirs += (at(&rt, &theirs, t) - m).abs();
            n += 1.0;
        }
        let (e_ours, e_theirs, b_ours) = (e_ours / n, e_theirs / n, b_ours / n);
        report.push(format!(
            "point {point}: MAE {e_ours:.2} K (bias {b_ours:+.2} K), Modelica plug flow {e_theirs:.2} K, over {n} instants"
        ));
        // Point 4 draws 0.001–0.02 kg/s, off for hours at a time: what its sensor reads then
        // depends on the sensor's own exchange with the room, which the reference models and
        // this pipe model does not (docs/network.md). It is reported, not judged.
        if point != 4 && e_ours > e_theirs {
            worse.push(point);
        }
    }
    eprintln!("AIT:\n  {}", report.join("\n  "));
    assert!(
        worse.is_empty(),
        "worse than the reference at {worse:?}:\n{}",
        report.join("\n")
    );
}
