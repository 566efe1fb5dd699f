//! The `[predictive]` configuration: its settings, their defaults and range checks, and the
//! comfort floor of an hour (the night setback).
//!
//! Where it sits: read with the rest of the config; the control task and the scenario runner
//! hand it to each station's [`super::Predictor`].

/// Most days of daily peaks a predictor keeps.
pub(super) const PEAK_DAYS: usize = 14;

/// The `[predictive]` configuration (docs/predictive.md explains each default).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub enabled: bool,
    /// Hours planned ahead (24–48).
    pub horizon_h: usize,
    /// Plant seconds between two plans.
    pub replan_s: f64,
    /// The comfort band the plan keeps the indoor temperature in, °C.
    pub indoor_min_c: f64,
    pub indoor_max_c: f64,
    /// Heat (kWh) worth one kW less at the plan's peak hour, counted above the station's
    /// highest hourly heat of the past `peak_memory_days`: the peak penalty, h.
    pub peak_weight_h: f64,
    pub peak_memory_days: usize,
    /// Largest weather shift either way, K, and its largest change per plan, K.
    pub max_shift_k: f64,
    pub max_shift_step_k: f64,
    /// A forecast older than this, or reaching less far ahead, is stale, h.
    pub forecast_max_age_h: f64,
    pub forecast_min_horizon_h: f64,
    /// The model is trusted after this many hours with an indoor temperature and while its
    /// one-hour prediction error stays under `max_rmse_k`.
    pub min_fit_hours: u32,
    pub max_rmse_k: f64,
    /// Optional night setback `[from hour, to hour, K lower]` (local time = UTC +
    /// `utc_offset_h`): the floor is that much lower in those hours and the plan recovers it
    /// in time.
    pub setback: Option<(f64, f64, f64)>,
    pub utc_offset_h: f64,
    /// Station capacity the plan may use, × design load.
    pub max_load: f64,
    /// The ΔT the stations' flow is sized for, K (0: each station's design ΔT): a larger one
    /// pumps less water for the same heat and brings the return down.
    pub flow_delta_t_k: f64,
    /// A forecast source besides the MQTT topic: a file or an HTTP(S) URL serving the same
    /// JSON list, read every `forecast_poll_s` seconds.
    pub forecast_file: Option<std::path::PathBuf>,
    pub forecast_url: Option<String>,
    pub forecast_poll_s: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            enabled: false,
            horizon_h: 36,
            replan_s: 900.0,
            indoor_min_c: 20.0,
            indoor_max_c: 22.0,
            peak_weight_h: 24.0,
            peak_memory_days: 7,
            max_shift_k: 10.0,
            max_shift_step_k: 2.0,
            forecast_max_age_h: 6.0,
            forecast_min_horizon_h: 24.0,
            min_fit_hours: 48,
            max_rmse_k: 0.1,
            setback: None,
            utc_offset_h: 0.0,
            max_load: 1.2,
            flow_delta_t_k: 20.0,
            forecast_file: None,
            forecast_url: None,
            forecast_poll_s: 300.0,
        }
    }
}

impl Settings {
    /// What is out of range, one message per setting.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |ok: bool, what: &str| {
            if !ok {
                out.push(format!("predictive.{what}"));
            }
        };
        check(
            (24..=48).contains(&self.horizon_h),
            "horizon_h: must be within 24..48",
        );
        check(
            (60.0..=3600.0).contains(&self.replan_s),
            "replan_s: must be within 60..3600",
        );
        check(
            (12.0..=24.0).contains(&self.indoor_min_c)
                && self.indoor_max_c > self.indoor_min_c + 0.5
                && self.indoor_max_c <= 28.0,
            "indoor_min_c/indoor_max_c: the band must lie within 12..28 °C and be wider than 0.5 K",
        );
        check(
            (0.0..=72.0).contains(&self.peak_weight_h),
            "peak_weight_h: must be within 0..72",
        );
        check(
            (1..=PEAK_DAYS).contains(&self.peak_memory_days),
            "peak_memory_days: must be within 1..14",
        );
        check(
            (0.0..=20.0).contains(&self.max_shift_k),
            "max_shift_k: must be within 0..20",
        );
        check(
            (0.1..=10.0).contains(&self.max_shift_step_k),
            "max_shift_step_k: must be within 0.1..10",
        );
        check(
            (0.5..=48.0).contains(&self.forecast_max_age_h),
            "forecast_max_age_h: must be within 0.5..48",
        );
        check(
            (1.0..=48.0).contains(&self.forecast_min_horizon_h),
            "forecast_min_horizon_h: must be within 1..48",
        );
        check(
            (1..=24 * 30).contains(&self.min_fit_hours),
            "min_fit_hours: must be within 1..720",
        );
        check(
            (0.01..=2.0).contains(&self.max_rmse_k),
            "max_rmse_k: must be within 0.01..2",
        );
        check(
            (1.0..=2.0).contains(&self.max_load),
            "max_load: must be within 1..2",
        );
        check(
            self.flow_delta_t_k == 0.0 || (5.0..=40.0).contains(&self.flow_delta_t_k),
            "flow_delta_t_k: 0 (the design's) or within 5..40",
        );
        check(
            !(self.forecast_file.is_some() && self.forecast_url.is_some()),
            "forecast_file/forecast_url: one source at most",
        );
        check(
            self.forecast_url
                .as_ref()
                .is_none_or(|u| u.starts_with("http://") || u.starts_with("https://")),
            "forecast_url: must be an http:// or https:// URL",
        );
        check(
            (1.0..=86_400.0).contains(&self.forecast_poll_s),
            "forecast_poll_s: must be within 1..86400",
        );
        check(
            (-14.0..=14.0).contains(&self.utc_offset_h),
            "utc_offset_h: must be within -14..14",
        );
        if let Some((from, to, k)) = self.setback {
            check(
                (0.0..24.0).contains(&from)
                    && (0.0..24.0).contains(&to)
                    && (0.0..=6.0).contains(&k),
                "setback: hours within 0..24 and at most 6 K",
            );
        }
        out
    }

    /// The comfort floor at Unix ms `ts_ms` (the setback's during its hours).
    pub(super) fn floor_c(&self, ts_ms: i64) -> f64 {
        let Some((from, to, k)) = self.setback else {
            return self.indoor_min_c;
        };
        let h = (ts_ms as f64 / 3.6e6 + self.utc_offset_h).rem_euclid(24.0);
        let inside = if from <= to {
            (from..to).contains(&h)
        } else {
            h >= from || h < to
        };
        self.indoor_min_c - if inside { k } else { 0.0 }
    }
}
