//! The network's pressures and flows when the stations' primary valves, not fixed flows, set
//! what they take: each valve passes ṁ = ρ · Kvs · opening · √(Δp / 1 bar) (m³/h at 1 bar),
//! Δp being what the network leaves across the station (the pump's differential pressure
//! less the friction of the supply and return pipes on the way), so a far station sees less
//! pressure and must open further. The plant's pump follows a curve, head = n² · H₀ −
//! H₀ · (ṁ / ṁ_max)², at a speed n it either is given or chooses to hold a differential pressure
//! at a chosen node.
//!
//! Where it sits: called by [`super::tree::Tree::step`] when the plant has its pump. The tree
//! is reduced to one conductance at the plant, the pump's point found in closed form, and
//! this repeated with each pipe's friction taken at its new flow ([`solve`]).

/// The plant's main pump.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pump {
    /// Differential pressure at zero flow and full speed, Pa.
    pub head_pa: f64,
    /// Flow at which the full-speed head falls to zero, kg/s.
    pub max_flow_kg_s: f64,
    /// The lowest speed it runs at, a share of full speed.
    pub min_speed: f64,
}

impl Pump {
    /// The differential pressure it makes at `speed` (share of full) and `flow` (kg/s), Pa.
    pub fn head(&self, speed: f64, flow: f64) -> f64 {
        let q = flow / self.max_flow_kg_s.max(1e-9);
        (self.head_pa * (speed * speed - q * q)).max(0.0)
    }
}

/// How the pump's speed is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PumpControl {
    /// A fixed speed (share of full).
    Speed(f64),
    /// The speed that holds `setpoint_pa` between supply and return at node `node` (the
    /// plant's own index: at the plant), within the pump's range.
    DiffPressure { node: usize, setpoint_pa: f64 },
}

/// A station's primary control valve (linear characteristic).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Valve {
    /// Flow at full opening and 1 bar, m³/h.
    pub kvs_m3h: f64,
    /// 0 (shut) … 1 (open).
    pub opening: f64,
}

impl Valve {
    /// Mass flow (kg/s) through the valve at `dp` (Pa) for water of `density`.
    pub fn flow(&self, dp: f64, density: f64) -> f64 {
        density / 3600.0 * self.kvs_m3h * self.opening.clamp(0.0, 1.0) * (dp.max(0.0) / 1e5).sqrt()
    }
}

/// The tree's shape as the solver needs it: per run its end nodes, the runs from the plant
/// outwards, the plant; and the water's density, kg/m³.
pub(super) struct Layout<'a> {
    pub ends: &'a [(usize, usize)],
    pub order: &'a [usize],
    pub plant: usize,
    pub density: f64,
}

/// A solution.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Solved {
    /// Per node, what the station there takes, kg/s.
    pub station_flow: Vec<f64>,
    /// Per node, supply − return pressure, Pa.
    pub node_dp: Vec<f64>,
    /// The pump's speed and differential pressure.
    pub speed: f64,
    pub plant_dp: f64,
    /// The pump could not hold its setpoint (at full speed, or at its minimum with too much).
    pub saturated: bool,
}

/// Solves flows and pressures under `control`, warm-started from `last` (the previous step's
/// solution, if any). `fixed` is each node's fixed flow (kg/s), `valves` its valve;
/// `drop(run, flow)` is a run's friction drop (one line).
///
/// Every element is nearly quadratic: a valve passes c·√Δp, a run (supply and return) drops
/// 2·K·ṁ², the pump's curve is n²·H₀ − H₀·(ṁ/ṁ_max)². With each run's K taken at its last
/// flow (K = drop(ṁ)/ṁ², the friction factor's dependence on the Reynolds number and the
/// fixed flows folded in), the tree reduces exactly, from the stations inwards, to one
/// conductance at the plant: a run in series with what is behind it gives
/// 1/C² = 1/C_behind² + 2K, branches in parallel add. The pump's point is then closed-form,
/// and so is the speed that holds a node's pressure (in a quadratic network every pressure is
/// the same share of the plant's whatever the speed). Pressures and flows are handed back
/// outwards, each run's K is taken again at its new flow, and this repeats until no flow
/// moves by more than a billionth: a few sweeps of the tree, each linear in its size.
pub(super) fn solve(
    layout: &Layout<'_>,
    fixed: &[f64],
    valves: &[Option<Valve>],
    pump: &Pump,
    control: PumpControl,
    drop: &dyn Fn(usize, f64) -> f64,
    last: &Solved,
) -> Solved {
    let density = layout.density;
    let nodes = fixed.len();
    let runs = layout.ends.len();
    let own: Vec<f64> = valves
        .iter()
        .map(|v| v.map_or(0.0, |v| v.flow(1.0, density)))
        .collect();
    // Fixed flow behind each run, and in all.
    let mut fixed_behind = vec![0.0; runs];
    let mut fixed_at = fixed.to_vec();
    for &r in layout.order.iter().rev() {
        let (a, b) = layout.ends[r];
        fixed_behind[r] = fixed_at[b];
        fixed_at[a] += fixed_at[b];
    }
    let fixed_total = fixed_at[layout.plant];
    // Each run's valve flow, from the last solution if there is one.
    let mut valve_q = vec![0.0; runs];
    let mut flow_at = if last.station_flow.len() == nodes {
        last.station_flow.clone()
    } else {
        vec![0.0; nodes]
    };
    for (n, f) in flow_at.iter_mut().enumerate() {
        // The valve's own share (a station may draw a fixed flow beside its valve).
        *f = if valves[n].is_some() {
            (*f - fixed[n]).max(0.0)
        } else {
            0.0
        };
    }
    let mut conductance = vec![0.0; nodes];
    let mut run_c = vec![0.0; runs];
    let (mut dp, mut offset) = (vec![0.0; nodes], vec![0.0; nodes]);
    let (mut speed, mut saturated) = (pump.min_speed, false);
    for sweep in 0..100 {
        // Inwards: each run's valve flow from the stations behind it, and its conductance.
        conductance.clone_from(&own);
        let mut q_at = flow_at.clone();
        for &r in layout.order.iter().rev() {
            let (a, b) = layout.ends[r];
            valve_q[r] = q_at[b];
            q_at[a] += q_at[b];
            let c_b = conductance[b];
            run_c[r] = if c_b > 0.0 {
                // K at the last flow; before there is one, at a guess of 1 kg/s.
                let q = valve_q[r];
                let k = if q > 1e-9 {
                    drop(r, q + fixed_behind[r]) / (q * q)
                } else {
                    let probe = fixed_behind[r].max(1.0);
                    drop(r, probe) / (probe * probe)
                };
                1.0 / (1.0 / (c_b * c_b) + 2.0 * k).sqrt()
            } else {
                0.0
            };
            conductance[a] += run_c[r];
        }
        let c_plant = conductance[layout.plant];
        let valve_total = q_at[layout.plant];
        // The pump: head = n²H₀ − H₀·φ·C²·P/ṁ_max², φ folding the fixed flows into the valves'.
        let phi = if valve_total > 1e-9 {
            ((valve_total + fixed_total) / valve_total).powi(2)
        } else {
            1.0
        };
        let qmax = pump.max_flow_kg_s.max(1e-9);
        let slope = 1.0 + pump.head_pa * phi * c_plant * c_plant / (qmax * qmax);
        // Every node's pressure as share · P − offset, P the plant's: a share where valves
        // draw behind it, less the friction of fixed flows where only they do.
        dp[layout.plant] = 1.0;
        offset[layout.plant] = 0.0;
        for &r in layout.order {
            let (a, b) = layout.ends[r];
            if conductance[b] > 0.0 {
                let ratio = (run_c[r] / conductance[b]).powi(2);
                (dp[b], offset[b]) = (dp[a] * ratio, offset[a] * ratio);
            } else {
                (dp[b], offset[b]) = (dp[a], offset[a] + 2.0 * drop(r, fixed_behind[r]));
            }
        }
        (speed, saturated) = match control {
            PumpControl::Speed(s) => (s.clamp(pump.min_speed, 1.0), false),
            PumpControl::DiffPressure { node, setpoint_pa } => {
                let share = dp[node].max(1e-12);
                let plant_pa = (setpoint_pa + offset[node]) / share;
                let n = (plant_pa * slope / pump.head_pa.max(1e-9)).sqrt();
                if n > 1.0 {
                    (1.0, true)
                } else if n < pump.min_speed {
                    (pump.min_speed, true)
                } else {
                    (n, false)
                }
            }
        };
        let plant_dp = speed * speed * pump.head_pa / slope;
        // Outwards: pressures and valve flows at this pump point.
        let mut moved: f64 = 0.0;
        for n in 0..nodes {
            dp[n] = dp[n] * plant_dp - offset[n];
            let q = own[n] * dp[n].sqrt();
            moved = moved.max((q - flow_at[n]).abs());
            flow_at[n] = q;
        }
        let scale = (valve_total + fixed_total).max(1e-6);
        if sweep > 0 && moved <= 1e-9 * scale {
            break;
        }
    }
    // The pressures the converged flows leave: the pump on its curve, the runs' friction.
    let mut station_flow = flow_at;
    for (n, f) in station_flow.iter_mut().enumerate() {
        *f = if valves[n].is_some() {
            *f + fixed[n]
        } else {
            fixed[n]
        };
    }
    let mut run_q = vec![0.0; runs];
    let mut q_at = station_flow.clone();
    for &r in layout.order.iter().rev() {
        let (a, b) = layout.ends[r];
        run_q[r] = q_at[b];
        q_at[a] += q_at[b];
    }
    let plant_dp = pump.head(speed, q_at[layout.plant]);
    let mut node_dp = vec![0.0; nodes];
    node_dp[layout.plant] = plant_dp;
    for &r in layout.order {
        let (a, b) = layout.ends[r];
        node_dp[b] = node_dp[a] - 2.0 * drop(r, run_q[r]);
    }
    Solved {
        station_flow,
        node_dp,
        speed,
        plant_dp,
        saturated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::pipe::{Fluid, PipeSpec};
    use crate::network::tree::{Draw, NodeKind, NodeSpec, RunSpec, Tree, TreeSpec};
    use std::collections::HashMap;

    /// A plant, a near station 100 m away and a far one 1,600 m away on one main.
    fn tree() -> Tree {
        let run = |id: &str, from: &str, to: &str, length_m: f64| RunSpec {
            id: id.into(),
            from: from.into(),
            to: to.into(),
            pipe: PipeSpec {
                length_m,
                inner_diameter_m: 0.1071,
                resistance_mk_per_w: 3.0,
                wall_capacity_j_per_mk: 0.0,
            },
            roughness_m: 5e-5,
        };
        let node = |id: &str, kind: NodeKind| NodeSpec {
            id: id.into(),
            kind,
        };
        let st = |s: &str| NodeKind::Station { station: s.into() };
        let spec = TreeSpec {
            fluid: Fluid::default(),
            viscosity_pa_s: 3e-4,
            nodes: vec![
                node("plant", NodeKind::Plant),
                node("j", NodeKind::Junction),
                node("near", st("near")),
                node("far", st("far")),
            ],
            runs: vec![
                run("p-j", "plant", "j", 100.0),
                run("j-near", "j", "near", 20.0),
                run("j-far", "j", "far", 1500.0),
            ],
        };
        Tree::new(spec, 50.0, 90.0).unwrap()
    }

    const PUMP: Pump = Pump {
        head_pa: 6.0e5,
        max_flow_kg_s: 60.0,
        min_speed: 0.3,
    };

    fn valves(near: f64, far: f64) -> HashMap<usize, Draw> {
        let v = |opening| Draw::Valve {
            valve: Valve {
                kvs_m3h: 40.0,
                opening,
            },
            delta_t_k: 40.0,
            plus_kg_s: 0.0,
        };
        [(2, v(near)), (3, v(far))].into()
    }

    #[test]
    fn a_far_station_sees_less_pressure_and_must_open_further_for_the_same_flow() {
        let mut t = tree();
        t.set_pump(PUMP, PumpControl::Speed(0.8));
        let s = t.step(90.0, &valves(0.5, 0.5), 8.0, 60.0).clone();
        let (near, far) = (t.node("near").unwrap(), t.node("far").unwrap());
        assert!(s.node_dp_pa[far] < s.node_dp_pa[near], "{:?}", s.node_dp_pa);
        let (r_near, r_far) = (t.run("j-near").unwrap(), t.run("j-far").unwrap());
        let q = |s: &crate::network::tree::TreeState, r: &str| {
            s.flow_kg_s[if r == "j-near" { r_near } else { r_far }]
        };
        assert!(q(&s, "j-far") < q(&s, "j-near"));
        // Each valve passes what its pressure pushes through it.
        for (n, r) in [(near, "j-near"), (far, "j-far")] {
            let v = Valve {
                kvs_m3h: 40.0,
                opening: 0.5,
            };
            let expected = v.flow(s.node_dp_pa[n], 995.6);
            assert!((q(&s, r) - expected).abs() < 1e-4 * expected, "{r}");
        }
        // The pump sits on its curve.
        assert!((s.plant_dp_pa - PUMP.head(0.8, s.plant_flow_kg_s)).abs() < 1.0);
        // Opening the far valve wider raises its flow, and the friction that costs lowers the
        // pressure left across it.
        let s2 = t.step(90.0, &valves(0.5, 1.0), 8.0, 60.0).clone();
        assert!(
            q(&s2, "j-far") > 1.1 * q(&s, "j-far"),
            "{} {}",
            q(&s2, "j-far"),
            q(&s, "j-far")
        );
        assert!(s2.node_dp_pa[far] < s.node_dp_pa[far]);
    }

    #[test]
    fn the_pump_holds_the_pressure_at_the_far_station_until_its_curve_runs_out() {
        let mut t = tree();
        let far = t.node("far").unwrap();
        t.set_pump(
            PUMP,
            PumpControl::DiffPressure {
                node: far,
                setpoint_pa: 0.5e5,
            },
        );
        let low = t.step(90.0, &valves(0.2, 0.2), 8.0, 60.0).clone();
        assert!(
            (low.node_dp_pa[far] - 0.5e5).abs() < 50.0,
            "{}",
            low.node_dp_pa[far]
        );
        assert!(!low.pump_saturated);
        let high = t.step(90.0, &valves(1.0, 1.0), 8.0, 60.0).clone();
        assert!((high.node_dp_pa[far] - 0.5e5).abs() < 50.0);
        assert!(high.pump_speed > low.pump_speed, "more demand, more speed");
        // A setpoint beyond the curve: full speed, and said so.
        t.set_pump(
            PUMP,
            PumpControl::DiffPressure {
                node: far,
                setpoint_pa: 9.0e5,
            },
        );
        let out = t.step(90.0, &valves(1.0, 1.0), 8.0, 60.0).clone();
        assert!(out.pump_saturated && out.pump_speed == 1.0);
        assert!(out.node_dp_pa[far] < 9.0e5);
    }

    #[test]
    fn on_a_generated_network_every_valve_equation_holds_with_fixed_flows_mixed_in() {
        use rand::{Rng, SeedableRng};
        let file = crate::network::file::generate(120, "st-", 5, 50.0);
        let mut tree = file.tree(50.0, 90.0).unwrap();
        let (pump, control_node) = file.pump(&tree).unwrap();
        let kvs = file.valve_kvs();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let rho = tree.spec.fluid.density;
        for (round, setpoint_pa) in [(0, 0.5e5), (1, 0.9e5), (2, 0.7e5)] {
            // Every fifth station draws a fixed flow, the rest through valves opened at random.
            let mut draws = HashMap::new();
            for (&node, &kvs_m3h) in &kvs {
                let draw = if node % 5 == round {
                    Draw::Flow {
                        kg_s: rng.random_range(0.5..5.0),
                        delta_t_k: 40.0,
                    }
                } else {
                    Draw::Valve {
                        valve: Valve {
                            kvs_m3h,
                            opening: rng.random_range(0.05..1.0),
                        },
                        delta_t_k: 40.0,
                        // Every fifth valve station also draws a fixed flow beside its valve.
                        plus_kg_s: if node % 5 == (round + 1) % 5 {
                            1.5
                        } else {
                            0.0
                        },
                    }
                };
                draws.insert(node, draw);
            }
            tree.set_pump(
                pump,
                PumpControl::DiffPressure {
                    node: control_node,
                    setpoint_pa,
                },
            );
            let s = tree.step(90.0, &draws, 8.0, 60.0).clone();
            assert!(!s.pump_saturated, "round {round}: {}", s.pump_speed);
            let at_control = s.node_dp_pa[control_node];
            assert!(
                (at_control - setpoint_pa).abs() < 1e-4 * setpoint_pa,
                "round {round}: {at_control} Pa"
            );
            assert!((s.plant_dp_pa - pump.head(s.pump_speed, s.plant_flow_kg_s)).abs() < 1.0);
            // Each station's flow is what its run carries (a station is a leaf), and a valve's
            // is what the pressure left across it pushes through.
            for (node, draw) in &draws {
                let run = tree
                    .spec
                    .runs
                    .iter()
                    .position(|r| r.to == tree.spec.nodes[*node].id);
                let carried = s.flow_kg_s[run.unwrap()];
                let expected = match draw {
                    Draw::Valve {
                        valve, plus_kg_s, ..
                    } => valve.flow(s.node_dp_pa[*node], rho) + plus_kg_s,
                    Draw::Flow { kg_s, .. } => *kg_s,
                    Draw::Heat { .. } => unreachable!(),
                };
                assert!(
                    (carried - expected).abs() <= 1e-6 * expected.max(1e-3),
                    "round {round}, node {node}: {carried} against {expected}"
                );
            }
        }
    }
}
