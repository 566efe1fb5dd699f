//! Integration tests: the engine against real peers (mosquitto, the embedded rumqttd broker,
//! VictoriaMetrics over the InfluxDB v2 write API, InfluxDB 1.6 over its own, the simulator, a Python station emulator,
//! a webhook receiver and aiosmtpd for alarm notifications).
//! Run them through `scripts/test.sh`, which installs the peers.

mod alarms;
mod cli;
mod closed_loop;
mod cluster;
mod coordinator;
mod diagnose;
mod docs;
mod durability;
mod etcd;
mod failover;
mod fault_http;
mod faults;
mod influx_v1;
mod live;
mod mapping;
mod modbus;
mod notify;
mod opcua;
mod operator;
mod peer;
mod plant;
mod predictive;
mod report;
mod tls;
mod util;
mod web;
