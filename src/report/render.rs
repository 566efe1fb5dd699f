//! A report as CSV (one row per station, then the district) and as a printable HTML page
//! (self-contained: its style inline, no script), for `heatgrid report` and the web control
//! room's downloads.

use std::fmt::Write;

use super::{Report, Row};

const COLUMNS: &str = "station,heat_gj,area_m2,gj_per_m2,gj_per_degree_day,supply_mean_c,\
                       return_mean_c,delta_t_mean_k,comfort_pct,alarms,coverage_pct,above_fleet_pct";

fn num(x: Option<f64>, digits: usize) -> String {
    x.filter(|x| x.is_finite())
        .map_or(String::new(), |x| format!("{x:.digits$}"))
}

fn cells(r: &Row) -> [String; 12] {
    [
        r.station.clone(),
        num(Some(r.heat_gj), 3),
        num(r.area_m2, 0),
        num(r.gj_per_m2, 6),
        num(r.gj_per_degree_day, 3),
        num(r.supply_mean_c, 1),
        num(r.return_mean_c, 1),
        num(r.delta_t_mean_k, 1),
        num(r.comfort.map(|c| c * 100.0), 1),
        r.alarms.to_string(),
        num(Some(r.coverage * 100.0), 1),
        num(r.above_fleet_pct, 1),
    ]
}

/// One line per station and one for the district, under a header line.
pub fn csv(r: &Report) -> String {
    let mut out = String::from(COLUMNS);
    out.push('\n');
    for row in r.stations.iter().chain(std::iter::once(&r.district)) {
        // Station ids are [A-Za-z0-9_-]: no quoting needed; quoted anyway if ever not.
        let c = cells(row);
        let id = if c[0].contains([',', '"', '\n']) {
            format!("\"{}\"", c[0].replace('"', "\"\""))
        } else {
            c[0].clone()
        };
        out.push_str(&id);
        for v in &c[1..] {
            out.push(',');
            out.push_str(v);
        }
        out.push('\n');
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A printable page: the period, the weather, the league table, every station, the district.
pub fn html(r: &Report) -> String {
    let day = |ms: i64| crate::clock::rfc3339_ms(ms);
    let mut p = String::new();
    let _ = write!(
        p,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>heatgrid energy report {from} – {to}</title>\n<style>\
         body{{font:12px sans-serif;margin:2em;color:#111}}h1{{font-size:18px}}h2{{font-size:14px;margin-top:2em}}\
         table{{border-collapse:collapse}}th,td{{border-bottom:1px solid #ccc;padding:3px 8px}}\
         td.n{{text-align:right;font-variant-numeric:tabular-nums}}tr.d td{{font-weight:bold;border-top:2px solid #111}}\
         @media print{{body{{margin:0}}}}</style></head><body>\n\
         <h1>Energy report {from} – {to}</h1>\n<p>Read from {source}. Heating degree-days (base 18 °C): \
         <b>{dd:.1}</b>; mean outdoor temperature {out} °C.</p>\n",
        from = esc(&day(r.from_ms)),
        to = esc(&day(r.to_ms)),
        source = esc(&r.source),
        dd = r.degree_days,
        out = num(r.outdoor_mean_c, 1),
    );
    let _ = write!(
        p,
        "<h2>Furthest above the fleet's weather-normalised consumption</h2>\n\
         <p>The fleet: {} MJ/m² per degree-day.</p>\n",
        num(r.fleet_mj_per_m2_degree_day, 3)
    );
    if r.league.is_empty() {
        p.push_str("<p>No station above the fleet (or no heated area known).</p>\n");
    } else {
        p.push_str("<table><tr><th>#</th><th>station</th><th>above the fleet</th><th>MJ/m² per degree-day</th></tr>\n");
        for a in &r.league {
            let _ = writeln!(
                p,
                "<tr><td class=n>{}</td><td>{}</td><td class=n>+{:.1} %</td><td class=n>{:.3}</td></tr>",
                a.rank,
                esc(&a.station),
                a.above_fleet_pct,
                a.mj_per_m2_degree_day
            );
        }
        p.push_str("</table>\n");
    }
    p.push_str(
        "<h2>Stations</h2>\n<table><tr><th>station</th><th>heat GJ</th><th>area m²</th>\
         <th>GJ/m²</th><th>GJ per degree-day</th><th>supply °C</th><th>return °C</th>\
         <th>ΔT K</th><th>comfort %</th><th>alarms</th><th>coverage %</th><th>vs fleet %</th></tr>\n",
    );
    for (row, class) in r
        .stations
        .iter()
        .map(|s| (s, ""))
        .chain(std::iter::once((&r.district, " class=d")))
    {
        let c = cells(row);
        let _ = write!(p, "<tr{class}><td>{}</td>", esc(&c[0]));
        for v in &c[1..] {
            let _ = write!(p, "<td class=n>{}</td>", esc(v));
        }
        p.push_str("</tr>\n");
    }
    p.push_str(
        "</table>\n<p>Heat from the hourly mean of each station's heat meter (or flow × ΔT when it \
         has none); comfort is the share of hours with an indoor reading within 18–22 °C; \
         coverage the share of the period's hours with a reading.</p>\n</body></html>\n",
    );
    p
}
