//! The control task: runs every station's controller on its latest reading, hands the
//! commands to dispatch, applies operator changes, and publishes the status view.
//!
//! Where it sits: between ingest and command. Ingest leaves each station's newest accepted
//! reading in its [`crate::ingest::slot::StationSlot`] (and, with control following telemetry, wakes this task with
//! the stations that have one); this task steps the controllers, numbers the commands and
//! gives them to the [`Dispatcher`]; after each tick it publishes one [`StationStatus`] per
//! station, which the alarm task and the API read. Nothing here blocks on the network.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::change::{self, ChangeError, ChangeRequest};
use super::coordination::Coordination;
pub use super::fleet::Station;
use super::settings::OperatorSettings;
use super::status::StationStatus;
use super::Tick;
use crate::clock::now_ms;
use crate::cluster::state::{state_key, StateRequest, StateWrite};
use crate::command::dispatch::{Dispatcher, Outgoing};
use crate::ingest::Weather;
use crate::model::Command;
use crate::predict::forecast::Forecast;
use crate::stats::Stats;
use crate::store::audit::OperatorLog;

/// When a station's controller runs and a command is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlOn {
    /// Every station once per `tick_s`, on its latest fresh reading (the default).
    #[default]
    Tick,
    /// Each station as soon as a new reading of it is accepted: one command per reading, with
    /// the loops' time step the time since that station's last step. The tick still runs
    /// staleness, alarms and the status view, and steps a station whose trigger was missed.
    Telemetry,
}

/// The control task's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlSettings {
    pub tick: Duration,
    /// Plant seconds per wall second (1 in production; the demo accelerates).
    pub time_scale: f64,
    pub control_on: ControlOn,
    /// Outdoor temperature when neither the reading nor a fresh weather feed gives one.
    pub default_outdoor_c: f64,
    pub weather_max_age_ms: i64,
    /// The diagnosis' thresholds and windows.
    pub diagnosis: crate::diagnose::Settings,
    /// The predictive layer's settings.
    pub predictive: crate::predict::Settings,
}

/// Control following telemetry: the most stations the task takes in one batch of wake-ups.
const TRIGGER_BATCH: usize = 4_096;

/// The control task's state.
#[derive(Debug)]
pub struct ControlTask {
    stations: Vec<Station>,
    settings: ControlSettings,
    /// Plant seconds per tick.
    dt_s: f64,
    dispatcher: Dispatcher,
    weather: Weather,
    stats: Arc<Stats>,
    log: Arc<OperatorLog>,
    district: Option<Coordination>,
    status: watch::Sender<Arc<Vec<StationStatus>>>,
    rate_window: VecDeque<(i64, u64)>,
    /// In a cluster: where a station's new operator state goes to be kept in etcd.
    replicate: Option<mpsc::Sender<StateRequest>>,
    /// The plant hour the diagnosis last compared the fleet's stations in.
    fleet_hour: i64,
    /// The last forecast received, and it on the plant's clock.
    forecast: Option<(Arc<Forecast>, Arc<Forecast>)>,
    /// Whether the forecast was fresh at the last tick (logged when that changes).
    forecast_fresh: Option<bool>,
}

impl ControlTask {
    /// The task over `stations` (config order). `district`: the coordinator, when enabled;
    /// the controllers take its (restored) offsets here.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        stations: Vec<Station>,
        settings: ControlSettings,
        dispatcher: Dispatcher,
        weather: Weather,
        stats: Arc<Stats>,
        log: Arc<OperatorLog>,
        district: Option<Coordination>,
    ) -> (Self, watch::Receiver<Arc<Vec<StationStatus>>>) {
        let (status, status_rx) = watch::channel(Arc::new(Vec::new()));
        let mut stations = stations;
        if let Some(d) = &district {
            for (i, s) in stations.iter_mut().enumerate() {
                s.ctrl.set_district_offset_k(d.offset_k(i));
            }
        }
        // The only engine commands every station from the start (epoch 0); in a cluster each
        // station waits for its partition's lead.
        for (i, s) in stations.iter_mut().enumerate() {
            s.epoch = dispatcher.epoch_of(i).filter(|e| *e == 0);
        }
        let dt_s = settings.tick.as_secs_f64() * settings.time_scale;
        let task = Self {
            stations,
            settings,
            dt_s,
            dispatcher,
            weather,
            stats,
            log,
            district,
            status,
            rate_window: VecDeque::new(),
            replicate: None,
            fleet_hour: i64::MIN,
            forecast: None,
            forecast_fresh: None,
        };
        (task, status_rx)
    }

    /// In a cluster: a change is answered once its station's operator state is in etcd.
    pub fn replicating_to(mut self, replicate: Option<mpsc::Sender<StateRequest>>) -> Self {
        self.replicate = replicate;
        self
    }

    /// Runs until `stop` is cancelled: the tick, wake-ups from ingest, operator changes.
    pub async fn run(
        mut self,
        mut changes: mpsc::Receiver<ChangeRequest>,
        mut triggers: Option<mpsc::Receiver<Vec<u32>>>,
        stop: CancellationToken,
    ) {
        async fn next(rx: &mut Option<mpsc::Receiver<Vec<u32>>>) -> Option<Vec<u32>> {
            match rx {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        }
        let mut interval = tokio::time::interval(self.settings.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                scheduled = interval.tick() => {
                    let late = scheduled.elapsed().as_micros() as u64;
                    self.stats.tick_lateness_us.store(late, Ordering::Relaxed);
                    self.stats.tick_lateness_max_us.fetch_max(late, Ordering::Relaxed);
                    self.stats.ticks.fetch_add(1, Ordering::Relaxed);
                    self.tick(now_ms());
                }
                Some(mut batch) = next(&mut triggers) => {
                    // Everything queued now goes in one batch: one seq fsync for all of it.
                    if let Some(rx) = triggers.as_mut() {
                        while batch.len() < TRIGGER_BATCH {
                            match rx.try_recv() {
                                Ok(more) => batch.extend(more),
                                Err(_) => break,
                            }
                        }
                    }
                    self.on_telemetry(&batch, now_ms());
                }
                Some(req) = changes.recv() => self.on_change(req),
                _ = stop.cancelled() => return,
            }
        }
    }

    /// Applies one operator change within the station's hard limits and records it; the next
    /// command carries it to the station. In a cluster only the station's owner applies it,
    /// and answers once the station's operator state is in etcd.
    fn on_change(&mut self, req: ChangeRequest) {
        let Some(i) = self
            .stations
            .iter()
            .position(|s| s.id.as_str() == req.station)
        else {
            let _ = req
                .reply
                .send(Err(ChangeError::UnknownStation(req.station.clone())));
            return;
        };
        let lead = match &self.replicate {
            Some(_) => match self.leads(i).then(|| self.dispatcher.lead_of(i)).flatten() {
                Some((p, epoch, _)) => Some((p, epoch)),
                None => {
                    let _ = req.reply.send(Err(ChangeError::Unavailable(format!(
                        "another instance leads station {} now; try again",
                        req.station
                    ))));
                    return;
                }
            },
            None => None,
        };
        let now = now_ms();
        let s = &mut self.stations[i];
        let applied = match change::apply(&mut s.ctrl, &req.station, &req.change, now) {
            Ok(a) => a,
            Err(e) => {
                let _ = req.reply.send(Err(e));
                return;
            }
        };
        self.log.record(now, &req.user, &applied);
        let (Some(tx), Some((partition, epoch))) = (&self.replicate, lead) else {
            let _ = req.reply.send(Ok(applied));
            return;
        };
        let (done, done_rx) = tokio::sync::oneshot::channel();
        let write = StateWrite {
            partition,
            epoch,
            puts: vec![(
                state_key(partition, &req.station),
                serde_json::to_string(&OperatorSettings::of(&s.ctrl)).unwrap_or_default(),
            )],
            done: Some(done),
        };
        if tx.try_send(StateRequest::Write(write)).is_err() {
            let _ = req.reply.send(Err(ChangeError::Unavailable(
                "applied here, but the cluster cannot keep it now (queue full)".into(),
            )));
            return;
        }
        tokio::spawn(async move {
            let r = match done_rx.await {
                Ok(Ok(())) => Ok(applied),
                Ok(Err(e)) => Err(ChangeError::Unavailable(format!(
                    "applied here, but not kept in the cluster: {e}"
                ))),
                Err(_) => Err(ChangeError::ShuttingDown),
            };
            let _ = req.reply.send(r);
        });
    }

    /// The weather feed's forecast on the plant's clock (its times scaled when the plant runs
    /// faster than the wall clock, as in the demo), made once per forecast received.
    fn plant_forecast(&mut self) -> Option<Arc<Forecast>> {
        if !self.settings.predictive.enabled {
            return None;
        }
        let got = self
            .weather
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forecast
            .clone();
        let Some(got) = got else {
            self.forecast = None;
            return None;
        };
        match &self.forecast {
            Some((from, scaled)) if Arc::ptr_eq(from, &got) => Some(scaled.clone()),
            _ => {
                let scaled = Arc::new(got.scaled(self.settings.time_scale));
                self.forecast = Some((got, scaled.clone()));
                Some(scaled)
            }
        }
    }

    /// Says once when the forecast becomes stale or missing (every predictive station falls
    /// back to its curve) and when a fresh one arrives.
    fn report_forecast(&mut self, now: i64) {
        if !self.settings.predictive.enabled {
            return;
        }
        let forecast = self.plant_forecast();
        let p = &self.settings.predictive;
        let plant_now = (now as f64 * self.settings.time_scale) as i64;
        let freshness = Forecast::freshness(
            forecast.as_deref(),
            plant_now,
            (p.forecast_max_age_h * 3.6e6) as i64,
            (p.forecast_min_horizon_h * 3.6e6) as i64,
        );
        let fresh = freshness == crate::predict::forecast::Freshness::Fresh;
        if self.forecast_fresh != Some(fresh) {
            if fresh {
                info!("Weather forecast fresh: predictive control plans on it.");
            } else {
                warn!(reason = %freshness.describe(),
                    "Weather forecast missing or stale: predictive stations are back on their curves.");
            }
            self.forecast_fresh = Some(fresh);
        }
    }

    fn fallback_outdoor(&self, now: i64) -> f64 {
        match self.weather.lock().unwrap_or_else(|p| p.into_inner()).now {
            Some((ts, t)) if now - ts <= self.settings.weather_max_age_ms => t,
            _ => self.settings.default_outdoor_c,
        }
    }

    /// Whether this instance commands station `i` now. A station it has just come to lead
    /// (a takeover, or its first step) starts from what the station measures and reports:
    /// bumpless, whatever the previous owner's controller did.
    fn leads(&mut self, i: usize) -> bool {
        let epoch = self.dispatcher.epoch_of(i);
        if epoch.is_some() && epoch != self.stations[i].epoch {
            // In a cluster: the operator state the previous owner kept, else the config's.
            let kept = self
                .dispatcher
                .lead_of(i)
                .and_then(|(_, _, json)| json)
                .and_then(|json| serde_json::from_str::<OperatorSettings>(&json).ok());
            let s = &mut self.stations[i];
            s.ctrl.take_over();
            if self.replicate.is_some() {
                kept.as_ref().unwrap_or(&s.initial).apply_to(&mut s.ctrl);
            }
        }
        let s = &mut self.stations[i];
        s.epoch = epoch;
        epoch.is_some()
    }

    /// Runs station `i`'s controller on its latest reading at `now`, covering `dt_s` plant
    /// seconds, with the outdoor temperature to use when the reading has none and the
    /// forecast on the plant's clock (both fetched once per tick or batch by the caller); the
    /// command to send if it acted.
    fn step(
        &mut self,
        i: usize,
        now: i64,
        (fallback_outdoor, forecast): (f64, Option<&Forecast>),
        dt_s: f64,
    ) -> Option<Command> {
        let trend_every_ms = (60_000.0 / self.settings.time_scale) as i64;
        let s = &mut self.stations[i];
        let reading = s.latest();
        let mut new_hour = false;
        // Each fresh reading once (a stale one teaches nothing and is not acted on).
        let staleness_ms = s.ctrl.params().staleness_ms;
        let fresh = reading
            .as_ref()
            .filter(|r| r.ts_ms != s.stepped_ts && now - r.ts_ms <= staleness_ms);
        if let Some(r) = fresh {
            if self.settings.predictive.enabled {
                let plant_ms = (r.ts_ms as f64 * self.settings.time_scale) as i64;
                let outdoor = r.outdoor_temp_c.unwrap_or(fallback_outdoor);
                let p = &self.settings.predictive;
                // Golden-ratio phases spread the fleet's plans evenly over the period.
                let phase = (i as f64 * 0.618_034).fract();
                let planned = s.predict(r, (plant_ms, outdoor), forecast, p, phase);
                if let Some(d) = &mut self.district {
                    d.set_planned_indoor(i, planned);
                }
            }
        }
        s.kpi.start_day_of(now);
        s.ctrl.set_dt(dt_s);
        s.last_step_ms = now;
        match s.ctrl.tick(reading.as_ref(), fallback_outdoor, now) {
            Tick::Act(o) => {
                let cmd = Command {
                    seq: 0, // numbered by the dispatcher
                    ts: now,
                    mode: o.mode,
                    supply_setpoint_c: round2(o.supply_setpoint_c),
                    valve_pct: round2(o.valve_pct),
                    pump_pct: round2(o.pump_pct),
                    flow_setpoint_m3h: round2(o.flow_setpoint_m3h),
                    valid_for_s: self.dispatcher.valid_for_s(),
                    epoch: None,
                };
                if let Some(r) = &reading {
                    if let Some(d) = &mut self.district {
                        if !s.district_holds() {
                            d.observe(i, s.epoch.unwrap_or(0), (&s.ctrl, r, &o, dt_s));
                        }
                    }
                    if s.stepped_ts != r.ts_ms && self.settings.diagnosis.enabled {
                        // Each reading once, on the plant's clock.
                        let plant_ms = (r.ts_ms as f64 * self.settings.time_scale) as i64;
                        s.diagnose(r, &cmd, plant_ms, &self.settings.diagnosis);
                        new_hour = plant_ms.div_euclid(3_600_000) > self.fleet_hour;
                        self.fleet_hour = self.fleet_hour.max(plant_ms.div_euclid(3_600_000));
                    }
                    s.stepped_ts = r.ts_ms;
                    // Plant time, so an accelerated run adds up.
                    let area = r.heated_area_m2.or(s.ctrl.params().heated_area_m2);
                    s.kpi.record(r, &o, area, dt_s, now, trend_every_ms);
                }
                if new_hour {
                    super::fleet::compare_fleet(&mut self.stations);
                }
                Some(cmd)
            }
            Tick::Stale {
                age_ms,
                newly: true,
            } => {
                warn!(station = %s.id, age_s = age_ms.map(|a| a / 1000),
                    "Station stale: outputs held, no command sent until fresh telemetry arrives.");
                None
            }
            Tick::Stale { .. } => None,
        }
    }

    /// Control following telemetry: steps each station in `which` that has a reading it has
    /// not acted on yet, with the plant time since its last step, and sends the commands.
    fn on_telemetry(&mut self, which: &[u32], now: i64) {
        let fallback = self.fallback_outdoor(now);
        let forecast = self.plant_forecast();
        let mut commands = Vec::with_capacity(which.len());
        for &i in which {
            let i = i as usize;
            let Some(ts) = self.stations.get(i).and_then(Station::latest_ts) else {
                continue;
            };
            if ts <= self.stations[i].stepped_ts || !self.leads(i) {
                continue; // already acted on (duplicate trigger), or not this instance's
            }
            let dt = self.event_dt(i, now);
            if let Some(command) = self.step(i, now, (fallback, forecast.as_deref()), dt) {
                commands.push(Outgoing {
                    station: i,
                    command,
                    accepted_us: Some(self.stations[i].slot.accepted_us.load(Ordering::Relaxed)),
                });
            }
        }
        self.dispatcher.send(commands);
    }

    /// Plant seconds since station `i`'s last step, within [tick/20, 4 × tick].
    fn event_dt(&self, i: usize, now: i64) -> f64 {
        let last = self.stations[i].last_step_ms;
        if last == 0 {
            return self.dt_s;
        }
        ((now - last) as f64 / 1000.0 * self.settings.time_scale)
            .clamp(self.dt_s / 20.0, self.dt_s * 4.0)
    }

    fn tick(&mut self, now: i64) {
        let fallback_outdoor = self.fallback_outdoor(now);
        let forecast = self.plant_forecast();
        let mut commands = Vec::new();
        let mut status = Vec::with_capacity(self.stations.len());
        for i in 0..self.stations.len() {
            let s = &self.stations[i];
            let reading_ts = s.latest_ts();
            let step = match self.settings.control_on {
                ControlOn::Tick => Some(self.dt_s),
                // Following telemetry, the tick only steps a station whose data went stale
                // (so it is marked stale) or whose trigger was missed.
                ControlOn::Telemetry => {
                    let stale = reading_ts.is_none_or(|ts| now - ts > s.ctrl.params().staleness_ms);
                    let missed = reading_ts.is_some_and(|ts| ts > s.stepped_ts);
                    (stale || missed).then(|| self.event_dt(i, now))
                }
            };
            if let Some(dt) = step.filter(|_| self.leads(i)) {
                let inputs = (fallback_outdoor, forecast.as_deref());
                if let Some(command) = self.step(i, now, inputs, dt) {
                    commands.push(Outgoing {
                        station: i,
                        command,
                        accepted_us: None,
                    });
                }
            }
            status.push(self.status_of(i));
        }
        self.update_ingest_rate(now);
        self.dispatcher.send(commands);
        self.coordinate(now);
        self.report_forecast(now);
        let _ = self.status.send(Arc::new(status));
    }

    fn status_of(&self, i: usize) -> StationStatus {
        self.stations[i].status(self.dispatcher.last_seq(i), self.dispatcher.recent(i))
    }

    /// Advances the district coordinator; after an update, hands each station its new offset.
    fn coordinate(&mut self, now: i64) {
        let Some(d) = &mut self.district else {
            return;
        };
        let dispatcher = &self.dispatcher;
        let lead = |p: u32| dispatcher.partition_epoch(p);
        let Some((offsets, updated)) = d.advance(self.dt_s, now, &lead) else {
            return;
        };
        let (mut moved, mut largest) = (0usize, 0.0f64);
        for (s, k) in self.stations.iter_mut().zip(offsets) {
            if k != s.ctrl.district_offset_k() {
                moved += 1;
            }
            largest = largest.max(k.abs());
            s.ctrl.set_district_offset_k(k);
        }
        if !updated {
            return; // another instance's update, read from etcd
        }
        info!(
            update = d.updates(),
            moved,
            largest_offset_k = largest,
            "District coordinator updated the stations' offsets."
        );
    }

    /// Ingest rate over the last ~10 s, for the status view.
    fn update_ingest_rate(&mut self, now: i64) {
        let accepted = Stats::get(&self.stats.readings_accepted);
        self.rate_window.push_back((now, accepted));
        while self.rate_window.len() > 2
            && self
                .rate_window
                .front()
                .is_some_and(|(t, _)| now - t > 10_000)
        {
            self.rate_window.pop_front();
        }
        if let (Some((t0, a0)), Some((t1, a1))) =
            (self.rate_window.front(), self.rate_window.back())
        {
            if t1 > t0 {
                let per_s_milli = (a1 - a0) * 1_000_000 / (t1 - t0) as u64;
                self.stats
                    .ingest_rate_milli
                    .store(per_s_milli, Ordering::Relaxed);
            }
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
#[path = "task_tests.rs"]
mod tests;
