//! A radial (tree) primary network: one plant, junctions and stations joined by twin pipes
//! (every run exists once in the supply line and once in the return line), with its hydraulics
//! and its heat.
//!
//! Where it sits: the network ([`super`]) is described by a [`TreeSpec`]; each step the
//! stations say what they draw ([`Draw`]) and the network answers what reaches them and what
//! comes back to the plant ([`TreeState`]). On a tree every pipe's flow is the sum of what the
//! stations behind it draw; each pipe's pressure drop follows Darcy–Weisbach with the Colebrook
//! friction factor. Supply pipes are stepped from the plant outwards, return pipes from the
//! stations inwards, the returns mixing by flow at each junction.

use std::collections::HashMap;

use super::hydraulics::{self, Layout, Pump, PumpControl, Solved, Valve};
use super::pipe::{Fluid, Pipe, PipeSpec};

/// What a node is.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Plant,
    Junction,
    /// A substation; `station` names the station it feeds.
    Station {
        station: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    pub id: String,
    pub kind: NodeKind,
}

/// One twin-pipe run, from the end nearer the plant to the end further away.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    pub id: String,
    pub from: String,
    pub to: String,
    pub pipe: PipeSpec,
    /// Absolute roughness of the inner wall, m.
    pub roughness_m: f64,
}

/// A whole network as described.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeSpec {
    pub fluid: Fluid,
    /// Dynamic viscosity, Pa·s.
    pub viscosity_pa_s: f64,
    pub nodes: Vec<NodeSpec>,
    pub runs: Vec<RunSpec>,
}

/// What a station draws from the network in a step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Draw {
    /// A fixed mass flow (kg/s) returned `delta_t_k` colder than it arrived.
    Flow { kg_s: f64, delta_t_k: f64 },
    /// Heat `w` (W) taken with a design cooling of `delta_t_k`, so a flow of
    /// w / (cp · delta_t_k), plus a bypass that keeps water moving when nothing is drawn.
    Heat {
        w: f64,
        delta_t_k: f64,
        bypass_kg_s: f64,
    },
    /// Through its primary valve: the flow is what the network's pressure pushes through it
    /// (the plant's pump must be set, [`Tree::set_pump`]), plus a fixed `plus_kg_s` beside it
    /// (a hot-water exchanger's own controlled draw), returned `delta_t_k` colder.
    Valve {
        valve: Valve,
        delta_t_k: f64,
        plus_kg_s: f64,
    },
}

/// What the network looks like after a step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TreeState {
    /// Supply and return temperature at every node, °C, in [`TreeSpec::nodes`] order (at a
    /// station: at its inlet and outlet; at the plant: what leaves and what comes back mixed).
    pub supply_c: Vec<f64>,
    pub return_c: Vec<f64>,
    /// Mass flow in every run, kg/s, in [`TreeSpec::runs`] order.
    pub flow_kg_s: Vec<f64>,
    /// Mass flow each node's station takes, kg/s (0 elsewhere), in [`TreeSpec::nodes`] order.
    pub node_flow_kg_s: Vec<f64>,
    /// Friction pressure drop along every run, Pa (the same in its supply and return pipe).
    pub dp_pa: Vec<f64>,
    /// Heat through the walls of every run's supply and return pipe, W.
    pub loss_supply_w: Vec<f64>,
    pub loss_return_w: Vec<f64>,
    /// Mass flow leaving the plant, kg/s.
    pub plant_flow_kg_s: f64,
    /// Heat the plant puts into the water: flow × cp × (supply − return arriving), W.
    pub plant_heat_w: f64,
    /// That heat split in merit order ([`Tree::set_base_unit`]): the base unit first, the
    /// peak boiler for the rest; and the time the peak boiler has run so far, s.
    pub base_heat_w: f64,
    pub peak_heat_w: f64,
    pub peak_boiler_s: f64,
    /// Heat the stations took, W.
    pub stations_heat_w: f64,
    /// With the plant's pump: supply − return pressure at every node, Pa; the pump's speed
    /// (share of full) and differential pressure; whether it could not hold its setpoint.
    pub node_dp_pa: Vec<f64>,
    pub pump_speed: f64,
    pub plant_dp_pa: f64,
    pub pump_saturated: bool,
}

impl TreeState {
    /// Heat lost by every pipe, W.
    pub fn losses_w(&self) -> f64 {
        self.loss_supply_w.iter().sum::<f64>() + self.loss_return_w.iter().sum::<f64>()
    }
}

/// Why a description is not a tree this module can run.
#[derive(Debug, PartialEq)]
pub enum TreeError {
    Plants(usize),
    UnknownNode { run: String, node: String },
    NotATree(String),
    Unreached(String),
}

impl std::fmt::Display for TreeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TreeError::Plants(n) => write!(f, "a network needs exactly one plant node, found {n}"),
            TreeError::UnknownNode { run, node } => write!(f, "pipe {run:?}: no node {node:?}"),
            TreeError::NotATree(node) => {
                write!(f, "node {node:?} is fed by more than one pipe: only radial networks are supported")
            }
            TreeError::Unreached(node) => write!(f, "node {node:?} is not connected to the plant"),
        }
    }
}

impl std::error::Error for TreeError {}

/// What the hydraulics are solved for: fixed flows and valves by node, and the pump.
type HydraulicInputs = (Vec<f64>, Vec<Option<Valve>>, Pump, PumpControl);

/// A network in motion.
#[derive(Debug, Clone)]
pub struct Tree {
    pub spec: TreeSpec,
    supply: Vec<Pipe>,
    ret: Vec<Pipe>,
    /// Runs in order from the plant outwards (a run after the one feeding its `from`).
    order: Vec<usize>,
    /// Per run: the node indices of its ends.
    ends: Vec<(usize, usize)>,
    plant: usize,
    /// Per run: the stations behind it (node indices).
    behind: Vec<Vec<usize>>,
    /// Per run: a ground temperature of its own (`None`: the one each step is given).
    own_ground: Vec<Option<f64>>,
    /// The runs leaving the plant.
    plant_runs: Vec<usize>,
    pump: Option<(Pump, PumpControl)>,
    solved: Solved,
    /// What the last hydraulic solution was for: the same fixed flows, valves and pump give
    /// the same flows (the hydraulics do not depend on temperatures), so it is kept.
    solved_for: Option<HydraulicInputs>,
    /// The plant's base unit's capacity, W (`None`: it covers everything).
    base_unit_w: Option<f64>,
    state: TreeState,
}

impl Tree {
    /// Checks `spec` and starts every pipe at `initial_c`, cut into cells of `cell_m`.
    pub fn new(spec: TreeSpec, cell_m: f64, initial_c: f64) -> Result<Tree, TreeError> {
        let index: HashMap<&str, usize> = spec
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        let plants: Vec<usize> = (0..spec.nodes.len())
            .filter(|i| spec.nodes[*i].kind == NodeKind::Plant)
            .collect();
        let [plant] = plants[..] else {
            return Err(TreeError::Plants(plants.len()));
        };
        let mut ends = Vec::new();
        let mut fed_by: Vec<Option<usize>> = vec![None; spec.nodes.len()];
        for (r, run) in spec.runs.iter().enumerate() {
            let node = |id: &str| {
                index
                    .get(id)
                    .copied()
                    .ok_or_else(|| TreeError::UnknownNode {
                        run: run.id.clone(),
                        node: id.to_owned(),
                    })
            };
            let (a, b) = (node(&run.from)?, node(&run.to)?);
            if fed_by[b].replace(r).is_some() || b == plant {
                return Err(TreeError::NotATree(run.to.clone()));
            }
            ends.push((a, b));
        }
        // From the plant outwards.
        let mut order = Vec::new();
        let mut reached = vec![false; spec.nodes.len()];
        reached[plant] = true;
        let mut frontier = vec![plant];
        while let Some(n) = frontier.pop() {
            for (r, &(a, b)) in ends.iter().enumerate() {
                if a == n && !reached[b] {
                    reached[b] = true;
                    order.push(r);
                    frontier.push(b);
                }
            }
        }
        if let Some(i) = reached.iter().position(|r| !r) {
            return Err(TreeError::Unreached(spec.nodes[i].id.clone()));
        }
        let mut behind = vec![Vec::new(); spec.runs.len()];
        for (s, node) in spec.nodes.iter().enumerate() {
            let mut at = s;
            while let Some(r) = fed_by[at] {
                if matches!(node.kind, NodeKind::Station { .. }) {
                    behind[r].push(s);
                }
                at = ends[r].0;
            }
        }
        let plant_runs = (0..spec.runs.len())
            .filter(|r| ends[*r].0 == plant)
            .collect();
        let pipe = |r: &RunSpec| Pipe::new(r.pipe, spec.fluid, cell_m, initial_c);
        let supply = spec.runs.iter().map(pipe).collect();
        let ret = spec.runs.iter().map(pipe).collect();
        let n = spec.nodes.len();
        let runs = spec.runs.len();
        Ok(Tree {
            supply,
            ret,
            order,
            ends,
            plant,
            behind,
            own_ground: vec![None; runs],
            plant_runs,
            pump: None,
            solved: Solved::default(),
            solved_for: None,
            base_unit_w: None,
            state: TreeState {
                node_dp_pa: vec![0.0; n],
                supply_c: vec![initial_c; n],
                return_c: vec![initial_c; n],
                flow_kg_s: vec![0.0; runs],
                node_flow_kg_s: vec![0.0; n],
                dp_pa: vec![0.0; runs],
                loss_supply_w: vec![0.0; runs],
                loss_return_w: vec![0.0; runs],
                ..TreeState::default()
            },
            spec,
        })
    }

    /// Gives the plant its main pump, run as `control` says (stations drawing through valves
    /// need it).
    pub fn set_pump(&mut self, pump: Pump, control: PumpControl) {
        self.pump = Some((pump, control));
    }

    /// Gives the plant a base unit of `capacity_w`: heat beyond it comes from the peak boiler
    /// (merit order), whose running time is counted.
    pub fn set_base_unit(&mut self, capacity_w: f64) {
        self.base_unit_w = Some(capacity_w.max(0.0));
    }

    /// Gives runs a ground temperature of their own (by run index; `None`: the step's).
    pub fn set_own_grounds(&mut self, grounds: Vec<Option<f64>>) {
        if grounds.len() == self.own_ground.len() {
            self.own_ground = grounds;
        }
    }

    /// The node index of `id`.
    pub fn node(&self, id: &str) -> Option<usize> {
        self.spec.nodes.iter().position(|n| n.id == id)
    }

    /// The plant's node index.
    pub fn node_of_plant(&self) -> usize {
        self.plant
    }

    /// The run index of `id`.
    pub fn run(&self, id: &str) -> Option<usize> {
        self.spec.runs.iter().position(|r| r.id == id)
    }

    pub fn state(&self) -> &TreeState {
        &self.state
    }

    /// The heat every pipe's water and wall hold above `reference_c`, J.
    pub fn stored_j(&self, reference_c: f64) -> f64 {
        self.supply
            .iter()
            .chain(&self.ret)
            .map(|p| p.stored_j(reference_c))
            .sum()
    }

    /// Advances the network by `dt` seconds: the plant sends `plant_supply_c`, each station
    /// node draws what `draws` says (by node index; a station without an entry draws nothing),
    /// the ground is at `ground_c`. The two halves of [`Tree::step_supply`] and
    /// [`Tree::step_return`], each station returning its water as its draw says.
    pub fn step(
        &mut self,
        plant_supply_c: f64,
        draws: &HashMap<usize, Draw>,
        ground_c: f64,
        dt: f64,
    ) -> &TreeState {
        self.step_supply(plant_supply_c, draws, ground_c, dt);
        let cp = self.spec.fluid.cp;
        let mut returns = vec![None; self.spec.nodes.len()];
        for (&node, draw) in draws {
            let (m, t_in) = (self.state.node_flow_kg_s[node], self.state.supply_c[node]);
            let cooled = match *draw {
                Draw::Flow { delta_t_k, .. } | Draw::Valve { delta_t_k, .. } => delta_t_k,
                Draw::Heat { w, .. } if m > 0.0 => w.max(0.0) / (m * cp),
                Draw::Heat { .. } => 0.0,
            };
            returns[node] = Some(t_in - cooled);
        }
        self.step_return(plant_supply_c, &returns, ground_c, dt)
    }

    /// The first half of a step: the flows (each station's from its draw, a valve's from the
    /// network's pressures) and the supply line from the plant outwards, so that each station
    /// knows what reaches it ([`TreeState::supply_c`], [`TreeState::node_flow_kg_s`]) before
    /// it says what it sends back ([`Tree::step_return`], which must follow with the same
    /// `dt`).
    pub fn step_supply(
        &mut self,
        plant_supply_c: f64,
        draws: &HashMap<usize, Draw>,
        ground_c: f64,
        dt: f64,
    ) -> &TreeState {
        let cp = self.spec.fluid.cp;
        let nodes = self.spec.nodes.len();
        // The flow each station takes (a valve's from the network's pressures), then each
        // run's: the sum behind it.
        let mut station_flow = vec![0.0; nodes];
        let mut valves: Vec<Option<Valve>> = vec![None; nodes];
        for (&node, draw) in draws {
            match *draw {
                Draw::Flow { kg_s, .. } => station_flow[node] = kg_s.max(0.0),
                Draw::Heat {
                    w,
                    delta_t_k,
                    bypass_kg_s,
                } => {
                    station_flow[node] =
                        w.max(0.0) / (cp * delta_t_k.max(1e-6)) + bypass_kg_s.max(0.0)
                }
                Draw::Valve {
                    valve, plus_kg_s, ..
                } => {
                    valves[node] = Some(valve);
                    station_flow[node] = plus_kg_s.max(0.0);
                }
            }
        }
        let key = self
            .pump
            .map(|(p, c)| (station_flow.clone(), valves.clone(), p, c));
        if let Some((pump, control)) = self.pump.filter(|_| key != self.solved_for) {
            let layout = Layout {
                ends: &self.ends,
                order: &self.order,
                plant: self.plant,
                density: self.spec.fluid.density,
            };
            let (runs, rho, mu) = (
                &self.spec.runs,
                self.spec.fluid.density,
                self.spec.viscosity_pa_s,
            );
            let drop = |r: usize, q: f64| pressure_drop(&runs[r], rho, mu, q);
            self.solved = hydraulics::solve(
                &layout,
                &station_flow,
                &valves,
                &pump,
                control,
                &drop,
                &self.solved,
            );
            self.solved_for = key;
        }
        if self.pump.is_some() {
            station_flow.clone_from(&self.solved.station_flow);
        }
        self.state.node_flow_kg_s.clone_from(&station_flow);
        let st = &mut self.state;
        if self.pump.is_some() {
            st.node_dp_pa.clone_from(&self.solved.node_dp);
            st.pump_speed = self.solved.speed;
            st.plant_dp_pa = self.solved.plant_dp;
            st.pump_saturated = self.solved.saturated;
        }
        for (r, behind) in self.behind.iter().enumerate() {
            st.flow_kg_s[r] = behind.iter().map(|s| station_flow[*s]).sum();
            st.dp_pa[r] = pressure_drop(
                &self.spec.runs[r],
                self.spec.fluid.density,
                self.spec.viscosity_pa_s,
                st.flow_kg_s[r],
            );
        }
        st.plant_flow_kg_s = self.plant_runs.iter().map(|r| st.flow_kg_s[*r]).sum();
        // Supply, from the plant outwards.
        st.supply_c[self.plant] = plant_supply_c;
        for &r in &self.order {
            let (a, b) = self.ends[r];
            let g = self.own_ground[r].unwrap_or(ground_c);
            st.supply_c[b] = self.supply[r].step(st.supply_c[a], st.flow_kg_s[r], g, dt);
        }
        &self.state
    }

    /// The second half of a step: each station node's outlet temperature (`returns`, by node
    /// index; `None` where nothing is drawn), the return line from the stations inwards
    /// mixing by flow at each junction, the plant's heat and every pipe's loss.
    pub fn step_return(
        &mut self,
        plant_supply_c: f64,
        returns: &[Option<f64>],
        ground_c: f64,
        dt: f64,
    ) -> &TreeState {
        let cp = self.spec.fluid.cp;
        let nodes = self.spec.nodes.len();
        let st = &mut self.state;
        st.stations_heat_w = 0.0;
        for (node, ret) in returns.iter().enumerate() {
            if let Some(t) = ret {
                st.return_c[node] = *t;
                st.stations_heat_w += st.node_flow_kg_s[node] * cp * (st.supply_c[node] - t);
            }
        }
        // Return, from the stations inwards, mixing by flow at each junction.
        let mut heat_in = vec![0.0; nodes]; // Σ m·T arriving at a node on the return line
        let mut flow_in = vec![0.0; nodes];
        let mut temp_sum = vec![(0.0, 0usize); nodes]; // for a node nothing flows into
        for &r in self.order.iter().rev() {
            let (a, b) = self.ends[r];
            if !matches!(self.spec.nodes[b].kind, NodeKind::Station { .. })
                || returns.get(b).is_none_or(|r| r.is_none())
            {
                st.return_c[b] = if flow_in[b] > 0.0 {
                    heat_in[b] / flow_in[b]
                } else if temp_sum[b].1 > 0 {
                    temp_sum[b].0 / temp_sum[b].1 as f64
                } else {
                    self.ret[r].outlet_c()
                };
            }
            let g = self.own_ground[r].unwrap_or(ground_c);
            let out = self.ret[r].step(st.return_c[b], st.flow_kg_s[r], g, dt);
            heat_in[a] += st.flow_kg_s[r] * out;
            flow_in[a] += st.flow_kg_s[r];
            temp_sum[a].0 += out;
            temp_sum[a].1 += 1;
        }
        let p = self.plant;
        st.return_c[p] = if flow_in[p] > 0.0 {
            heat_in[p] / flow_in[p]
        } else if temp_sum[p].1 > 0 {
            temp_sum[p].0 / temp_sum[p].1 as f64
        } else {
            plant_supply_c
        };
        st.plant_heat_w = st.plant_flow_kg_s * cp * (plant_supply_c - st.return_c[p]);
        let heat = st.plant_heat_w.max(0.0);
        st.base_heat_w = heat.min(self.base_unit_w.unwrap_or(f64::INFINITY));
        st.peak_heat_w = heat - st.base_heat_w;
        if st.peak_heat_w > 0.0 {
            st.peak_boiler_s += dt;
        }
        for r in 0..self.spec.runs.len() {
            let g = self.own_ground[r].unwrap_or(ground_c);
            st.loss_supply_w[r] = self.supply[r].loss_w(g);
            st.loss_return_w[r] = self.ret[r].loss_w(g);
        }
        &self.state
    }
}

/// Friction pressure drop (Pa) of `flow` (kg/s) through `run`: Darcy–Weisbach, the friction
/// factor from Colebrook–White in turbulent flow (Re ≥ 4000), 64/Re in laminar flow
/// (Re ≤ 2300), linear in between.
pub fn pressure_drop(run: &RunSpec, density: f64, viscosity: f64, flow: f64) -> f64 {
    let d = run.pipe.inner_diameter_m;
    let area = run.pipe.area_m2();
    let v = flow.abs() / (density * area);
    if v == 0.0 {
        return 0.0;
    }
    let re = density * v * d / viscosity;
    let f = friction_factor(re, run.roughness_m / d);
    f * run.pipe.length_m / d * density * v * v / 2.0
}

/// Darcy friction factor at Reynolds number `re` and relative roughness `rr`.
pub fn friction_factor(re: f64, rr: f64) -> f64 {
    let laminar = |re: f64| 64.0 / re.max(1e-9);
    let turbulent = |re: f64| {
        // Swamee–Jain to start, then Colebrook–White by fixed-point iteration.
        let mut f = 0.25 / (rr / 3.7 + 5.74 / re.powf(0.9)).log10().powi(2);
        for _ in 0..20 {
            let rhs = -2.0 * (rr / 3.7 + 2.51 / (re * f.sqrt())).log10();
            let next = 1.0 / (rhs * rhs);
            if (next - f).abs() < 1e-12 {
                break;
            }
            f = next;
        }
        f
    };
    if re <= 2300.0 {
        laminar(re)
    } else if re >= 4000.0 {
        turbulent(re)
    } else {
        let w = (re - 2300.0) / 1700.0;
        laminar(2300.0) * (1.0 - w) + turbulent(4000.0) * w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, from: &str, to: &str) -> RunSpec {
        RunSpec {
            id: id.into(),
            from: from.into(),
            to: to.into(),
            pipe: PipeSpec {
                length_m: 50.0,
                inner_diameter_m: 0.05,
                resistance_mk_per_w: 4.0,
                wall_capacity_j_per_mk: 500.0,
            },
            roughness_m: 1e-5,
        }
    }

    fn node(id: &str, kind: NodeKind) -> NodeSpec {
        NodeSpec {
            id: id.into(),
            kind,
        }
    }

    fn spec() -> TreeSpec {
        let st = |s: &str| NodeKind::Station { station: s.into() };
        TreeSpec {
            fluid: Fluid::default(),
            viscosity_pa_s: 5e-4,
            nodes: vec![
                node("p", NodeKind::Plant),
                node("j", NodeKind::Junction),
                node("s1", st("st-1")),
                node("s2", st("st-2")),
            ],
            runs: vec![
                run("p-j", "p", "j"),
                run("j-s1", "j", "s1"),
                run("j-s2", "j", "s2"),
            ],
        }
    }

    #[test]
    fn flows_add_up_and_the_heat_balances_in_steady_state() {
        let mut t = Tree::new(spec(), 1.0, 10.0).unwrap();
        let draws: HashMap<usize, Draw> = [
            (
                2,
                Draw::Flow {
                    kg_s: 0.5,
                    delta_t_k: 30.0,
                },
            ),
            (
                3,
                Draw::Flow {
                    kg_s: 0.25,
                    delta_t_k: 30.0,
                },
            ),
        ]
        .into();
        for _ in 0..5000 {
            t.step(70.0, &draws, 10.0, 10.0);
        }
        let s = t.state().clone();
        assert_eq!(s.flow_kg_s, vec![0.75, 0.5, 0.25]);
        assert!((s.plant_flow_kg_s - 0.75).abs() < 1e-12);
        assert!(
            s.supply_c[2] < 70.0 && s.supply_c[2] > 69.0,
            "{:?}",
            s.supply_c
        );
        assert!((s.return_c[2] - (s.supply_c[2] - 30.0)).abs() < 1e-9);
        // Plant heat = stations + every pipe's loss.
        let balance = s.plant_heat_w - s.stations_heat_w - s.losses_w();
        assert!(
            balance.abs() < 1e-3 * s.plant_heat_w,
            "{balance} W of {}",
            s.plant_heat_w
        );
        // The far pipe's drop grows with the square of its flow (turbulent).
        assert!(s.dp_pa[0] > s.dp_pa[1] && s.dp_pa[1] > s.dp_pa[2] && s.dp_pa[2] > 0.0);
    }

    #[test]
    fn the_base_unit_runs_first_and_the_peak_boiler_hours_are_counted() {
        let mut t = Tree::new(spec(), 1.0, 70.0).unwrap();
        let draws = |kg_s: f64| -> HashMap<usize, Draw> {
            [(
                2,
                Draw::Flow {
                    kg_s,
                    delta_t_k: 30.0,
                },
            )]
            .into()
        };
        t.set_base_unit(50_000.0);
        // 0.25 kg/s × 30 K ≈ 31 kW: the base unit alone.
        for _ in 0..100 {
            t.step(70.0, &draws(0.25), 10.0, 60.0);
        }
        let s = t.state().clone();
        assert!(
            s.plant_heat_w > 25_000.0 && s.plant_heat_w < 50_000.0,
            "{}",
            s.plant_heat_w
        );
        assert_eq!((s.peak_heat_w, s.peak_boiler_s), (0.0, 0.0));
        // 1 kg/s ≈ 126 kW: the peak boiler takes what the base unit cannot, for 10 steps.
        for _ in 0..10 {
            t.step(70.0, &draws(1.0), 10.0, 60.0);
        }
        let s = t.state().clone();
        assert_eq!(s.base_heat_w, 50_000.0);
        assert!((s.base_heat_w + s.peak_heat_w - s.plant_heat_w).abs() < 1e-6);
        assert_eq!(s.peak_boiler_s, 600.0);
    }

    #[test]
    fn a_network_that_is_not_a_radial_tree_is_refused() {
        let mut s = spec();
        s.runs.push(run("p-s1", "p", "s1"));
        assert_eq!(
            Tree::new(s, 1.0, 10.0).unwrap_err(),
            TreeError::NotATree("s1".into())
        );
        let mut s = spec();
        s.runs[1].to = "nowhere".into();
        assert!(matches!(
            Tree::new(s, 1.0, 10.0),
            Err(TreeError::UnknownNode { .. })
        ));
        let mut s = spec();
        s.runs.remove(2);
        assert_eq!(
            Tree::new(s, 1.0, 10.0).unwrap_err(),
            TreeError::Unreached("s2".into())
        );
    }

    #[test]
    fn the_friction_factor_meets_known_values() {
        // Smooth pipe, Re 1e5: Colebrook gives 0.0180; laminar Re 1000: 0.064.
        assert!((friction_factor(1e5, 0.0) - 0.0180).abs() < 2e-4);
        assert!((friction_factor(1000.0, 1e-4) - 0.064).abs() < 1e-9);
        // Rough (ε/D = 0.001), Re 1e6: 0.0199.
        assert!((friction_factor(1e6, 1e-3) - 0.0199).abs() < 3e-4);
    }
}
