//! Validation of the `[[station]]` tables: ids, tags, the controller's parameters (station over
//! `[defaults]`), alarm thresholds (station over group over `[alarms]`) and Modbus settings with
//! their register maps.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use super::mapping::Mappings;
use super::modbus::Maps;
use super::raw::{Raw, RawAlarms, RawControl, RawEngine, RawStation};
use super::{Errors, StationConfig};
use crate::control::curve::Curve;
use crate::control::pi::PiConfig;
use crate::control::StationParams;
use crate::model::StationId;

/// Every station of `raw`, in file order; map paths are relative to `base`.
pub(super) fn stations(
    raw: &Raw,
    base: &Path,
    #[cfg(feature = "opcua")] (mappings, servers): (
        &Mappings,
        &[crate::ingest::opcua::ServerConfig],
    ),
    #[cfg(not(feature = "opcua"))] mappings: &Mappings,
    v: &mut Errors,
) -> Vec<StationConfig> {
    let mut seen = HashSet::new();
    let mut maps = Maps::new();
    #[cfg(feature = "opcua")]
    let mut node_maps = super::opcua::NodeMaps::new();
    #[cfg(not(feature = "opcua"))]
    v.check(
        raw.opcua.server.is_empty() && raw.stations.iter().all(|s| s.opcua.is_none()),
        "opcua: this heatgrid was built without OPC UA (the cargo feature `opcua`)",
    );
    v.check(
        !raw.stations.is_empty(),
        "station: at least one [[station]] is required",
    );
    let mut stations = Vec::new();
    for (i, st) in raw.stations.iter().enumerate() {
        let place = format!("station[{i}] {:?}", st.id);
        let mapping = st.mapping.as_ref().and_then(|name| {
            let declared = raw.mappings.iter().any(|m| m.name() == name);
            let polled = st.modbus.is_some() || st.opcua.is_some();
            super::mapping::station_mapping(&st.id, polled, name, declared, mappings, &place, v)
        });
        v.check(
            st.modbus.is_none() || st.opcua.is_none(),
            format!("{place}: a station is reached over modbus or opcua, not both"),
        );
        #[cfg(feature = "opcua")]
        let opcua = match (&st.opcua, StationId::new(&st.id)) {
            (Some(o), Ok(id)) => {
                super::opcua::station(o, &id, servers, base, &mut node_maps, &place, v)
            }
            _ => None,
        };
        stations.extend(
            station(raw, st, &place, base, &mut maps, &mut seen, v).map(|s| StationConfig {
                mapping,
                #[cfg(feature = "opcua")]
                opcua,
                ..s
            }),
        );
    }
    let modbus: Vec<(String, &crate::ingest::modbus::poller::PollerConfig)> = stations
        .iter()
        .filter_map(|s| Some((format!("station {:?}", s.id.as_str()), s.modbus.as_ref()?)))
        .collect();
    super::modbus::check_shared(&modbus, v);
    stations
}

fn station(
    raw: &Raw,
    st: &RawStation,
    place: &str,
    base: &Path,
    maps: &mut Maps,
    seen: &mut HashSet<String>,
    v: &mut Errors,
) -> Option<StationConfig> {
    let id = match StationId::new(&st.id) {
        Ok(id) => Some(id),
        Err(err) => {
            v.push(format!("{place}.id: {err}"));
            None
        }
    };
    if !seen.insert(st.id.clone()) {
        v.push(format!("{place}.id: duplicate station id"));
    }
    if let Some(a) = st.heated_area_m2 {
        v.check(
            a > 0.0 && a.is_finite(),
            format!("{place}.heated_area_m2: must be positive"),
        );
    }
    for k in st.tags.keys() {
        v.check(
            !k.is_empty()
                && k != "station"
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            format!("{place}.tags.{k}: tag keys are [A-Za-z0-9_] and not 'station'"),
        );
    }
    let params = station_params(
        &raw.defaults,
        &st.control,
        st.heated_area_m2,
        &raw.engine,
        place,
        v,
    );
    v.check(
        st.alarms.group.is_empty(),
        format!(
            "{place}.alarms.group: groups are set in [alarms.group.<tag>.<value>], not per station"
        ),
    );
    // The first group (by tag name) the station belongs to.
    let group = raw
        .alarms
        .group
        .iter()
        .find_map(|(tag, values)| values.get(st.tags.get(tag)?));
    let alarms = alarm_thresholds(&raw.alarms, group, &st.alarms, place, v);
    let modbus = match (&st.modbus, &id) {
        (Some(m), Some(id)) => super::modbus::modbus_station(m, id, base, maps, place, v),
        _ => None,
    };
    match (id, params) {
        (Some(id), Some(params)) => Some(StationConfig {
            id,
            alarms,
            tags: st.tags.clone(),
            mode: st.mode,
            params,
            modbus,
            #[cfg(feature = "opcua")]
            opcua: None,
            mapping: None,
        }),
        _ => None,
    }
}

/// Station overrides, then its group's, then `[alarms]`, then the defaults.
fn alarm_thresholds(
    d: &RawAlarms,
    g: Option<&RawAlarms>,
    s: &RawAlarms,
    place: &str,
    v: &mut Errors,
) -> crate::alarms::Thresholds {
    let def = crate::alarms::Thresholds::default();
    let under = match g {
        Some(g) => layered(g, d),
        None => layered(d, &RawAlarms::default()),
    };
    let a = layered(s, &under);
    let mut ms = |x: Option<f64>, name: &str, default: i64| -> i64 {
        match x {
            Some(secs) if secs >= 0.0 && secs.is_finite() => (secs * 1000.0) as i64,
            Some(_) => {
                v.push(format!("{place}.alarms.{name}: must be ≥ 0"));
                default
            }
            None => default,
        }
    };
    crate::alarms::Thresholds {
        deviation_k: a.deviation_k.unwrap_or(def.deviation_k),
        deviation_for_ms: ms(a.deviation_for_s, "deviation_for_s", def.deviation_for_ms),
        return_high_for_ms: ms(
            a.return_high_for_s,
            "return_high_for_s",
            def.return_high_for_ms,
        ),
        valve_saturated_for_ms: ms(
            a.valve_saturated_for_s,
            "valve_saturated_for_s",
            def.valve_saturated_for_ms,
        ),
        low_delta_t_k: a.low_delta_t_k.unwrap_or(def.low_delta_t_k),
        low_delta_t_for_ms: ms(
            a.low_delta_t_for_s,
            "low_delta_t_for_s",
            def.low_delta_t_for_ms,
        ),
        rejected_per_min: a.rejected_per_min.unwrap_or(def.rejected_per_min),
        out_of_range_margin_k: a.out_of_range_margin_k.unwrap_or(def.out_of_range_margin_k),
    }
}

/// `top`'s thresholds where it sets them, else `under`'s.
fn layered(top: &RawAlarms, under: &RawAlarms) -> RawAlarms {
    RawAlarms {
        deviation_k: top.deviation_k.or(under.deviation_k),
        deviation_for_s: top.deviation_for_s.or(under.deviation_for_s),
        return_high_for_s: top.return_high_for_s.or(under.return_high_for_s),
        valve_saturated_for_s: top.valve_saturated_for_s.or(under.valve_saturated_for_s),
        low_delta_t_k: top.low_delta_t_k.or(under.low_delta_t_k),
        low_delta_t_for_s: top.low_delta_t_for_s.or(under.low_delta_t_for_s),
        rejected_per_min: top.rejected_per_min.or(under.rejected_per_min),
        out_of_range_margin_k: top.out_of_range_margin_k.or(under.out_of_range_margin_k),
        group: BTreeMap::new(),
    }
}

/// Merges `[defaults]` and a station's overrides into validated controller parameters.
fn station_params(
    d: &RawControl,
    s: &RawControl,
    area: Option<f64>,
    e: &RawEngine,
    place: &str,
    v: &mut Errors,
) -> Option<StationParams> {
    macro_rules! get {
        ($f:ident, $default:expr) => {
            s.$f.or(d.$f).unwrap_or($default)
        };
    }
    let before = v.0.len();
    let curve = match s.curve.as_ref().or(d.curve.as_ref()) {
        Some(pts) => Curve::new(pts.iter().map(|p| (p[0], p[1])).collect())
            .map_err(|err| v.push(format!("{place}.curve: {err}")))
            .ok(),
        None => Some(Curve::default()),
    };
    let supply_min_c = get!(supply_min_c, 30.0);
    let supply_max_c = get!(supply_max_c, 75.0);
    v.check(
        (0.0..=150.0).contains(&supply_min_c) && supply_min_c < supply_max_c && supply_max_c <= 150.0,
        format!("{place}.supply_min_c/supply_max_c: need 0 ≤ min < max ≤ 150, got {supply_min_c}..{supply_max_c}"),
    );
    let design_outdoor_c = get!(design_outdoor_temp_c, -10.0);
    let design_indoor_c = get!(design_indoor_temp_c, 18.0);
    v.check(
        design_outdoor_c < design_indoor_c,
        format!("{place}.design_outdoor_temp_c: must be below design_indoor_temp_c"),
    );
    let (valve, pump) = loops(d, s, place, v);
    let heat_index_w_m2 = get!(heat_index_w_m2, 45.0);
    let design_delta_t_k = get!(design_delta_t_k, 15.0);
    let ramp = get!(setpoint_ramp_k_per_min, 2.0);
    let offset = get!(supply_offset_k, 0.0);
    let rl_max = get!(return_limit_max_k, 10.0);
    let rl_gain = get!(return_limit_gain_per_min, 0.2);
    for (ok, key, what) in [
        (
            heat_index_w_m2 > 0.0 && heat_index_w_m2 < 500.0,
            "heat_index_w_m2",
            "must be within 0..500",
        ),
        (
            design_delta_t_k > 0.0,
            "design_delta_t_k",
            "must be positive",
        ),
        (ramp > 0.0, "setpoint_ramp_k_per_min", "must be positive"),
        (
            offset.abs() <= 20.0,
            "supply_offset_k",
            "must be within ±20 K",
        ),
        (rl_max >= 0.0, "return_limit_max_k", "must be ≥ 0"),
        (rl_gain >= 0.0, "return_limit_gain_per_min", "must be ≥ 0"),
    ] {
        v.check(ok, format!("{place}.{key}: {what}"));
    }
    if v.0.len() > before {
        return None;
    }
    Some(StationParams {
        heated_area_m2: area,
        heat_index_w_m2,
        design_outdoor_c,
        design_indoor_c,
        design_delta_t_k,
        curve: curve?,
        supply_offset_k: offset,
        supply_min_c,
        supply_max_c,
        ramp_k_per_min: ramp,
        return_limit_c: get!(return_limit_c, 50.0),
        return_limit_gain_per_min: rl_gain,
        return_limit_max_k: rl_max,
        valve,
        pump,
        staleness_ms: (e.staleness_s * 1000.0) as i64,
        initial_valve_pct: 50.0,
        initial_pump_pct: 80.0,
    })
}

/// The valve loop's and the pump loop's settings, station over `[defaults]`.
fn loops(d: &RawControl, s: &RawControl, place: &str, v: &mut Errors) -> (PiConfig, PiConfig) {
    macro_rules! get {
        ($f:ident, $default:expr) => {
            s.$f.or(d.$f).unwrap_or($default)
        };
    }
    let valve = PiRaw {
        kp: get!(valve_kp_pct_per_k, 1.5),
        ti_s: get!(valve_ti_s, 90.0),
        dead_band: get!(valve_dead_band_k, 0.3),
        run_time_s: get!(valve_run_time_s, 60.0),
        min_pct: get!(valve_min_pct, 0.0),
        max_pct: get!(valve_max_pct, 100.0),
    };
    let pump = PiRaw {
        kp: get!(pump_kp, 0.5),
        ti_s: get!(pump_ti_s, 30.0),
        dead_band: 0.0,
        run_time_s: get!(pump_run_time_s, 30.0),
        min_pct: get!(pump_min_pct, 30.0),
        max_pct: get!(pump_max_pct, 100.0),
    };
    (
        pi_config(place, "valve", valve, v),
        pi_config(place, "pump", pump, v),
    )
}

/// One PI loop's settings as the file gives them.
struct PiRaw {
    kp: f64,
    ti_s: f64,
    dead_band: f64,
    run_time_s: f64,
    min_pct: f64,
    max_pct: f64,
}

/// Checks one loop's settings (`{prefix}_kp`, …); the actuator's run time becomes its rate
/// limit (full travel in `run_time_s`).
fn pi_config(place: &str, prefix: &str, r: PiRaw, v: &mut Errors) -> PiConfig {
    let PiRaw {
        kp,
        ti_s,
        dead_band,
        run_time_s,
        min_pct: lo,
        max_pct: hi,
    } = r;
    v.check(
        kp > 0.0 && kp.is_finite(),
        format!("{place}.{prefix}_kp: must be positive"),
    );
    v.check(
        ti_s >= 0.0 && ti_s.is_finite(),
        format!("{place}.{prefix}_ti_s: must be ≥ 0"),
    );
    v.check(
        dead_band >= 0.0,
        format!("{place}.{prefix}_dead_band: must be ≥ 0"),
    );
    v.check(
        run_time_s > 0.0,
        format!("{place}.{prefix}_run_time_s: must be positive"),
    );
    v.check(
        (0.0..=100.0).contains(&lo) && lo < hi && hi <= 100.0,
        format!(
            "{place}.{prefix}_min_pct/{prefix}_max_pct: need 0 ≤ min < max ≤ 100, got {lo}..{hi}"
        ),
    );
    PiConfig {
        kp,
        ti_s,
        dead_band,
        out_min: lo,
        out_max: hi,
        max_rate_per_s: 100.0 / run_time_s,
    }
}
