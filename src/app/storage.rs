//! The storage stage: the spool every stage appends to, the writer draining it on its own
//! thread, and the spool's fsync task under the `interval` policy.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::common::{create_dir, StartError};
use super::stage::{spawn_dedicated, Stage};
use crate::config::Config;
use crate::stats::Stats;
use crate::store::influx::InfluxWriter;
use crate::store::spool::{FsyncPolicy, Spool, SpoolConfig};
use crate::store::{Sink, StoreHandle, Writer, WriterConfig};

/// How long the writer keeps draining the spool after the stop (inside the storage stage's
/// stop deadline, `handle::STOP_STORAGE`).
pub const STORAGE_DRAIN: Duration = Duration::from_secs(8);

/// The spool, the handle every stage stores through, the writer on its own thread and, with
/// the `interval` fsync policy, the task that syncs the spool.
pub(super) fn start_storage(
    cfg: &Config,
    stats: &Arc<Stats>,
    stage: &Stage,
) -> Result<(Arc<Spool>, StoreHandle), StartError> {
    let sink = match &cfg.storage.influxdb {
        Some(i) => Sink::Influx(Box::new(InfluxWriter::new(i)?)),
        None => {
            let dir = cfg.data_dir.join("lp");
            create_dir(&dir, "")?;
            Sink::Files { dir }
        }
    };
    let dir = cfg.data_dir.join("spool");
    let spool = Spool::open(SpoolConfig {
        dir: dir.clone(),
        segment_bytes: cfg.storage.segment_bytes,
        max_bytes: cfg.storage.max_spool_bytes,
        fsync: cfg.storage.fsync,
    })
    .map_err(|source| StartError::Spool {
        path: dir.display().to_string(),
        source,
    })?;
    let store = StoreHandle::new(spool.clone(), stats.clone());
    let writer = Writer::new(
        WriterConfig {
            batch_size: cfg.storage.batch_size,
            flush_interval: cfg.storage.flush_interval,
            dead_letter_dir: cfg.data_dir.join("dead-letter"),
        },
        sink,
        spool.clone(),
        stats.clone(),
    );
    let done = spawn_dedicated("heatgrid-writer", writer.run(stage.token(), STORAGE_DRAIN))
        .map_err(|source| StartError::Thread {
            name: "the storage writer's thread",
            source,
        })?;
    stage.track(done);
    if let FsyncPolicy::Interval(every) = cfg.storage.fsync {
        stage.spawn(fsync_task(spool.clone(), every, stage.token()));
    }
    Ok((spool, store))
}

/// fsyncs the spool every `every` (the `interval` policy) until `stop`.
async fn fsync_task(spool: Arc<Spool>, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let s = spool.clone();
        match tokio::task::spawn_blocking(move || s.sync()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "ALARM spool fsync failed."),
            Err(e) => tracing::error!(error = %e, "Spool fsync task failed."),
        }
    }
}
