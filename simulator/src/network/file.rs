//! The network file: how a primary network is described (JSON, documented in
//! docs/network.md), turned into a [`TreeSpec`], and generated for N stations.
//!
//! Where it sits: read by `heatgrid-sim --network FILE` (and [`super::replay`]), written by
//! `heatgrid-sim --generate-network N`. Every number carries its unit in its key, as in the
//! published validation cases.

// The fields are the file's keys, units written as units are (kW, J/(kg·K), Pa·s).
#![allow(non_snake_case)]

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::hydraulics::Pump;
use super::pipe::{Fluid, PipeSpec};
use super::tree::{NodeKind, NodeSpec, RunSpec, Tree, TreeSpec};

/// A whole network file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkFile {
    #[serde(default)]
    pub fluid: FluidFile,
    /// The ground's temperature around every pipe that names none of its own, °C.
    pub ground_temperature_C: f64,
    /// The plant's main pump (needed by stations with valves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plant: Option<PlantFile>,
    pub nodes: Vec<NodeFile>,
    pub pipes: Vec<PipeFile>,
}

/// The plant's main pump: its curve at full speed, its lowest speed, and the node whose
/// differential pressure it holds when given a setpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlantFile {
    pub pump_head_Pa: f64,
    pub pump_max_flow_kg_per_s: f64,
    #[serde(default = "default_min_speed")]
    pub pump_min_speed: f64,
    /// Default: the plant itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_node: Option<String>,
    /// The base unit's capacity, kW: heat beyond it comes from the peak boiler (default: the
    /// base unit covers everything).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_unit_kW: Option<f64>,
    /// The differential pressure the plant holds at its outlet on its own (with no valid
    /// command from the engine), Pa. Default: half the pump's head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_head_Pa: Option<f64>,
}

fn default_min_speed() -> f64 {
    0.3
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FluidFile {
    pub specific_heat_J_per_kgK: f64,
    pub density_kg_per_m3: f64,
    pub dynamic_viscosity_Pa_s: f64,
}

impl Default for FluidFile {
    fn default() -> Self {
        Self {
            specific_heat_J_per_kgK: 4184.0,
            density_kg_per_m3: 995.6,
            dynamic_viscosity_Pa_s: 5.0e-4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    pub id: String,
    /// `plant`, `junction` or `station`.
    pub kind: String,
    /// A station node: the station id it feeds (default: the node's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
    /// A station node: its design heat load, kW (what the generator sized the pipes for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub design_load_kW: Option<f64>,
    /// A station node: its primary control valve's flow at full opening and 1 bar, m³/h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valve_kvs_m3h: Option<f64>,
}

/// One twin run (supply and return alike), `from` the end nearer the plant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipeFile {
    pub id: String,
    pub from: String,
    pub to: String,
    pub length_m: f64,
    pub inner_diameter_m: f64,
    #[serde(default = "default_roughness")]
    pub roughness_m: f64,
    /// From the water to the ground, per metre; or give `loss_coefficient_W_per_mK` (its
    /// inverse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thermal_resistance_mK_per_W: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_coefficient_W_per_mK: Option<f64>,
    #[serde(default)]
    pub wall_heat_capacity_J_per_mK: f64,
    /// This pipe's own ground temperature, °C (default: the network's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ground_temperature_C: Option<f64>,
}

fn default_roughness() -> f64 {
    1e-5
}

impl NetworkFile {
    /// Each station node's valve: (node index, Kvs in m³/h), for the nodes that give one.
    pub fn valve_kvs(&self) -> std::collections::BTreeMap<usize, f64> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((i, n.valve_kvs_m3h?)))
            .collect()
    }

    /// The whole network's heat loss per kelvin of water above the ground, W/K: every pipe's
    /// length over its thermal resistance, supply and return.
    pub fn ua_w_per_k(&self) -> f64 {
        self.pipes
            .iter()
            .map(|p| {
                let per_m = match (p.thermal_resistance_mK_per_W, p.loss_coefficient_W_per_mK) {
                    (Some(r), _) if r > 0.0 => 1.0 / r,
                    (_, Some(u)) => u,
                    _ => 0.0,
                };
                2.0 * p.length_m * per_m
            })
            .sum()
    }

    /// Reads and checks a network file.
    pub fn read(path: &std::path::Path) -> Result<NetworkFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn fluid(&self) -> Fluid {
        Fluid {
            cp: self.fluid.specific_heat_J_per_kgK,
            density: self.fluid.density_kg_per_m3,
        }
    }
    /// The network in motion, every pipe at `initial_c` in cells of `cell_m`, with the
    /// file's own ground temperatures and base unit (the pump is the caller's to set: how it
    /// is run is an input, see [`NetworkFile::pump`]).
    pub fn tree(&self, cell_m: f64, initial_c: f64) -> Result<Tree, String> {
        let (spec, grounds) = self.to_spec().map_err(|e| e.join("\n"))?;
        let mut tree = Tree::new(spec, cell_m, initial_c).map_err(|e| e.to_string())?;
        tree.set_own_grounds(grounds);
        if let Some(kw) = self.plant.as_ref().and_then(|p| p.base_unit_kW) {
            tree.set_base_unit(kw * 1000.0);
        }
        Ok(tree)
    }

    /// The plant's pump and the node (index in `tree`) where it holds its pressure (the
    /// plant's own when the file names none), if the file has a pump.
    pub fn pump(&self, tree: &Tree) -> Option<(Pump, usize)> {
        let p = self.plant.as_ref()?;
        let node = p
            .control_node
            .as_ref()
            .and_then(|n| tree.node(n))
            .unwrap_or_else(|| tree.node_of_plant());
        Some((
            Pump {
                head_pa: p.pump_head_Pa,
                max_flow_kg_s: p.pump_max_flow_kg_per_s,
                min_speed: p.pump_min_speed,
            },
            node,
        ))
    }

    /// The network as the model runs it, and each run's own ground temperature (`None`: the
    /// network's); every mistake is named with its place.
    pub fn to_spec(&self) -> Result<(TreeSpec, Vec<Option<f64>>), Vec<String>> {
        let mut errors = Vec::new();
        let mut nodes = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let kind = match n.kind.as_str() {
                "plant" => NodeKind::Plant,
                "junction" => NodeKind::Junction,
                "station" => NodeKind::Station {
                    station: n.station.clone().unwrap_or_else(|| n.id.clone()),
                },
                k => {
                    errors.push(format!(
                        "nodes[{i}] {:?}: kind {k:?} is none of plant, junction, station",
                        n.id
                    ));
                    NodeKind::Junction
                }
            };
            nodes.push(NodeSpec {
                id: n.id.clone(),
                kind,
            });
        }
        let mut runs = Vec::new();
        let mut grounds = Vec::new();
        for (i, p) in self.pipes.iter().enumerate() {
            let place = format!("pipes[{i}] {:?}", p.id);
            let positive = |v: f64| v.is_finite() && v > 0.0;
            if !positive(p.length_m) || !positive(p.inner_diameter_m) {
                errors.push(format!(
                    "{place}: length_m and inner_diameter_m must be positive"
                ));
            }
            let resistance = match (p.thermal_resistance_mK_per_W, p.loss_coefficient_W_per_mK) {
                (Some(r), None) if positive(r) => r,
                (None, Some(u)) if positive(u) => 1.0 / u,
                _ => {
                    errors.push(format!(
                        "{place}: give one of thermal_resistance_mK_per_W and loss_coefficient_W_per_mK, positive"
                    ));
                    1.0
                }
            };
            if !(p.wall_heat_capacity_J_per_mK >= 0.0 && p.roughness_m >= 0.0) {
                errors.push(format!(
                    "{place}: wall_heat_capacity_J_per_mK and roughness_m must not be negative"
                ));
            }
            runs.push(RunSpec {
                id: p.id.clone(),
                from: p.from.clone(),
                to: p.to.clone(),
                pipe: PipeSpec {
                    length_m: p.length_m,
                    inner_diameter_m: p.inner_diameter_m,
                    resistance_mk_per_w: resistance,
                    wall_capacity_j_per_mk: p.wall_heat_capacity_J_per_mK,
                },
                roughness_m: p.roughness_m,
            });
            grounds.push(p.ground_temperature_C);
        }
        if let Some(p) = &self.plant {
            let positive = |v: f64| v.is_finite() && v > 0.0;
            if !positive(p.pump_head_Pa)
                || !positive(p.pump_max_flow_kg_per_s)
                || !(0.0..=1.0).contains(&p.pump_min_speed)
            {
                errors.push(
                    "plant: pump_head_Pa and pump_max_flow_kg_per_s must be positive, pump_min_speed 0–1"
                        .into(),
                );
            }
            if let Some(n) = &p.control_node {
                if !self.nodes.iter().any(|x| &x.id == n) {
                    errors.push(format!("plant.control_node: no node {n:?}"));
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let spec = TreeSpec {
            fluid: self.fluid(),
            viscosity_pa_s: self.fluid.dynamic_viscosity_Pa_s,
            nodes,
            runs,
        };
        Ok((spec, grounds))
    }
}

/// Pre-insulated steel pipe sizes (EN 253, insulation series 2; the casings above DN700
/// approximate): DN, inner diameter, steel outer diameter and casing outer diameter, mm.
const SIZES: [(u32, f64, f64, f64); 22] = [
    (25, 28.5, 33.7, 110.0),
    (32, 37.2, 42.4, 125.0),
    (40, 43.1, 48.3, 125.0),
    (50, 54.5, 60.3, 140.0),
    (65, 70.3, 76.1, 160.0),
    (80, 82.5, 88.9, 180.0),
    (100, 107.1, 114.3, 225.0),
    (125, 132.5, 139.7, 250.0),
    (150, 160.3, 168.3, 280.0),
    (200, 210.1, 219.1, 355.0),
    (250, 263.0, 273.0, 450.0),
    (300, 312.7, 323.9, 500.0),
    (350, 344.4, 355.6, 560.0),
    (400, 393.8, 406.4, 630.0),
    (500, 495.4, 508.0, 800.0),
    (600, 597.0, 610.0, 900.0),
    (700, 696.0, 711.0, 1000.0),
    (800, 797.0, 813.0, 1100.0),
    (900, 894.0, 914.0, 1200.0),
    (1000, 991.0, 1016.0, 1400.0),
    (1200, 1194.0, 1219.0, 1600.0),
    (1400, 1391.0, 1422.0, 1800.0),
];

/// Design rule of the generator: the smallest size whose pressure gradient at design flow is
/// at most this, Pa/m (common practice: 50–150 Pa/m on distribution pipes).
const DESIGN_GRADIENT_PA_PER_M: f64 = 100.0;

/// A pipe run of `size` (an entry of [`SIZES`]): resistance through the PUR insulation
/// (0.027 W/(m·K)) and 0.8 m of soil cover (1.5 W/(m·K)), and the steel wall's heat capacity.
fn sized(id: String, from: String, to: String, length_m: f64, size: usize) -> PipeFile {
    let (_, inner, steel, casing) = SIZES[size];
    let (inner, steel, casing) = (inner / 1000.0, steel / 1000.0, casing / 1000.0);
    let insulation = (casing / steel).ln() / (2.0 * std::f64::consts::PI * 0.027);
    let depth = 0.8 + casing / 2.0;
    let soil = (4.0 * depth / casing).ln() / (2.0 * std::f64::consts::PI * 1.5);
    PipeFile {
        id,
        from,
        to,
        length_m: (length_m * 10.0).round() / 10.0,
        inner_diameter_m: inner,
        roughness_m: 5e-5,
        thermal_resistance_mK_per_W: Some(((insulation + soil) * 1e4).round() / 1e4),
        loss_coefficient_W_per_mK: None,
        wall_heat_capacity_J_per_mK: (std::f64::consts::PI / 4.0
            * (steel * steel - inner * inner)
            * 7850.0
            * 480.0)
            .round(),
        ground_temperature_C: None,
    }
}

/// A radial network for `stations` stations (`{prefix}{n:03}`) with design loads of
/// 2–10 MW, the same for the same `seed` ([`generate_for`]).
pub fn generate(stations: usize, prefix: &str, seed: u64, design_delta_t_k: f64) -> NetworkFile {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x0070_6164_0000_0000);
    let loads: Vec<(String, f64)> = (1..=stations)
        .map(|n| {
            let kw = (rng.random_range(2000.0..10000.0_f64) / 10.0).round() * 10.0;
            (format!("{prefix}{n:03}"), kw)
        })
        .collect();
    generate_for(&loads, seed, design_delta_t_k)
}

/// A radial network for the stations of `loads` (station id, design load in kW), the same
/// for the same `seed`: a transmission main of 2–6 km from the plant to the district,
/// junctions 400–1,200 m apart, each station 100–600 m from its junction,
/// every run sized for the design flow behind it at a ΔT of `design_delta_t_k`, stations with
/// valves sized for their design flow, and a pump that can hold a bar at the worst-placed
/// station.
pub fn generate_for(loads: &[(String, f64)], seed: u64, design_delta_t_k: f64) -> NetworkFile {
    let stations = loads.len();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x6e65_7477_6f72_6b00);
    let fluid = FluidFile::default();
    let junctions = stations.div_ceil(4).max(1);
    let mut nodes = vec![NodeFile {
        id: "plant".into(),
        kind: "plant".into(),
        station: None,
        design_load_kW: None,
        valve_kvs_m3h: None,
    }];
    // (from, to, length); the parent of junction k is any earlier one (a random recursive
    // tree: branches everywhere, about ln(junctions) deep, as mains and their branches are).
    let mut links: Vec<(String, String, f64)> = Vec::new();
    for k in 0..junctions {
        let id = format!("j{:03}", k + 1);
        let parent = if k == 0 {
            "plant".to_owned()
        } else {
            format!("j{:03}", rng.random_range(0..k) + 1)
        };
        // The plant (a CHP or boiler plant outside town) reaches the district through a
        // transmission main; the junctions of a district of 2–10 MW neighbourhood stations lie
        // far apart.
        let length = if k == 0 {
            rng.random_range(2000.0..6000.0)
        } else {
            rng.random_range(400.0..1200.0)
        };
        links.push((parent, id.clone(), length));
        nodes.push(NodeFile {
            id,
            kind: "junction".into(),
            station: None,
            design_load_kW: None,
            valve_kvs_m3h: None,
        });
    }
    let mut load = std::collections::HashMap::new();
    for (station, kw) in loads {
        let (station, kw) = (station.clone(), *kw);
        let id = format!("n-{station}");
        let j = format!("j{:03}", rng.random_range(0..junctions) + 1);
        load.insert(id.clone(), kw);
        links.push((j, id.clone(), rng.random_range(100.0..600.0)));
        // The valve passes the design flow at 1 bar 70 % open.
        let design_m3h = kw * 1000.0
            / (fluid.specific_heat_J_per_kgK * design_delta_t_k)
            / fluid.density_kg_per_m3
            * 3600.0;
        nodes.push(NodeFile {
            id,
            kind: "station".into(),
            station: Some(station),
            design_load_kW: Some(kw),
            valve_kvs_m3h: Some((design_m3h / 0.7).round()),
        });
    }
    // Design flow behind each link: walk from every station up to the plant.
    let parent: std::collections::HashMap<&str, usize> = links
        .iter()
        .enumerate()
        .map(|(i, (_, to, _))| (to.as_str(), i))
        .collect();
    let mut behind_kw = vec![0.0; links.len()];
    for (id, kw) in &load {
        let mut at = id.as_str();
        while let Some(&i) = parent.get(at) {
            behind_kw[i] += kw;
            at = links[i].0.as_str();
        }
    }
    let probe = |size: usize| -> RunSpec {
        let p = sized(String::new(), String::new(), String::new(), 1.0, size);
        RunSpec {
            id: String::new(),
            from: String::new(),
            to: String::new(),
            pipe: PipeSpec {
                length_m: 1.0,
                inner_diameter_m: p.inner_diameter_m,
                resistance_mk_per_w: 1.0,
                wall_capacity_j_per_mk: 0.0,
            },
            roughness_m: p.roughness_m,
        }
    };
    let pipes: Vec<PipeFile> = links
        .iter()
        .zip(&behind_kw)
        .enumerate()
        .map(|(i, ((from, to, len), kw))| {
            let flow = kw * 1000.0 / (fluid.specific_heat_J_per_kgK * design_delta_t_k);
            let size = (0..SIZES.len())
                .find(|s| {
                    super::tree::pressure_drop(
                        &probe(*s),
                        fluid.density_kg_per_m3,
                        fluid.dynamic_viscosity_Pa_s,
                        flow,
                    ) <= DESIGN_GRADIENT_PA_PER_M
                })
                .unwrap_or(SIZES.len() - 1);
            sized(
                format!("p{:03}", i + 1),
                from.clone(),
                to.clone(),
                *len,
                size,
            )
        })
        .collect();
    // The pump: at design flow it must push the design flow through the worst path (supply
    // and return) and leave 1 bar across that station, with a quarter in reserve; the
    // station with the worst path is where it holds its pressure.
    let total_kg_s: f64 =
        load.values().sum::<f64>() * 1000.0 / (fluid.specific_heat_J_per_kgK * design_delta_t_k);
    let mut worst = (String::new(), 0.0);
    for id in load.keys() {
        let mut path = 0.0;
        let mut at = id.as_str();
        while let Some(&i) = parent.get(at) {
            let p = &pipes[i];
            let run = RunSpec {
                id: String::new(),
                from: String::new(),
                to: String::new(),
                pipe: PipeSpec {
                    length_m: p.length_m,
                    inner_diameter_m: p.inner_diameter_m,
                    resistance_mk_per_w: 1.0,
                    wall_capacity_j_per_mk: 0.0,
                },
                roughness_m: p.roughness_m,
            };
            let flow = behind_kw[i] * 1000.0 / (fluid.specific_heat_J_per_kgK * design_delta_t_k);
            path += 2.0
                * super::tree::pressure_drop(
                    &run,
                    fluid.density_kg_per_m3,
                    fluid.dynamic_viscosity_Pa_s,
                    flow,
                );
            at = links[i].0.as_str();
        }
        if path > worst.1 || (path == worst.1 && id < &worst.0) {
            worst = (id.clone(), path);
        }
    }
    let needed = 1.25 * (worst.1 + 1.0e5);
    // Stations near the plant see more than a bar and take more than their design flow: the
    // pump's full-speed head at zero flow is twice what the design point needs, on a curve
    // H₀ (1 − (q/q_max)²) with q_max = 3 × the design flow.
    let plant = PlantFile {
        pump_head_Pa: (2.0 * needed / 1000.0).round() * 1000.0,
        pump_max_flow_kg_per_s: (3.0 * total_kg_s).round(),
        pump_min_speed: 0.3,
        control_node: Some(worst.0),
        // A base unit for 60 % of the design load: the peak boiler covers the coldest days.
        base_unit_kW: Some((0.6 * load.values().sum::<f64>() / 100.0).round() * 100.0),
        // On its own the plant holds what the worst station needs at design flow, a tenth
        // over: the constant head a centre without the fleet's data runs.
        fixed_head_Pa: Some((1.1 * (worst.1 + 1.0e5) / 1000.0).round() * 1000.0),
    };
    NetworkFile {
        fluid,
        ground_temperature_C: 8.0,
        plant: Some(plant),
        nodes,
        pipes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::tree::Tree;

    #[test]
    fn a_generated_network_is_a_tree_sized_for_its_design_load() {
        let file = generate(40, "st-", 7, 50.0);
        assert_eq!(
            file,
            generate(40, "st-", 7, 50.0),
            "the same for the same seed"
        );
        let (spec, grounds) = file.to_spec().unwrap();
        assert_eq!(grounds.len(), spec.runs.len());
        let tree = Tree::new(spec.clone(), 10.0, 60.0).unwrap();
        let stations = spec
            .nodes
            .iter()
            .filter(|n| matches!(n.kind, NodeKind::Station { .. }))
            .count();
        assert_eq!(stations, 40);
        // The run leaving the plant carries the whole design load and is the largest.
        let first = tree.run("p001").unwrap();
        let biggest = spec
            .runs
            .iter()
            .map(|r| r.pipe.inner_diameter_m)
            .fold(0.0, f64::max);
        assert_eq!(spec.runs[first].pipe.inner_diameter_m, biggest);
        // Every run within the design gradient at its design flow (or the largest size).
        let text = serde_json::to_string_pretty(&file).unwrap();
        let back: NetworkFile = serde_json::from_str(&text).unwrap();
        assert_eq!(back.nodes, file.nodes, "the file reads back as written");
        for (a, b) in back.pipes.iter().zip(&file.pipes) {
            assert_eq!((&a.id, &a.from, &a.to), (&b.id, &b.from, &b.to));
            let close = |x: f64, y: f64| (x - y).abs() <= 1e-12 * y.abs().max(1.0);
            assert!(close(a.length_m, b.length_m) && close(a.inner_diameter_m, b.inner_diameter_m));
        }
    }

    #[test]
    fn every_mistake_in_a_file_is_named_with_its_place() {
        let mut file = generate(3, "st-", 1, 50.0);
        file.nodes[1].kind = "valve".into();
        file.pipes[0].length_m = 0.0;
        file.pipes[1].thermal_resistance_mK_per_W = None;
        let errors = file.to_spec().unwrap_err().join("\n");
        for want in [
            "nodes[1] \"j001\": kind \"valve\"",
            "pipes[0] \"p001\": length_m and inner_diameter_m must be positive",
            "pipes[1] \"p002\": give one of thermal_resistance_mK_per_W",
        ] {
            assert!(errors.contains(want), "{want:?} not in\n{errors}");
        }
        let bad: Result<NetworkFile, _> = serde_json::from_str(
            r#"{"ground_temperature_C": 8, "nodes": [], "pipes": [], "colour": 1}"#,
        );
        assert!(bad.unwrap_err().to_string().contains("colour"));
    }
}
