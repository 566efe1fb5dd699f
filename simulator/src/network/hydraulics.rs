//! The network's pressures and flows when the stations' primary valves, not fixed flows, set
//! what they take: each valve passes ṁ = ρ · Kvs · opening · √(Δp / 1 bar) (m³/h at 1 bar),
//! Δp being what the network leaves across the station (the pump's differential pressure
//! less the friction of the supply and return pipes on the way), so a far station sees less
//! pressure and must open further. The plant's pump follows a curve, head = n² · H₀ −
//! H₀ · (ṁ / ṁ_max)², at a speed n it either is given or chooses to hold a differential pressure
//! at a chosen node.
//!
//! Where it sits: called by [`super::tree::Tree::step`] when the plant has its pump. The
//! flows are found valve by valve (Gauss–Seidel, from the last step's), the speed by regula
//! falsi between the pump's minimum and full speed.

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

/// What the network needs to be solved: per node, a fixed flow or a valve (or nothing); per
/// run, the nodes behind it; per node, the runs from the plant to it.
pub(super) struct Layout<'a> {
    pub behind: &'a [Vec<usize>],
    pub path: &'a [Vec<usize>],
    pub plant: usize,
    pub plant_runs: &'a [usize],
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

/// Solves the flows for a given pump `speed`, starting from `flows` (updated in place).
/// `drop(run, flow)` is a run's friction drop. Returns the node pressures and the plant's.
///
/// Gauss–Seidel over the valves: each in turn gets the flow at which its valve equation
/// holds with every other flow as it stands. For one valve, flow − valve(Δp(flow)) grows
/// with the flow (more flow, more friction, less head), so its root is found by bisection
/// between no flow and what the valve would pass with nothing of its own flowing. Sweeps
/// repeat until no flow moves by more than a millionth.
#[allow(clippy::too_many_arguments)]
pub(super) fn solve_at_speed(
    layout: &Layout<'_>,
    fixed: &[f64],
    valves: &[Option<Valve>],
    pump: &Pump,
    speed: f64,
    density: f64,
    drop: &dyn Fn(usize, f64) -> f64,
    flows: &mut [f64],
) -> (Vec<f64>, f64) {
    let nodes = fixed.len();
    let runs = layout.behind.len();
    for (i, f) in flows.iter_mut().enumerate() {
        if valves[i].is_none() {
            *f = fixed[i];
        }
    }
    let mut run_q: Vec<f64> = (0..runs)
        .map(|r| layout.behind[r].iter().map(|s| flows[*s]).sum())
        .collect();
    let total_of = |run_q: &[f64]| layout.plant_runs.iter().map(|r| run_q[*r]).sum::<f64>();
    for _ in 0..200 {
        let mut moved: f64 = 0.0;
        for n in 0..nodes {
            let Some(v) = valves[n] else {
                continue;
            };
            let old = flows[n];
            for r in &layout.path[n] {
                run_q[*r] -= old;
            }
            let others = total_of(&run_q);
            let dp_at = |m: f64| {
                pump.head(speed, others + m)
                    - 2.0
                        * layout.path[n]
                            .iter()
                            .map(|r| drop(*r, run_q[*r] + m))
                            .sum::<f64>()
            };
            let (mut lo, mut hi) = (0.0, v.flow(dp_at(0.0), density));
            for _ in 0..60 {
                let mid = 0.5 * (lo + hi);
                if mid - v.flow(dp_at(mid), density) > 0.0 {
                    hi = mid;
                } else {
                    lo = mid;
                }
                if hi - lo <= 1e-7 * hi.max(1e-9) {
                    break;
                }
            }
            let m = 0.5 * (lo + hi);
            flows[n] = m;
            for r in &layout.path[n] {
                run_q[*r] += m;
            }
            moved = moved.max((m - old).abs() / m.max(1e-3));
        }
        if moved < 1e-6 {
            break;
        }
    }
    let run_dp: Vec<f64> = (0..runs).map(|r| drop(r, run_q[r])).collect();
    let plant_dp = pump.head(speed, total_of(&run_q));
    let mut node_dp: Vec<f64> = (0..nodes)
        .map(|n| plant_dp - 2.0 * layout.path[n].iter().map(|r| run_dp[*r]).sum::<f64>())
        .collect();
    node_dp[layout.plant] = plant_dp;
    (node_dp, plant_dp)
}

/// Solves flows and pressures under `control`, warm-started from `last` (the previous step's
/// solution, if any).
#[allow(clippy::too_many_arguments)]
pub(super) fn solve(
    layout: &Layout<'_>,
    fixed: &[f64],
    valves: &[Option<Valve>],
    pump: &Pump,
    control: PumpControl,
    density: f64,
    drop: &dyn Fn(usize, f64) -> f64,
    last: &Solved,
) -> Solved {
    let nodes = fixed.len();
    let mut flows = if last.station_flow.len() == nodes {
        last.station_flow.clone()
    } else {
        fixed.to_vec()
    };
    let at = |speed: f64, flows: &mut Vec<f64>| {
        solve_at_speed(layout, fixed, valves, pump, speed, density, drop, flows)
    };
    let (speed, saturated) = match control {
        PumpControl::Speed(s) => (s.clamp(pump.min_speed, 1.0), false),
        PumpControl::DiffPressure { node, setpoint_pa } => {
            // The pressure at the node grows with the speed: regula falsi (Illinois) between
            // the pump's minimum and full speed, to within a pascal.
            let f = |speed: f64, flows: &mut Vec<f64>| at(speed, flows).0[node] - setpoint_pa;
            let (mut a, mut b) = (pump.min_speed, 1.0);
            let fb = f(b, &mut flows);
            if fb < 0.0 {
                (1.0, true)
            } else {
                let fa = f(a, &mut flows);
                if fa > 0.0 {
                    (a, true)
                } else {
                    let (mut fa, mut fb) = (fa, fb);
                    let mut side = 0;
                    let mut c = b;
                    for _ in 0..60 {
                        c = (a * fb - b * fa) / (fb - fa);
                        let fc = f(c, &mut flows);
                        if fc.abs() < 1.0 || (b - a).abs() < 1e-9 {
                            break;
                        }
                        if fc * fb > 0.0 {
                            b = c;
                            fb = fc;
                            if side == 1 {
                                fa /= 2.0;
                            }
                            side = 1;
                        } else {
                            a = c;
                            fa = fc;
                            if side == -1 {
                                fb /= 2.0;
                            }
                            side = -1;
                        }
                    }
                    (c, false)
                }
            }
        }
    };
    let (node_dp, plant_dp) = at(speed, &mut flows);
    Solved {
        station_flow: flows,
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
}
