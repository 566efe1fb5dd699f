//! The control room's tiles: what one station's tile says ([`Tile`], [`TileState`]), the
//! district's totals over them ([`Totals`]), and how they go on the wire: a snapshot as rows
//! under one field list, a delta as only the changed fields of the changed tiles.
//!
//! Where it sits: built by the live feed ([`super::live`]) every period from the status and
//! the stations' newest readings; the page (`web/app.js`) reads the same encoding.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::alarms::{AlarmView, Severity};
use crate::control::status::StationStatus;
use crate::model::{Mode, Reading};

/// Within this of its setpoint a station is in control, K (`domain.md`: ±1 K).
const IN_CONTROL_K: f64 = 1.0;

/// What a station's tile says at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TileState {
    /// Automatic, fresh, within ±1 K of its setpoint.
    InControl,
    /// Automatic and fresh, but further off.
    Deviating,
    /// No fresh telemetry: control holds.
    Stale,
    /// Its presence says offline, or its Modbus link fails.
    CommLost,
    /// Manual, hold, or a fixed setpoint.
    Manual,
}

/// One station on the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tile {
    pub id: String,
    pub state: TileState,
    /// The reading's time, Unix ms (the page shows its age).
    pub ts: Option<i64>,
    /// Supply, its setpoint and return, °C; flow, m³/h; heat, kW; heated area, m².
    pub sup: Option<f64>,
    pub set: Option<f64>,
    pub ret: Option<f64>,
    pub flow: Option<f64>,
    pub kw: Option<f64>,
    pub area: Option<f64>,
    pub mode: String,
    /// Its active alarms: how many and the worst severity.
    pub alarms: u32,
    pub alarm: Option<Severity>,
    /// In a cluster: the instance that leads it.
    pub owner: Option<String>,
    pub tags: BTreeMap<String, String>,
}

fn round(x: f64, step: f64) -> f64 {
    (x / step).round() * step
}

impl Tile {
    /// The tile of `s` as this instance knows it (`owner`: this instance's name, in a cluster
    /// where it leads the station).
    pub fn of(s: &StationStatus, alarms: &AlarmView, owner: Option<&str>) -> Self {
        Self::with(s, s.reading.as_ref(), s.stale, alarms, owner)
    }

    /// The tile of `s` with reading `r` (`stale`: whether it is).
    pub(super) fn with(
        s: &StationStatus,
        r: Option<&Reading>,
        stale: bool,
        alarms: &AlarmView,
        owner: Option<&str>,
    ) -> Self {
        let o = s.outputs.as_ref();
        let state = if s.offline || s.link_error.is_some() {
            TileState::CommLost
        } else if stale || r.is_none() {
            TileState::Stale
        } else if s.mode != Mode::Auto || s.fixed_supply.is_some() {
            TileState::Manual
        } else {
            match (r, o) {
                (Some(r), Some(o))
                    if (r.supply_temp_c - o.supply_setpoint_c).abs() <= IN_CONTROL_K =>
                {
                    TileState::InControl
                }
                _ => TileState::Deviating,
            }
        };
        let mine = alarms.active.iter().filter(|a| a.station == s.id.as_str());
        let (count, worst) = mine.fold((0, None), |(n, w): (u32, Option<Severity>), a| {
            (n + 1, Some(w.map_or(a.severity, |w| w.min(a.severity))))
        });
        Self {
            id: s.id.as_str().to_owned(),
            state,
            ts: r.map(|r| r.ts_ms),
            sup: r.map(|r| round(r.supply_temp_c, 0.1)),
            set: o.map(|o| round(o.supply_setpoint_c, 0.1)),
            ret: r.map(|r| round(r.return_temp_c, 0.1)),
            flow: r.map(|r| round(r.flow_m3h, 0.01)),
            kw: r.map(|r| round(r.heat_kw(), 0.1)),
            area: s.area_m2,
            mode: s.mode.as_str().to_owned(),
            alarms: count,
            alarm: worst,
            owner: owner.filter(|_| s.epoch.is_some()).map(str::to_owned),
            tags: s.tags.clone(),
        }
    }
}

/// The district at a glance, over the tiles with fresh data.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub stations: usize,
    pub fresh: usize,
    pub heat_mw: f64,
    pub w_m2: Option<f64>,
    /// Flow-weighted return temperature, °C.
    pub return_c: Option<f64>,
    /// Share of the automatic, fresh stations within ±1 K, %.
    pub in_control_pct: Option<f64>,
    pub alarms: u32,
    pub by_state: BTreeMap<&'static str, usize>,
}

impl Totals {
    pub fn of(tiles: &[Tile]) -> Self {
        let mut t = Totals {
            stations: tiles.len(),
            ..Totals::default()
        };
        let (mut kw, mut area, mut flow, mut flow_ret, mut auto, mut within) =
            (0.0, 0.0, 0.0, 0.0, 0usize, 0usize);
        for tile in tiles {
            t.alarms += tile.alarms;
            let key = match tile.state {
                TileState::InControl => "in_control",
                TileState::Deviating => "deviating",
                TileState::Stale => "stale",
                TileState::CommLost => "comm_lost",
                TileState::Manual => "manual",
            };
            *t.by_state.entry(key).or_default() += 1;
            if matches!(tile.state, TileState::Stale | TileState::CommLost) {
                continue;
            }
            t.fresh += 1;
            if let Some(k) = tile.kw {
                kw += k;
                area += tile.area.filter(|a| *a > 0.0).unwrap_or(0.0);
            }
            if let (Some(f), Some(r)) = (tile.flow, tile.ret) {
                flow += f;
                flow_ret += f * r;
            }
            if matches!(tile.state, TileState::InControl | TileState::Deviating) {
                auto += 1;
                within += usize::from(tile.state == TileState::InControl);
            }
        }
        t.heat_mw = round(kw / 1000.0, 0.001);
        t.w_m2 = (area > 0.0).then(|| round(kw * 1000.0 / area, 0.1));
        t.return_c = (flow > 0.0).then(|| round(flow_ret / flow, 0.1));
        t.in_control_pct = (auto > 0).then(|| round(100.0 * within as f64 / auto as f64, 0.1));
        t
    }
}

/// The tile's fields on the wire, in this order: a snapshot's rows and a delta's field
/// numbers follow it (docs/web.md, "The live feed").
pub const FIELDS: [&str; 14] = [
    "id", "state", "ts", "sup", "set", "ret", "flow", "kw", "area", "mode", "alarms", "alarm",
    "owner", "tags",
];

/// Where `ts` is in [`FIELDS`]: a delta carries it as tenths of a second before `now`.
const TS: usize = 2;

fn fields(t: &Tile) -> [Value; 14] {
    [
        json!(t.id),
        json!(t.state),
        json!(t.ts),
        json!(t.sup),
        json!(t.set),
        json!(t.ret),
        json!(t.flow),
        json!(t.kw),
        json!(t.area),
        json!(t.mode),
        json!(t.alarms),
        json!(t.alarm),
        json!(t.owner),
        json!(t.tags),
    ]
}

/// The whole fleet: `{now, totals, fields, rows}`, one row per tile in [`FIELDS`] order.
pub(super) fn snapshot(tiles: &[Tile], totals: &Totals, now: i64) -> String {
    let rows: Vec<[Value; 14]> = tiles.iter().map(fields).collect();
    json!({ "now": now, "totals": totals, "fields": FIELDS, "rows": rows }).to_string()
}

/// What changed from `before` to `tiles` (the same stations in the same order): `{now, d}`
/// and `totals` when they changed. Each entry of `d` is `[row, field, value, field, value…]`
/// with only the fields that changed; `ts` as tenths of a second before `now`. `None`: the
/// stations differ, send a snapshot.
pub(super) fn delta(
    before: &[Tile],
    tiles: &[Tile],
    totals: Option<&Totals>,
    now: i64,
) -> Option<String> {
    if before.len() != tiles.len() || before.iter().zip(tiles).any(|(b, t)| b.id != t.id) {
        return None;
    }
    let mut d: Vec<Value> = Vec::new();
    for (i, (b, t)) in before
        .iter()
        .zip(tiles)
        .enumerate()
        .filter(|(_, (b, t))| b != t)
    {
        let (old, new) = (fields(b), fields(t));
        let mut entry = vec![json!(i)];
        for (k, (o, n)) in old
            .into_iter()
            .zip(new)
            .enumerate()
            .filter(|(_, (o, n))| o != n)
        {
            let _ = o;
            entry.push(json!(k));
            entry.push(match (k, t.ts) {
                (TS, Some(ts)) => json!(((now - ts) as f64 / 100.0).round() as i64),
                _ => n,
            });
        }
        d.push(Value::Array(entry));
    }
    let mut body = json!({ "now": now, "d": d });
    if let Some(t) = totals {
        body["totals"] = json!(t);
    }
    Some(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tile(id: &str, state: TileState, kw: f64, flow: f64, ret: f64) -> Tile {
        Tile {
            id: id.into(),
            state,
            ts: Some(0),
            sup: Some(60.0),
            set: Some(60.0),
            ret: Some(ret),
            flow: Some(flow),
            kw: Some(kw),
            area: Some(1000.0),
            mode: "auto".into(),
            alarms: 0,
            alarm: None,
            owner: None,
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn a_delta_carries_only_the_changed_fields_of_the_changed_tiles() {
        let before = vec![
            tile("a", TileState::InControl, 100.0, 1.0, 40.0),
            tile("b", TileState::InControl, 50.0, 3.0, 44.0),
        ];
        let mut now = before.clone();
        now[1].state = TileState::Stale;
        now[1].ts = Some(10_000);
        let totals = Totals::of(&now);
        let d: Value =
            serde_json::from_str(&delta(&before, &now, Some(&totals), 12_345).unwrap()).unwrap();
        // Row 1: its state (field 1) and its reading's time as tenths of a second ago (field 2).
        assert_eq!(d["d"], json!([[1, 1, "stale", 2, 23]]));
        assert_eq!(d["totals"]["by_state"]["stale"], 1);
        // Nothing changed: no tiles, no totals.
        let quiet: Value = serde_json::from_str(&delta(&now, &now, None, 12_345).unwrap()).unwrap();
        assert_eq!(quiet, json!({"now": 12_345, "d": []}));
        // Other stations: a snapshot instead.
        assert!(delta(&before[..1], &now, None, 0).is_none());
        let snap: Value = serde_json::from_str(&snapshot(&now, &totals, 1)).unwrap();
        assert_eq!(snap["fields"][0], "id");
        assert_eq!(snap["rows"][1][0], "b");
        assert_eq!(snap["rows"][1][1], "stale");
        assert_eq!(snap["rows"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn totals_count_only_fresh_stations_and_weight_the_return_by_flow() {
        let tiles = [
            tile("a", TileState::InControl, 100.0, 1.0, 40.0),
            tile("b", TileState::Deviating, 50.0, 3.0, 44.0),
            tile("c", TileState::Stale, 999.0, 9.0, 90.0),
            tile("d", TileState::Manual, 30.0, 0.0, 50.0),
        ];
        let t = Totals::of(&tiles);
        assert_eq!((t.stations, t.fresh), (4, 3));
        assert!((t.heat_mw - 0.18).abs() < 1e-9);
        assert_eq!(t.w_m2, Some(60.0)); // 180 kW over 3,000 m²
        assert_eq!(t.return_c, Some(43.0)); // (40 + 3 × 44) / 4
        assert_eq!(t.in_control_pct, Some(50.0)); // a of a and b; d is manual
        assert_eq!(t.by_state["stale"], 1);
    }
}
