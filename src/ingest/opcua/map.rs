//! Node maps: which contract field lives in which OPC UA node, as data.
//!
//! A node map is to an OPC UA station what a register map is to a Modbus one: a TOML file the
//! integrator writes from the PLC's or gateway's address space (see `config/opcua/`). It is
//! read once, at config time, into a [`NodeMap`], validated with every error reported at once,
//! each with its line. Node ids are templates: `{node}` stands for the station's `node` (by
//! default its id), so one map serves every station of a gateway. The namespace is either the
//! index in the node id (`ns=3;s=…`) or, with `namespace_uri`, resolved on every connect from
//! the server's namespace array (indexes may change when a server is reconfigured).
//!
//! Values: a read node's value of any numeric type is `raw × scale + offset`; a written
//! node's value is `(value − offset) / scale`, checked against the node's `min`/`max` (in
//! engineering units) and its type's range, then sent as that exact type (servers refuse a
//! Double written to a Float node).

use std::str::FromStr;

use opcua::types::{NodeId, Variant};
use serde::Deserialize;

use crate::ingest::modbus::map::{READ_FIELDS, WRITE_FIELDS};

/// The node's data type on the server (the type a write must carry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeType {
    Boolean,
    Int16,
    #[serde(rename = "uint16")]
    UInt16,
    Int32,
    #[serde(rename = "uint32")]
    UInt32,
    Int64,
    Float,
    Double,
}

impl NodeType {
    /// The range a raw value of this type holds.
    fn range(self) -> (f64, f64) {
        match self {
            NodeType::Boolean => (0.0, 1.0),
            NodeType::Int16 => (i16::MIN as f64, i16::MAX as f64),
            NodeType::UInt16 => (0.0, u16::MAX as f64),
            NodeType::Int32 => (i32::MIN as f64, i32::MAX as f64),
            NodeType::UInt32 => (0.0, u32::MAX as f64),
            NodeType::Int64 => (-9.007_199_254_740_992e15, 9.007_199_254_740_992e15),
            NodeType::Float => (-(f32::MAX as f64), f32::MAX as f64),
            NodeType::Double => (f64::MIN, f64::MAX),
        }
    }

    fn integer(self) -> bool {
        !matches!(self, NodeType::Float | NodeType::Double)
    }
}

/// Whether the engine reads a node into the reading or writes it with each command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// One mapped node, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub field: String,
    /// The node id with `{node}` still in it.
    pub template: String,
    pub data_type: NodeType,
    pub scale: f64,
    pub offset: f64,
    pub access: Access,
    /// Written values must lie in `min..=max` (engineering units).
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Absolute deadband of the monitored item, in the node's raw units (read nodes).
    pub deadband: Option<f64>,
}

/// A validated node map.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeMap {
    pub device: String,
    /// With it the node ids carry no `ns=`: the index of this URI is looked up on connect.
    pub namespace_uri: Option<String>,
    pub nodes: Vec<Node>,
}

/// A command value a node cannot take.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field} = {value} {why}")]
pub struct WriteError {
    pub field: String,
    pub value: f64,
    pub why: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMap {
    device: Option<String>,
    namespace_uri: Option<String>,
    #[serde(default)]
    node: Vec<toml::Spanned<RawNode>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    field: String,
    node_id: String,
    #[serde(rename = "type")]
    data_type: NodeType,
    #[serde(default = "one")]
    scale: f64,
    #[serde(default)]
    offset: f64,
    #[serde(default = "read")]
    access: String,
    min: Option<f64>,
    max: Option<f64>,
    deadband: Option<f64>,
}

fn one() -> f64 {
    1.0
}

fn read() -> String {
    "read".into()
}

impl NodeMap {
    /// Parses and validates a node map file; `Err` lists every problem, each with its line.
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let raw: RawMap = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        let line_of = |pos: usize| text[..pos.min(text.len())].matches('\n').count() + 1;
        let mut errors = Vec::new();
        let mut nodes: Vec<Node> = Vec::new();
        if let Some(u) = &raw.namespace_uri {
            if u.trim().is_empty() {
                errors.push("namespace_uri: must not be empty".to_owned());
            }
        }
        for spanned in &raw.node {
            let line = line_of(spanned.span().start);
            let r = spanned.get_ref();
            let mut err = |m: String| errors.push(format!("line {line}: {} {m}", r.field));
            let access = match r.access.as_str() {
                "read" => Access::Read,
                "write" => Access::Write,
                a => {
                    err(format!("access {a:?} is neither \"read\" nor \"write\""));
                    continue;
                }
            };
            let fields = if access == Access::Read {
                READ_FIELDS
            } else {
                WRITE_FIELDS
            };
            if !fields.contains(&r.field.as_str()) {
                err(format!(
                    "is not a field a node may {} (one of: {})",
                    if access == Access::Read {
                        "be read into"
                    } else {
                        "take from a command"
                    },
                    fields.join(", ")
                ));
            }
            if let Err(e) = check_node_id(&r.node_id, raw.namespace_uri.is_some()) {
                err(e);
            }
            if !(r.scale.is_finite() && r.scale != 0.0) {
                err(format!("scale {} must be finite and not 0", r.scale));
            }
            if !r.offset.is_finite() {
                err("offset must be finite".to_owned());
            }
            if let (Some(lo), Some(hi)) = (r.min, r.max) {
                if lo > hi {
                    err(format!("min {lo} is above max {hi}"));
                }
            }
            if access == Access::Read && (r.min.is_some() || r.max.is_some()) {
                err("min and max bound what is written; a read value is checked by the contract's ranges".to_owned());
            }
            if let Some(d) = r.deadband {
                if access == Access::Write || !(d.is_finite() && d >= 0.0) {
                    err(format!(
                        "deadband {d} must be a non-negative number on a read node"
                    ));
                }
            }
            if let Some(first) = nodes
                .iter()
                .find(|n| n.field == r.field && n.access == access)
            {
                err(format!("is mapped twice (also to {})", first.template));
            }
            nodes.push(Node {
                field: r.field.clone(),
                template: r.node_id.clone(),
                data_type: r.data_type,
                scale: r.scale,
                offset: r.offset,
                access,
                min: r.min,
                max: r.max,
                deadband: r.deadband,
            });
        }
        for required in ["supply_temp_c", "return_temp_c", "flow_m3h"] {
            if !nodes
                .iter()
                .any(|n| n.field == required && n.access == Access::Read)
            {
                errors.push(format!(
                    "{required} is required in telemetry (contract §1) but no node is read into it"
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(NodeMap {
            device: raw.device.unwrap_or_else(|| "unnamed device".into()),
            namespace_uri: raw.namespace_uri,
            nodes,
        })
    }

    /// The node id of `node` for the station whose `node` name is `name`, in namespace `ns`
    /// (the index of `namespace_uri`; ignored without one).
    pub fn node_id(&self, node: &Node, name: &str, ns: u16) -> Result<NodeId, String> {
        let text = node.template.replace("{node}", name);
        let mut id = NodeId::from_str(&text)
            .map_err(|_| format!("{}: {text:?} is not a node id", node.field))?;
        if self.namespace_uri.is_some() {
            id.namespace = ns;
        }
        Ok(id)
    }

    /// The read nodes, in map order.
    pub fn reads(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.access == Access::Read)
    }

    /// The written nodes, in map order.
    pub fn writes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.access == Access::Write)
    }
}

/// A node id template is `[ns=N;]i=…|s=…|g=…|b=…` once `{node}` is filled in; with a
/// `namespace_uri` it carries no `ns=`.
fn check_node_id(template: &str, by_uri: bool) -> Result<(), String> {
    let filled = template.replace("{node}", "x");
    if NodeId::from_str(&filled).is_err() {
        return Err(format!(
            "node_id {template:?} is not a node id (ns=N;i=123, ns=N;s=Name, g=… or b=…; {{node}} for the station's node name)"
        ));
    }
    if by_uri && filled.starts_with("ns=") {
        return Err(format!(
            "node_id {template:?} names a namespace index, but the map's namespace_uri gives it; leave ns= out"
        ));
    }
    Ok(())
}

impl Node {
    /// The engineering value of a node's value; `None` for a value that is not a number.
    pub fn decode(&self, v: &Variant) -> Option<f64> {
        let raw = match v {
            Variant::Boolean(b) => *b as u8 as f64,
            Variant::SByte(x) => *x as f64,
            Variant::Byte(x) => *x as f64,
            Variant::Int16(x) => *x as f64,
            Variant::UInt16(x) => *x as f64,
            Variant::Int32(x) => *x as f64,
            Variant::UInt32(x) => *x as f64,
            Variant::Int64(x) => *x as f64,
            Variant::UInt64(x) => *x as f64,
            Variant::Float(x) => *x as f64,
            Variant::Double(x) => *x,
            _ => return None,
        };
        raw.is_finite().then_some(raw * self.scale + self.offset)
    }

    /// The value of the node's type that carries engineering value `value`, or why it cannot.
    pub fn encode(&self, value: f64) -> Result<Variant, WriteError> {
        let fail = |why: String| WriteError {
            field: self.field.clone(),
            value,
            why,
        };
        if !value.is_finite() {
            return Err(fail("is not a number".into()));
        }
        if let Some(lo) = self.min.filter(|&lo| value < lo) {
            return Err(fail(format!("is below the node's min {lo}")));
        }
        if let Some(hi) = self.max.filter(|&hi| value > hi) {
            return Err(fail(format!("is above the node's max {hi}")));
        }
        let mut raw = (value - self.offset) / self.scale;
        if self.data_type.integer() {
            raw = raw.round();
        }
        let (lo, hi) = self.data_type.range();
        if !(lo..=hi).contains(&raw) {
            return Err(fail(format!(
                "needs raw value {raw}, which does not fit {:?}",
                self.data_type
            )));
        }
        Ok(match self.data_type {
            NodeType::Boolean => Variant::Boolean(raw != 0.0),
            NodeType::Int16 => Variant::Int16(raw as i16),
            NodeType::UInt16 => Variant::UInt16(raw as u16),
            NodeType::Int32 => Variant::Int32(raw as i32),
            NodeType::UInt32 => Variant::UInt32(raw as u32),
            NodeType::Int64 => Variant::Int64(raw as i64),
            NodeType::Float => Variant::Float(raw as f32),
            NodeType::Double => Variant::Double(raw),
        })
    }
}

#[cfg(test)]
#[path = "map_tests.rs"]
mod tests;
