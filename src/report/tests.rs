//! The report's figures against ones computed by hand on a small series.

use super::render::{csv, html};
use super::*;

fn hour(h: i64, readings: u64, heat: f64, sup: f64, ret: f64, out: Option<f64>) -> Hour {
    Hour {
        hour_ms: h * HOUR_MS,
        readings,
        heat_kw: Some(heat),
        supply_c: Some(sup),
        return_c: Some(ret),
        outdoor_c: out,
        ..Hour::default()
    }
}

/// Three hours; a: two hours (indoor 20 and 23 °C, 1,000 m², two alarms), b: three hours
/// (400 m², no indoor), c: nothing.
pub(super) fn sample() -> Data {
    let a = vec![
        Hour {
            indoor_c: Some(20.0),
            area_m2: Some(1000.0),
            ..hour(0, 60, 100.0, 70.0, 50.0, Some(-2.0))
        },
        Hour {
            indoor_c: Some(23.0),
            area_m2: Some(1000.0),
            ..hour(1, 60, 200.0, 72.0, 48.0, Some(-4.0))
        },
    ];
    let b = vec![
        Hour {
            area_m2: Some(400.0),
            ..hour(0, 30, 50.0, 60.0, 45.0, Some(0.0))
        },
        Hour {
            area_m2: Some(400.0),
            ..hour(1, 30, 50.0, 62.0, 45.0, Some(-2.0))
        },
        Hour {
            area_m2: Some(400.0),
            ..hour(2, 30, 50.0, 64.0, 45.0, None)
        },
        // Outside the period: not counted.
        Hour {
            area_m2: Some(400.0),
            ..hour(3, 30, 9999.0, 99.0, 9.0, Some(-30.0))
        },
    ];
    Data {
        hours: [("a".to_owned(), a), ("b".to_owned(), b)].into(),
        alarms: [("a".to_owned(), 2)].into(),
    }
}

fn close(x: Option<f64>, want: f64) -> bool {
    x.is_some_and(|x| (x - want).abs() < 1e-9)
}

#[test]
fn the_figures_are_those_computed_by_hand() {
    let ids = ["a", "b", "c"].map(String::from);
    let r = Report::build(&sample(), &ids, (0, 3 * HOUR_MS), "test");
    // Outdoor per hour: (−2 + 0)/2 = −1, (−4 − 2)/2 = −3; degree-days (19 + 21)/24.
    let dd = 40.0 / 24.0;
    assert!(close(Some(r.degree_days), dd), "{}", r.degree_days);
    assert!(close(r.outdoor_mean_c, -2.0));
    let [a, b, c] = [&r.stations[0], &r.stations[1], &r.stations[2]];
    // a: (100 + 200) kW × 1 h = 1.08 GJ on 1,000 m².
    assert!(close(Some(a.heat_gj), 1.08));
    assert!(close(a.gj_per_m2, 0.00108));
    assert!(close(a.gj_per_degree_day, 1.08 / dd));
    assert!(close(a.supply_mean_c, 71.0) && close(a.return_mean_c, 49.0));
    assert!(close(a.delta_t_mean_k, 22.0));
    assert!(close(a.comfort, 0.5), "20 °C in the band, 23 °C not");
    assert!(close(Some(a.coverage), 2.0 / 3.0));
    assert_eq!(a.alarms, 2);
    // b: 3 × 50 kW × 1 h = 0.54 GJ on 400 m²; the fourth hour is outside the period.
    assert!(close(Some(b.heat_gj), 0.54));
    assert!(close(b.gj_per_m2, 0.00135));
    assert!(close(b.supply_mean_c, 62.0) && close(b.delta_t_mean_k, 17.0));
    assert_eq!((b.comfort, b.coverage, b.alarms), (None, 1.0, 0));
    // c: no data at all.
    assert_eq!((c.heat_gj, c.coverage, c.area_m2), (0.0, 0.0, None));
    // The fleet: 1.62 GJ on 1,400 m²; b at 0.00135 / (1.62 / 1400) = 7/6 of it, a at 14/15.
    let fleet = 1.62 / 1400.0 / dd;
    assert!(close(r.fleet_mj_per_m2_degree_day, fleet * 1000.0));
    assert!(close(b.above_fleet_pct, 100.0 / 6.0));
    assert!(close(a.above_fleet_pct, -100.0 / 15.0));
    assert_eq!(r.league.len(), 1, "only b is above the fleet");
    assert_eq!((r.league[0].rank, r.league[0].station.as_str()), (1, "b"));
    assert!(close(
        Some(r.league[0].mj_per_m2_degree_day),
        0.00135 / dd * 1000.0
    ));
    // The district: sums, and means weighted by each station's hours.
    let d = &r.district;
    assert!(close(Some(d.heat_gj), 1.62));
    assert!(close(d.area_m2, 1400.0));
    assert!(close(d.gj_per_degree_day, 1.62 / dd));
    assert!(close(
        d.supply_mean_c,
        (2.0 / 3.0 * 71.0 + 62.0) / (5.0 / 3.0)
    ));
    assert!(close(
        d.return_mean_c,
        (2.0 / 3.0 * 49.0 + 45.0) / (5.0 / 3.0)
    ));
    assert!(close(d.comfort, 0.5));
    assert_eq!(d.alarms, 2);
    assert!(close(Some(d.coverage), 5.0 / 9.0));
}

#[test]
fn csv_and_html_carry_every_row_and_escape_what_they_show() {
    let ids = ["a", "b", "c<script>"].map(String::from);
    let r = Report::build(&sample(), &ids, (0, 3 * HOUR_MS), "files (x)");
    let text = csv(&r);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("station,heat_gj,area_m2,gj_per_m2"),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines.len(),
        1 + 3 + 1,
        "header, three stations, the district"
    );
    assert!(
        lines[1].starts_with("a,1.080,1000,0.001080,"),
        "{}",
        lines[1]
    );
    assert!(lines[4].starts_with("district,1.620,1400,"), "{}", lines[4]);
    let page = html(&r);
    assert!(page.contains("<table") && page.contains("c&lt;script&gt;"));
    assert!(!page.contains("<script>"));
    assert!(page.contains("+16.7 %"), "b above the fleet");
}
