//! The scenario report: one self-contained HTML page (inline SVG charts, no scripts, no
//! external files) comparing the runs of `heatgrid scenario` (see [`crate::demo::scenario`]).
//!
//! Where it sits: at the end of the offline comparison, never in the live engine. Charts are
//! drawn here as plain SVG polylines (a charting crate would pull in a renderer for four line
//! charts); the KPI table is the same one the terminal prints.

use std::fmt::Write;

use heatgrid_sim::scenario::RunReport;

const W: f64 = 760.0;
const H: f64 = 290.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
/// Room for the title and two rows of legend.
const TOP: f64 = 58.0;
const BOTTOM: f64 = 30.0;
/// Run colours: baseline, local, heatgrid, heatgrid with the coordinator.
const COLORS: [&str; 4] = ["#9e9e9e", "#6d8fb3", "#d9480f", "#2b8a3e"];

/// One line of a chart: label, colour, (hours, value) points.
#[derive(Debug)]
pub struct Line<'a> {
    pub label: String,
    pub color: &'a str,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

/// A line chart as an SVG element: x in hours, y in `unit`, an optional shaded band (the
/// comfort band on indoor charts).
pub fn chart(title: &str, unit: &str, lines: &[Line], band: Option<(f64, f64)>) -> String {
    let finite = lines
        .iter()
        .flat_map(|l| l.points.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x1, mut y0, mut y1) = (0.0_f64, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in finite {
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if let Some((lo, hi)) = band {
        y0 = y0.min(lo);
        y1 = y1.max(hi);
    }
    if !(y0.is_finite() && y1.is_finite()) {
        (y0, y1) = (0.0, 1.0);
    }
    let pad = ((y1 - y0) * 0.08).max(0.5);
    let (y0, y1, x1) = (y0 - pad, y1 + pad, x1.max(1e-9));
    let px = |x: f64| LEFT + (W - LEFT - RIGHT) * x / x1;
    let py = |y: f64| TOP + (H - TOP - BOTTOM) * (1.0 - (y - y0) / (y1 - y0));
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" font-family="sans-serif" font-size="11">
<text x="{LEFT}" y="14" font-size="13" font-weight="bold">{}</text>
"#,
        esc(title)
    );
    if let Some((lo, hi)) = band {
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#e6f4ea"/>"##,
            px(0.0),
            py(hi),
            px(x1) - px(0.0),
            py(lo) - py(hi)
        );
    }
    axes(&mut s, (y0, y1), x1, unit, &px, &py);
    plot_lines(&mut s, lines, &px, &py);
    s.push_str("</svg>\n");
    s
}

/// Grid lines and labels: five on y (in `unit`), one every 1 or 3 hours on x.
fn axes(
    s: &mut String,
    (y0, y1): (f64, f64),
    x1: f64,
    unit: &str,
    px: &dyn Fn(f64) -> f64,
    py: &dyn Fn(f64) -> f64,
) {
    for k in 0..=5 {
        let y = y0 + (y1 - y0) * f64::from(k) / 5.0;
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{y:.1}</text>"##,
            W - RIGHT,
            py(y),
            py(y),
            LEFT - 4.0,
            py(y) + 4.0
        );
    }
    let step = if x1 > 12.0 { 3.0 } else { 1.0 };
    let mut x = 0.0;
    while x <= x1 + 1e-9 {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{x:.0} h</text>"#,
            px(x),
            H - BOTTOM + 14.0
        );
        x += step;
    }
    let _ = writeln!(
        s,
        r#"<text x="12" y="{:.1}" transform="rotate(-90 12 {:.1})" text-anchor="middle">{}</text>"#,
        H / 2.0,
        H / 2.0,
        esc(unit)
    );
}

/// Each line as a polyline, with its legend entry (entries wrap at the chart's width).
fn plot_lines(s: &mut String, lines: &[Line], px: &dyn Fn(f64) -> f64, py: &dyn Fn(f64) -> f64) {
    let (mut legend_x, mut legend_y) = (LEFT, 30.0);
    for l in lines {
        let width = 30.0 + 6.5 * l.label.chars().count() as f64;
        if legend_x + width > W - RIGHT {
            (legend_x, legend_y) = (LEFT, legend_y + 14.0);
        }
        let pts: Vec<String> = l
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let dash = if l.dashed {
            r#" stroke-dasharray="5 3""#
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.6"{dash} points="{}"/>"#,
            l.color,
            pts.join(" ")
        );
        let _ = writeln!(
            s,
            r#"<line x1="{legend_x:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{legend_y:.1}">{}</text>"#,
            legend_x + 18.0,
            legend_y - 4.0,
            legend_y - 4.0,
            l.color,
            legend_x + 22.0,
            esc(&l.label)
        );
        legend_x += width;
    }
}

/// The whole report for the runs of one scenario (baseline first, heatgrid last).
pub fn html(runs: &[RunReport], table_markdown: &str) -> String {
    let (Some(r0), Some(hg)) = (runs.first(), runs.last()) else {
        return String::new();
    };
    let charts = charts(runs, r0, hg);
    let rows = table_rows(table_markdown);
    let (worst_head, worst_rows) = worst_off(runs, r0);
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>heatgrid scenario {name}</title>
<style>body{{font-family:sans-serif;max-width:820px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 7px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}svg{{display:block;margin:1.2em 0}}</style></head><body>
<h1>Scenario {name}</h1>
<p>{stations} simulated stations ({fleet} fleet), seed {seed}, {hours} h after {warm} h of
local warm-up and {lead} h under each policy; {dd:.2} heating degree-days (base 18 °C). All figures are the simulator's ground
truth (heat through the exchangers, indoor temperature, pump speed).</p>
<p><b>Baseline</b>: every station on its fixed heating curve with its circulation pump at
constant full speed, no central coordination. <b>local</b>: the same curve, pump at 90 %.
<b>heatgrid</b>: heatgrid's station controller in the loop through the MQTT contract.
<b>heatgrid + coordinator</b>: the same with the district coordinator balancing heat per
design m² across the stations. Savings are per heating degree-day against the baseline and
count only at equal or better comfort (share of station-time with indoor 18–22 °C).</p>
<table>{rows}</table>
{charts}
<h2>The five stations worst off under the baseline, under each policy</h2>
<table>{worst_head}
{worst_rows}</table>
<p>Made by <code>heatgrid scenario {name} --fleet {fleet} --stations {stations} --hours {hours} --seed {seed} --html FILE</code>.</p>
</body></html>
"#,
        name = r0.scenario.name(),
        stations = r0.stations.len(),
        seed = r0.seed,
        hours = r0.hours,
        dd = r0.degree_days,
        fleet = r0.fleet.name(),
        warm = crate::demo::scenario::WARMUP_H,
        lead = r0.lead_h,
        charts = charts.concat(),
    )
}

fn line(label: impl Into<String>, color: &str, dashed: bool, points: Vec<(f64, f64)>) -> Line<'_> {
    Line {
        label: label.into(),
        color,
        dashed,
        points,
    }
}

/// The report's five charts: outdoor temperature, district heat, indoor mean and coldest,
/// and heatgrid's first station (supply vs setpoint, valve and pump vs the baseline).
fn charts(runs: &[RunReport], r0: &RunReport, hg: &RunReport) -> [String; 5] {
    let series = |r: &RunReport, f: fn(&heatgrid_sim::scenario::SeriesPoint) -> f64| {
        r.series.iter().map(|p| (p.t_h, f(p))).collect::<Vec<_>>()
    };
    let per_run = |f: fn(&heatgrid_sim::scenario::SeriesPoint) -> f64| {
        runs.iter()
            .zip(COLORS)
            .map(|(r, c)| line(r.policy.to_owned(), c, false, series(r, f)))
            .collect::<Vec<_>>()
    };
    let mut indoor = Vec::new();
    for (r, c) in runs.iter().zip(COLORS) {
        indoor.push(line(
            format!("{} mean", r.policy),
            c,
            false,
            series(r, |p| p.indoor_mean_c),
        ));
        indoor.push(line(
            format!("{} coldest", r.policy),
            c,
            true,
            series(r, |p| p.indoor_min_c),
        ));
    }
    let first = hg.stations.first().map_or("", |s| s.id.as_str());
    let hg_color = COLORS[(runs.len() - 1).min(COLORS.len() - 1)];
    [
        chart(
            "Outdoor temperature",
            "°C",
            &[line(
                r0.scenario.name().to_owned(),
                "#333",
                false,
                series(r0, |p| p.outdoor_c),
            )],
            None,
        ),
        chart(
            "District heat (all stations)",
            "MW",
            &per_run(|p| p.district_heat_mw),
            None,
        ),
        chart(
            "Indoor temperature: mean and coldest station (band: 18–22 °C)",
            "°C",
            &indoor,
            Some((18.0, 22.0)),
        ),
        chart(
            &format!("Station {first} under {}: supply and setpoint", hg.policy),
            "°C",
            &[
                line("supply", hg_color, false, series(hg, |p| p.supply_c)),
                line("setpoint", "#333", true, series(hg, |p| p.setpoint_c)),
            ],
            None,
        ),
        chart(
            &format!("Station {first}: valve and pump, {} vs baseline", hg.policy),
            "%",
            &[
                line(
                    format!("{} valve", hg.policy),
                    hg_color,
                    false,
                    series(hg, |p| p.valve_pct),
                ),
                line(
                    format!("{} pump", hg.policy),
                    hg_color,
                    true,
                    series(hg, |p| p.pump_pct),
                ),
                line(
                    "baseline valve",
                    COLORS[0],
                    false,
                    series(r0, |p| p.valve_pct),
                ),
                line("baseline pump", COLORS[0], true, series(r0, |p| p.pump_pct)),
            ],
            None,
        ),
    ]
}

/// The KPI table (Markdown, as the CLI prints it) as HTML rows.
fn table_rows(table_markdown: &str) -> String {
    let mut rows = String::new();
    for line in table_markdown.lines().filter(|l| l.starts_with('|')) {
        if line.starts_with("|-") {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let tag = if rows.is_empty() { "th" } else { "td" };
        let _ = write!(rows, "<tr>");
        for c in cells {
            let _ = write!(rows, "<{tag}>{}</{tag}>", esc(c));
        }
        let _ = writeln!(rows, "</tr>");
    }
    rows
}

/// The stations worst off under the baseline (most time below 18 °C, then the coldest), and
/// how each run treated those same stations: the table's head and rows.
fn worst_off(runs: &[RunReport], r0: &RunReport) -> (String, String) {
    let mut worst: Vec<usize> = (0..r0.stations.len()).collect();
    worst.sort_by(|&a, &b| {
        let (a, b) = (&r0.stations[a], &r0.stations[b]);
        b.indoor_under
            .total_cmp(&a.indoor_under)
            .then(a.indoor_min_c.total_cmp(&b.indoor_min_c))
    });
    let mut worst_head = String::from("<tr><th>station</th><th>area m²</th>");
    for r in runs {
        let _ = write!(
            worst_head,
            "<th>{0}: below 18 °C</th><th>{0}: indoor °C</th><th>{0}: W/m²</th>",
            esc(r.policy)
        );
    }
    worst_head.push_str("</tr>");
    let mut worst_rows = String::new();
    for &i in worst.iter().take(5) {
        let _ = write!(
            worst_rows,
            "<tr><td>{}</td><td>{:.0}</td>",
            esc(&r0.stations[i].id),
            r0.stations[i].area_m2
        );
        for k in runs.iter().filter_map(|r| r.stations.get(i)) {
            let _ = write!(
                worst_rows,
                "<td>{:.1} %</td><td>{:.2} – {:.2}</td><td>{:.1}</td>",
                k.indoor_under * 100.0,
                k.indoor_min_c,
                k.indoor_max_c,
                k.mean_w_m2
            );
        }
        let _ = writeln!(worst_rows, "</tr>");
    }
    (worst_head, worst_rows)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_maps_its_points_into_the_plot_area() {
        let svg = chart(
            "t <1>",
            "°C",
            &[Line {
                label: "a".into(),
                color: "#000",
                dashed: false,
                points: vec![(0.0, 10.0), (12.0, 20.0), (24.0, f64::NAN)],
            }],
            Some((18.0, 22.0)),
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("t &lt;1&gt;"), "titles are escaped");
        let pts = svg
            .split("points=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap();
        let xy: Vec<(f64, f64)> = pts
            .split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        assert_eq!(xy.len(), 2, "the NaN point is left out");
        // x spans the plot from the left margin; a higher value is drawn higher (smaller y).
        assert_eq!(xy[0].0, LEFT);
        assert!(xy[1].1 < xy[0].1);
        for (x, y) in xy {
            assert!((LEFT..=W - RIGHT).contains(&x) && (TOP..=H - BOTTOM).contains(&y));
        }
    }
}
