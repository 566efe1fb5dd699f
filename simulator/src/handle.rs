//! A running simulator: [`spawn`] warms the plants up, starts the Modbus servers or the MQTT
//! connection and the stepper; [`SimHandle`] reads the fleet, injects faults and stops it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, QoS};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::network::district::Networked;
use crate::shared::Shared;
use crate::{live, modbus, plant, station, Fault, ModbusFault, SimConfig, StationView};

/// A running simulator.
#[derive(Debug)]
pub struct SimHandle {
    shared: Arc<Mutex<Shared>>,
    stop: watch::Sender<bool>,
    stepper: JoinHandle<()>,
    event_loop: JoinHandle<()>,
    client: AsyncClient,
    prefix: String,
    modbus_addrs: Vec<std::net::SocketAddr>,
    modbus_tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    modbus_map: Option<Arc<modbus::SimMap>>,
    plant_modbus_addr: Option<std::net::SocketAddr>,
}

/// Warms the plants up locally, connects to the broker and starts simulating.
pub async fn spawn(cfg: SimConfig) -> SimHandle {
    let mut stations = cfg.build_stations();
    cfg.warm_up(&mut stations);
    let n = stations.len();
    let modbus_map = cfg
        .modbus
        .as_ref()
        .and_then(|m| match modbus::SimMap::parse(&m.map) {
            Ok(map) => Some(Arc::new(map)),
            Err(e) => {
                warn!(error = %e, "Simulator register map unreadable; Modbus disabled.");
                None
            }
        });
    let network = cfg.network.as_ref().and_then(|n| {
        let start = cfg.start_hour * 3600.0;
        let built = Networked::new(&n.file, &stations, n.loads, n.cell_m, cfg.outdoor_c(0.0));
        match built {
            Ok(mut w) => {
                // A day before the start, on the plant's own curve.
                w.settle(&mut stations, start - 86_400.0, 24.0, |t| {
                    cfg.outdoor_c(t - start)
                });
                Some((w, n.plant_id.clone()))
            }
            Err(e) => {
                warn!(error = %e, "Simulator network file does not fit the fleet; no network.");
                None
            }
        }
    });
    let mut fleet = Shared::new(&cfg, stations, modbus_map.as_deref());
    fleet.network = network;
    let shared = Arc::new(Mutex::new(fleet));
    let (modbus_addrs, mut modbus_tasks) = serve_modbus(&cfg, &shared, modbus_map.clone(), n).await;
    let plant_modbus_addr = match serve_plant_modbus(&cfg, &shared).await {
        Some((addr, task)) => {
            modbus_tasks.push(task);
            Some(addr)
        }
        None => None,
    };
    let over_modbus = cfg.modbus.is_some();

    let (client, el) = live::client(&cfg);
    let (stop, stop_rx) = watch::channel(false);

    let prefix = cfg.topic_prefix.clone();
    let ids: Vec<String> = shared
        .lock()
        .map(|s| s.stations.iter().map(|s| s.id.clone()).collect())
        .unwrap_or_default();
    let event_loop = if over_modbus {
        // Modbus stations speak no MQTT.
        tokio::spawn(async {})
    } else {
        tokio::spawn(live::mqtt_loop(
            el,
            client.clone(),
            shared.clone(),
            prefix.clone(),
            ids,
        ))
    };

    let (n_stations, speed, broker) = (
        cfg.stations,
        cfg.speed,
        format!("{}:{}", cfg.host, cfg.port),
    );
    let qos = if cfg.telemetry_qos1 {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    };
    let stepper = tokio::spawn(live::step_loop(
        cfg.clone(),
        shared.clone(),
        client.clone(),
        qos,
        stop_rx,
        over_modbus,
    ));
    if over_modbus {
        info!(stations = n_stations, speed, first = ?modbus_addrs.first(), "Simulator started (Modbus TCP).");
    } else {
        info!(stations = n_stations, speed, broker, "Simulator started.");
    }
    SimHandle {
        shared,
        stop,
        stepper,
        event_loop,
        client,
        prefix,
        modbus_addrs,
        modbus_tasks: Arc::new(Mutex::new(modbus_tasks)),
        modbus_map,
        plant_modbus_addr,
    }
}

/// The plant's PLC on Modbus TCP, when [`crate::SimNetwork::plant_modbus`] asks for it.
async fn serve_plant_modbus(
    cfg: &SimConfig,
    shared: &Arc<Mutex<Shared>>,
) -> Option<(std::net::SocketAddr, JoinHandle<()>)> {
    let m = cfg.network.as_ref()?.plant_modbus.as_ref()?;
    let map = match modbus::SimMap::parse(&m.map) {
        Ok(map) => Arc::new(map),
        Err(e) => {
            warn!(error = %e, "Simulator plant register map unreadable; plant not served.");
            return None;
        }
    };
    match tokio::net::TcpListener::bind((m.host.as_str(), m.port)).await {
        Ok(l) => {
            let addr = l.local_addr().ok()?;
            let task = crate::network::plc_modbus::serve(shared.clone(), map, l);
            info!(%addr, "Simulator plant served over Modbus TCP.");
            Some((addr, task))
        }
        Err(e) => {
            warn!(error = %e, "Simulator cannot listen for the plant's Modbus.");
            None
        }
    }
}

impl SimHandle {
    pub fn snapshot(&self) -> Vec<StationView> {
        Self::views(&self.shared)
    }

    fn views(shared: &Mutex<Shared>) -> Vec<StationView> {
        let Ok(sh) = shared.lock() else {
            return Vec::new();
        };
        sh.stations
            .iter()
            .map(|s| StationView {
                id: s.id.clone(),
                supply_c: s.plant.supply_sensor_c,
                return_c: s.plant.return_c,
                flow_m3h: s.plant.secondary_kgs() / plant::KGS_PER_M3H,
                indoor_c: s.plant.indoor_c,
                valve_pct: s.plant.valve * 100.0,
                pump_pct: s.plant.pump * 100.0,
                engine_in_control: s.control == station::Control::Engine,
                commanded_setpoint_c: s.active.as_ref().map(|(c, _)| c.supply_setpoint_c),
                commands_received: s.commands_received,
                commands_refused: s.commands_refused,
                published: s.published,
                max_command_data_age_ms: s.max_command_data_age_ms,
            })
            .collect()
    }

    /// Every command received so far, in order of receipt (empty unless
    /// [`SimConfig::record_commands`]).
    pub fn command_log(&self) -> Vec<crate::CommandRecord> {
        self.shared
            .lock()
            .ok()
            .and_then(|s| s.commands.clone())
            .unwrap_or_default()
    }

    /// What the network's plant would report now, with its commands received and refused
    /// (`None` without a network).
    pub fn plant(&self) -> Option<(crate::network::plc::PlantTelemetry, u64, u64)> {
        let sh = self.shared.lock().ok()?;
        let (w, _) = sh.network.as_ref()?;
        Some((
            w.telemetry(crate::shared::now_ms()),
            w.plc.commands_received,
            w.plc.commands_refused,
        ))
    }

    /// The command the network's plant follows now (`None`: on its own curve, or no network).
    pub fn plant_command(&self) -> Option<crate::network::plc::PlantCommand> {
        let sh = self.shared.lock().ok()?;
        let (w, _) = sh.network.as_ref()?;
        w.plc.command().cloned()
    }

    /// Silences (or lets speak again) the network's plant: its telemetry stops (over Modbus
    /// it answers nothing).
    pub fn set_plant_silenced(&self, silenced: bool) {
        if let Ok(mut sh) = self.shared.lock() {
            sh.plant_silenced = silenced;
        }
    }

    /// What station `id` sees of the network: primary supply (°C) and differential pressure
    /// (kPa) (`None` without a network).
    pub fn primary_of(&self, id: &str) -> Option<(f64, f64)> {
        let sh = self.shared.lock().ok()?;
        let i = *sh.index.get(id)?;
        let feed = sh.stations[i].plant.network?;
        Some((feed.supply_c, feed.dp_pa / 1000.0))
    }

    /// Simulated seconds since start.
    pub fn sim_time_s(&self) -> f64 {
        self.shared.lock().map(|s| s.sim_time_s).unwrap_or(0.0)
    }

    /// Telemetry messages that could not be queued for MQTT.
    pub fn publish_failures(&self) -> u64 {
        self.shared.lock().map(|s| s.publish_failures).unwrap_or(0)
    }

    /// Injects (or with `Fault::None`-like values removes) a fault at station `id`.
    pub fn set_fault(&self, id: &str, fault: Fault) -> bool {
        let Ok(mut sh) = self.shared.lock() else {
            return false;
        };
        let Some(s) = sh.stations.iter_mut().find(|s| s.id == id) else {
            return false;
        };
        match fault {
            Fault::SensorOffsetK(k) => s.sensor_offset_k = k,
            Fault::PrimarySupplyC(c) => s.plant.primary_supply_override_c = c,
            Fault::Bypass(f) => s.plant.bypass = f.clamp(0.0, 1.0),
        }
        true
    }

    /// Modbus: the address each station listens on, in station order (empty over MQTT).
    pub fn modbus_addrs(&self) -> &[std::net::SocketAddr] {
        &self.modbus_addrs
    }

    /// Where the plant's PLC listens, when it is served over Modbus TCP.
    pub fn plant_modbus_addr(&self) -> Option<std::net::SocketAddr> {
        self.plant_modbus_addr
    }

    /// Modbus, with [`crate::SimModbus::record_reads`]: (station position, when) of every read
    /// request a station's PLC got so far.
    pub fn reads(&self) -> Vec<(usize, std::time::Instant)> {
        self.shared
            .lock()
            .ok()
            .and_then(|s| s.reads.clone())
            .unwrap_or_default()
    }

    /// Modbus: makes station `id` dead, refusing, or healthy again.
    pub fn set_modbus_fault(&self, id: &str, fault: ModbusFault) -> bool {
        let Ok(mut sh) = self.shared.lock() else {
            return false;
        };
        match sh.stations.iter().position(|s| s.id == id) {
            Some(i) => {
                sh.modbus_faults[i] = fault;
                true
            }
            None => false,
        }
    }

    /// Modbus: station `id`'s PLC drops every connection and stops listening, as a rebooting
    /// PLC does, and is back on the same port after `down_for` (zero: at once — a PLC closing
    /// its connections, like the ECL Comfort does after ~75 s idle). Returns once the old
    /// listener is closed (and, for a zero outage, the new one is listening).
    pub async fn modbus_outage(&self, id: &str, down_for: Duration) -> bool {
        let (Some(index), Some(map)) = (
            self.shared
                .lock()
                .ok()
                .and_then(|sh| sh.stations.iter().position(|s| s.id == id)),
            self.modbus_map.clone(),
        ) else {
            return false;
        };
        let Some(addr) = self.modbus_addrs.get(index).copied() else {
            return false;
        };
        let old = match self.modbus_tasks.lock() {
            Ok(mut tasks) => std::mem::replace(&mut tasks[index], tokio::spawn(async {})),
            Err(_) => return false,
        };
        old.abort();
        let _ = old.await;
        let (shared, tasks) = (self.shared.clone(), self.modbus_tasks.clone());
        let back = async move {
            tokio::time::sleep(down_for).await;
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => {
                    let task = modbus::serve_one(shared, map, index, l);
                    if let Ok(mut t) = tasks.lock() {
                        t[index] = task;
                    }
                }
                Err(e) => warn!(%addr, error = %e, "Simulated PLC could not listen again."),
            }
        };
        if down_for.is_zero() {
            back.await;
        } else {
            tokio::spawn(back);
        }
        true
    }

    /// Publishes station `id`'s presence (`{prefix}/station/{id}/state`, retained).
    pub fn set_presence(&self, id: &str, online: bool) -> bool {
        self.client
            .try_publish(
                format!("{}/station/{id}/state", self.prefix),
                QoS::AtLeastOnce,
                true,
                if online { "online" } else { "offline" },
            )
            .is_ok()
    }

    /// Stops (or resumes) publishing telemetry for station `id`; its plant keeps running.
    pub fn set_silenced(&self, id: &str, silenced: bool) -> bool {
        let Ok(mut sh) = self.shared.lock() else {
            return false;
        };
        match sh.stations.iter_mut().find(|s| s.id == id) {
            Some(s) => {
                s.silenced = silenced;
                true
            }
            None => false,
        }
    }

    /// Stops stepping, lets queued telemetry go out, disconnects. Returns the final snapshot.
    pub async fn stop(self) -> Vec<StationView> {
        let _ = self.stop.send(true);
        let _ = self.stepper.await;
        if let Ok(tasks) = self.modbus_tasks.lock() {
            for t in tasks.iter() {
                t.abort();
            }
        }
        if !self.modbus_addrs.is_empty() {
            return Self::views(&self.shared);
        }
        let snapshot = Self::views(&self.shared);
        for s in &snapshot {
            let _ = self.client.try_publish(
                format!("{}/station/{}/state", self.prefix, s.id),
                QoS::AtLeastOnce,
                true,
                "offline",
            );
        }
        let _ = self.client.disconnect().await;
        // The event loop ends after sending DISCONNECT (everything queued before it went first).
        let mut el = self.event_loop;
        if tokio::time::timeout(Duration::from_secs(20), &mut el)
            .await
            .is_err()
        {
            warn!("Simulator MQTT did not flush within 20 s; queued telemetry may be lost.");
            el.abort();
        }
        snapshot
    }
}

/// The stations' Modbus face, as configured: one TCP listener each, one gateway listener for
/// all, or one RTU serial line for all. Returns the listening addresses and the server tasks.
async fn serve_modbus(
    cfg: &SimConfig,
    shared: &Arc<Mutex<Shared>>,
    modbus_map: Option<Arc<modbus::SimMap>>,
    n: usize,
) -> (Vec<std::net::SocketAddr>, Vec<tokio::task::JoinHandle<()>>) {
    match (&cfg.modbus, modbus_map.clone()) {
        (Some(m), Some(map)) if m.rtu.is_some() => {
            let (path, baud) = m.rtu.clone().unwrap_or_default();
            match crate::modbus_bus::serve(shared.clone(), map, &path, baud, n) {
                Ok(task) => (Vec::new(), vec![task]),
                Err(e) => {
                    warn!(error = %e, path, "Simulator cannot open its Modbus RTU line.");
                    (Vec::new(), Vec::new())
                }
            }
        }
        (Some(m), Some(map)) if m.gateway || m.rtu_over_tcp => {
            match tokio::net::TcpListener::bind((m.host.as_str(), m.base_port)).await {
                Ok(l) => {
                    let addr = l.local_addr().ok();
                    let task =
                        crate::modbus_bus::serve_tcp(shared.clone(), map, l, n, m.rtu_over_tcp);
                    (addr.into_iter().collect(), vec![task])
                }
                Err(e) => {
                    warn!(error = %e, "Simulator cannot listen for Modbus.");
                    (Vec::new(), Vec::new())
                }
            }
        }
        (Some(m), Some(map)) => {
            match modbus::serve(shared.clone(), map, &m.host, m.base_port, n).await {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "Simulator cannot listen for Modbus.");
                    (Vec::new(), Vec::new())
                }
            }
        }
        _ => (Vec::new(), Vec::new()),
    }
}
