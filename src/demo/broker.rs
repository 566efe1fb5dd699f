//! The demo's embedded MQTT broker: rumqttd on its own thread (`Broker::start` blocks and has
//! no stop), on free loopback ports, one listener for MQTT 3.1.1 and one for 5.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::error::{io, DemoError};

/// Loopback ports of the embedded broker.
#[derive(Debug, Clone, Copy)]
pub struct BrokerPorts {
    pub v311: u16,
    pub v5: u16,
}

/// Starts rumqttd on free loopback ports (one listener for MQTT 3.1.1, one for 5) and waits
/// until both accept connections (asynchronously: no worker thread sleeps meanwhile).
pub async fn start_embedded_broker() -> Result<BrokerPorts, DemoError> {
    let free =
        || -> std::io::Result<u16> { Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()) };
    let (v4, v5) = (free(), free());
    let (v4, v5) = (v4.map_err(io("free port"))?, v5.map_err(io("free port"))?);
    let text = format!(
        r#"
id = 0
[router]
max_connections = 10010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:{v4}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 1048576
max_inflight_count = 100
dynamic_filters = true

[v5.1]
name = "v5-1"
listen = "127.0.0.1:{v5}"
next_connection_delay_ms = 1
[v5.1.connections]
connection_timeout_ms = 60000
max_payload_size = 1048576
max_inflight_count = 100
dynamic_filters = true
"#
    );
    let config: rumqttd::Config = toml::from_str(&text)?;
    std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "Embedded MQTT broker stopped.");
            }
        })
        .map_err(io("the broker's thread"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    for port in [v4, v5] {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        loop {
            let attempt =
                tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr));
            if let Ok(Ok(_)) = attempt.await {
                break;
            }
            if Instant::now() >= deadline {
                return Err(DemoError::BrokerDown(addr));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(BrokerPorts { v311: v4, v5 })
}
