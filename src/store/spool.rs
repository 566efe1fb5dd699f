//! The durable spool: every accepted point is appended to segment files on local disk before
//! it counts as accepted, and drained to the database in order.
//!
//! Sits between [`super::StoreHandle::submit`] (ingest and control append synchronously: a
//! `write` to the page cache, a few µs) and the writer task (which reads batches with a
//! [`Reader`], writes them and commits). Layout of `dir`:
//!
//! * `seg-{id:016}.lp`: line protocol, one point per `\n`-terminated line, appended in order.
//!   A new segment starts at `segment_bytes` and at every start of the engine. A torn last
//!   line (crash mid-write) is cut off on open.
//! * `cursor`: `{segment id} {byte offset} {check}` of the first line not yet confirmed by
//!   the database, a fixed-width record overwritten in place after every confirmed batch (one
//!   `pwrite`: a temp file and a rename per batch cost the writer a quarter of its CPU at 40
//!   batches a second, ext4 flushing on rename). A segment is deleted once every line in it
//!   is confirmed. A cursor that cannot be read (a torn write on power loss) means "from the
//!   oldest segment": lines are written again, never skipped.
//!
//! Durability: an appended point survives a process crash (SIGKILL) under every fsync policy,
//! because it is in the kernel once `append` returns. On power loss, `always` loses nothing,
//! `interval` loses at most the last interval, `never` whatever the OS had not written.
//! Exactly-once: a batch confirmed but not yet recorded in `cursor` when the engine dies is
//! written again on restart: the same series, timestamp and value, which InfluxDB overwrites
//! (one point per series and timestamp).
//!
//! Bounded disk: past `max_bytes` an append is refused ([`SpoolError::Full`]); the caller counts
//! it and raises the alarm. Nothing is ever dropped silently.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::segment::{
    count_lines, open_cursor, read_cursor, repair_tail, seg_path, write_cursor, READ_CHUNK,
};

/// When appended data is forced to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fsync after every append: nothing lost on power failure, slowest.
    Always,
    /// fsync at most every interval by a background task (default 1 s).
    Interval(Duration),
    /// Leave it to the operating system.
    Never,
}

#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    pub max_bytes: u64,
    pub fsync: FsyncPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool is full ({bytes} bytes of {max} allowed); point refused")]
    Full { bytes: u64, max: u64 },
    #[error("spool I/O error: {0}")]
    Io(#[from] io::Error),
}

/// How far the writer got, for whoever waits on it (a cluster partition's session holds
/// its acknowledgements to the broker until its points are written: `ingest::event_loop`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Lines confirmed by the database (or set aside as dead letters) since the spool was
    /// opened: every line at a [`Spool::position`] up to this one is written.
    pub written: u64,
    /// The last write failed and the writer is retrying: the database is out.
    pub failing: bool,
}

/// Depth figures for logs and the status view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    pub points: u64,
    pub bytes: u64,
    pub segments: usize,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    len: u64,
}

#[derive(Debug)]
struct Inner {
    active: File,
    /// Every segment on disk, oldest first; the last one is the active one.
    segments: VecDeque<Segment>,
    /// Bytes on disk from the cursor on.
    pending_bytes: u64,
    unsynced: bool,
}

/// The spool. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Spool {
    cfg: SpoolConfig,
    inner: Mutex<Inner>,
    /// Lines appended and not yet confirmed.
    pending_points: AtomicU64,
    appended: tokio::sync::Notify,
    wake_at: AtomicU64,
    /// Lines appended since the spool was opened, counting those found in it then.
    appended_lines: AtomicU64,
    progress: watch::Sender<Progress>,
    /// Someone waits for what is in the spool: the writer writes it without waiting for its
    /// flush interval.
    hurry: AtomicBool,
}

impl Spool {
    /// Opens (or creates) the spool in `cfg.dir`, repairs a torn tail, and starts a new
    /// active segment after the existing ones.
    pub fn open(cfg: SpoolConfig) -> Result<Arc<Self>, SpoolError> {
        fs::create_dir_all(&cfg.dir)?;
        let mut ids: Vec<u64> = fs::read_dir(&cfg.dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix("seg-")?.strip_suffix(".lp")?.parse().ok()
            })
            .collect();
        ids.sort_unstable();
        let cursor = read_cursor(&cfg.dir)?;
        let mut segments = VecDeque::new();
        let (mut pending_bytes, mut pending_points) = (0, 0);
        for id in ids {
            let path = seg_path(&cfg.dir, id);
            let len = repair_tail(&path)?;
            let from = match cursor {
                Some((cs, _)) if id < cs => {
                    // Fully confirmed but not yet deleted when the engine stopped.
                    fs::remove_file(&path)?;
                    continue;
                }
                Some((cs, off)) if id == cs => off.min(len),
                _ => 0,
            };
            pending_bytes += len - from;
            pending_points += count_lines(&path, from)?;
            segments.push_back(Segment { id, len });
        }
        let next_id = segments.back().map_or(1, |s| s.id + 1);
        let active = OpenOptions::new()
            .create(true)
            .append(true)
            .open(seg_path(&cfg.dir, next_id))?;
        segments.push_back(Segment {
            id: next_id,
            len: 0,
        });
        if cursor.is_none_or(|(cs, _)| !segments.iter().any(|s| s.id == cs)) {
            // No valid cursor: start at the oldest segment present.
            let first = segments.front().map_or(next_id, |s| s.id);
            open_cursor(&cfg.dir, first, 0)?;
        }
        Ok(Arc::new(Self {
            cfg,
            inner: Mutex::new(Inner {
                active,
                segments,
                pending_bytes,
                unsynced: false,
            }),
            pending_points: AtomicU64::new(pending_points),
            appended: tokio::sync::Notify::new(),
            wake_at: AtomicU64::new(1),
            appended_lines: AtomicU64::new(pending_points),
            progress: watch::Sender::new(Progress::default()),
            hurry: AtomicBool::new(false),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn config(&self) -> &SpoolConfig {
        &self.cfg
    }

    /// Appends `body`: `lines` complete, `\n`-terminated lines. Durable against a process
    /// crash when it returns `Ok`.
    pub fn append(&self, body: &[u8], lines: u64) -> Result<(), SpoolError> {
        debug_assert!(body.ends_with(b"\n"));
        let mut inner = self.lock();
        let len = body.len() as u64;
        if inner.pending_bytes + len > self.cfg.max_bytes {
            return Err(SpoolError::Full {
                bytes: inner.pending_bytes,
                max: self.cfg.max_bytes,
            });
        }
        inner.active.write_all(body)?;
        if self.cfg.fsync == FsyncPolicy::Always {
            // Durable before it returns (ingest acknowledges after), but no async worker
            // waits for the disk meanwhile.
            crate::files::off_runtime(|| inner.active.sync_data())?;
        } else {
            inner.unsynced = true;
        }
        inner.pending_bytes += len;
        // Under the lock: positions follow the order of the lines in the files.
        self.appended_lines.fetch_add(lines, Ordering::Relaxed);
        let seg_len = {
            let seg = inner.segments.back_mut().expect("an active segment");
            seg.len += len;
            seg.len
        };
        if seg_len >= self.cfg.segment_bytes {
            let id = inner.segments.back().map_or(1, |s| s.id + 1);
            let next = OpenOptions::new()
                .create(true)
                .append(true)
                .open(seg_path(&self.cfg.dir, id))?;
            let full = std::mem::replace(&mut inner.active, next);
            inner.segments.push_back(Segment { id, len: 0 });
            if self.cfg.fsync != FsyncPolicy::Never {
                // Off the appending task: ingest must not wait for the disk.
                crate::files::sync_detached(full, seg_path(&self.cfg.dir, id - 1));
            }
        }
        drop(inner);
        let before = self.pending_points.fetch_add(lines, Ordering::Relaxed);
        // Wake the writer only when the spool stops being empty or reaches its batch size:
        // in between its flush timer serves (a wake-up per append cost a futex call and a
        // task switch per reading).
        let at = self.wake_at.load(Ordering::Relaxed);
        if before == 0 || (before < at && before + lines >= at) {
            self.appended.notify_one();
        }
        Ok(())
    }

    /// fsyncs the active segment if something was appended since the last call.
    ///
    /// The fsync runs on a duplicate of the file handle, outside the lock: appends (called from
    /// the ingest and poller tasks) never wait for the disk.
    pub fn sync(&self) -> io::Result<()> {
        let file = {
            let mut inner = self.lock();
            if !inner.unsynced {
                return Ok(());
            }
            inner.unsynced = false;
            inner.active.try_clone()
        };
        let r = file.and_then(|f| f.sync_data());
        if r.is_err() {
            self.lock().unsynced = true;
        }
        r
    }

    pub fn depth(&self) -> Depth {
        let inner = self.lock();
        Depth {
            points: self.pending_points.load(Ordering::Relaxed),
            bytes: inner.pending_bytes,
            segments: inner.segments.len(),
        }
    }

    /// Resolves after the next append that made the spool non-empty or brought it to the
    /// [`Self::wake_writer_at`] depth (or at once if one happened since the last wait).
    pub async fn appended(&self) {
        self.appended.notified().await;
    }

    /// The depth, in points, at which an append wakes [`Self::appended`] besides the first
    /// append into an empty spool (the writer sets its batch size).
    pub fn wake_writer_at(&self, points: u64) {
        self.wake_at.store(points.max(1), Ordering::Relaxed);
    }

    /// The position of the last line appended so far: once [`Progress::written`] reaches it,
    /// every line appended before this call is in the database.
    pub fn position(&self) -> u64 {
        let _inner = self.lock();
        self.appended_lines.load(Ordering::Relaxed)
    }

    /// The writer's progress, to wait on.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// The writer's side: whether the database is out (a write failed and is being retried).
    pub fn set_failing(&self, failing: bool) {
        self.progress.send_if_modified(|p| {
            let changed = p.failing != failing;
            p.failing = failing;
            changed
        });
    }

    /// Asks the writer to write what is in the spool now rather than at its flush interval.
    pub fn hurry(&self) {
        if !self.hurry.swap(true, Ordering::Relaxed) {
            self.appended.notify_one();
        }
    }

    /// The writer's side: whether someone asked it to hurry since it last wrote.
    pub fn hurried(&self) -> bool {
        self.hurry.load(Ordering::Relaxed)
    }

    /// The writer's side: it writes now, so the request is served.
    pub fn take_hurry(&self) -> bool {
        self.hurry.swap(false, Ordering::Relaxed)
    }

    /// A reader positioned at the cursor.
    pub fn reader(self: &Arc<Self>) -> Result<Reader, SpoolError> {
        let (seg, off) = read_cursor(&self.cfg.dir)?.unwrap_or((1, 0));
        Ok(Reader {
            spool: self.clone(),
            seg,
            read_pos: off,
            file: None,
            cursor: open_cursor(&self.cfg.dir, seg, off)?,
        })
    }
}

/// A batch read from the spool: `lines` complete lines in `body`, ending at `end`.
#[derive(Debug)]
pub struct Batch {
    pub body: Vec<u8>,
    pub lines: u64,
    end: (u64, u64),
}

/// Reads unconfirmed lines in order and confirms them. One reader per spool (the writer task).
#[derive(Debug)]
pub struct Reader {
    spool: Arc<Spool>,
    seg: u64,
    read_pos: u64,
    file: Option<File>,
    /// `dir/cursor`, open for in-place updates.
    cursor: File,
}

/// A segment as the reader finds it: still there (its length, whether appends go to it, the
/// next one), or gone (confirmed and deleted) with the next one if any.
enum Located {
    Here {
        len: u64,
        active: bool,
        next: Option<u64>,
    },
    Gone {
        next: Option<u64>,
    },
}

/// The end of the last whole line among the first `room` lines of `chunk` (0: none), and how
/// many lines that is.
fn whole_lines(chunk: &[u8], room: usize) -> (usize, usize) {
    let (mut end, mut found) = (0, 0);
    for (i, b) in chunk.iter().enumerate() {
        if found >= room {
            break;
        }
        if *b == b'\n' {
            found += 1;
            end = i + 1;
        }
    }
    (end, found)
}

impl Reader {
    /// Up to `max_lines` lines after the last batch handed out (not necessarily confirmed).
    /// `None` when nothing new is there.
    pub fn next_batch(
        &mut self,
        max_lines: usize,
        max_bytes: usize,
    ) -> Result<Option<Batch>, SpoolError> {
        let mut body = Vec::new();
        let mut lines = 0u64;
        let mut pos = (self.seg, self.read_pos);
        // Read in chunks: a backlog's whole segment (up to `max_bytes`) was read to keep
        // `max_lines` of it (8 MiB read and zeroed for a 1.2 MB batch).
        let mut chunk_cap = READ_CHUNK;
        loop {
            let (seg_len, is_active, next_seg) = match self.locate(pos.0) {
                Located::Here { len, active, next } => (len, active, next),
                Located::Gone { next: Some(n) } => {
                    pos = (n, 0);
                    self.file = None;
                    continue;
                }
                Located::Gone { next: None } => break,
            };
            if self.file.is_none() || pos.0 != self.seg {
                self.file = Some(File::open(seg_path(&self.spool.cfg.dir, pos.0))?);
                self.seg = pos.0;
            }
            if pos.1 < seg_len {
                let remaining = (seg_len - pos.1) as usize;
                let want = remaining
                    .min(max_bytes.saturating_sub(body.len()).max(1))
                    .min(chunk_cap);
                let file = self.file.as_mut().expect("opened above");
                file.seek(SeekFrom::Start(pos.1))?;
                let mut chunk = vec![0u8; want];
                file.read_exact(&mut chunk)?;
                // Whole lines only, at most max_lines in total.
                let room = max_lines.saturating_sub(lines as usize);
                let (end, found) = whole_lines(&chunk, room);
                lines += found as u64;
                if end == 0 && want == chunk_cap && want < remaining && chunk_cap < max_bytes {
                    // A line longer than the chunk: read it again with room for it.
                    chunk_cap *= 2;
                    continue;
                }
                body.extend_from_slice(&chunk[..end]);
                pos.1 += end as u64;
                if end == 0 || lines as usize >= max_lines || body.len() >= max_bytes {
                    break;
                }
            }
            if pos.1 >= seg_len {
                match (is_active, next_seg) {
                    (false, Some(n)) => {
                        pos = (n, 0);
                        self.file = None;
                    }
                    _ => break,
                }
            }
        }
        self.read_pos = pos.1;
        self.seg = pos.0;
        if lines == 0 {
            return Ok(None);
        }
        Ok(Some(Batch {
            body,
            lines,
            end: pos,
        }))
    }

    /// Where segment `seg` stands now.
    fn locate(&self, seg: u64) -> Located {
        let inner = self.spool.lock();
        let next = inner.segments.iter().find(|s| s.id > seg).map(|s| s.id);
        match inner.segments.iter().find(|s| s.id == seg) {
            Some(s) => Located::Here {
                len: s.len,
                active: inner.segments.back().is_some_and(|b| b.id == s.id),
                next,
            },
            None => Located::Gone { next },
        }
    }

    /// Records that every line up to the end of `batch` is in the database: moves the cursor,
    /// deletes fully confirmed segments.
    pub fn commit(&mut self, batch: &Batch) -> Result<(), SpoolError> {
        // In the database already, whether or not the cursor can be recorded.
        self.spool
            .progress
            .send_modify(|p| p.written += batch.lines);
        let (seg, off) = batch.end;
        write_cursor(&self.cursor, seg, off)?;
        let mut inner = self.spool.lock();
        while inner.segments.front().is_some_and(|s| s.id < seg) {
            if let Some(s) = inner.segments.pop_front() {
                let _ = fs::remove_file(seg_path(&self.spool.cfg.dir, s.id));
            }
        }
        let on_disk: u64 = inner.segments.iter().map(|s| s.len).sum();
        inner.pending_bytes = on_disk.saturating_sub(off);
        drop(inner);
        let _ = self
            .spool
            .pending_points
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(batch.lines))
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::segment::{cursor_check, CURSOR_LEN};
    use std::path::Path;

    fn cfg(dir: &Path, segment_bytes: u64, max_bytes: u64) -> SpoolConfig {
        SpoolConfig {
            dir: dir.to_path_buf(),
            segment_bytes,
            max_bytes,
            fsync: FsyncPolicy::Never,
        }
    }

    fn lines(range: std::ops::Range<u32>) -> Vec<u8> {
        range
            .flat_map(|i| format!("m,station=s v={i} {i}\n").into_bytes())
            .collect()
    }

    #[test]
    fn the_writer_is_woken_when_the_spool_stops_being_empty_or_reaches_a_batch() {
        use futures::FutureExt;
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(cfg(dir.path(), 1 << 20, 1 << 30)).unwrap();
        spool.wake_writer_at(10);
        let woken = |s: &Spool| s.appended().now_or_never().is_some();
        assert!(!woken(&spool));
        spool.append(&lines(0..1), 1).unwrap();
        assert!(woken(&spool), "first point into an empty spool");
        spool.append(&lines(1..6), 5).unwrap();
        spool.append(&lines(6..9), 3).unwrap();
        assert!(
            !woken(&spool),
            "9 points, below the batch: the flush timer serves"
        );
        spool.append(&lines(9..12), 3).unwrap();
        assert!(woken(&spool), "the batch size was reached");
        spool.append(&lines(12..13), 1).unwrap();
        assert!(
            !woken(&spool),
            "already past the batch: the writer is busy anyway"
        );
        let mut reader = spool.reader().unwrap();
        assert_eq!(drain(&mut reader).len(), 13);
    }

    fn drain(reader: &mut Reader) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(b) = reader.next_batch(7, 1 << 20).unwrap() {
            out.extend(
                String::from_utf8(b.body.clone())
                    .unwrap()
                    .lines()
                    .map(str::to_owned),
            );
            reader.commit(&b).unwrap();
        }
        out
    }

    #[test]
    fn everything_appended_is_read_once_in_order_across_segments_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(cfg(dir.path(), 200, 1 << 30)).unwrap();
        for k in 0..5 {
            spool.append(&lines(k * 10..k * 10 + 10), 10).unwrap();
        }
        assert!(spool.depth().segments > 3, "small segments rotate");
        let mut reader = spool.reader().unwrap();
        let b = reader.next_batch(10, 1 << 20).unwrap().unwrap();
        assert_eq!(b.lines, 10);
        reader.commit(&b).unwrap();
        // Read but not committed: must come again after a restart.
        let _uncommitted = reader.next_batch(10, 1 << 20).unwrap().unwrap();
        drop((reader, spool));

        let spool = Spool::open(cfg(dir.path(), 200, 1 << 30)).unwrap();
        assert_eq!(spool.depth().points, 40);
        spool.append(&lines(50..60), 10).unwrap();
        let mut reader = spool.reader().unwrap();
        let got = drain(&mut reader);
        let want: Vec<String> = (10..60).map(|i| format!("m,station=s v={i} {i}")).collect();
        assert_eq!(got, want);
        assert_eq!(
            spool.depth(),
            Depth {
                points: 0,
                bytes: 0,
                segments: 1
            }
        );
        let files = fs::read_dir(dir.path()).unwrap().filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("seg-")
        });
        assert_eq!(files.count(), 1, "confirmed segments are deleted");
    }

    #[test]
    fn batches_spanning_read_chunks_and_a_line_longer_than_a_chunk_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(cfg(dir.path(), 64 << 20, 1 << 30)).unwrap();
        let pad = "x".repeat(100);
        let line = |i: usize| format!("m,station=s v={i},pad=\"{pad}\" {i}\n");
        let body: String = (0..6000).map(line).collect();
        assert!(body.len() > 2 * READ_CHUNK);
        spool.append(body.as_bytes(), 6000).unwrap();
        let long = format!("m,station=s pad=\"{}\" 6000\n", "y".repeat(READ_CHUNK * 3));
        spool.append(long.as_bytes(), 1).unwrap();
        spool.append(line(6001).as_bytes(), 1).unwrap();

        let mut reader = spool.reader().unwrap();
        let b = reader.next_batch(5000, 8 << 20).unwrap().unwrap();
        assert_eq!(b.lines, 5000);
        let want: String = (0..5000).map(line).collect();
        assert!(
            b.body == want.as_bytes(),
            "the first 5,000 lines, whole and in order"
        );
        reader.commit(&b).unwrap();
        let b = reader.next_batch(5000, 8 << 20).unwrap().unwrap();
        assert_eq!(b.lines, 1002, "the rest, the long line included");
        assert!(b.body.ends_with(format!("{long}{}", line(6001)).as_bytes()));
        reader.commit(&b).unwrap();
        assert!(reader.next_batch(5000, 8 << 20).unwrap().is_none());
    }

    #[test]
    fn the_cursor_is_one_record_overwritten_in_place_and_a_torn_one_replays_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cursor");
        // A cursor of the older, variable-width format is read and rewritten in the new one.
        let spool = Spool::open(cfg(dir.path(), 1 << 20, 1 << 30)).unwrap();
        spool.append(&lines(0..30), 30).unwrap();
        let mut reader = spool.reader().unwrap();
        for _ in 0..3 {
            let b = reader.next_batch(10, 1 << 20).unwrap().unwrap();
            reader.commit(&b).unwrap();
            let text = fs::read_to_string(&path).unwrap();
            assert_eq!(text.len() as u64, CURSOR_LEN, "{text:?}");
            let (seg, off) = read_cursor(dir.path()).unwrap().unwrap();
            assert_eq!((seg, off), b.end);
        }
        drop((reader, spool));
        let old_format = fs::read_to_string(&path).unwrap();
        let (seg, off) = read_cursor(dir.path()).unwrap().unwrap();
        fs::write(&path, format!("{seg} {off}\n")).unwrap();
        let spool = Spool::open(cfg(dir.path(), 1 << 20, 1 << 30)).unwrap();
        assert_eq!(spool.depth().points, 0, "the short record is understood");
        spool.append(&lines(30..35), 5).unwrap();
        let mut reader = spool.reader().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), old_format);
        assert_eq!(drain(&mut reader).len(), 5);
        drop((reader, spool));

        // A torn record (power loss mid-write): nothing is skipped, the spool is read again
        // from its oldest segment. Torn as garbage, and torn as valid-looking digits (the
        // new record's first half over the old one's second) that the check catches.
        let spool = Spool::open(cfg(dir.path(), 1 << 20, 1 << 30)).unwrap();
        spool.append(&lines(35..40), 5).unwrap();
        drop(spool);
        fs::write(&path, "0000000000\0\0\0 12").unwrap();
        assert_eq!(read_cursor(dir.path()).unwrap(), None);
        let (seg, off) = (7u64, 4_000u64);
        let new = format!("{seg:020} {off:020} {:020}\n", cursor_check(seg, off));
        let old = format!("{:020} {:020} {:020}\n", 6, 100, cursor_check(6, 100));
        fs::write(&path, format!("{}{}", &new[..30], &old[30..])).unwrap();
        assert_eq!(read_cursor(dir.path()).unwrap(), None, "torn digits");
        fs::write(&path, &new).unwrap();
        assert_eq!(read_cursor(dir.path()).unwrap(), Some((seg, off)));
        fs::write(&path, format!("{}{}", &new[..30], &old[30..])).unwrap();
        let spool = Spool::open(cfg(dir.path(), 1 << 20, 1 << 30)).unwrap();
        let mut reader = spool.reader().unwrap();
        let got = drain(&mut reader);
        assert!(
            got.ends_with(&["m,station=s v=39 39".to_string()]) && got.len() >= 5,
            "{got:?}"
        );
    }

    #[test]
    fn a_torn_last_line_is_cut_off_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(cfg(dir.path(), 1 << 20, 1 << 30)).unwrap();
        spool.append(&lines(0..3), 3).unwrap();
        drop(spool);
        let seg = seg_path(dir.path(), 1);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(b"m,station=s v=99 9").unwrap(); // crash mid-line
        drop(f);
        let spool = Spool::open(cfg(dir.path(), 1 << 20, 1 << 30)).unwrap();
        assert_eq!(spool.depth().points, 3);
        let got = drain(&mut spool.reader().unwrap());
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|l| !l.contains("v=99")));
    }

    #[test]
    fn a_full_spool_refuses_and_accepts_again_once_drained() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(cfg(dir.path(), 1 << 20, 100)).unwrap();
        let one = lines(0..1);
        let mut accepted = 0;
        while spool.append(&one, 1).is_ok() {
            accepted += 1;
        }
        assert!(matches!(
            spool.append(&one, 1),
            Err(SpoolError::Full { .. })
        ));
        assert_eq!(spool.depth().points, accepted);
        let mut r = spool.reader().unwrap();
        assert_eq!(drain(&mut r).len() as u64, accepted);
        spool.append(&one, 1).unwrap();
    }
}
