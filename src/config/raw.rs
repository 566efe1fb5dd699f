//! The config file as serde reads it: every table and key with its default, unknown keys
//! refused. [`super`] validates these into each stage's settings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{ControlOn, Role};
use crate::control::coordinator::CoordinatorConfig;
use crate::model::Mode;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    #[serde(default)]
    pub(super) engine: RawEngine,
    #[serde(default)]
    pub(super) mqtt: RawMqtt,
    #[serde(default)]
    pub(super) storage: RawStorage,
    #[serde(default)]
    pub(super) weather: RawWeather,
    #[serde(default)]
    pub(super) api: RawApi,
    #[serde(default)]
    pub(super) alarms: RawAlarms,
    #[serde(default)]
    pub(super) coordinator: RawCoordinator,
    #[serde(default)]
    pub(super) diagnosis: crate::diagnose::Settings,
    #[serde(default)]
    pub(super) predictive: crate::predict::Settings,
    #[serde(default)]
    pub(super) defaults: RawControl,
    #[serde(default)]
    pub(super) notify: super::notify::RawNotify,
    #[serde(default)]
    pub(super) opcua: super::raw_opcua::RawOpcua,
    pub(super) cluster: Option<RawCluster>,
    pub(super) plant: Option<super::plant::RawPlant>,
    #[serde(default, rename = "station")]
    pub(super) stations: Vec<RawStation>,
    #[serde(default, rename = "mapping")]
    pub(super) mappings: Vec<super::mapping::RawMapping>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawEngine {
    pub(super) data_dir: PathBuf,
    pub(super) tick_s: f64,
    pub(super) staleness_s: f64,
    pub(super) command_valid_for_s: u32,
    pub(super) future_tolerance_s: f64,
    pub(super) max_payload_bytes: usize,
    pub(super) time_scale: f64,
    pub(super) control_on: ControlOn,
    pub(super) log_format: LogFormat,
}

/// `[engine] log_format`: how `heatgrid run` writes its log lines (the `--log-format` flag
/// overrides it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum LogFormat {
    Text,
    Json,
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
            log_format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawMqtt {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) version: String,
    pub(super) client_id: String,
    pub(super) topic_prefix: String,
    pub(super) telemetry_qos: u8,
    pub(super) keep_alive_s: u64,
    pub(super) ack_after_spool: bool,
    pub(super) watchdog_s: f64,
    pub(super) username: Option<String>,
    pub(super) password_env: Option<String>,
    pub(super) tls: Option<RawTls>,
}

/// `[mqtt.tls]`: verify the broker with `ca_file`; optional client certificate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) ca_file: PathBuf,
    pub(super) client_cert_file: Option<PathBuf>,
    pub(super) client_key_file: Option<PathBuf>,
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
pub(super) struct RawStorage {
    pub(super) batch_size: usize,
    pub(super) flush_interval_ms: u64,
    pub(super) max_spool_mb: u64,
    pub(super) segment_mb: u64,
    pub(super) fsync: String,
    pub(super) fsync_interval_ms: u64,
    pub(super) influxdb: Option<RawInflux>,
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
pub(super) struct RawInflux {
    pub(super) url: String,
    /// `"v2"` (the default) or `"v1"`.
    #[serde(default)]
    pub(super) api: Option<String>,
    /// v2: organisation, bucket and the token's variable.
    #[serde(default)]
    pub(super) org: Option<String>,
    #[serde(default)]
    pub(super) bucket: Option<String>,
    pub(super) token_env: Option<String>,
    /// v1: database, retention policy (its default when absent), the user's and the
    /// password's variables.
    #[serde(default)]
    pub(super) database: Option<String>,
    #[serde(default)]
    pub(super) retention_policy: Option<String>,
    #[serde(default)]
    pub(super) user_env: Option<String>,
    #[serde(default)]
    pub(super) password_env: Option<String>,
    #[serde(default = "default_timeout_s")]
    pub(super) timeout_s: f64,
    /// A VictoriaMetrics export API to read station histories back from (the web trend).
    #[serde(default)]
    pub(super) history_url: Option<String>,
}

pub(super) fn default_timeout_s() -> f64 {
    10.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawApi {
    /// `host:port`; empty disables the API.
    pub(super) listen: String,
    #[serde(rename = "token")]
    pub(super) tokens: Vec<RawToken>,
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
pub(super) struct RawToken {
    pub(super) name: String,
    pub(super) role: Role,
    pub(super) token_env: Option<String>,
    pub(super) token_sha256: Option<String>,
}

/// `[coordinator]`: the district coordinator (off unless `enabled`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCoordinator {
    pub(super) enabled: bool,
    pub(super) period_s: f64,
    pub(super) filter_tau_s: f64,
    pub(super) gain_k_per_h: f64,
    pub(super) max_offset_k: f64,
    pub(super) max_rate_k_per_h: f64,
    pub(super) dead_band_pct: f64,
    pub(super) indoor_target_c: Option<f64>,
    pub(super) min_stations: usize,
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
pub(super) struct RawWeather {
    pub(super) default_outdoor_temp_c: f64,
    pub(super) max_age_s: f64,
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
pub(super) struct RawControl {
    pub(super) heat_index_w_m2: Option<f64>,
    pub(super) design_outdoor_temp_c: Option<f64>,
    pub(super) design_indoor_temp_c: Option<f64>,
    pub(super) design_delta_t_k: Option<f64>,
    pub(super) curve: Option<Vec<[f64; 2]>>,
    pub(super) supply_offset_k: Option<f64>,
    pub(super) supply_min_c: Option<f64>,
    pub(super) supply_max_c: Option<f64>,
    pub(super) setpoint_ramp_k_per_min: Option<f64>,
    pub(super) return_limit_c: Option<f64>,
    pub(super) return_limit_gain_per_min: Option<f64>,
    pub(super) return_limit_max_k: Option<f64>,
    pub(super) valve_kp_pct_per_k: Option<f64>,
    pub(super) valve_ti_s: Option<f64>,
    pub(super) valve_dead_band_k: Option<f64>,
    pub(super) valve_run_time_s: Option<f64>,
    pub(super) valve_min_pct: Option<f64>,
    pub(super) valve_max_pct: Option<f64>,
    pub(super) pump_kp: Option<f64>,
    pub(super) pump_ti_s: Option<f64>,
    pub(super) pump_run_time_s: Option<f64>,
    pub(super) pump_min_pct: Option<f64>,
    pub(super) pump_max_pct: Option<f64>,
}

/// Alarm thresholds: `[alarms]` for all; `[station.alarms]` overrides per station.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlarms {
    pub(super) deviation_k: Option<f64>,
    pub(super) deviation_for_s: Option<f64>,
    pub(super) return_high_for_s: Option<f64>,
    pub(super) valve_saturated_for_s: Option<f64>,
    pub(super) low_delta_t_k: Option<f64>,
    pub(super) low_delta_t_for_s: Option<f64>,
    pub(super) rejected_per_min: Option<u64>,
    pub(super) out_of_range_margin_k: Option<f64>,
    /// `[alarms.group.<tag>.<value>]`: thresholds for every station with that static tag.
    #[serde(default)]
    pub(super) group: BTreeMap<String, BTreeMap<String, RawAlarms>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStation {
    pub(super) id: String,
    #[serde(default)]
    pub(super) alarms: RawAlarms,
    pub(super) heated_area_m2: Option<f64>,
    #[serde(default)]
    pub(super) tags: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) mode: Mode,
    /// Present for a Modbus TCP station (absent: the station speaks MQTT).
    pub(super) modbus: Option<super::raw_modbus::RawModbus>,
    /// Present for a station behind an OPC UA server (`[[opcua.server]]`).
    pub(super) opcua: Option<super::raw_opcua::RawStationOpcua>,
    /// The `[[mapping]]` its MQTT payloads follow (absent: the contract's own).
    pub(super) mapping: Option<String>,
    #[serde(flatten)]
    pub(super) control: RawControl,
}

/// `[cluster]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub(super) name: String,
    pub(super) etcd_endpoints: Vec<String>,
    #[serde(default = "default_partitions")]
    pub(super) partitions: u32,
    #[serde(default = "default_ttl")]
    pub(super) lease_ttl_s: f64,
    /// Where the other instances reach this one's API; default: `api.listen`.
    pub(super) api_address: Option<String>,
    pub(super) username: Option<String>,
    pub(super) password_env: Option<String>,
    pub(super) tls: Option<RawTls>,
}

fn default_partitions() -> u32 {
    64
}

fn default_ttl() -> f64 {
    10.0
}
