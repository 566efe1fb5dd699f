//! `heatgrid scenario`: heatgrid's own station controller run in the loop of a simulator
//! scenario, offline and at full speed, beside the simulator's baseline and local policies.
//!
//! Where it sits: outside the live data flow. It drives `heatgrid_sim::scenario::run` with a
//! controller that speaks only the contract — telemetry JSON through heatgrid's decoder into
//! a [`StationController`] (the same one the engine runs), the command back as contract JSON
//! — so the comparison exercises the real decode and control code, with simulated time
//! standing in for the wall clock. The KPIs come from the simulator's ground truth.

use std::collections::HashMap;

use anyhow::{bail, Context};
use heatgrid_sim::scenario::{self, Disturbance, Policy, RunReport, Scenario};
use heatgrid_sim::SimConfig;

use crate::config::Config;
use crate::control::station::Tick;
use crate::control::StationController;
use crate::decode::{decode, DecodeLimits};
use crate::model::{Command, StationId};

/// One scenario, three runs: the baseline, the stations' own curve, heatgrid.
pub fn compare(
    scenario: Scenario,
    disturbance: Disturbance,
    stations: usize,
    hours: f64,
    seed: u64,
) -> anyhow::Result<[RunReport; 3]> {
    if stations == 0 || hours.is_nan() || hours <= 0.0 {
        bail!("--stations must be at least 1 and --hours positive");
    }
    let sim = SimConfig {
        stations,
        seed,
        telemetry_period_s: 5.0,
        warmup_h: 12.0,
        ..SimConfig::default()
    };
    // The engine's defaults for every station of the fleet (ids as the simulator names them).
    let toml: String = (1..=stations)
        .map(|n| format!("[[station]]\nid = \"{}{n:03}\"\n", sim.id_prefix))
        .collect();
    let cfg = Config::parse(&toml, &|_| None)
        .map_err(|e| anyhow::anyhow!("{}", e.join("; ")))
        .context("building the fleet's configuration")?;
    let valid_for_s = cfg.command_valid_for_s;
    let mut loops: HashMap<String, (StationId, StationController, u64)> = cfg
        .stations
        .iter()
        .map(|s| {
            let ctrl = StationController::new(s.params.clone(), sim.telemetry_period_s);
            (s.id.as_str().to_owned(), (s.id.clone(), ctrl, 0))
        })
        .collect();
    let limits = DecodeLimits::default();
    let mut heatgrid = |id: &str, telemetry: &str, now_ms: i64| -> Option<String> {
        let (sid, ctrl, seq) = loops.get_mut(id)?;
        let reading = decode(sid, telemetry.as_bytes(), now_ms, &limits).ok()?;
        match ctrl.tick(
            Some(&reading),
            reading.outdoor_temp_c.unwrap_or(-5.0),
            now_ms,
        ) {
            Tick::Act(o) => {
                *seq += 1;
                let cmd = Command {
                    seq: *seq,
                    ts: now_ms,
                    mode: o.mode,
                    supply_setpoint_c: o.supply_setpoint_c,
                    valve_pct: o.valve_pct,
                    pump_pct: o.pump_pct,
                    flow_setpoint_m3h: o.flow_setpoint_m3h,
                    valid_for_s,
                    epoch: None,
                };
                serde_json::to_string(&cmd).ok()
            }
            Tick::Stale { .. } => None,
        }
    };
    Ok([
        scenario::run_with(&sim, scenario, disturbance, hours, Policy::Baseline),
        scenario::run_with(&sim, scenario, disturbance, hours, Policy::Local),
        RunReport {
            policy: "heatgrid",
            ..scenario::run_with(
                &sim,
                scenario,
                disturbance,
                hours,
                Policy::Controller(&mut heatgrid),
            )
        },
    ])
}

/// The comparison as a table, savings against the baseline stated with their normalisation.
pub fn table(runs: &[RunReport; 3]) -> String {
    let r0 = &runs[0];
    let mut out = format!(
        "scenario {}{} · {} stations · seed {} · {} h · {:.2} heating degree-days (base 18 °C)\n\
         baseline: the stations' fixed heating curve with the pump at constant full speed\n\n",
        r0.scenario.name(),
        match r0.disturbance {
            Disturbance::None => String::new(),
            d => format!(
                " + {} on {} station(s)",
                d.name(),
                d.affected(r0.stations.len())
            ),
        },
        r0.stations.len(),
        r0.seed,
        r0.hours,
        r0.degree_days
    );
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::ASCII_MARKDOWN)
        .set_header([
            "policy",
            "heat GJ",
            "GJ / degree-day",
            "heat vs baseline",
            "pump (full-speed h)",
            "indoor 18–22 °C",
            "< 18 °C",
            "> 22 °C",
            "supply ±1 K",
        ]);
    for r in runs {
        t.add_row([
            r.policy.to_owned(),
            format!("{:.1}", r.heat_gj),
            format!("{:.2}", r.heat_gj_per_degree_day),
            format!("{:+.1} %", (r.heat_gj / r0.heat_gj - 1.0) * 100.0),
            format!("{:.1}", r.pump_full_speed_h),
            format!("{:.1} %", r.indoor_comfort * 100.0),
            format!("{:.1} %", r.indoor_under * 100.0),
            format!("{:.1} %", r.indoor_over * 100.0),
            format!("{:.1} %", r.supply_within_1k * 100.0),
        ]);
    }
    out.push_str(&t.to_string());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heatgrid_drives_every_station_of_a_short_scenario() {
        let runs = compare(Scenario::ColdSnap, Disturbance::None, 3, 2.0, 5).unwrap();
        let [base, local, hg] = &runs;
        assert_eq!(
            (base.policy, local.policy, hg.policy),
            ("baseline", "local", "heatgrid")
        );
        // One command per station per 5 s telemetry period, every one accepted.
        assert_eq!(hg.commands_accepted, 3 * 2 * 720);
        assert_eq!(hg.commands_refused, 0);
        assert_eq!(base.commands_accepted + local.commands_accepted, 0);
        // Same fleet and weather for all three.
        assert_eq!(base.degree_days, hg.degree_days);
        for r in &runs {
            let err = (r.heat_metered_gj - r.heat_gj).abs() / r.heat_gj;
            assert!(err < 0.01, "{}: energy balance off by {err}", r.policy);
        }
        let text = table(&runs);
        assert!(text.contains("pump at constant full speed"), "{text}");
        assert!(text.contains("degree-days"), "{text}");
        assert!(compare(Scenario::Mild, Disturbance::None, 0, 1.0, 1).is_err());
        let lost = compare(Scenario::WinterDay, Disturbance::CommsLoss, 3, 9.0, 5).unwrap();
        // One station hit: it misses 08:00–09:00, 720 samples of the 3 × 6,480.
        assert_eq!(lost[2].commands_accepted, 3 * 9 * 720 - 720);
        assert!(table(&lost).contains("comms-loss on 1 station"));
        let html = crate::report::html(&runs, &text);
        assert!(html.starts_with("<!doctype html>") && html.trim_end().ends_with("</html>"));
        assert_eq!(
            html.matches("<svg").count(),
            5,
            "outdoor, heat, indoor, supply, actuators"
        );
        assert!(html.contains("constant full speed") && html.contains("<td>heatgrid</td>"));
        assert!(!html.contains("<script"), "self-contained, no scripts");
    }
}
