//! A stage of the running engine for shutdown: its tasks, the token that stops them, and how
//! long they may take.
//!
//! Where it sits: [`super::start()`] creates one [`Stage`] per part (control, Modbus, MQTT,
//! storage); [`super::EngineHandle::shutdown`] stops them in order and names any that is late.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

/// The tasks of one part of the engine and their stop signal. A clone is the same stage (a
/// task that starts others on it holds one).
#[derive(Debug, Clone)]
pub struct Stage {
    name: &'static str,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Stage {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// The token this stage's tasks stop on.
    pub fn token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Runs `task` on the shared runtime as part of this stage.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Counts `done` (a task running elsewhere, e.g. on its own thread) as part of this stage.
    pub fn track(&self, done: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(done);
    }

    /// Waits up to `grace` for every task to finish without asking them to stop; false (and
    /// a warning naming the stage) if one is still running.
    pub async fn wait(&self, grace: Duration) -> bool {
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_ok() {
            return true;
        }
        warn!(
            stage = self.name,
            tasks = self.tasks.len(),
            grace_ms = grace.as_millis() as u64,
            "Part of the engine did not stop in time."
        );
        false
    }

    /// Asks every task to stop, then waits up to `grace`.
    pub async fn stop(&self, grace: Duration) -> bool {
        self.stop.cancel();
        self.wait(grace).await
    }
}

/// Runs `task` on its own thread with a single-threaded runtime; the future resolves when it
/// has finished (or the thread died).
///
/// For the storage writer: reading a 5,000-line batch from the spool and handing it to the
/// HTTP client is a few milliseconds of work between two awaits, and on the shared runtime
/// the MQTT event loop and the control task waited behind it. Measured at 10,000 msg/s
/// (local files, so the database's own CPU is out of the figure): telemetry → command p99
/// 5.8 ms with 5,000-line batches, 1.7 ms with 500-line ones. Its wake-ups are per batch, so
/// the thread hop costs nothing measurable.
pub fn spawn_dedicated(
    name: &str,
    task: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            rt.block_on(task);
            let _ = done.send(());
        })?;
    Ok(async move {
        let _ = finished.await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stage_stops_its_tasks_and_reports_one_that_ignores_the_token() {
        let prompt = Stage::new("prompt");
        let token = prompt.token();
        prompt.spawn(async move { token.cancelled().await });
        assert!(
            prompt.stop(Duration::from_secs(5)).await,
            "stops on the token"
        );

        let late = Stage::new("late");
        let (_keep, never) = tokio::sync::oneshot::channel::<()>();
        late.spawn(async move {
            let _ = never.await; // ignores the token
        });
        assert!(
            !late.stop(Duration::from_millis(50)).await,
            "a task that does not stop within the grace is reported"
        );
    }

    #[tokio::test]
    async fn wait_does_not_cancel_and_track_counts_a_thread() {
        let s = Stage::new("mqtt");
        let token = s.token();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        s.spawn(async move {
            let _ = done_rx.await;
        });
        assert!(!s.wait(Duration::from_millis(20)).await);
        assert!(!token.is_cancelled(), "wait only waits");
        let _ = done_tx.send(());
        assert!(s.wait(Duration::from_secs(5)).await);

        let t = Stage::new("storage");
        let finished = spawn_dedicated("test-thread", async {
            tokio::time::sleep(Duration::from_millis(10)).await;
        })
        .unwrap();
        t.track(finished);
        assert!(
            t.wait(Duration::from_secs(5)).await,
            "the thread's end is awaited"
        );
    }
}
