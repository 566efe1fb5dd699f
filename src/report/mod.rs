//! Energy reports: per station and for the district over a period, heat in GJ, GJ/m², GJ per
//! degree-day, mean supply, return and ΔT, time in the comfort band, alarms and data
//! coverage, and a league table of the stations furthest above the fleet's
//! weather-normalised consumption.
//!
//! ```text
//!  database (VictoriaMetrics export of PromQL, InfluxDB 1.x InfluxQL) ─┐
//!  or data_dir/lp/*.lp (no database) ─────────── source.rs ────────────┴─► hourly means
//!        per station ──► Report::build (here, pure) ──► JSON (API, web page) │ CSV │ HTML
//! ```
//!
//! Where it sits: read side, beside the history reader ([`crate::store::history`]); the API
//! serves it (`GET /api/v1/report`), `heatgrid report` and the web control room's Reports
//! page show it. Every figure is built from hourly means, so a report of a month reads 720
//! values per series from the database, not every reading:
//! - heat: Σ over the hours with data of the hour's mean `heat_kw` × 1 h (an hour without a
//!   reading adds nothing: see coverage);
//! - degree-days: Σ over the hours of the district's mean outdoor temperature of
//!   max(0, 18 °C − T) / 24 (degree-hours / 24, base [`heatgrid_kpi::DEGREE_DAY_BASE_C`]);
//! - comfort: the share of the hours with an indoor reading whose mean lies in 18–22 °C;
//! - coverage: the share of the period's hours with at least one reading.

mod files;
pub mod render;
pub mod source;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One station's hour: the means of its readings in `[hour_ms, hour_ms + 1 h)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hour {
    pub hour_ms: i64,
    pub readings: u64,
    pub heat_kw: Option<f64>,
    pub supply_c: Option<f64>,
    pub return_c: Option<f64>,
    pub outdoor_c: Option<f64>,
    pub indoor_c: Option<f64>,
    pub area_m2: Option<f64>,
}

/// What a source gives for a period: each station's hours, and its alarm raises.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Data {
    pub hours: BTreeMap<String, Vec<Hour>>,
    pub alarms: BTreeMap<String, u64>,
}

/// One row: a station's or the district's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub station: String,
    pub heat_gj: f64,
    pub area_m2: Option<f64>,
    pub gj_per_m2: Option<f64>,
    pub gj_per_degree_day: Option<f64>,
    pub supply_mean_c: Option<f64>,
    pub return_mean_c: Option<f64>,
    pub delta_t_mean_k: Option<f64>,
    /// Share (0–1) of the hours with an indoor reading in the comfort band.
    pub comfort: Option<f64>,
    pub alarms: u64,
    /// Share (0–1) of the period's hours with at least one reading.
    pub coverage: f64,
    /// Weather-normalised consumption (GJ/m² per degree-day) against the fleet's, %.
    pub above_fleet_pct: Option<f64>,
}

/// A station of the league table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Above {
    pub rank: usize,
    pub station: String,
    pub above_fleet_pct: f64,
    pub mj_per_m2_degree_day: f64,
}

/// The report of one period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub from_ms: i64,
    pub to_ms: i64,
    /// Where the figures were read from (`database (…)`, `files (…)`).
    pub source: String,
    pub degree_days: f64,
    /// The district's mean outdoor temperature over the hours that had one.
    pub outdoor_mean_c: Option<f64>,
    pub stations: Vec<Row>,
    pub district: Row,
    /// The stations furthest above the fleet's weather-normalised consumption, worst first.
    pub league: Vec<Above>,
    /// The fleet's weather-normalised consumption, MJ/m² per degree-day.
    pub fleet_mj_per_m2_degree_day: Option<f64>,
}

const HOUR_MS: i64 = 3_600_000;
/// The league table's length.
pub const LEAGUE: usize = 10;

fn mean(xs: impl Iterator<Item = f64>) -> Option<f64> {
    let (n, sum) = xs.fold((0usize, 0.0), |(n, s), x| (n + 1, s + x));
    (n > 0).then(|| sum / n as f64)
}

impl Report {
    /// The report of `[from_ms, to_ms)` from `data`, one row per station of `stations` (in
    /// that order; a station without data gets a row of zeros and no coverage).
    pub fn build(
        data: &Data,
        stations: &[String],
        (from_ms, to_ms): (i64, i64),
        source: &str,
    ) -> Self {
        let period_hours = ((to_ms - from_ms) as f64 / HOUR_MS as f64).max(1.0);
        let none: Vec<Hour> = Vec::new();
        let in_period = |h: &&Hour| (from_ms..to_ms).contains(&h.hour_ms);
        // The district's outdoor temperature per hour: the mean over the stations that had one.
        let mut outdoor: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for hours in data.hours.values() {
            for h in hours.iter().filter(in_period) {
                if let Some(t) = h.outdoor_c {
                    outdoor.entry(h.hour_ms).or_default().push(t);
                }
            }
        }
        let hourly_outdoor: Vec<f64> = outdoor
            .values()
            .filter_map(|v| mean(v.iter().copied()))
            .collect();
        let degree_days: f64 = hourly_outdoor
            .iter()
            .map(|t| (heatgrid_kpi::DEGREE_DAY_BASE_C - t).max(0.0) / 24.0)
            .sum();
        let per_dd = |gj: f64| (degree_days >= 0.01).then(|| gj / degree_days);
        let mut rows: Vec<Row> = stations
            .iter()
            .map(|id| {
                let hours: Vec<&Hour> = data
                    .hours
                    .get(id)
                    .unwrap_or(&none)
                    .iter()
                    .filter(in_period)
                    .collect();
                // A fold from +0.0: an empty sum of f64 is −0.0.
                let heat_gj = hours
                    .iter()
                    .filter_map(|h| h.heat_kw)
                    .fold(0.0, |sum, kw| sum + kw * 3_600.0 / 1e6);
                let area_m2 = mean(hours.iter().filter_map(|h| h.area_m2)).filter(|a| *a > 0.0);
                let supply = mean(hours.iter().filter_map(|h| h.supply_c));
                let ret = mean(hours.iter().filter_map(|h| h.return_c));
                let indoor: Vec<f64> = hours.iter().filter_map(|h| h.indoor_c).collect();
                let comfort = (!indoor.is_empty()).then(|| {
                    indoor
                        .iter()
                        .filter(|t| {
                            (heatgrid_kpi::COMFORT_LOW_C..=heatgrid_kpi::COMFORT_HIGH_C)
                                .contains(*t)
                        })
                        .count() as f64
                        / indoor.len() as f64
                });
                Row {
                    station: id.clone(),
                    heat_gj,
                    area_m2,
                    gj_per_m2: area_m2.map(|a| heat_gj / a),
                    gj_per_degree_day: per_dd(heat_gj),
                    supply_mean_c: supply,
                    return_mean_c: ret,
                    delta_t_mean_k: supply.zip(ret).map(|(s, r)| s - r),
                    comfort,
                    alarms: data.alarms.get(id).copied().unwrap_or(0),
                    coverage: (hours.iter().filter(|h| h.readings > 0).count() as f64
                        / period_hours)
                        .min(1.0),
                    above_fleet_pct: None,
                }
            })
            .collect();
        let heat = rows.iter().fold(0.0, |sum, r| sum + r.heat_gj);
        let with_area: Vec<&Row> = rows.iter().filter(|r| r.area_m2.is_some()).collect();
        let area: f64 = with_area.iter().filter_map(|r| r.area_m2).sum();
        let heat_with_area: f64 = with_area.iter().map(|r| r.heat_gj).sum();
        // GJ/m² per degree-day, of the fleet (area-weighted) and of each station.
        let fleet = (area > 0.0).then(|| heat_with_area / area).and_then(per_dd);
        for r in &mut rows {
            r.above_fleet_pct = fleet
                .filter(|f| *f > 0.0)
                .zip(r.gj_per_m2.and_then(per_dd))
                .map(|(f, s)| (s / f - 1.0) * 100.0);
        }
        let mut league: Vec<Above> = rows
            .iter()
            .filter_map(|r| {
                let pct = r.above_fleet_pct.filter(|p| *p > 0.0)?;
                Some(Above {
                    rank: 0,
                    station: r.station.clone(),
                    above_fleet_pct: pct,
                    mj_per_m2_degree_day: r.gj_per_m2.and_then(per_dd)? * 1000.0,
                })
            })
            .collect();
        league.sort_by(|a, b| {
            b.above_fleet_pct
                .total_cmp(&a.above_fleet_pct)
                .then(a.station.cmp(&b.station))
        });
        league.truncate(LEAGUE);
        for (i, a) in league.iter_mut().enumerate() {
            a.rank = i + 1;
        }
        let all_hours = || rows.iter();
        let weighted = |f: fn(&Row) -> Option<f64>| {
            // Means over the stations, each weighted by its hours with data.
            let (w, s) = all_hours().fold((0.0, 0.0), |(w, s), r| match f(r) {
                Some(x) => (w + r.coverage, s + r.coverage * x),
                None => (w, s),
            });
            (w > 0.0).then(|| s / w)
        };
        let supply = weighted(|r| r.supply_mean_c);
        let ret = weighted(|r| r.return_mean_c);
        let district = Row {
            station: "district".into(),
            heat_gj: heat,
            area_m2: (area > 0.0).then_some(area),
            gj_per_m2: (area > 0.0).then(|| heat_with_area / area),
            gj_per_degree_day: per_dd(heat),
            supply_mean_c: supply,
            return_mean_c: ret,
            delta_t_mean_k: supply.zip(ret).map(|(s, r)| s - r),
            comfort: weighted(|r| r.comfort),
            alarms: rows.iter().map(|r| r.alarms).sum(),
            coverage: mean(rows.iter().map(|r| r.coverage)).unwrap_or(0.0),
            above_fleet_pct: None,
        };
        Report {
            from_ms,
            to_ms,
            source: source.to_owned(),
            degree_days,
            outdoor_mean_c: mean(hourly_outdoor.iter().copied()),
            stations: rows,
            district,
            league,
            fleet_mj_per_m2_degree_day: fleet.map(|f| f * 1000.0),
        }
    }
}

#[cfg(test)]
mod tests;
