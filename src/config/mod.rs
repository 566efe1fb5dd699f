//! Configuration: a TOML file in two phases, raw serde structs then a validated [`Config`].
//!
//! Read by `heatgrid run`, `check` and `demo` before anything starts. Parsing refuses unknown
//! keys; validation collects every semantic error at once, each with its place in the file
//! (`station[2] "st-3".supply_max_c: …`). Secrets are never in the file: it names environment
//! variables (`password_env`, `token_env`) that are read here.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::control::coordinator::CoordinatorConfig;
use crate::control::curve::Curve;
use crate::control::pi::PiConfig;
use crate::control::StationParams;
use crate::model::{Mode, StationId};
use crate::store::spool::FsyncPolicy;

pub use crate::api::auth::{ApiSettings, ApiToken, Role};
pub use crate::control::task::ControlOn;
pub use crate::ingest::mqtt::{MqttConfig, MqttTls, MqttVersion};
pub use crate::store::influx::InfluxConfig;
pub use crate::store::StorageConfig;

/// The annotated example written by `heatgrid init`.
pub const EXAMPLE: &str = include_str!("../../config/heatgrid.toml");

// ---------------------------------------------------------------- raw (serde) phase

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    engine: RawEngine,
    #[serde(default)]
    mqtt: RawMqtt,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    weather: RawWeather,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    alarms: RawAlarms,
    #[serde(default)]
    coordinator: RawCoordinator,
    #[serde(default)]
    defaults: RawControl,
    #[serde(default, rename = "station")]
    stations: Vec<RawStation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawEngine {
    data_dir: PathBuf,
    tick_s: f64,
    staleness_s: f64,
    command_valid_for_s: u32,
    future_tolerance_s: f64,
    max_payload_bytes: usize,
    time_scale: f64,
    control_on: ControlOn,
}

impl Default for RawEngine {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./heatgrid-data"),
            tick_s: 5.0,
            staleness_s: 30.0,
            command_valid_for_s: 300,
            future_tolerance_s: 60.0,
            max_payload_bytes: 64 * 1024,
            time_scale: 1.0,
            control_on: ControlOn::Tick,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMqtt {
    host: String,
    port: u16,
    version: String,
    client_id: String,
    topic_prefix: String,
    telemetry_qos: u8,
    keep_alive_s: u64,
    ack_after_spool: bool,
    watchdog_s: f64,
    username: Option<String>,
    password_env: Option<String>,
    tls: Option<RawTls>,
}

/// `[mqtt.tls]`: verify the broker with `ca_file`; optional client certificate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: PathBuf,
    client_cert_file: Option<PathBuf>,
    client_key_file: Option<PathBuf>,
}

impl Default for RawMqtt {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 1883,
            version: "3.1.1".into(),
            client_id: "heatgrid-engine".into(),
            topic_prefix: "heating".into(),
            telemetry_qos: 1,
            keep_alive_s: 30,
            ack_after_spool: true,
            watchdog_s: 120.0,
            username: None,
            password_env: None,
            tls: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStorage {
    batch_size: usize,
    flush_interval_ms: u64,
    max_spool_mb: u64,
    segment_mb: u64,
    fsync: String,
    fsync_interval_ms: u64,
    influxdb: Option<RawInflux>,
}

impl Default for RawStorage {
    fn default() -> Self {
        Self {
            batch_size: 5000,
            flush_interval_ms: 1000,
            max_spool_mb: 10_240,
            segment_mb: 64,
            fsync: "interval".into(),
            fsync_interval_ms: 1000,
            influxdb: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInflux {
    url: String,
    org: String,
    bucket: String,
    token_env: Option<String>,
    #[serde(default = "default_timeout_s")]
    timeout_s: f64,
}

fn default_timeout_s() -> f64 {
    10.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawApi {
    /// `host:port`; empty disables the API.
    listen: String,
    #[serde(rename = "token")]
    tokens: Vec<RawToken>,
}

impl Default for RawApi {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            tokens: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    role: Role,
    token_env: Option<String>,
    token_sha256: Option<String>,
}

/// `[coordinator]`: the district coordinator (off unless `enabled`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCoordinator {
    enabled: bool,
    period_s: f64,
    filter_tau_s: f64,
    gain_k_per_h: f64,
    max_offset_k: f64,
    max_rate_k_per_h: f64,
    dead_band_pct: f64,
    indoor_target_c: Option<f64>,
    min_stations: usize,
}

impl Default for RawCoordinator {
    fn default() -> Self {
        let d = CoordinatorConfig::default();
        Self {
            enabled: false,
            period_s: d.period_s,
            filter_tau_s: d.filter_tau_s,
            gain_k_per_h: d.gain_k_per_h,
            max_offset_k: d.max_offset_k,
            max_rate_k_per_h: d.max_rate_k_per_h,
            dead_band_pct: d.dead_band * 100.0,
            indoor_target_c: d.indoor_target_c,
            min_stations: d.min_stations,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawWeather {
    default_outdoor_temp_c: f64,
    max_age_s: f64,
}

impl Default for RawWeather {
    fn default() -> Self {
        Self {
            default_outdoor_temp_c: -5.0,
            max_age_s: 3600.0,
        }
    }
}

/// Control settings: `[defaults]` has them all; a `[[station]]` may override any of them.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    heat_index_w_m2: Option<f64>,
    design_outdoor_temp_c: Option<f64>,
    design_indoor_temp_c: Option<f64>,
    design_delta_t_k: Option<f64>,
    curve: Option<Vec<[f64; 2]>>,
    supply_offset_k: Option<f64>,
    supply_min_c: Option<f64>,
    supply_max_c: Option<f64>,
    setpoint_ramp_k_per_min: Option<f64>,
    return_limit_c: Option<f64>,
    return_limit_gain_per_min: Option<f64>,
    return_limit_max_k: Option<f64>,
    valve_kp_pct_per_k: Option<f64>,
    valve_ti_s: Option<f64>,
    valve_dead_band_k: Option<f64>,
    valve_run_time_s: Option<f64>,
    valve_min_pct: Option<f64>,
    valve_max_pct: Option<f64>,
    pump_kp: Option<f64>,
    pump_ti_s: Option<f64>,
    pump_run_time_s: Option<f64>,
    pump_min_pct: Option<f64>,
    pump_max_pct: Option<f64>,
}

/// Alarm thresholds: `[alarms]` for all; `[station.alarms]` overrides per station.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlarms {
    deviation_k: Option<f64>,
    deviation_for_s: Option<f64>,
    return_high_for_s: Option<f64>,
    valve_saturated_for_s: Option<f64>,
    low_delta_t_k: Option<f64>,
    low_delta_t_for_s: Option<f64>,
    rejected_per_min: Option<u64>,
    out_of_range_margin_k: Option<f64>,
    /// `[alarms.group.<tag>.<value>]`: thresholds for every station with that static tag.
    #[serde(default)]
    group: BTreeMap<String, BTreeMap<String, RawAlarms>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStation {
    id: String,
    #[serde(default)]
    alarms: RawAlarms,
    heated_area_m2: Option<f64>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    mode: Mode,
    /// Present for a Modbus TCP station (absent: the station speaks MQTT).
    modbus: Option<RawModbus>,
    #[serde(flatten)]
    control: RawControl,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModbus {
    /// `host:port` or `host` (port 502).
    address: String,
    /// Register map file; a relative path is relative to the config file.
    map: String,
    #[serde(default = "default_unit_id")]
    unit_id: u16,
    #[serde(default = "default_poll_interval_s")]
    poll_interval_s: f64,
    #[serde(default = "default_modbus_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "default_max_registers")]
    max_registers: u16,
    #[serde(default = "default_true")]
    coalesce: bool,
}

fn default_unit_id() -> u16 {
    1
}
fn default_poll_interval_s() -> f64 {
    5.0
}
fn default_modbus_timeout_ms() -> u64 {
    1000
}
fn default_max_registers() -> u16 {
    100
}
fn default_true() -> bool {
    true
}

// ---------------------------------------------------------------- validated phase

#[derive(Debug, Clone)]
pub struct StationConfig {
    pub id: StationId,
    pub alarms: crate::alarms::Thresholds,
    pub tags: BTreeMap<String, String>,
    pub mode: Mode,
    pub params: StationParams,
    /// `Some` for a Modbus TCP station: its poller's settings and register map.
    pub modbus: Option<crate::ingest::modbus::poller::PollerConfig>,
}

/// A whole, valid configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub tick: Duration,
    /// Plant seconds per wall-clock second: 1 in production; > 1 only against an accelerated
    /// simulator, so per-tick gains and ramps see the simulated time step.
    pub time_scale: f64,
    pub control_on: ControlOn,
    pub command_valid_for_s: u32,
    pub decode: crate::ingest::decode::DecodeLimits,
    pub mqtt: MqttConfig,
    pub storage: StorageConfig,
    pub api: ApiSettings,
    pub default_outdoor_c: f64,
    pub weather_max_age_ms: i64,
    /// The district coordinator, when enabled.
    pub coordinator: Option<CoordinatorConfig>,
    pub stations: Vec<StationConfig>,
}

/// All problems found in a config file, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {} error(s):\n  {}", .errors.len(), .errors.join("\n  "))]
pub struct ConfigError {
    pub path: String,
    pub errors: Vec<String>,
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.display().to_string(),
            errors: vec![format!("cannot read the file: {e}")],
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse_in(&text, &|k| std::env::var(k).ok(), base).map_err(|errors| ConfigError {
            path: path.display().to_string(),
            errors,
        })
    }

    /// Parses and validates TOML text; `env` resolves secret variables. Every error at once.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, Vec<String>> {
        Self::parse_in(text, env, Path::new("."))
    }

    /// [`Config::parse`] with relative paths (register maps) resolved against `base`.
    pub fn parse_in(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
        base: &Path,
    ) -> Result<Self, Vec<String>> {
        let raw: Raw = toml::from_str(text).map_err(|e| vec![e.to_string().trim().to_owned()])?;
        let mut v = Errors::default();

        let e = &raw.engine;
        v.positive("engine.tick_s", e.tick_s);
        v.positive("engine.staleness_s", e.staleness_s);
        v.positive("engine.time_scale", e.time_scale);
        v.check(
            e.staleness_s >= e.tick_s,
            "engine.staleness_s: must be at least engine.tick_s",
        );
        v.check(
            f64::from(e.command_valid_for_s) > e.tick_s,
            "engine.command_valid_for_s: must exceed engine.tick_s, or every command expires before the next",
        );
        v.check(
            e.max_payload_bytes >= 256,
            "engine.max_payload_bytes: must be at least 256",
        );

        let m = &raw.mqtt;
        let version = match m.version.as_str() {
            "3.1.1" | "4" | "v4" => Some(MqttVersion::V311),
            "5" | "v5" => Some(MqttVersion::V5),
            other => {
                v.push(format!("mqtt.version: {other:?} is not \"3.1.1\" or \"5\""));
                None
            }
        };
        v.check(!m.host.is_empty(), "mqtt.host: must not be empty");
        v.check(m.telemetry_qos <= 1, "mqtt.telemetry_qos: must be 0 or 1");
        v.check(
            !m.topic_prefix.is_empty()
                && !m.topic_prefix.contains(['+', '#'])
                && !m.topic_prefix.ends_with('/'),
            "mqtt.topic_prefix: must be non-empty, without wildcards or a trailing '/'",
        );
        let credentials = match (&m.username, &m.password_env) {
            (Some(u), Some(var)) => match env(var) {
                Some(p) => Some((u.clone(), p)),
                None => {
                    v.push(format!(
                        "mqtt.password_env: environment variable {var} is not set"
                    ));
                    None
                }
            },
            (Some(u), None) => Some((u.clone(), String::new())),
            (None, Some(_)) => {
                v.push("mqtt.password_env: set mqtt.username too".into());
                None
            }
            (None, None) => None,
        };

        let tls = m.tls.as_ref().and_then(|t| {
            let mut read = |what: &str, p: &Path| {
                std::fs::read(p)
                    .map_err(|e| {
                        v.push(format!("mqtt.tls.{what}: cannot read {}: {e}", p.display()))
                    })
                    .ok()
            };
            let ca_pem = read("ca_file", &t.ca_file);
            let client_auth = match (&t.client_cert_file, &t.client_key_file) {
                (Some(c), Some(k)) => {
                    Some((read("client_cert_file", c), read("client_key_file", k)))
                }
                (None, None) => None,
                _ => {
                    v.push(
                        "mqtt.tls: give both client_cert_file and client_key_file, or neither"
                            .into(),
                    );
                    None
                }
            };
            match (ca_pem, client_auth) {
                (Some(ca_pem), None) => Some(MqttTls {
                    ca_pem,
                    client_auth: None,
                }),
                (Some(ca_pem), Some((Some(c), Some(k)))) => Some(MqttTls {
                    ca_pem,
                    client_auth: Some((c, k)),
                }),
                _ => None,
            }
        });

        let s = &raw.storage;
        v.check(s.batch_size > 0, "storage.batch_size: must be positive");
        v.check(
            s.max_spool_mb >= 1,
            "storage.max_spool_mb: must be at least 1",
        );
        v.check(
            (1..=1024).contains(&s.segment_mb),
            "storage.segment_mb: must be within 1..1024",
        );
        let fsync = match s.fsync.as_str() {
            "always" => Some(FsyncPolicy::Always),
            "interval" => Some(FsyncPolicy::Interval(Duration::from_millis(
                s.fsync_interval_ms.max(1),
            ))),
            "never" => Some(FsyncPolicy::Never),
            other => {
                v.push(format!(
                    "storage.fsync: {other:?} is not \"always\", \"interval\" or \"never\""
                ));
                None
            }
        };
        v.check(
            s.flush_interval_ms > 0,
            "storage.flush_interval_ms: must be positive",
        );
        let influxdb = s.influxdb.as_ref().and_then(|i| {
            let ok_url = (i.url.starts_with("http://") || i.url.starts_with("https://"))
                && i.url.len() > "https://".len();
            v.check(
                ok_url,
                format!("storage.influxdb.url: {:?} is not an http(s) URL", i.url),
            );
            v.check(
                !i.bucket.is_empty(),
                "storage.influxdb.bucket: must not be empty",
            );
            v.positive("storage.influxdb.timeout_s", i.timeout_s);
            let token = match &i.token_env {
                Some(var) => env(var).or_else(|| {
                    v.push(format!(
                        "storage.influxdb.token_env: environment variable {var} is not set"
                    ));
                    None
                })?,
                None => String::new(),
            };
            ok_url.then(|| InfluxConfig {
                url: i.url.trim_end_matches('/').to_owned(),
                org: i.org.clone(),
                bucket: i.bucket.clone(),
                token,
                timeout: Duration::from_secs_f64(i.timeout_s.max(0.001)),
            })
        });

        let api = {
            let a = &raw.api;
            let listen = if a.listen.is_empty() {
                None
            } else {
                a.listen
                    .parse()
                    .map_err(|e| v.push(format!("api.listen: {:?}: {e}", a.listen)))
                    .ok()
            };
            let mut tokens = Vec::new();
            let mut names = HashSet::new();
            for (i, t) in a.tokens.iter().enumerate() {
                let place = format!("api.token[{i}] {:?}", t.name);
                v.check(
                    !t.name.is_empty(),
                    format!("{place}.name: must not be empty"),
                );
                v.check(
                    names.insert(t.name.clone()),
                    format!("{place}.name: duplicate token name"),
                );
                let hash = match (&t.token_env, &t.token_sha256) {
                    (Some(var), None) => match env(var) {
                        Some(tok) if tok.len() >= 16 => {
                            Some(crate::api::auth::sha256(tok.as_bytes()))
                        }
                        Some(_) => {
                            v.push(format!("{place}.token_env: the token in {var} must be at least 16 characters"));
                            None
                        }
                        None => {
                            v.push(format!(
                                "{place}.token_env: environment variable {var} is not set"
                            ));
                            None
                        }
                    },
                    (None, Some(hex)) => match crate::api::auth::parse_sha256_hex(hex) {
                        Some(h) => Some(h),
                        None => {
                            v.push(format!("{place}.token_sha256: must be 64 hex characters"));
                            None
                        }
                    },
                    _ => {
                        v.push(format!(
                            "{place}: give exactly one of token_env and token_sha256"
                        ));
                        None
                    }
                };
                if let Some(sha256) = hash {
                    tokens.push(ApiToken {
                        name: t.name.clone(),
                        role: t.role,
                        sha256,
                    });
                }
            }
            ApiSettings { listen, tokens }
        };

        let w = &raw.weather;
        v.check(
            (-50.0..=50.0).contains(&w.default_outdoor_temp_c),
            "weather.default_outdoor_temp_c: must be within -50..50",
        );

        let c = &raw.coordinator;
        for (place, x) in [
            ("coordinator.period_s", c.period_s),
            ("coordinator.filter_tau_s", c.filter_tau_s),
        ] {
            v.positive(place, x);
        }
        v.check(
            c.gain_k_per_h.is_finite() && c.gain_k_per_h >= 0.0,
            "coordinator.gain_k_per_h: must be 0 or more",
        );
        v.check(
            (0.0..=20.0).contains(&c.max_offset_k),
            "coordinator.max_offset_k: must be within 0..20 K",
        );
        v.check(
            (0.0..=10.0).contains(&c.max_rate_k_per_h),
            "coordinator.max_rate_k_per_h: must be within 0..10 K/h (it is meant to act over hours)",
        );
        v.check(
            (0.0..50.0).contains(&c.dead_band_pct),
            "coordinator.dead_band_pct: must be within 0..50",
        );
        v.check(
            c.indoor_target_c.is_none_or(|t| (10.0..=26.0).contains(&t)),
            "coordinator.indoor_target_c: must be within 10..26 °C",
        );
        v.check(
            c.min_stations >= 1,
            "coordinator.min_stations: must be at least 1",
        );
        let coordinator = c.enabled.then(|| CoordinatorConfig {
            period_s: c.period_s,
            filter_tau_s: c.filter_tau_s,
            gain_k_per_h: c.gain_k_per_h,
            max_offset_k: c.max_offset_k,
            max_rate_k_per_h: c.max_rate_k_per_h,
            dead_band: c.dead_band_pct / 100.0,
            indoor_target_c: c.indoor_target_c,
            min_stations: c.min_stations,
        });

        let mut stations = Vec::new();
        let mut seen = HashSet::new();
        // Each register map file is read and validated once, however many stations use it.
        let mut maps: BTreeMap<
            PathBuf,
            Option<std::sync::Arc<crate::ingest::modbus::map::RegisterMap>>,
        > = BTreeMap::new();
        v.check(
            !raw.stations.is_empty(),
            "station: at least one [[station]] is required",
        );
        for (i, st) in raw.stations.iter().enumerate() {
            let place = format!("station[{i}] {:?}", st.id);
            let id = match StationId::new(&st.id) {
                Ok(id) => Some(id),
                Err(err) => {
                    v.push(format!("{place}.id: {err}"));
                    None
                }
            };
            if !seen.insert(st.id.clone()) {
                v.push(format!("{place}.id: duplicate station id"));
            }
            if let Some(a) = st.heated_area_m2 {
                v.check(
                    a > 0.0 && a.is_finite(),
                    format!("{place}.heated_area_m2: must be positive"),
                );
            }
            for k in st.tags.keys() {
                v.check(
                    !k.is_empty()
                        && k != "station"
                        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    format!("{place}.tags.{k}: tag keys are [A-Za-z0-9_] and not 'station'"),
                );
            }
            let params = station_params(
                &raw.defaults,
                &st.control,
                st.heated_area_m2,
                e,
                &place,
                &mut v,
            );
            v.check(
                st.alarms.group.is_empty(),
                format!("{place}.alarms.group: groups are set in [alarms.group.<tag>.<value>], not per station"),
            );
            // The first group (by tag name) the station belongs to.
            let group = raw
                .alarms
                .group
                .iter()
                .find_map(|(tag, values)| values.get(st.tags.get(tag)?));
            let alarms = alarm_thresholds(&raw.alarms, group, &st.alarms, &place, &mut v);
            let modbus = match (&st.modbus, &id) {
                (Some(m), Some(id)) => modbus_station(m, id, base, &mut maps, &place, &mut v),
                _ => None,
            };
            if let (Some(id), Some(params)) = (id, params) {
                stations.push(StationConfig {
                    id,
                    alarms,
                    tags: st.tags.clone(),
                    mode: st.mode,
                    params,
                    modbus,
                });
            }
        }

        if !v.0.is_empty() {
            return Err(v.0);
        }
        Ok(Config {
            data_dir: e.data_dir.clone(),
            tick: Duration::from_secs_f64(e.tick_s),
            time_scale: e.time_scale,
            control_on: e.control_on,
            command_valid_for_s: e.command_valid_for_s,
            decode: crate::ingest::decode::DecodeLimits {
                max_payload_bytes: e.max_payload_bytes,
                future_tolerance_ms: (e.future_tolerance_s * 1000.0) as i64,
            },
            mqtt: MqttConfig {
                host: m.host.clone(),
                port: m.port,
                version: version.unwrap_or(MqttVersion::V311),
                client_id: m.client_id.clone(),
                topic_prefix: m.topic_prefix.clone(),
                telemetry_qos: m.telemetry_qos,
                keep_alive: Duration::from_secs(m.keep_alive_s.max(5)),
                ack_after_spool: m.ack_after_spool,
                watchdog: Duration::from_secs_f64(m.watchdog_s.max(1.0)),
                credentials,
                tls,
            },
            storage: StorageConfig {
                batch_size: s.batch_size,
                flush_interval: Duration::from_millis(s.flush_interval_ms),
                max_spool_bytes: s.max_spool_mb.saturating_mul(1 << 20),
                segment_bytes: s.segment_mb.saturating_mul(1 << 20),
                fsync: fsync.unwrap_or(FsyncPolicy::Never),
                influxdb,
            },
            api,
            default_outdoor_c: w.default_outdoor_temp_c,
            weather_max_age_ms: (w.max_age_s * 1000.0) as i64,
            coordinator,
            stations,
        })
    }
}

/// A station's `modbus` table, validated, with its register map loaded (once per file).
fn modbus_station(
    m: &RawModbus,
    id: &StationId,
    base: &Path,
    maps: &mut BTreeMap<PathBuf, Option<std::sync::Arc<crate::ingest::modbus::map::RegisterMap>>>,
    place: &str,
    v: &mut Errors,
) -> Option<crate::ingest::modbus::poller::PollerConfig> {
    let place = format!("{place}.modbus");
    let n = v.0.len();
    let address = if m.address.contains(':') {
        m.address.clone()
    } else {
        format!("{}:502", m.address)
    };
    v.check(
        address
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0)),
        format!("{place}.address: {:?} is not host:port", m.address),
    );
    v.check(
        (1..=255).contains(&m.unit_id),
        format!(
            "{place}.unit_id: {} must be 1–255 (0 is broadcast)",
            m.unit_id
        ),
    );
    v.positive(&format!("{place}.poll_interval_s"), m.poll_interval_s);
    v.check(
        m.timeout_ms > 0 && (m.timeout_ms as f64) < m.poll_interval_s * 1000.0,
        format!("{place}.timeout_ms: must be positive and shorter than poll_interval_s"),
    );
    v.check(
        (1..=125).contains(&m.max_registers),
        format!(
            "{place}.max_registers: {} must be 1–125 (the protocol's limit)",
            m.max_registers
        ),
    );
    let path = base.join(&m.map);
    let map = maps
        .entry(path.clone())
        .or_insert_with(|| {
            match std::fs::read_to_string(&path)
                .map_err(|e| vec![format!("cannot read: {e}")])
                .and_then(|t| crate::ingest::modbus::map::RegisterMap::parse(&t))
            {
                Ok(map) => Some(std::sync::Arc::new(map)),
                Err(errs) => {
                    for e in errs {
                        v.push(format!("register map {}: {e}", path.display()));
                    }
                    None
                }
            }
        })
        .clone();
    if map.is_none() {
        v.push(format!(
            "{place}.map: {} is not usable (see above)",
            path.display()
        ));
    }
    if v.0.len() > n {
        return None;
    }
    Some(crate::ingest::modbus::poller::PollerConfig {
        station: id.clone(),
        address,
        unit_id: m.unit_id as u8,
        interval: Duration::from_secs_f64(m.poll_interval_s),
        timeout: Duration::from_millis(m.timeout_ms),
        max_registers: m.max_registers,
        coalesce: m.coalesce,
        map: map?,
    })
}

/// Station overrides, then its group's, then `[alarms]`, then the defaults.
fn alarm_thresholds(
    d: &RawAlarms,
    g: Option<&RawAlarms>,
    s: &RawAlarms,
    place: &str,
    v: &mut Errors,
) -> crate::alarms::Thresholds {
    let def = crate::alarms::Thresholds::default();
    // Fold the group into the global layer so the two-level lookups below see three levels.
    let merged;
    let d = match g {
        Some(g) => {
            merged = RawAlarms {
                deviation_k: g.deviation_k.or(d.deviation_k),
                deviation_for_s: g.deviation_for_s.or(d.deviation_for_s),
                return_high_for_s: g.return_high_for_s.or(d.return_high_for_s),
                valve_saturated_for_s: g.valve_saturated_for_s.or(d.valve_saturated_for_s),
                low_delta_t_k: g.low_delta_t_k.or(d.low_delta_t_k),
                low_delta_t_for_s: g.low_delta_t_for_s.or(d.low_delta_t_for_s),
                rejected_per_min: g.rejected_per_min.or(d.rejected_per_min),
                out_of_range_margin_k: g.out_of_range_margin_k.or(d.out_of_range_margin_k),
                group: BTreeMap::new(),
            };
            &merged
        }
        None => d,
    };
    let ms = |x: Option<f64>, y: Option<f64>, name: &str, default: i64, v: &mut Errors| -> i64 {
        match x.or(y) {
            Some(secs) if secs >= 0.0 && secs.is_finite() => (secs * 1000.0) as i64,
            Some(_) => {
                v.push(format!("{place}.alarms.{name}: must be ≥ 0"));
                default
            }
            None => default,
        }
    };
    crate::alarms::Thresholds {
        deviation_k: s.deviation_k.or(d.deviation_k).unwrap_or(def.deviation_k),
        deviation_for_ms: ms(
            s.deviation_for_s,
            d.deviation_for_s,
            "deviation_for_s",
            def.deviation_for_ms,
            v,
        ),
        return_high_for_ms: ms(
            s.return_high_for_s,
            d.return_high_for_s,
            "return_high_for_s",
            def.return_high_for_ms,
            v,
        ),
        valve_saturated_for_ms: ms(
            s.valve_saturated_for_s,
            d.valve_saturated_for_s,
            "valve_saturated_for_s",
            def.valve_saturated_for_ms,
            v,
        ),
        low_delta_t_k: s
            .low_delta_t_k
            .or(d.low_delta_t_k)
            .unwrap_or(def.low_delta_t_k),
        low_delta_t_for_ms: ms(
            s.low_delta_t_for_s,
            d.low_delta_t_for_s,
            "low_delta_t_for_s",
            def.low_delta_t_for_ms,
            v,
        ),
        rejected_per_min: s
            .rejected_per_min
            .or(d.rejected_per_min)
            .unwrap_or(def.rejected_per_min),
        out_of_range_margin_k: s
            .out_of_range_margin_k
            .or(d.out_of_range_margin_k)
            .unwrap_or(def.out_of_range_margin_k),
    }
}

/// Merges `[defaults]` and a station's overrides into validated controller parameters.
fn station_params(
    d: &RawControl,
    s: &RawControl,
    area: Option<f64>,
    e: &RawEngine,
    place: &str,
    v: &mut Errors,
) -> Option<StationParams> {
    macro_rules! get {
        ($f:ident, $default:expr) => {
            s.$f.or(d.$f).unwrap_or($default)
        };
    }
    let before = v.0.len();
    let curve = match s.curve.as_ref().or(d.curve.as_ref()) {
        Some(pts) => Curve::new(pts.iter().map(|p| (p[0], p[1])).collect())
            .map_err(|err| v.push(format!("{place}.curve: {err}")))
            .ok(),
        None => Some(Curve::default()),
    };
    let supply_min_c = get!(supply_min_c, 30.0);
    let supply_max_c = get!(supply_max_c, 75.0);
    v.check(
        (0.0..=150.0).contains(&supply_min_c) && supply_min_c < supply_max_c && supply_max_c <= 150.0,
        format!("{place}.supply_min_c/supply_max_c: need 0 ≤ min < max ≤ 150, got {supply_min_c}..{supply_max_c}"),
    );
    let design_outdoor_c = get!(design_outdoor_temp_c, -10.0);
    let design_indoor_c = get!(design_indoor_temp_c, 18.0);
    v.check(
        design_outdoor_c < design_indoor_c,
        format!("{place}.design_outdoor_temp_c: must be below design_indoor_temp_c"),
    );
    let pi = |prefix: &str,
              kp: f64,
              ti: f64,
              db: f64,
              run: f64,
              lo: f64,
              hi: f64,
              v: &mut Errors| {
        v.check(
            kp > 0.0 && kp.is_finite(),
            format!("{place}.{prefix}_kp: must be positive"),
        );
        v.check(
            ti >= 0.0 && ti.is_finite(),
            format!("{place}.{prefix}_ti_s: must be ≥ 0"),
        );
        v.check(
            db >= 0.0,
            format!("{place}.{prefix}_dead_band: must be ≥ 0"),
        );
        v.check(
            run > 0.0,
            format!("{place}.{prefix}_run_time_s: must be positive"),
        );
        v.check(
            (0.0..=100.0).contains(&lo) && lo < hi && hi <= 100.0,
            format!("{place}.{prefix}_min_pct/{prefix}_max_pct: need 0 ≤ min < max ≤ 100, got {lo}..{hi}"),
        );
        PiConfig {
            kp,
            ti_s: ti,
            dead_band: db,
            out_min: lo,
            out_max: hi,
            max_rate_per_s: 100.0 / run,
        }
    };
    let valve = pi(
        "valve",
        get!(valve_kp_pct_per_k, 1.5),
        get!(valve_ti_s, 90.0),
        get!(valve_dead_band_k, 0.3),
        get!(valve_run_time_s, 60.0),
        get!(valve_min_pct, 0.0),
        get!(valve_max_pct, 100.0),
        v,
    );
    let pump = pi(
        "pump",
        get!(pump_kp, 0.5),
        get!(pump_ti_s, 30.0),
        0.0,
        get!(pump_run_time_s, 30.0),
        get!(pump_min_pct, 30.0),
        get!(pump_max_pct, 100.0),
        v,
    );
    let heat_index_w_m2 = get!(heat_index_w_m2, 45.0);
    v.check(
        heat_index_w_m2 > 0.0 && heat_index_w_m2 < 500.0,
        format!("{place}.heat_index_w_m2: must be within 0..500"),
    );
    let design_delta_t_k = get!(design_delta_t_k, 15.0);
    v.check(
        design_delta_t_k > 0.0,
        format!("{place}.design_delta_t_k: must be positive"),
    );
    let ramp = get!(setpoint_ramp_k_per_min, 2.0);
    v.check(
        ramp > 0.0,
        format!("{place}.setpoint_ramp_k_per_min: must be positive"),
    );
    let offset = get!(supply_offset_k, 0.0);
    v.check(
        offset.abs() <= 20.0,
        format!("{place}.supply_offset_k: must be within ±20 K"),
    );
    let rl_max = get!(return_limit_max_k, 10.0);
    v.check(
        rl_max >= 0.0,
        format!("{place}.return_limit_max_k: must be ≥ 0"),
    );
    let rl_gain = get!(return_limit_gain_per_min, 0.2);
    v.check(
        rl_gain >= 0.0,
        format!("{place}.return_limit_gain_per_min: must be ≥ 0"),
    );
    if v.0.len() > before {
        return None;
    }
    Some(StationParams {
        heated_area_m2: area,
        heat_index_w_m2,
        design_outdoor_c,
        design_indoor_c,
        design_delta_t_k,
        curve: curve?,
        supply_offset_k: offset,
        supply_min_c,
        supply_max_c,
        ramp_k_per_min: ramp,
        return_limit_c: get!(return_limit_c, 50.0),
        return_limit_gain_per_min: rl_gain,
        return_limit_max_k: rl_max,
        valve,
        pump,
        staleness_ms: (e.staleness_s * 1000.0) as i64,
        initial_valve_pct: 50.0,
        initial_pump_pct: 80.0,
    })
}

#[derive(Default)]
struct Errors(Vec<String>);

impl Errors {
    fn push(&mut self, msg: String) {
        self.0.push(msg);
    }
    fn check(&mut self, ok: bool, msg: impl Into<String>) {
        if !ok {
            self.0.push(msg.into());
        }
    }
    fn positive(&mut self, place: &str, x: f64) {
        self.check(
            x > 0.0 && x.is_finite(),
            format!("{place}: must be a positive number"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn modbus_stations_load_their_map_once_and_report_its_errors_with_lines() {
        let dir = tempfile::tempdir().unwrap();
        let good = include_str!("../../config/modbus/heatgrid-sim.toml");
        std::fs::write(dir.path().join("good.toml"), good).unwrap();
        std::fs::write(
            dir.path().join("bad.toml"),
            "address_base = 0\n[[register]]\nfield = \"supply_temp_c\"\ntable = \"input\"\naddress = 0\ntype = \"i64\"\n",
        )
        .unwrap();
        let text = "[[station]]\nid = \"a\"\nmodbus = { address = \"10.0.0.1\", map = \"good.toml\" }\n\
            [[station]]\nid = \"b\"\nmodbus = { address = \"10.0.0.2:1502\", map = \"good.toml\", unit_id = 3, poll_interval_s = 2 }\n";
        let c = Config::parse_in(text, &no_env, dir.path()).unwrap();
        let (a, b) = (
            c.stations[0].modbus.as_ref().unwrap(),
            c.stations[1].modbus.as_ref().unwrap(),
        );
        assert_eq!(a.address, "10.0.0.1:502");
        assert_eq!((b.unit_id, b.interval), (3, Duration::from_secs(2)));
        assert!(std::sync::Arc::ptr_eq(&a.map, &b.map), "one map, read once");

        let text = "[[station]]\nid = \"a\"\nmodbus = { address = \"h:0\", map = \"bad.toml\", unit_id = 0, timeout_ms = 9000 }\n\
            [[station]]\nid = \"b\"\nmodbus = { address = \"h\", map = \"missing.toml\" }\n";
        let errs = Config::parse_in(text, &no_env, dir.path())
            .unwrap_err()
            .join("\n");
        for want in [
            "station[0] \"a\".modbus.address",
            "unit_id: 0 must be 1–255",
            "timeout_ms: must be positive and shorter",
            "bad.toml",
            "missing.toml: cannot read",
        ] {
            assert!(errs.contains(want), "{want:?} not in:\n{errs}");
        }
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let env = |k: &str| match k {
            "HEATGRID_INFLUX_TOKEN" => Some("t".to_owned()),
            "HEATGRID_TOKEN_CONTROL_ROOM" => Some("a-long-enough-operator-token".to_owned()),
            _ => None,
        };
        let c = Config::parse(EXAMPLE, &env).unwrap_or_else(|e| panic!("{e:#?}"));
        assert!(!c.stations.is_empty());
    }

    #[test]
    fn every_error_is_reported_at_once_with_its_place() {
        let text = r#"
            [engine]
            tick_s = -1
            [mqtt]
            version = "6"
            [storage.influxdb]
            url = "localhost:8086"
            org = "o"
            bucket = "b"
            token_env = "NOPE"
            [[station]]
            id = "bad/id"
            [[station]]
            id = "ok"
            supply_min_c = 80
            supply_max_c = 60
            [[station]]
            id = "ok"
            curve = [[0, 50]]
        "#;
        let errs = Config::parse(text, &no_env).unwrap_err();
        let all = errs.join("\n");
        for needle in [
            "engine.tick_s",
            "mqtt.version",
            "storage.influxdb.url",
            "station[0] \"bad/id\".id",
            "station[1] \"ok\".supply_min_c",
            "station[2] \"ok\".id: duplicate",
            "station[2] \"ok\".curve",
            "NOPE is not set",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }

    #[test]
    fn unknown_keys_and_syntax_errors_point_at_the_line() {
        let errs = Config::parse("[engine]\ntick_seconds = 5\n", &no_env).unwrap_err();
        assert!(
            errs[0].contains("line 2") && errs[0].contains("tick_seconds"),
            "{errs:?}"
        );
    }

    #[test]
    fn alarm_thresholds_layer_station_over_group_over_global() {
        let text = r#"
            [alarms]
            deviation_k = 4
            low_delta_t_k = 6
            [alarms.group.district.north]
            deviation_k = 2
            [[station]]
            id = "a"
            tags = { district = "north" }
            [[station]]
            id = "b"
            tags = { district = "north" }
            alarms = { deviation_k = 1.5 }
            [[station]]
            id = "c"
        "#;
        let c = Config::parse(text, &no_env).unwrap();
        let dev: Vec<f64> = c.stations.iter().map(|s| s.alarms.deviation_k).collect();
        assert_eq!(dev, vec![2.0, 1.5, 4.0]);
        assert!(c.stations.iter().all(|s| s.alarms.low_delta_t_k == 6.0));
    }

    #[test]
    fn station_overrides_defaults() {
        let text = r#"
            [defaults]
            supply_max_c = 70
            valve_kp_pct_per_k = 3
            [[station]]
            id = "a"
            [[station]]
            id = "b"
            supply_max_c = 65
            heated_area_m2 = 50000
            tags = { district = "north" }
        "#;
        let c = Config::parse(text, &no_env).unwrap();
        assert_eq!(c.stations[0].params.supply_max_c, 70.0);
        assert_eq!(c.stations[1].params.supply_max_c, 65.0);
        assert_eq!(c.stations[1].params.valve.kp, 3.0);
        assert_eq!(c.stations[1].params.heated_area_m2, Some(50_000.0));
        assert_eq!(c.stations[1].tags["district"], "north");
    }
}
