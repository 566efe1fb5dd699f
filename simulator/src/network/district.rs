//! The stations on their network: each station's primary supply temperature, flow and
//! differential pressure come from the network, and what it sends back goes into the
//! network's return; the plant's PLC sets the supply and the pump; hot-water draws and a
//! night setback make the daily peaks; the district's figures (plant heat, pipe losses,
//! temperatures, pump electricity, peak-boiler hours) are summed for a scenario's report.
//!
//! Where it sits: between a scenario's stations ([`crate::station::SimStation`]) and the
//! network ([`super::tree::Tree`]). A scenario step calls [`Networked::before`] (the plant
//! steps, the network solves its flows and carries the supply out; each station gets its
//! [`NetworkFeed`]), steps the stations, then calls [`Networked::after`] (their outlets go
//! into the return line and the figures are counted).

use std::collections::{BTreeMap, HashMap};
use std::f64::consts::PI;

use serde::Serialize;

use super::file::NetworkFile;
use super::hydraulics::{Pump, PumpControl, Valve};
use super::plc::{PlantCommand, PlantPlc, PlantSettings, PlantTelemetry, PumpTarget};
use super::tree::{Draw, Tree};
use crate::plant::{NetworkFeed, DHW_RETURN_C};
use crate::station::SimStation;

/// How often the network's flows are solved again as the valves move, simulated seconds (a
/// station's valve takes a minute from shut to open).
pub const HYDRAULIC_STEP_S: f64 = 10.0;

/// Efficiency of the main pumps, wire to water (motor, drive and pump).
pub const PUMP_EFFICIENCY: f64 = 0.7;

/// The loads beside space heating that make a district's daily peaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Loads {
    /// Domestic hot water: each station's daily mean draw as a share of its design heat
    /// (0: none), shaped by [`dhw_profile`].
    pub dhw_share: f64,
    /// Night setback: the radiators' thermostats let this share of their flow through from
    /// 23:00 to 05:00 (1: no setback), then open wide again.
    pub setback_share: f64,
}

impl Loads {
    /// No hot water, no setback.
    pub const NONE: Loads = Loads {
        dhw_share: 0.0,
        setback_share: 1.0,
    };
    /// Hot water at 5 % of the design heat on average, and a setback to 40 % of the flow.
    pub const PEAKY: Loads = Loads {
        dhw_share: 0.05,
        setback_share: 0.4,
    };
}

/// Hot-water draw at `hour` of the day relative to the day's mean (its mean over a day is 1):
/// a morning peak at 07:00 and an evening one at 19:30, little at night.
pub fn dhw_profile(hour: f64) -> f64 {
    let bump = |centre: f64, width: f64| {
        let d = (hour - centre + 12.0).rem_euclid(24.0) - 12.0;
        (-0.5 * (d / width).powi(2)).exp()
    };
    // Normalised so that the day's mean is 1 (the integral of a bump is width·√(2π)).
    let (base, morning, evening) = (0.3, 2.2, 2.6);
    let raw = base + morning * bump(7.0, 1.0) + evening * bump(19.5, 1.5);
    let mean = base + (morning * 1.0 + evening * 1.5) * (2.0 * PI).sqrt() / 24.0;
    raw / mean
}

/// The district's sums over the measured window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NetworkKpis {
    /// Heat the plant put into the water, and what the pipes lost to the ground, kWh.
    pub heat_produced_kwh: f64,
    pub loss_kwh: f64,
    pub loss_share: f64,
    /// Heat the stations took (heating and hot water), kWh.
    pub delivered_kwh: f64,
    /// Heat the pipes hold more at the end than at the start of the window, kWh.
    pub stored_gain_kwh: f64,
    /// Time-mean plant supply, flow-weighted plant return, °C.
    pub supply_mean_c: f64,
    pub return_mean_c: f64,
    /// Pump electricity: Δp × volume flow / [`PUMP_EFFICIENCY`], kWh.
    pub pump_kwh: f64,
    /// The largest hourly mean of the plant's heat, MW; the peak boiler's running hours and
    /// its heat, kWh.
    pub peak_hourly_mw: f64,
    pub peak_boiler_h: f64,
    pub peak_heat_kwh: f64,
    /// The least differential pressure any station saw, kPa, and station-hours below 30 kPa.
    pub min_station_dp_kpa: f64,
    pub station_h_below_30_kpa: f64,
    /// Hot water asked for and not delivered (primary supply too cold), kWh.
    pub dhw_short_kwh: f64,
    /// Hours the plant followed the engine's commands.
    pub engine_h: f64,
    /// Plant commands accepted and refused.
    pub commands_accepted: u64,
    pub commands_refused: u64,
    #[serde(skip)]
    acc: Acc,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Acc {
    stored_at_start_j: Option<f64>,
    seconds: f64,
    supply_s: f64,
    return_flow: f64,
    flow: f64,
    hour: (i64, f64),
    peak_j: f64,
}

/// The network with its stations and plant.
#[derive(Debug, Clone)]
pub struct Networked {
    pub tree: Tree,
    pub plc: PlantPlc,
    pump: Pump,
    /// Per station (in the scenario's order): its node, its valve's Kvs (m³/h).
    node: Vec<usize>,
    kvs_m3h: Vec<f64>,
    /// Station id → node.
    by_id: HashMap<String, usize>,
    ground_c: f64,
    loads: Loads,
    /// Per station: hot-water primary flow this step, kg/s.
    dhw_flow: Vec<f64>,
    /// What the flows were last solved for, and when (run time, s).
    draws: HashMap<usize, Draw>,
    solved_at: f64,
    pub kpis: NetworkKpis,
}

impl Networked {
    /// `file` with `stations` on it (every station must have a node with a valve), pipes cut
    /// into cells of `cell_m`, the plant starting at its curve for `outdoor_c`.
    pub fn new(
        file: &NetworkFile,
        stations: &[SimStation],
        loads: Loads,
        cell_m: f64,
        outdoor_c: f64,
    ) -> Result<Self, String> {
        let plant = file
            .plant
            .as_ref()
            .ok_or("the network file has no plant section (pump) for valves to draw from")?;
        let fixed_head = plant.fixed_head_Pa.unwrap_or(0.5 * plant.pump_head_Pa);
        let settings = PlantSettings::with_head(fixed_head);
        let start = settings.curve_c(outdoor_c);
        let tree = file.tree(cell_m, start)?;
        let (pump, _) = file.pump(&tree).ok_or("no pump")?;
        let mut by_id = HashMap::new();
        let kvs_of = file.valve_kvs();
        for (i, n) in file.nodes.iter().enumerate() {
            if let Some(s) = &n.station {
                by_id.insert(s.clone(), i);
            }
        }
        let mut node = Vec::new();
        let mut kvs_m3h = Vec::new();
        for s in stations {
            let n = *by_id
                .get(&s.id)
                .ok_or_else(|| format!("station {} has no node in the network file", s.id))?;
            let k = *kvs_of
                .get(&n)
                .ok_or_else(|| format!("station {}'s node has no valve_kvs_m3h", s.id))?;
            node.push(n);
            kvs_m3h.push(k);
        }
        Ok(Self {
            tree,
            plc: PlantPlc::new(settings, start),
            pump,
            dhw_flow: vec![0.0; node.len()],
            draws: HashMap::new(),
            solved_at: f64::NEG_INFINITY,
            node,
            kvs_m3h,
            by_id,
            ground_c: file.ground_temperature_C,
            loads,
            kpis: NetworkKpis {
                min_station_dp_kpa: f64::INFINITY,
                ..NetworkKpis::default()
            },
        })
    }

    /// Runs the network with its stations under their own control for `hours` of 10 s steps
    /// from run time `from_t` in the weather `outdoor_c(t)`, unmeasured: the pipes' water
    /// and walls settle to the plant's curve and the stations' draws.
    pub fn settle(
        &mut self,
        stations: &mut [SimStation],
        from_t: f64,
        hours: f64,
        outdoor_c: impl Fn(f64) -> f64,
    ) {
        for k in 0..(hours * 360.0) as usize {
            let t = from_t + k as f64 * 10.0;
            let out = outdoor_c(t);
            self.before(10.0, t, out, 0, stations);
            for s in stations.iter_mut() {
                s.step(10.0, out, 0);
            }
            self.after(10.0, t, stations, false);
        }
    }

    /// The first half of a step of `dt` seconds at run time `t` (s from midnight), outdoor
    /// `outdoor_c`, wall time `now_ms`: the plant steps, the loads are set, the network solves
    /// its flows and carries its supply out, and each station is given what reaches it.
    pub fn before(
        &mut self,
        dt: f64,
        t: f64,
        outdoor_c: f64,
        now_ms: i64,
        stations: &mut [SimStation],
    ) {
        let control = match self.plc.step(dt, outdoor_c, now_ms) {
            PumpTarget::Speed(s) => PumpControl::Speed(s),
            PumpTarget::DiffPressure { point, pa } => PumpControl::DiffPressure {
                node: point
                    .and_then(|p| self.by_id.get(&p).copied())
                    .unwrap_or_else(|| self.tree.node_of_plant()),
                setpoint_pa: pa,
            },
        };
        self.tree.set_pump(self.pump, control);
        let hour = (t / 3600.0).rem_euclid(24.0);
        let share = if !(5.0..23.0).contains(&hour) {
            self.loads.setback_share
        } else {
            1.0
        };
        let dhw = self.loads.dhw_share * dhw_profile(hour);
        let solve = t - self.solved_at >= HYDRAULIC_STEP_S - 1e-9;
        if solve {
            self.solved_at = t;
        }
        for (i, s) in stations.iter_mut().enumerate() {
            let p = &mut s.plant;
            p.radiator_share = share;
            p.dhw_demand_w = dhw * p.p.design_heat_w;
            if !solve {
                continue; // the valves' last openings stand (the solution is kept)
            }
            // Hot water at the supply that reached the station last step.
            let (m_dhw, _) = p.dhw_draw(self.tree.state().supply_c[self.node[i]]);
            self.dhw_flow[i] = m_dhw;
            self.draws.insert(
                self.node[i],
                Draw::Valve {
                    valve: Valve {
                        kvs_m3h: self.kvs_m3h[i],
                        opening: p.valve_flow_share(),
                    },
                    delta_t_k: 0.0,
                    plus_kg_s: m_dhw,
                },
            );
        }
        let plant_c = self.plc.supply_c;
        let st = self
            .tree
            .step_supply(plant_c, &self.draws, self.ground_c, dt);
        for (i, s) in stations.iter_mut().enumerate() {
            let n = self.node[i];
            s.plant.network = Some(NetworkFeed {
                supply_c: st.supply_c[n],
                flow_kg_s: (st.node_flow_kg_s[n] - self.dhw_flow[i]).max(0.0),
                dp_pa: st.node_dp_pa[n],
            });
        }
    }

    /// The second half: each station's primary outlet (heating and hot water mixed by flow)
    /// into the return line; the figures counted when `measured`, from run time `t`.
    pub fn after(&mut self, dt: f64, t: f64, stations: &[SimStation], measured: bool) {
        let mut returns = vec![None; self.tree.spec.nodes.len()];
        for (i, s) in stations.iter().enumerate() {
            let (m_sh, m_dhw) = (s.plant.primary_kgs, self.dhw_flow[i]);
            let total = m_sh + m_dhw;
            let supply = self.tree.state().supply_c[self.node[i]];
            returns[self.node[i]] = Some(if total > 1e-9 {
                (m_sh * s.plant.primary_return_c + m_dhw * DHW_RETURN_C.min(supply)) / total
            } else {
                supply
            });
        }
        let plant_c = self.plc.supply_c;
        self.tree.step_return(plant_c, &returns, self.ground_c, dt);
        if measured {
            self.record(dt, t, stations);
        }
    }

    fn record(&mut self, dt: f64, t: f64, stations: &[SimStation]) {
        if self.kpis.acc.stored_at_start_j.is_none() {
            // This step's own change is counted in its flows: start from before it as nearly
            // as the state allows (the step is seconds against the window's hours).
            self.kpis.acc.stored_at_start_j = Some(self.tree.stored_j(0.0));
        }
        let st = self.tree.state();
        let k = &mut self.kpis;
        let kwh = dt / 3.6e6;
        k.heat_produced_kwh += st.plant_heat_w.max(0.0) * kwh;
        k.loss_kwh += st.losses_w() * kwh;
        k.delivered_kwh += st.stations_heat_w * kwh;
        k.peak_heat_kwh += st.peak_heat_w * kwh;
        if st.peak_heat_w > 0.0 {
            k.peak_boiler_h += dt / 3600.0;
        }
        let volume_m3_s = st.plant_flow_kg_s / self.tree.spec.fluid.density;
        k.pump_kwh += st.plant_dp_pa * volume_m3_s / PUMP_EFFICIENCY * kwh;
        for &n in &self.node {
            let kpa = st.node_dp_pa[n] / 1000.0;
            k.min_station_dp_kpa = k.min_station_dp_kpa.min(kpa);
            if kpa < 30.0 {
                k.station_h_below_30_kpa += dt / 3600.0;
            }
        }
        k.dhw_short_kwh += stations.iter().map(|s| s.plant.dhw_short_w()).sum::<f64>() * kwh;
        if self.plc.control == super::plc::PlantControl::Engine {
            k.engine_h += dt / 3600.0;
        }
        let a = &mut k.acc;
        a.seconds += dt;
        a.supply_s += self.plc.supply_c * dt;
        let plant = self.tree.node_of_plant();
        a.return_flow += st.return_c[plant] * st.plant_flow_kg_s * dt;
        a.flow += st.plant_flow_kg_s * dt;
        let h = (t / 3600.0).floor() as i64;
        if h != a.hour.0 {
            a.peak_j = a.peak_j.max(a.hour.1);
            a.hour = (h, 0.0);
        }
        a.hour.1 += st.plant_heat_w.max(0.0) * dt;
    }

    /// The run's figures, finished.
    pub fn finish(&mut self) -> NetworkKpis {
        let mut k = self.kpis.clone();
        let a = &k.acc;
        k.supply_mean_c = a.supply_s / a.seconds.max(1e-9);
        k.return_mean_c = a.return_flow / a.flow.max(1e-9);
        k.peak_hourly_mw = a.peak_j.max(a.hour.1) / 3600.0 / 1e6;
        k.loss_share = k.loss_kwh / k.heat_produced_kwh.max(1e-9);
        k.stored_gain_kwh = a
            .stored_at_start_j
            .map_or(0.0, |s0| (self.tree.stored_j(0.0) - s0) / 3.6e6);
        k.commands_accepted = self.plc.commands_received - self.plc.commands_refused;
        k.commands_refused = self.plc.commands_refused;
        k
    }

    /// The plant's telemetry at wall time `now_ms` (contract §7).
    pub fn telemetry(&self, now_ms: i64) -> PlantTelemetry {
        let st = self.tree.state();
        let r2 = |x: f64| (x * 100.0).round() / 100.0;
        let plant = self.tree.node_of_plant();
        let applied = self.plc.applied();
        PlantTelemetry {
            ts: now_ms,
            supply_temp_c: r2(self.plc.supply_c),
            return_temp_c: r2(st.return_c[plant]),
            flow_m3h: r2(st.plant_flow_kg_s / self.tree.spec.fluid.density * 3600.0),
            heat_kw: r2(st.plant_heat_w / 1000.0),
            diff_pressure_kpa: r2(st.plant_dp_pa / 1000.0),
            pump_pct: r2(st.pump_speed * 100.0),
            units: BTreeMap::from([
                ("base".to_owned(), r2(st.base_heat_w / 1000.0)),
                ("peak".to_owned(), r2(st.peak_heat_w / 1000.0)),
            ]),
            applied_epoch: applied.map(|a| a.0),
            applied_seq: applied.map(|a| a.1),
            mode: match self.plc.control {
                super::plc::PlantControl::Engine => "engine",
                super::plc::PlantControl::Local => "local",
            },
        }
    }

    /// A command for the plant arrived (contract §7 JSON) at wall time `now_ms`.
    pub fn on_command(&mut self, json: &str, now_ms: i64) -> Result<u64, String> {
        let cmd: PlantCommand = serde_json::from_str(json).map_err(|e| {
            self.plc.commands_received += 1;
            self.plc.commands_refused += 1;
            format!("not a plant command: {e}")
        })?;
        self.plc.on_command(cmd, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hot_water_profile_averages_one_and_peaks_morning_and_evening() {
        let mean = (0..2400)
            .map(|k| dhw_profile(k as f64 / 100.0))
            .sum::<f64>()
            / 2400.0;
        assert!((mean - 1.0).abs() < 1e-3, "{mean}");
        assert!(dhw_profile(7.0) > 2.0 && dhw_profile(19.5) > 2.0);
        assert!(dhw_profile(3.0) < 0.5 && dhw_profile(13.0) < 0.5);
    }

    use crate::scenario::{self, Disturbance, NetworkRun, PlantPolicy, Policy, Scenario};
    use crate::SimConfig;

    fn fleet() -> (SimConfig, NetworkFile) {
        let cfg = SimConfig {
            stations: 6,
            seed: 3,
            warmup_h: 2.0,
            ..SimConfig::default()
        };
        let file = cfg.generated_network(3);
        (cfg, file)
    }

    fn run<'a>(
        (cfg, file): &'a (SimConfig, NetworkFile),
        hours: f64,
        plant: PlantPolicy<'a>,
    ) -> scenario::RunReport {
        let net = NetworkRun {
            file,
            loads: Loads::PEAKY,
            cell_m: 20.0,
            plant,
        };
        scenario::run_on(
            cfg,
            Scenario::WinterDay,
            Disturbance::None,
            hours,
            Policy::Local,
            Some(net),
        )
        .unwrap()
    }

    #[test]
    fn stations_on_the_network_take_their_heat_through_it_and_the_heat_balances() {
        let r = run(&fleet(), 3.0, PlantPolicy::Own);
        let n = r.network.expect("a run on a network reports it");
        // What the plant made went to the stations, into the ground or into the pipes.
        let balance = (n.heat_produced_kwh - n.delivered_kwh - n.loss_kwh - n.stored_gain_kwh)
            / n.heat_produced_kwh;
        assert!(balance.abs() < 0.002, "{balance}: {n:?}");
        // The stations' heating exchangers and hot water are what was delivered.
        let heating_kwh = r.heat_gj * 1e9 / 3.6e6;
        assert!(
            heating_kwh < n.delivered_kwh && heating_kwh > 0.8 * n.delivered_kwh,
            "{heating_kwh} of {}",
            n.delivered_kwh
        );
        assert!(
            n.loss_share > 0.001 && n.loss_share < 0.1,
            "{}",
            n.loss_share
        );
        // On its own curve, a constant head, no engine.
        let curve = PlantSettings::with_head(0.0);
        let expected = (0..180)
            .map(|k| curve.curve_c(Scenario::WinterDay.outdoor_c(k as f64 * 60.0)))
            .sum::<f64>()
            / 180.0;
        assert!(
            (n.supply_mean_c - expected).abs() < 1.0,
            "{}",
            n.supply_mean_c
        );
        assert!(n.return_mean_c < n.supply_mean_c - 20.0);
        assert_eq!(n.engine_h, 0.0);
        assert!(n.pump_kwh > 0.0 && n.min_station_dp_kpa > 30.0, "{n:?}");
        // Homes warm at night in their setback.
        assert!(r.indoor_mean_c > 16.0, "{}", r.indoor_mean_c);
    }

    #[test]
    fn the_plant_follows_the_engine_while_its_commands_are_valid_then_its_own_curve() {
        let setup = fleet();
        let point = setup
            .1
            .plant
            .as_ref()
            .unwrap()
            .control_node
            .clone()
            .unwrap();
        let station = point.trim_start_matches("n-").to_owned();
        let answered = std::cell::Cell::new(0);
        // The engine answers for the first two hours only, with `setpoint_c` and half a bar at
        // the station where the file's pump holds its pressure.
        let engine = |setpoint_c: f64| {
            let (station, answered) = (station.clone(), &answered);
            move |telemetry: &str, now_ms: i64| {
                let t: serde_json::Value = serde_json::from_str(telemetry).unwrap();
                assert!(t["supply_temp_c"].as_f64().unwrap() > 50.0);
                if now_ms >= scenario::DAY_START_MS + 2 * 3_600_000 {
                    return None;
                }
                answered.set(answered.get() + 1);
                let seq = answered.get();
                Some(format!(
                    r#"{{"seq":{seq},"epoch":1,"ts":{now_ms},"supply_setpoint_c":{setpoint_c},"diff_pressure_setpoint_kpa":50.0,"pressure_point":"{station}","valid_for_s":60}}"#
                ))
            }
        };
        let mut engine85 = engine(85.0);
        let r = run(&setup, 4.0, PlantPolicy::Controller(&mut engine85));
        let n = r.network.unwrap();
        assert_eq!(n.commands_accepted, answered.get());
        assert_eq!(n.commands_refused, 0);
        // In charge for two hours and the last command's minute.
        assert!((n.engine_h - 2.0).abs() < 0.05, "{}", n.engine_h);
        // Down from the curve's ~103 °C towards 85 at 10 K/h for two hours, back up after.
        assert!(n.supply_mean_c < 98.0, "{}", n.supply_mean_c);
        // The pressure point held at 50 kPa: the least any station saw is no higher.
        assert!(n.min_station_dp_kpa <= 50.5, "{}", n.min_station_dp_kpa);
        let own = run(&setup, 4.0, PlantPolicy::Own).network.unwrap();
        assert!(n.loss_kwh < own.loss_kwh);
        // Colder water needs more of it: at the curve's own temperature, the pressure held at
        // the far station instead of a constant head at the plant saves pump electricity.
        answered.set(0);
        let mut engine110 = engine(110.0);
        let hot = run(&setup, 4.0, PlantPolicy::Controller(&mut engine110))
            .network
            .unwrap();
        assert!(
            hot.pump_kwh < 0.8 * own.pump_kwh,
            "{} against {}",
            hot.pump_kwh,
            own.pump_kwh
        );
        assert!(n.pump_kwh > hot.pump_kwh);
    }
}
