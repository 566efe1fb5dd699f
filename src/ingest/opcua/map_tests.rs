//! The node maps: conversions both ways, node ids filled in, every mistake named with its line.

use super::*;

const GOOD: &str = r#"
device = "test"
[[node]]
field = "supply_temp_c"
node_id = "ns=2;s={node}.supply"
type = "double"
deadband = 0.05
[[node]]
field = "return_temp_c"
node_id = "ns=2;s={node}.return"
type = "int16"
scale = 0.1
[[node]]
field = "flow_m3h"
node_id = "ns=2;i=1003"
type = "float"
[[node]]
field = "valve_pct"
node_id = "ns=2;s={node}.valve_cmd"
type = "uint16"
scale = 0.01
access = "write"
min = 0
max = 100
"#;

#[test]
fn a_map_fills_in_the_station_and_converts_both_ways() {
    let m = NodeMap::parse(GOOD).unwrap();
    assert_eq!(m.reads().count(), 3);
    let ret = &m.nodes[1];
    let id = m.node_id(ret, "st-7", 0).unwrap();
    assert_eq!(id, NodeId::new(2, "st-7.return"));
    assert_eq!(ret.decode(&Variant::Int16(523)), Some(52.300000000000004));
    assert_eq!(m.nodes[0].decode(&Variant::String("x".into())), None);
    let valve = m.writes().next().unwrap();
    assert_eq!(valve.encode(42.5).unwrap(), Variant::UInt16(4250));
    let e = valve.encode(120.0).unwrap_err();
    assert!(e.to_string().contains("above the node's max 100"), "{e}");
}

#[test]
fn every_mistake_is_named_with_its_line() {
    let bad = r#"
[[node]]
field = "supply_temp_c"
node_id = "nonsense"
type = "double"
[[node]]
field = "supply_setpoint_c"
node_id = "ns=2;s=x"
type = "double"
access = "write"
min = 90
max = 20
[[node]]
field = "mystery"
node_id = "ns=2;s=y"
type = "double"
scale = 0
"#;
    let errs = NodeMap::parse(bad).unwrap_err().join("\n");
    for want in [
        "line 2: supply_temp_c node_id \"nonsense\" is not a node id",
        "line 6: supply_setpoint_c min 90 is above max 20",
        "line 13: mystery is not a field",
        "line 13: mystery scale 0",
        "return_temp_c is required",
        "flow_m3h is required",
    ] {
        assert!(errs.contains(want), "missing {want:?} in\n{errs}");
    }
}

#[test]
fn with_a_namespace_uri_the_index_comes_from_the_server() {
    let text = GOOD
        .replace("ns=2;", "")
        .replace("device", "namespace_uri = \"urn:x\"\ndevice");
    let m = NodeMap::parse(&text).unwrap();
    assert_eq!(
        m.node_id(&m.nodes[0], "a", 5).unwrap(),
        NodeId::new(5, "a.supply")
    );
    let errs = NodeMap::parse(&GOOD.replace("device", "namespace_uri = \"urn:x\"\ndevice"))
        .unwrap_err()
        .join("\n");
    assert!(errs.contains("leave ns= out"), "{errs}");
}
