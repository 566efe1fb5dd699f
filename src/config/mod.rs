//! Configuration: a TOML file in two phases, raw serde structs then a validated [`Config`].
//!
//! Read by `heatgrid run`, `check` and `demo` before anything starts. [`raw`] is the file as
//! serde reads it; [`sections`] and [`station`] validate it into each stage's settings, which
//! the stages define (`MqttConfig` in `ingest::mqtt`, `StorageConfig` in `store`, …): no stage
//! imports this module. Parsing refuses unknown
//! keys; validation collects every semantic error at once, each with its place in the file
//! (`station[2] "st-3".supply_max_c: …`). Secrets are never in the file: it names environment
//! variables (`password_env`, `token_env`) that are read here.

mod cluster;
mod mapping;
mod modbus;
mod notify;
#[cfg(feature = "opcua")]
mod opcua;
mod plant;
mod raw;
mod raw_modbus;
mod raw_opcua;
mod sections;
mod station;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::control::coordinator::CoordinatorConfig;
use crate::control::StationParams;
use crate::ingest::decode::DecodeLimits;
use crate::model::{Mode, StationId};

pub use crate::api::auth::{ApiSettings, ApiToken, Role};
pub use crate::control::task::ControlOn;
pub use crate::files::TlsPem;
pub use crate::ingest::mqtt::{MqttConfig, MqttVersion};
pub use crate::store::influx::InfluxConfig;
pub use crate::store::StorageConfig;

/// The annotated example written by `heatgrid init`.
pub const EXAMPLE: &str = include_str!("../../config/heatgrid.toml");

#[derive(Debug, Clone)]
pub struct StationConfig {
    pub id: StationId,
    pub alarms: crate::alarms::Thresholds,
    pub tags: BTreeMap<String, String>,
    pub mode: Mode,
    pub params: StationParams,
    /// `Some` for a Modbus TCP station: its poller's settings and register map.
    pub modbus: Option<crate::ingest::modbus::poller::PollerConfig>,
    /// `Some` for a station behind OPC UA: its server (an index into
    /// [`Config::opcua_servers`]) and its nodes.
    #[cfg(feature = "opcua")]
    pub opcua: Option<(usize, crate::ingest::opcua::StationNodes)>,
    /// `Some` for a station whose payloads follow a `[[mapping]]` (its own JSON or topics).
    pub mapping: Option<std::sync::Arc<crate::ingest::mapping::Mapping>>,
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
    /// `[engine] log_format = "json"`: `heatgrid run` logs JSON lines unless told otherwise.
    pub log_json: bool,
    pub command_valid_for_s: u32,
    pub decode: DecodeLimits,
    pub mqtt: MqttConfig,
    pub storage: StorageConfig,
    pub api: ApiSettings,
    pub default_outdoor_c: f64,
    pub weather_max_age_ms: i64,
    /// The district coordinator, when enabled.
    pub coordinator: Option<CoordinatorConfig>,
    /// `[diagnosis]`: the station diagnosis' thresholds and windows (docs/diagnosis.md).
    pub diagnosis: crate::diagnose::Settings,
    /// `[predictive]`: predictive control (docs/predictive.md).
    pub predictive: crate::predict::Settings,
    /// `[plant]`: the heat plant the engine watches and commands (contract §7).
    pub plant: Option<crate::control::plant::PlantConfig>,
    /// `[plant] modbus = { … }`: the plant polled over Modbus TCP instead of MQTT.
    pub plant_modbus: Option<crate::ingest::modbus::plant::PlantModbusConfig>,
    /// `[notify]`: where alarms are sent (`None`: nowhere).
    pub notify: Option<crate::notify::NotifyConfig>,
    /// `[cluster]`: this instance shares the fleet with others through etcd (`None`: alone).
    pub cluster: Option<crate::cluster::membership::MemberSettings>,
    pub stations: Vec<StationConfig>,
    /// `[[opcua.server]]`: the OPC UA servers stations are read through.
    #[cfg(feature = "opcua")]
    pub opcua_servers: Vec<crate::ingest::opcua::ServerConfig>,
    /// Every `[[mapping]]` some station uses (each is subscribed once).
    pub mappings: Vec<std::sync::Arc<crate::ingest::mapping::Mapping>>,
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
    pub fn parse(text: &str, env: Env<'_>) -> Result<Self, Vec<String>> {
        Self::parse_in(text, env, Path::new("."))
    }

    /// [`Config::parse`] with relative paths (register maps) resolved against `base`.
    pub fn parse_in(text: &str, env: Env<'_>, base: &Path) -> Result<Self, Vec<String>> {
        let raw: raw::Raw =
            toml::from_str(text).map_err(|e| vec![e.to_string().trim().to_owned()])?;
        let mut v = Errors::default();
        let e = &raw.engine;
        sections::engine(e, &mut v);
        let mqtt = sections::mqtt(&raw.mqtt, env, &mut v);
        let storage = sections::storage(&raw.storage, env, &mut v);
        let api = sections::api(&raw.api, env, &mut v);
        let w = &raw.weather;
        v.check(
            (-50.0..=50.0).contains(&w.default_outdoor_temp_c),
            "weather.default_outdoor_temp_c: must be within -50..50",
        );
        let coordinator = sections::coordinator(&raw.coordinator, &mut v);
        let station_ids: Vec<String> = raw.stations.iter().map(|s| s.id.clone()).collect();
        let (plant, plant_modbus) = plant::plant(&raw.plant, &station_ids, base, &mut v).unzip();
        v.0.extend(raw.diagnosis.problems());
        v.0.extend(raw.predictive.problems());
        let cluster = raw
            .cluster
            .as_ref()
            .and_then(|c| cluster::cluster(c, (&raw.api.listen, &raw.mqtt.client_id), env, &mut v));
        let notify = notify::notify(&raw.notify, env, base, &mut v);
        let mappings = mapping::mappings(&raw.mappings, &mut v);
        #[cfg(feature = "opcua")]
        let opcua_servers = opcua::servers(&raw.opcua, &e.data_dir, base, env, &mut v);
        #[cfg(feature = "opcua")]
        let stations = station::stations(&raw, base, (&mappings, &opcua_servers), &mut v);
        #[cfg(not(feature = "opcua"))]
        let stations = station::stations(&raw, base, &mappings, &mut v);
        let used: Vec<_> = mappings
            .values()
            .filter(|m| {
                stations
                    .iter()
                    .any(|s| s.mapping.as_ref().is_some_and(|x| x.name == m.name))
            })
            .cloned()
            .collect();
        if !v.0.is_empty() {
            return Err(v.0);
        }
        Ok(Config {
            data_dir: e.data_dir.clone(),
            tick: Duration::from_secs_f64(e.tick_s),
            time_scale: e.time_scale,
            control_on: e.control_on,
            log_json: e.log_format == raw::LogFormat::Json,
            command_valid_for_s: e.command_valid_for_s,
            decode: DecodeLimits {
                max_payload_bytes: e.max_payload_bytes,
                future_tolerance_ms: (e.future_tolerance_s * 1000.0) as i64,
            },
            mqtt,
            storage,
            api,
            default_outdoor_c: w.default_outdoor_temp_c,
            weather_max_age_ms: (w.max_age_s * 1000.0) as i64,
            coordinator,
            plant,
            plant_modbus: plant_modbus.flatten(),
            diagnosis: raw.diagnosis.clone(),
            predictive: raw.predictive.clone(),
            notify,
            cluster,
            stations,
            #[cfg(feature = "opcua")]
            opcua_servers,
            mappings: used,
        })
    }
}

/// Resolves an environment variable (secrets): the process environment, or a test's map.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Problems found so far, each with its place in the file.
#[derive(Debug, Default)]
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
    /// Whether `url` is an http(s) URL; if not, an error at `place`.
    fn http_url(&mut self, place: &str, url: &str) -> bool {
        let ok = (url.starts_with("http://") || url.starts_with("https://"))
            && reqwest::Url::parse(url).is_ok_and(|u| u.host().is_some());
        self.check(ok, format!("{place}: {url:?} is not an http(s) URL"));
        ok
    }
    /// The value of the environment variable `var` that the key at `place` names, or an
    /// error naming both.
    fn secret(&mut self, place: &str, var: &str, env: Env<'_>) -> Option<String> {
        env(var).or_else(|| {
            self.push(format!("{place}: environment variable {var} is not set"));
            None
        })
    }
    /// The map file at `path` (`what`: "register map", "node map"), read and parsed once
    /// however many stations name it (`maps` keeps it, or `None` when refused); its errors
    /// are reported once with the file, and each station naming an unusable one says so at
    /// `place`.
    fn map_file<T>(
        &mut self,
        maps: &mut BTreeMap<PathBuf, Option<std::sync::Arc<T>>>,
        (path, what): (PathBuf, &str),
        parse: impl FnOnce(&str) -> Result<T, Vec<String>>,
        place: &str,
    ) -> Option<std::sync::Arc<T>> {
        let map = maps
            .entry(path.clone())
            .or_insert_with(|| {
                match std::fs::read_to_string(&path)
                    .map_err(|e| vec![format!("cannot read: {e}")])
                    .and_then(|t| parse(&t))
                {
                    Ok(map) => Some(std::sync::Arc::new(map)),
                    Err(errs) => {
                        for e in errs {
                            self.push(format!("{what} {}: {e}", path.display()));
                        }
                        None
                    }
                }
            })
            .clone();
        if map.is_none() {
            self.push(format!(
                "{place}.map: {} is not usable (see above)",
                path.display()
            ));
        }
        map
    }
    fn positive(&mut self, place: &str, x: f64) {
        self.check(
            x > 0.0 && x.is_finite(),
            format!("{place}: must be a positive number"),
        );
    }
}

#[cfg(test)]
mod tests;
