//! Small file helpers shared by everything that keeps state on disk: the spool, the
//! command-number log, the alarm book and the district offsets; and the PEM files of a TLS
//! connection (to the broker or to etcd), read when the config is loaded.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Why a state file could not be read or written. A corrupt file stops the start-up: silently
/// starting over (sequence numbers at 1, alarms forgotten) would be worse than asking.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path} is corrupt ({detail}); fix or remove it")]
    Corrupt { path: String, detail: String },
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: io::Error },
}

impl StateError {
    pub fn corrupt(path: &Path, detail: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            path: path.display().to_string(),
            detail: detail.to_string(),
        }
    }

    pub fn read(path: &Path, source: io::Error) -> Self {
        Self::Read {
            path: path.display().to_string(),
            source,
        }
    }

    pub fn write(path: &Path, source: io::Error) -> Self {
        Self::Write {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Reads the JSON state file at `path`; `None` if there is none.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| StateError::corrupt(path, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StateError::read(path, e)),
    }
}

/// Runs `f`, a disk operation its caller must wait for (an fsync before an acknowledgement
/// or a command), without blocking an async worker: on the multi-threaded runtime the
/// worker's other tasks are handed to another thread while `f` runs
/// (`tokio::task::block_in_place`); outside a runtime, or on a current-thread runtime (tests),
/// `f` runs inline. The caller keeps its order: it continues only once `f` has returned.
pub fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Replaces `path` with `body` so that a crash leaves the old or the new content, never a
/// mix: written to `path` + `.tmp`, fsynced if `sync`, then renamed over `path`. Off the async
/// workers ([`off_runtime`]).
pub fn replace(path: &Path, body: &[u8], sync: bool) -> io::Result<()> {
    off_runtime(|| replace_now(path, body, sync))
}

fn replace_now(path: &Path, body: &[u8], sync: bool) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp)?;
    f.write_all(body)?;
    if sync {
        f.sync_data()?;
    }
    drop(f);
    std::fs::rename(&tmp, path)
}

/// fsyncs `file` on tokio's blocking pool (inline when called outside a runtime) and drops
/// it; a failure is logged as an alarm naming `path`. For fsyncs whose caller must not wait:
/// a full spool segment, the command-number log under the `interval` policy.
pub fn sync_detached(file: File, path: PathBuf) {
    let sync = move || {
        if let Err(e) = file.sync_data() {
            tracing::error!(error = %e, file = %path.display(), "ALARM fsync failed.");
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn_blocking(sync);
        }
        Err(_) => sync(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_blocking_disk_operation_leaves_the_worker_to_other_tasks() {
        // One worker: while it waits in `off_runtime`, a timer task still runs.
        let ticked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let t = ticked.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            t.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        tokio::task::yield_now().await;
        let seen = off_runtime(|| {
            let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while !ticked.load(std::sync::atomic::Ordering::SeqCst) {
                assert!(
                    std::time::Instant::now() < until,
                    "the other task never ran"
                );
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            true
        });
        assert!(seen);
        // Outside a runtime and on a current-thread one it simply runs.
        assert_eq!(std::thread::spawn(|| off_runtime(|| 7)).join().unwrap(), 7);
    }

    #[test]
    fn replace_writes_the_new_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        replace(&path, b"one", false).unwrap();
        replace(&path, b"two", true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }
}

/// PEM contents for a TLS connection: the CA that verifies the server, and the client's
/// certificate and key when the server asks for one.
#[derive(Clone)]
pub struct TlsPem {
    pub ca_pem: Vec<u8>,
    pub client_auth: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPem")
            .field("ca_pem_bytes", &self.ca_pem.len())
            .field("client_auth", &self.client_auth.is_some())
            .finish()
    }
}
