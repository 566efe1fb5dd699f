//! Predictive control: each station's building model, learned online, and a plan over the
//! forecast's next 24–48 h that moves the station's curve ahead of the weather.
//!
//! Where it sits: beside the district coordinator, between ingest and the station
//! controllers. The control task [`Predictor::observe`]s every fresh reading a station's
//! controller acts on, and asks [`Predictor::shift_k`] for the station's **weather shift**: the
//! kelvins added to the outdoor temperature the station's curve (and its flow target, and the
//! coordinator's demand) are computed from. A negative shift heats ahead of a cold morning, a
//! positive one lets forecast sun do the heating. Nothing else changes: the curve, the
//! district and operator offsets, the return limitation, the ramp, the supply limits, the loops,
//! the validity of commands and the fail-safes all act on the result as before — predictive
//! control only moves targets.
//!
//! [`forecast`] decodes and judges the forecast, [`model`] identifies the building, [`plan`]
//! is the optimiser. Without an indoor temperature, a good enough fit or a fresh forecast the
//! shift eases back to 0 (the curve) and [`State`] says why.

pub mod forecast;
pub mod model;
pub mod plan;
mod settings;

pub use settings::Settings;
use settings::PEAK_DAYS;

use forecast::{Forecast, Freshness};
use model::{BuildingModel, HourMean};
use plan::{Hour, Plan};

use crate::model::Reading;

/// The station's design, as the plan needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Design {
    /// Design load, kW, and design indoor − design outdoor, K.
    pub design_kw: f64,
    pub span_k: f64,
}

impl Design {
    /// Design loss, kW/K: how much heat the curve gives per kelvin of outdoor temperature.
    pub fn ua_kw_k(&self) -> f64 {
        self.design_kw / self.span_k.max(1.0)
    }
}

/// Why a station is, or is not, under predictive control.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum State {
    /// Not enabled in the configuration.
    Off,
    /// The station reports no indoor temperature: nothing to learn the building from.
    NoIndoor,
    /// Learning: hours seen so far.
    Learning(u32),
    /// The model predicts the indoor temperature too poorly (its error, K).
    PoorFit(f64),
    /// The forecast cannot be planned on.
    NoForecast(Freshness),
    /// Planning.
    Active,
}

impl State {
    pub fn describe(&self) -> String {
        match self {
            State::Off => "off".into(),
            State::NoIndoor => {
                "on the curve: no indoor temperature to learn the building from".into()
            }
            State::Learning(h) => format!("on the curve: learning the building ({h} h so far)"),
            State::PoorFit(e) => {
                format!("on the curve: the building model fits poorly (±{e:.2} K per hour)")
            }
            State::NoForecast(f) => format!("on the curve: {}", f.describe()),
            State::Active => "predictive".into(),
        }
    }

    pub fn is_active(&self) -> bool {
        *self == State::Active
    }
}

/// What [`Predictor::status`] reports for a station.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Status {
    pub state: State,
    pub shift_k: f64,
    pub model: model::Params,
    pub fit_hours: u32,
    pub rmse_k: f64,
    pub skill: f64,
    /// The current plan's first-hour heat and its peak, kW.
    pub planned_kw: Option<f64>,
    pub planned_peak_kw: Option<f64>,
    /// The indoor temperature the plan aims at by the end of its first hour (at least the
    /// floor), °C: what the coordinator's indoor feedback then aims at.
    pub planned_indoor_c: Option<f64>,
}

/// One station's predictive layer.
#[derive(Debug, Clone)]
pub struct Predictor {
    model: BuildingModel,
    /// The open hour: (index, count, sums of heat, outdoor, indoor, solar).
    open: Option<(i64, u32, [f64; 4])>,
    /// The last closed hour with an indoor temperature (index, means).
    closed: Option<(i64, HourMean)>,
    /// The highest hourly heat of each of the last days (newest first) and the day of the
    /// first, kW: the reference of the peak penalty.
    daily_peaks: [f32; PEAK_DAYS],
    peak_day: i64,
    plan: Option<Plan>,
    planned_indoor_c: Option<f64>,
    planned_ms: Option<i64>,
    /// Where in the replanning period this station plans (0–1): spreads a fleet's plans.
    phase: f64,
    shift_k: f64,
    state: State,
}

impl Predictor {
    pub fn new(design: &Design, area_m2: f64) -> Self {
        Self {
            model: BuildingModel::new(design.ua_kw_k(), area_m2),
            open: None,
            closed: None,
            daily_peaks: [0.0; PEAK_DAYS],
            peak_day: i64::MIN,
            plan: None,
            planned_indoor_c: None,
            planned_ms: None,
            phase: 0.0,
            shift_k: 0.0,
            state: State::Learning(0),
        }
    }

    /// Plans at `phase` (0–1) of the replanning period, counted from the first reading: a
    /// fleet whose stations have spread phases spreads its plans over the period instead of
    /// making them all in the tick after a start.
    pub fn with_phase(mut self, phase: f64) -> Self {
        self.phase = if phase.is_finite() {
            phase.rem_euclid(1.0)
        } else {
            0.0
        };
        self
    }

    /// Learns from a fresh reading taken at `plant_ms` (its time on the plant's clock), with the outdoor temperature the station
    /// used and the forecast's irradiance at that time. Readings without an indoor temperature
    /// teach nothing.
    pub fn observe(&mut self, r: &Reading, plant_ms: i64, outdoor_c: f64, solar_w_m2: f64) {
        let Some(indoor) = r.indoor_temp_c else {
            return;
        };
        let v = [r.heat_kw(), outdoor_c, indoor, solar_w_m2];
        if v.iter().any(|x| !x.is_finite()) {
            return;
        }
        let hour = plant_ms.div_euclid(3_600_000);
        match &mut self.open {
            Some((h, n, s)) if *h == hour => {
                *n += 1;
                for (a, x) in s.iter_mut().zip(v) {
                    *a += x;
                }
            }
            _ => {
                if let Some((h, n, s)) = self.open.take() {
                    self.close(h, n, s);
                }
                self.open = Some((hour, 1, v));
            }
        }
    }

    fn close(&mut self, hour: i64, n: u32, s: [f64; 4]) {
        let k = f64::from(n.max(1));
        let mean = HourMean {
            heat_kw: s[0] / k,
            outdoor_c: s[1] / k,
            indoor_c: s[2] / k,
            solar_w_m2: s[3] / k,
        };
        let day = hour.div_euclid(24);
        if day != self.peak_day {
            let gap = day.saturating_sub(self.peak_day).clamp(0, PEAK_DAYS as i64) as usize;
            self.daily_peaks.rotate_right(gap);
            self.daily_peaks[..gap].fill(0.0);
            self.peak_day = day;
        }
        self.daily_peaks[0] = self.daily_peaks[0].max(mean.heat_kw as f32);
        if let Some((h, prev)) = self.closed {
            if h + 1 == hour {
                self.model.update(&prev, mean.indoor_c);
            }
        }
        self.closed = Some((hour, mean));
    }

    /// The weather shift for now (K), replanning when a plan is due: 0 (eased back at the
    /// step limit) unless the model is trusted and the forecast fresh.
    pub fn shift_k(
        &mut self,
        now_ms: i64,
        indoor_c: Option<f64>,
        outdoor_c: f64,
        forecast: Option<&Forecast>,
        design: &Design,
        s: &Settings,
    ) -> f64 {
        if !s.enabled {
            self.state = State::Off;
            self.shift_k = 0.0;
            return 0.0;
        }
        let period_ms = (s.replan_s * 1000.0) as i64;
        let Some(last) = self.planned_ms else {
            // The first plan waits for the station's phase of the period.
            self.planned_ms = Some(now_ms - period_ms + (self.phase * period_ms as f64) as i64);
            return self.shift_k;
        };
        if now_ms - last < period_ms && now_ms >= last {
            return self.shift_k;
        }
        self.planned_ms = Some(now_ms);
        let target = match self.replan(now_ms, indoor_c, outdoor_c, forecast, design, s) {
            Some(k) => k,
            None => {
                self.plan = None;
                0.0
            }
        };
        let step = s.max_shift_step_k;
        self.shift_k = (self.shift_k + (target - self.shift_k).clamp(-step, step))
            .clamp(-s.max_shift_k, s.max_shift_k);
        self.shift_k
    }

    fn replan(
        &mut self,
        now_ms: i64,
        indoor_c: Option<f64>,
        outdoor_c: f64,
        forecast: Option<&Forecast>,
        design: &Design,
        s: &Settings,
    ) -> Option<f64> {
        let Some(indoor) = indoor_c.filter(|t| t.is_finite()) else {
            self.state = State::NoIndoor;
            return None;
        };
        if self.model.hours < s.min_fit_hours {
            self.state = State::Learning(self.model.hours);
            return None;
        }
        if self.model.rmse_k() > s.max_rmse_k {
            self.state = State::PoorFit(self.model.rmse_k());
            return None;
        }
        let h = 3_600_000;
        let fresh = Forecast::freshness(
            forecast,
            now_ms,
            (s.forecast_max_age_h * 3.6e6) as i64,
            (s.forecast_min_horizon_h * 3.6e6) as i64,
        );
        let (Freshness::Fresh, Some(f)) = (fresh, forecast) else {
            self.state = State::NoForecast(fresh);
            return None;
        };
        self.state = State::Active;
        let m = self.model.params();
        let max_kw = s.max_load * design.design_kw;
        // A room below its floor is brought back by the coordinator's indoor feedback, not
        // by the plan (which would ask for all the station can give in its first hour): the
        // plan holds such a room where it is.
        let hours: Vec<Hour> = f
            .hourly(now_ms, s.horizon_h)
            .into_iter()
            .enumerate()
            .map(|(k, (o, sun))| Hour {
                outdoor_c: o,
                solar_w_m2: sun,
                floor_c: s.floor_c(now_ms + (k as i64 + 1) * h).min(indoor),
                max_kw,
            })
            .collect();
        let peak = plan::Peak {
            weight_h: s.peak_weight_h,
            above_kw: self.peak_reference_kw(s.peak_memory_days),
        };
        let p = plan::plan(&m, indoor, &hours, s.indoor_max_c, peak);
        // The curve with the coordinator's offset holds the room about where it is: the
        // shift turns that heat into the plan's first hour. In steady weather with the room
        // on its floor it is 0; it is negative ahead of a cold spell (pre-heating), positive
        // when the room is above its floor and may coast (stored heat used, forecast sun).
        let holding_kw = m.ua_kw_k * (indoor - outdoor_c);
        let first = p.heat_kw.first().copied().unwrap_or(holding_kw);
        self.planned_indoor_c = p.indoor_c.get(1).map(|t| t.max(s.floor_c(now_ms + h)));
        let shift = -(first - holding_kw) / design.ua_kw_k();
        self.plan = Some(p);
        Some(shift)
    }

    /// The highest hourly heat of the last `days` days, kW.
    pub fn peak_reference_kw(&self, days: usize) -> f64 {
        let n = days.clamp(1, PEAK_DAYS);
        f64::from(self.daily_peaks[..n].iter().fold(0.0f32, |a, q| a.max(*q)))
    }

    pub fn status(&self) -> Status {
        let plan = self.plan.as_ref();
        Status {
            state: match self.state {
                State::Learning(_) => State::Learning(self.model.hours),
                other => other,
            },
            shift_k: self.shift_k,
            model: self.model.params(),
            fit_hours: self.model.hours,
            rmse_k: self.model.rmse_k(),
            skill: self.model.skill(),
            planned_kw: plan.and_then(|p| p.heat_kw.first().copied()),
            planned_peak_kw: plan.map(|p| p.heat_kw.iter().fold(0.0, |a: f64, q| a.max(*q))),
            planned_indoor_c: plan.and(self.planned_indoor_c),
        }
    }
}

#[cfg(test)]
mod tests;
