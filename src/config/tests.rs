//! The config: the shipped example, every mistake named with its place, each section read.

use super::*;
use crate::store::influx::InfluxApi;

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn modbus_stations_load_their_map_once_and_report_its_errors_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let good = include_str!("../../config/modbus/heatgrid-sim.toml");
    std::fs::write(dir.path().join("good.toml"), good).unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "address_base = 0\n[[register]]\nfield = \"supply_temp_c\"\ntable = \"input\"\naddress = 0\ntype = \"i64\"\n",
    )
    .unwrap();
    let text = "[[station]]\nid = \"a\"\nmodbus = { address = \"10.0.0.1\", map = \"good.toml\" }\n\
        [[station]]\nid = \"b\"\nmodbus = { address = \"10.0.0.2:1502\", map = \"good.toml\", unit_id = 3, poll_interval_s = 2 }\n";
    let c = Config::parse_in(text, &no_env, dir.path()).unwrap();
    let (a, b) = (
        c.stations[0].modbus.as_ref().unwrap(),
        c.stations[1].modbus.as_ref().unwrap(),
    );
    assert_eq!(a.address, "10.0.0.1:502");
    assert_eq!((b.unit_id, b.interval), (3, Duration::from_secs(2)));
    assert!(std::sync::Arc::ptr_eq(&a.map, &b.map), "one map, read once");

    let text = "[[station]]\nid = \"a\"\nmodbus = { address = \"h:0\", map = \"bad.toml\", unit_id = 0, timeout_ms = 9000 }\n\
        [[station]]\nid = \"b\"\nmodbus = { address = \"h\", map = \"missing.toml\" }\n";
    let errs = Config::parse_in(text, &no_env, dir.path())
        .unwrap_err()
        .join("\n");
    for want in [
        "station[0] \"a\".modbus.address",
        "unit_id: 0 must be 1–255",
        "timeout_ms: must be positive and shorter",
        "bad.toml",
        "missing.toml: cannot read",
    ] {
        assert!(errs.contains(want), "{want:?} not in:\n{errs}");
    }
}

#[test]
fn a_station_is_reached_by_exactly_one_transport_each_checked() {
    use crate::ingest::modbus::line::{Parity, Transport};
    let dir = tempfile::tempdir().unwrap();
    let good = include_str!("../../config/modbus/heatgrid-sim.toml");
    std::fs::write(dir.path().join("m.toml"), good).unwrap();
    let text = "[[station]]\nid = \"a\"\nmodbus = { serial = { port = \"/dev/ttyUSB0\", baud_rate = 19200, parity = \"none\", stop_bits = 2 }, unit_id = 4, map = \"m.toml\" }\n\
        [[station]]\nid = \"b\"\nmodbus = { address = \"10.0.0.9:4001\", framing = \"rtu\", map = \"m.toml\", frame_gap_ms = 5 }\n";
    let c = Config::parse_in(text, &no_env, dir.path()).unwrap();
    let (a, b) = (
        c.stations[0].modbus.as_ref().unwrap(),
        c.stations[1].modbus.as_ref().unwrap(),
    );
    match &a.transport {
        Transport::Serial(s) => {
            assert_eq!((s.port.as_str(), s.baud_rate), ("/dev/ttyUSB0", 19_200));
            assert_eq!((s.parity, s.stop_bits, s.data_bits), (Parity::None, 2, 8));
        }
        t => panic!("{t:?}"),
    }
    // 3.5 characters of 11 bits at 19,200 baud: 2.005 ms.
    assert!(a.transport.default_gap() >= Duration::from_millis(2));
    assert_eq!(b.transport, Transport::RtuOverTcp("10.0.0.9:4001".into()));
    assert_eq!(b.frame_gap, Some(Duration::from_millis(5)));
    assert_eq!(b.transport.key(), "rtu+tcp://10.0.0.9:4001");

    let text = "[[station]]\nid = \"a\"\nmodbus = { map = \"m.toml\" }\n\
        [[station]]\nid = \"b\"\nmodbus = { address = \"h:1\", serial = { port = \"/dev/ttyS0\" }, map = \"m.toml\" }\n\
        [[station]]\nid = \"c\"\nmodbus = { serial = { port = \"/dev/ttyS0\", baud_rate = 7, parity = \"mark\", stop_bits = 3, data_bits = 5 }, map = \"m.toml\" }\n\
        [[station]]\nid = \"d\"\nmodbus = { address = \"h:1\", framing = \"ascii\", map = \"m.toml\" }\n";
    let errs = Config::parse_in(text, &no_env, dir.path())
        .unwrap_err()
        .join("\n");
    for want in [
        "station[0] \"a\".modbus: give either address",
        "station[1] \"b\".modbus: give either address",
        "serial.baud_rate: 7 must be 300–921600",
        "serial.parity: \"mark\" is not none, even or odd",
        "serial.stop_bits: 3 must be 1 or 2",
        "serial.data_bits: 5 must be 7 or 8",
        "station[3] \"d\".modbus.framing: \"ascii\"",
    ] {
        assert!(errs.contains(want), "{want:?} not in:\n{errs}");
    }
}

#[test]
fn a_modbus_tcp_address_takes_requests_side_by_side_unless_told_one_at_a_time() {
    use crate::ingest::modbus::line::Transport;
    let dir = tempfile::tempdir().unwrap();
    let good = include_str!("../../config/modbus/heatgrid-sim.toml");
    std::fs::write(dir.path().join("m.toml"), good).unwrap();
    let text = "[[station]]\nid = \"a\"\nmodbus = { address = \"gw:502\", unit_id = 1, map = \"m.toml\" }\n\
        [[station]]\nid = \"b\"\nmodbus = { address = \"gw:502\", unit_id = 2, map = \"m.toml\" }\n\
        [[station]]\nid = \"c\"\nmodbus = { address = \"old-gw:502\", requests = \"one_at_a_time\", map = \"m.toml\" }\n";
    let c = Config::parse_in(text, &no_env, dir.path()).unwrap();
    let t = |i: usize| c.stations[i].modbus.as_ref().unwrap().transport.clone();
    assert_eq!(t(0), Transport::Tcp("gw:502".into()));
    assert_eq!(t(1), Transport::Tcp("gw:502".into()));
    assert_eq!(t(2), Transport::TcpOneAtATime("old-gw:502".into()));

    let text = "[[station]]\nid = \"a\"\nmodbus = { address = \"gw:502\", unit_id = 1, map = \"m.toml\" }\n\
        [[station]]\nid = \"b\"\nmodbus = { address = \"gw:502\", unit_id = 2, requests = \"one_at_a_time\", map = \"m.toml\" }\n\
        [[station]]\nid = \"c\"\nmodbus = { address = \"gw:502\", unit_id = 1, map = \"m.toml\" }\n\
        [[station]]\nid = \"d\"\nmodbus = { address = \"ts:4001\", framing = \"rtu\", requests = \"side_by_side\", map = \"m.toml\" }\n\
        [[station]]\nid = \"e\"\nmodbus = { serial = { port = \"/dev/ttyS0\" }, requests = \"side_by_side\", map = \"m.toml\" }\n\
        [[station]]\nid = \"f\"\nmodbus = { address = \"h:1\", requests = \"parallel\", map = \"m.toml\" }\n";
    let errs = Config::parse_in(text, &no_env, dir.path())
        .unwrap_err()
        .join("\n");
    for want in [
        "station \"b\".modbus.requests: station \"a\" at the same address takes requests otherwise",
        "station \"c\".modbus.unit_id: station \"a\" polls unit 1 at the same address already",
        "station[3] \"d\".modbus.requests: RTU frames carry one request at a time",
        "station[4] \"e\".modbus.requests: a serial line carries one request at a time",
        "station[5] \"f\".modbus.requests: \"parallel\" is neither",
    ] {
        assert!(errs.contains(want), "{want:?} not in:\n{errs}");
    }
}

#[test]
fn the_shipped_example_is_valid() {
    let env = |k: &str| match k {
        "HEATGRID_INFLUX_TOKEN" => Some("t".to_owned()),
        "HEATGRID_TOKEN_CONTROL_ROOM" => Some("a-long-enough-operator-token".to_owned()),
        _ => None,
    };
    let c = Config::parse(EXAMPLE, &env).unwrap_or_else(|e| panic!("{e:#?}"));
    assert!(!c.stations.is_empty());
}

#[test]
fn every_error_is_reported_at_once_with_its_place() {
    let text = r#"
        [engine]
        tick_s = -1
        [mqtt]
        version = "6"
        [storage.influxdb]
        url = "localhost:8086"
        org = "o"
        bucket = "b"
        token_env = "NOPE"
        [[station]]
        id = "bad/id"
        [[station]]
        id = "ok"
        supply_min_c = 80
        supply_max_c = 60
        [[station]]
        id = "ok"
        curve = [[0, 50]]
    "#;
    let errs = Config::parse(text, &no_env).unwrap_err();
    let all = errs.join("\n");
    for needle in [
        "engine.tick_s",
        "mqtt.version",
        "storage.influxdb.url",
        "station[0] \"bad/id\".id",
        "station[1] \"ok\".supply_min_c",
        "station[2] \"ok\".id: duplicate",
        "station[2] \"ok\".curve",
        "NOPE is not set",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

#[test]
fn influxdb_1x_is_addressed_by_database_with_credentials_from_the_environment() {
    let env = |k: &str| match k {
        "IU" => Some("writer".to_owned()),
        "IP" => Some("s3cret".to_owned()),
        _ => None,
    };
    let c = Config::parse(
        "[storage.influxdb]\nurl = \"http://db:8086/\"\napi = \"v1\"\ndatabase = \"heat\"\n\
         retention_policy = \"year\"\nuser_env = \"IU\"\npassword_env = \"IP\"\n\
         [[station]]\nid = \"s\"\n",
        &env,
    )
    .unwrap_or_else(|e| panic!("{e:#?}"));
    let i = c.storage.influxdb.unwrap();
    assert_eq!(i.url, "http://db:8086");
    assert_eq!(
        i.api,
        InfluxApi::V1 {
            database: "heat".into(),
            retention_policy: Some("year".into()),
            credentials: Some(("writer".into(), "s3cret".into())),
        }
    );
    assert!(!format!("{:?}", i.api).contains("s3cret"));
    // The other API's keys, a missing database, half the credentials, an unknown API.
    for (text, needle) in [
        (
            "api = \"v1\"\ndatabase = \"h\"\nbucket = \"b\"",
            "bucket: not a setting of api = \"v1\"",
        ),
        ("api = \"v1\"", "database: required with api = \"v1\""),
        (
            "api = \"v1\"\ndatabase = \"h\"\nuser_env = \"IU\"",
            "both user_env and password_env",
        ),
        (
            "api = \"v1\"\ndatabase = \"h\"\nuser_env = \"IU\"\npassword_env = \"NONE\"",
            "NONE is not set",
        ),
        (
            "bucket = \"b\"\ndatabase = \"h\"",
            "database: not a setting of api = \"v2\"",
        ),
        ("org = \"o\"", "bucket: required with api = \"v2\""),
        ("api = \"v3\"\nbucket = \"b\"", "api: \"v3\" is not"),
    ] {
        let errs = Config::parse(
            &format!("[storage.influxdb]\nurl = \"http://db:8086\"\n{text}\n"),
            &env,
        )
        .unwrap_err()
        .join("\n");
        assert!(errs.contains(needle), "{text:?}: {errs}");
    }
}

#[test]
fn the_predictive_section_is_read_and_checked() {
    let st = "[[station]]\nid = \"s1\"\n";
    let parse = |d: &str| Config::parse(&format!("{d}{st}"), &no_env);
    let c = parse("[predictive]\nenabled = true\nhorizon_h = 48\nsetback = [22.0, 6.0, 2.0]\n")
        .unwrap();
    assert!(c.predictive.enabled);
    assert_eq!(c.predictive.horizon_h, 48);
    assert_eq!(c.predictive.setback, Some((22.0, 6.0, 2.0)));
    assert_eq!(parse("").unwrap().predictive, Default::default());
    let errs = parse("[predictive]\nhorizon_h = 72\n").unwrap_err();
    assert!(
        errs.iter().any(|e| e.starts_with("predictive.horizon_h:")),
        "{errs:?}"
    );
    assert!(parse("[predictive]\nhorizon = 24\n").is_err());
}

#[test]
fn the_diagnosis_section_is_read_and_checked() {
    let st = "[[station]]\nid = \"s1\"\n";
    let parse = |d: &str| Config::parse(&format!("{d}{st}"), &no_env);
    let c = parse("[diagnosis]\nua_drop = 0.25\npersist_h = 3\n").unwrap();
    assert_eq!((c.diagnosis.ua_drop, c.diagnosis.persist_h), (0.25, 3));
    assert!(c.diagnosis.enabled);
    assert_eq!(parse("").unwrap().diagnosis, Default::default());
    let errs = parse("[diagnosis]\npersist_h = 0\nflow_drop = 1.5\nslow_h = 10\n").unwrap_err();
    for key in ["persist_h", "flow_drop", "slow_h"] {
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&format!("diagnosis.{key}:"))),
            "{key}: {errs:?}"
        );
    }
    let errs = parse("[diagnosis]\nua_fall = 0.2\n").unwrap_err();
    assert!(errs[0].contains("ua_fall"), "{errs:?}");
}

#[test]
fn unknown_keys_and_syntax_errors_point_at_the_line() {
    let errs = Config::parse("[engine]\ntick_seconds = 5\n", &no_env).unwrap_err();
    assert!(
        errs[0].contains("line 2") && errs[0].contains("tick_seconds"),
        "{errs:?}"
    );
}

#[test]
fn alarm_thresholds_layer_station_over_group_over_global() {
    let text = r#"
        [alarms]
        deviation_k = 4
        low_delta_t_k = 6
        [alarms.group.district.north]
        deviation_k = 2
        [[station]]
        id = "a"
        tags = { district = "north" }
        [[station]]
        id = "b"
        tags = { district = "north" }
        alarms = { deviation_k = 1.5 }
        [[station]]
        id = "c"
    "#;
    let c = Config::parse(text, &no_env).unwrap();
    let dev: Vec<f64> = c.stations.iter().map(|s| s.alarms.deviation_k).collect();
    assert_eq!(dev, vec![2.0, 1.5, 4.0]);
    assert!(c.stations.iter().all(|s| s.alarms.low_delta_t_k == 6.0));
}

#[test]
fn station_overrides_defaults() {
    let text = r#"
        [defaults]
        supply_max_c = 70
        valve_kp_pct_per_k = 3
        [[station]]
        id = "a"
        [[station]]
        id = "b"
        supply_max_c = 65
        heated_area_m2 = 50000
        tags = { district = "north" }
    "#;
    let c = Config::parse(text, &no_env).unwrap();
    assert_eq!(c.stations[0].params.supply_max_c, 70.0);
    assert_eq!(c.stations[1].params.supply_max_c, 65.0);
    assert_eq!(c.stations[1].params.valve.kp, 3.0);
    assert_eq!(c.stations[1].params.heated_area_m2, Some(50_000.0));
    assert_eq!(c.stations[1].tags["district"], "north");
}

#[test]
#[cfg(feature = "opcua")]
fn opcua_servers_and_stations_are_checked_with_their_places() {
    let dir = tempfile::tempdir().unwrap();
    let map = include_str!("../../config/opcua/heatgrid-sim.toml");
    std::fs::write(dir.path().join("map.toml"), map).unwrap();
    std::fs::write(dir.path().join("server.pem"), "not read here").unwrap();
    let text = "[[opcua.server]]\nname = \"gw\"\nendpoint = \"opc.tcp://10.0.0.5:4840\"\n\
        security = \"sign_encrypt\"\nserver_certificate = \"server.pem\"\nuser = \"heatgrid\"\npassword_env = \"PW\"\n\
        [[station]]\nid = \"a\"\nopcua = { server = \"gw\", map = \"map.toml\" }\n\
        [[station]]\nid = \"b\"\nopcua = { server = \"gw\", map = \"map.toml\", node = \"DB12\" }\n";
    let env = |k: &str| (k == "PW").then(|| "secret".to_owned());
    let c = Config::parse_in(text, &env, dir.path()).unwrap();
    let s = &c.opcua_servers[0];
    assert_eq!(s.security, crate::ingest::opcua::Security::SignEncrypt);
    assert!(s.pki_dir.ends_with("opcua/gw"));
    assert!(format!("{:?}", s.identity).contains("password hidden"));
    let (a, b) = (
        c.stations[0].opcua.as_ref().unwrap(),
        c.stations[1].opcua.as_ref().unwrap(),
    );
    assert_eq!(
        (a.0, a.1.node.as_str(), b.1.node.as_str()),
        (0, "a", "DB12")
    );
    assert!(
        std::sync::Arc::ptr_eq(&a.1.map, &b.1.map),
        "one map, read once"
    );

    let text = "[[opcua.server]]\nname = \"gw 1\"\nendpoint = \"http://x\"\nsecurity = \"sign\"\n\
        [[opcua.server]]\nname = \"plain\"\nendpoint = \"opc.tcp://10.0.0.6\"\nuser = \"u\"\npassword_env = \"PW\"\n\
        [[opcua.server]]\nname = \"enc\"\nendpoint = \"opc.tcp://10.0.0.7\"\nsecurity = \"sign_encrypt\"\n\
        [[station]]\nid = \"a\"\nopcua = { server = \"nope\", map = \"map.toml\" }\n\
        [[station]]\nid = \"b\"\nopcua = { server = \"plain\", map = \"missing.toml\" }\n\
        [[station]]\nid = \"c\"\nmodbus = { address = \"h\", map = \"m.toml\" }\nopcua = { server = \"plain\", map = \"map.toml\" }\n";
    let errs = Config::parse_in(text, &env, dir.path())
        .unwrap_err()
        .join("\n");
    for want in [
        "opcua.server[0] \"gw 1\".name: letters, digits",
        "opcua.server[0] \"gw 1\".endpoint: \"http://x\" is not opc.tcp://",
        "opcua.server[0] \"gw 1\".security: \"sign\" is neither",
        "opcua.server[1] \"plain\".password_env: a password would cross the network in the clear",
        "opcua.server[2] \"enc\".server_certificate: required with sign_encrypt",
        "station[0] \"a\".opcua.server: no [[opcua.server]] is named \"nope\"",
        "missing.toml: cannot read",
        "station[2] \"c\": a station is reached over modbus or opcua, not both",
    ] {
        assert!(errs.contains(want), "missing {want:?} in:\n{errs}");
    }
}
