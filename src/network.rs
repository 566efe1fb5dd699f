//! The primary network's layout as the engine knows it: read from the network file the
//! simulator runs (docs/network.md, "The network file"), the plant, its junctions, its pipes
//! and which station sits at which node.
//!
//! Where it sits: loaded once at config time (`[plant] network = "…"`). The plant loop takes
//! the network's heat loss per kelvin from it ([`Layout::ua_kw_per_k`]) when the config gives
//! none, and the API serves it (`GET /api/v1/network`) for the control room's schematic:
//! plant → pipes → stations, drawn with the stations' live primary side. The engine reads only
//! what it uses; the simulator's own reader checks the rest of the file.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// One node: the plant, a junction, or a station's connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    pub id: String,
    /// `plant`, `junction` or `station`.
    pub kind: String,
    /// A station node: the station it feeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
}

/// One twin run (supply and return), `from` the end nearer the plant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pipe {
    pub id: String,
    pub from: String,
    pub to: String,
    pub length_m: f64,
    pub inner_diameter_m: f64,
    /// Heat loss per metre of one line and kelvin above the ground, W/(m·K).
    pub loss_w_per_mk: f64,
}

/// The network's layout, checked: one plant, every pipe between known nodes, each node fed by
/// one pipe (radial), every node reachable from the plant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Layout {
    pub nodes: Vec<Node>,
    pub pipes: Vec<Pipe>,
}

#[derive(Deserialize)]
struct RawFile {
    nodes: Vec<RawNode>,
    pipes: Vec<RawPipe>,
}

#[derive(Deserialize)]
struct RawNode {
    id: String,
    kind: String,
    station: Option<String>,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct RawPipe {
    id: String,
    from: String,
    to: String,
    length_m: f64,
    inner_diameter_m: f64,
    thermal_resistance_mK_per_W: Option<f64>,
    loss_coefficient_W_per_mK: Option<f64>,
}

impl Layout {
    /// Parses a network file's text; `Err` names every problem found.
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let raw: RawFile = serde_json::from_str(text).map_err(|e| vec![e.to_string()])?;
        let mut errors = Vec::new();
        let nodes: Vec<Node> = raw
            .nodes
            .into_iter()
            .map(|n| Node {
                station: (n.kind == "station").then(|| n.station.unwrap_or_else(|| n.id.clone())),
                id: n.id,
                kind: n.kind,
            })
            .collect();
        let ids: HashSet<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
        if ids.len() != nodes.len() {
            errors.push("a node id is given twice".to_owned());
        }
        for n in nodes
            .iter()
            .filter(|n| !matches!(n.kind.as_str(), "plant" | "junction" | "station"))
        {
            errors.push(format!(
                "node {:?}: kind {:?} is not plant, junction or station",
                n.id, n.kind
            ));
        }
        let plants: Vec<&Node> = nodes.iter().filter(|n| n.kind == "plant").collect();
        if plants.len() != 1 {
            errors.push(format!("{} plant nodes: exactly one needed", plants.len()));
        }
        let mut pipes = Vec::with_capacity(raw.pipes.len());
        let mut fed: HashSet<&str> = HashSet::new();
        for p in &raw.pipes {
            let place = format!("pipe {:?}", p.id);
            for end in [&p.from, &p.to] {
                if !ids.contains(end.as_str()) {
                    errors.push(format!("{place}: node {end:?} is not in nodes"));
                }
            }
            if !fed.insert(p.to.as_str()) {
                errors.push(format!(
                    "{place}: node {:?} is fed by more than one pipe",
                    p.to
                ));
            }
            let loss = match (p.thermal_resistance_mK_per_W, p.loss_coefficient_W_per_mK) {
                (Some(r), None) if r > 0.0 => 1.0 / r,
                (None, Some(u)) if u >= 0.0 => u,
                _ => {
                    errors.push(format!(
                        "{place}: give one of thermal_resistance_mK_per_W (> 0) or loss_coefficient_W_per_mK"
                    ));
                    0.0
                }
            };
            if !(p.length_m > 0.0 && p.inner_diameter_m > 0.0) {
                errors.push(format!(
                    "{place}: length_m and inner_diameter_m must be positive"
                ));
            }
            pipes.push(Pipe {
                id: p.id.clone(),
                from: p.from.clone(),
                to: p.to.clone(),
                length_m: p.length_m,
                inner_diameter_m: p.inner_diameter_m,
                loss_w_per_mk: loss,
            });
        }
        let layout = Layout { nodes, pipes };
        if errors.is_empty() {
            let reached = layout.depth_m().len();
            if reached != layout.nodes.len() {
                errors.push(format!(
                    "{} of {} nodes are not reached from the plant",
                    layout.nodes.len() - reached,
                    layout.nodes.len()
                ));
            }
        }
        if errors.is_empty() {
            Ok(layout)
        } else {
            Err(errors)
        }
    }

    /// The network's heat loss per kelvin of water above the ground, kW/K: every pipe's length
    /// times its loss per metre, supply and return.
    pub fn ua_kw_per_k(&self) -> f64 {
        self.pipes
            .iter()
            .map(|p| 2.0 * p.length_m * p.loss_w_per_mk)
            .sum::<f64>()
            / 1000.0
    }

    /// Each node reached from the plant, with its pipe length from the plant, m.
    pub fn depth_m(&self) -> HashMap<&str, f64> {
        let mut depth = HashMap::new();
        let Some(plant) = self.nodes.iter().find(|n| n.kind == "plant") else {
            return depth;
        };
        depth.insert(plant.id.as_str(), 0.0);
        let mut todo = vec![plant.id.as_str()];
        while let Some(at) = todo.pop() {
            let d = depth[at];
            for p in self.pipes.iter().filter(|p| p.from == at) {
                if depth.insert(p.to.as_str(), d + p.length_m).is_none() {
                    todo.push(p.to.as_str());
                }
            }
        }
        depth
    }

    /// The station ids the layout places.
    pub fn stations(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().filter_map(|n| n.station.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{
      "ground_temperature_C": 8.0,
      "nodes": [
        {"id": "plant", "kind": "plant"},
        {"id": "j1", "kind": "junction"},
        {"id": "n-st-1", "kind": "station", "station": "st-1", "design_load_kW": 5000.0},
        {"id": "st-2", "kind": "station"}
      ],
      "pipes": [
        {"id": "p1", "from": "plant", "to": "j1", "length_m": 1000.0, "inner_diameter_m": 0.3, "thermal_resistance_mK_per_W": 4.0},
        {"id": "p2", "from": "j1", "to": "n-st-1", "length_m": 200.0, "inner_diameter_m": 0.1, "loss_coefficient_W_per_mK": 0.5},
        {"id": "p3", "from": "j1", "to": "st-2", "length_m": 300.0, "inner_diameter_m": 0.1, "loss_coefficient_W_per_mK": 0.5}
      ]
    }"#;

    #[test]
    fn a_network_file_gives_the_layout_its_depths_and_its_loss_per_kelvin() {
        let l = Layout::parse(FILE).unwrap();
        assert_eq!(l.stations().collect::<Vec<_>>(), ["st-1", "st-2"]);
        // 2 × (1000 / 4 + 200 × 0.5 + 300 × 0.5) W/K.
        assert!((l.ua_kw_per_k() - 1.0).abs() < 1e-12);
        let d = l.depth_m();
        assert_eq!(d["st-2"], 1300.0);
        assert_eq!(d["n-st-1"], 1200.0);
    }

    #[test]
    fn a_broken_layout_names_each_problem() {
        let bad = FILE
            .replace(r#""to": "st-2""#, r#""to": "n-st-1""#)
            .replace(r#""from": "plant""#, r#""from": "nowhere""#)
            .replace(
                r#""loss_coefficient_W_per_mK": 0.5}"#,
                r#""wall_heat_capacity_J_per_mK": 1.0}"#,
            );
        let errors = Layout::parse(&bad).unwrap_err();
        for needle in [
            "node \"nowhere\" is not in nodes",
            "node \"n-st-1\" is fed by more than one pipe",
            "give one of thermal_resistance_mK_per_W",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(needle)),
                "{needle} not in {errors:?}"
            );
        }
        assert!(Layout::parse("[1]").is_err());
    }
}
