//! The control room's live feed (`GET /api/v1/live`) against mosquitto: a reading reaches its
//! tile within a second of arriving however slow the control tick, each event is decodable
//! as it arrives through the feed's gzip stream, the first event is the only snapshot, and a
//! delta carries the changed fields of the changed tile only. Page files and JSON answers
//! are gzipped for a client that accepts it.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util;

/// The feed's events as they arrive, decompressed incrementally.
struct Events {
    response: reqwest::Response,
    gunzip: flate2::write::GzDecoder<Vec<u8>>,
    text: String,
    /// Compressed bytes received so far.
    wire: usize,
}

impl Events {
    /// The next event (kind, JSON body), waiting at most `within`.
    async fn next(&mut self, within: Duration) -> Option<(String, Value)> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(cut) = self.text.find("\n\n") {
                let block: String = self.text.drain(..cut + 2).collect();
                let mut kind = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(k) = line.strip_prefix("event: ") {
                        kind = k.to_owned();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    }
                }
                return Some((kind, serde_json::from_str(&data).unwrap()));
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .ok()?
                .unwrap()?;
            self.wire += chunk.len();
            // Each event is flushed whole: what arrived decompresses without waiting for more.
            self.gunzip.write_all(&chunk).unwrap();
            self.gunzip.flush().unwrap();
            let out = std::mem::take(self.gunzip.get_mut());
            self.text.push_str(std::str::from_utf8(&out).unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_reaches_the_feed_within_a_second_whatever_the_tick_and_only_as_a_delta() {
    let broker = util::mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (1..=3).map(|i| format!("st-{i:03}")).collect();
    let mut cfg = util::engine_config(&ids, broker.port, "3.1.1", 1.0, dir.path(), None);
    // A control tick far longer than the bound: the feed must not wait for it.
    cfg.tick = Duration::from_secs(20);
    let (engine, api) = util::start_viewed(cfg).await;
    // Page files and JSON answers are gzipped for a client that accepts it, and only then.
    for (path, token) in [
        ("/app.js", None),
        ("/api/v1/stations", Some(util::VIEWER_TOKEN)),
    ] {
        let get = |gzip: bool| {
            let mut rq = reqwest::Client::new().get(format!("{api}{path}"));
            if let Some(t) = token {
                rq = rq.bearer_auth(t);
            }
            if gzip {
                rq = rq.header("Accept-Encoding", "gzip");
            }
            rq.send()
        };
        let (zipped, plain) = (get(true).await.unwrap(), get(false).await.unwrap());
        assert_eq!(zipped.headers()["content-encoding"], "gzip", "{path}");
        assert!(plain.headers().get("content-encoding").is_none(), "{path}");
        let (z, p) = (zipped.bytes().await.unwrap(), plain.bytes().await.unwrap());
        let mut unzipped = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&z[..]), &mut unzipped)
            .unwrap();
        assert_eq!(unzipped, p, "{path}");
        assert!(
            z.len() < p.len(),
            "{path}: {} gzipped against {}",
            z.len(),
            p.len()
        );
    }
    let response = reqwest::Client::new()
        .get(format!("{api}/api/v1/live"))
        .bearer_auth(util::VIEWER_TOKEN)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut events = Events {
        response,
        gunzip: flate2::write::GzDecoder::new(Vec::new()),
        text: String::new(),
        wire: 0,
    };
    let (kind, first) = events.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(kind, "snapshot");
    let fields: Vec<String> = serde_json::from_value(first["fields"].clone()).unwrap();
    let at = |name: &str| fields.iter().position(|f| f == name).unwrap();
    let rows = first["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let row = rows.iter().position(|r| r[at("id")] == "st-002").unwrap();

    let (client, poller) = util::publisher(broker.port, "live-test");
    let mut lags = Vec::new();
    for k in 0..5 {
        let supply = 61.3 + k as f64;
        let payload = format!(
            "{{\"ts\":{},\"supply_temp_c\":{supply},\"return_temp_c\":40.0,\"flow_m3h\":2.5,\"heated_area_m2\":5000}}",
            heatgrid::clock::now_ms()
        );
        let sent = Instant::now();
        client
            .publish(
                "heating/station/st-002/telemetry",
                rumqttc::QoS::AtLeastOnce,
                false,
                payload.into_bytes(),
            )
            .await
            .unwrap();
        // Every event until the one that shows it (for at most 5 s): deltas only, and only its
        // tile.
        let shown = loop {
            if sent.elapsed() > Duration::from_secs(5) {
                break None;
            }
            let Some((kind, body)) = events.next(Duration::from_secs(3)).await else {
                break None;
            };
            assert_eq!(kind, "delta", "a second snapshot: {body}");
            let d = body["d"].as_array().unwrap();
            let hit = d.iter().find(|e| {
                e[0] == row
                    && e.as_array().unwrap()[1..].chunks(2).any(|kv| {
                        kv[0] == at("sup")
                            && kv[1].as_f64().is_some_and(|v| (v - supply).abs() < 0.01)
                    })
            });
            if let Some(e) = hit {
                assert!(d.iter().all(|e| e[0] == row), "other tiles changed: {body}");
                // The changed fields only: never the id or the tags.
                let keys: Vec<u64> = e.as_array().unwrap()[1..]
                    .chunks(2)
                    .map(|kv| kv[0].as_u64().unwrap())
                    .collect();
                assert!(
                    !keys.contains(&(at("id") as u64)) && !keys.contains(&(at("tags") as u64)),
                    "{e}"
                );
                break Some(sent.elapsed());
            }
        };
        let lag = shown.unwrap_or_else(|| panic!("reading {k} never reached the feed"));
        lags.push(lag.as_secs_f64());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    poller.abort();
    eprintln!(
        "live feed: reading to event {lags:.3?} s, {} bytes on the wire",
        events.wire
    );
    assert!(
        lags.iter().all(|l| *l < 1.0),
        "a reading took {lags:?} s to reach the feed"
    );
    engine.shutdown().await;
}
