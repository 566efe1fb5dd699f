//! The spool's files on disk: segment file names, the cursor record (segment, offset and a
//! check of both, fixed width, overwritten in place), tail repair after a crash and line
//! counting. [`super::spool`] keeps the segments in order and appends to them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub(super) fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("seg-{id:016}.lp"))
}

pub(super) fn read_cursor(dir: &Path) -> io::Result<Option<(u64, u64)>> {
    match fs::read_to_string(dir.join("cursor")) {
        Ok(s) => {
            let mut it = s.split_whitespace().map(str::parse::<u64>);
            match (it.next(), it.next(), it.next(), it.next()) {
                (Some(Ok(seg)), Some(Ok(off)), Some(Ok(check)), None)
                    if check == cursor_check(seg, off) =>
                {
                    Ok(Some((seg, off)))
                }
                // The older format, without the check: written by temp file and rename.
                (Some(Ok(seg)), Some(Ok(off)), None, None) => Ok(Some((seg, off))),
                _ => {
                    tracing::warn!(cursor = ?s, dir = %dir.display(),
                        "Unreadable spool cursor: the spool is written again from its oldest segment.");
                    Ok(None)
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Overwrites the cursor record in place: fixed width, so no older record shows through,
/// and a check of both numbers, so a record torn by power loss (old digits mixed with new,
/// which could point past unconfirmed lines) reads as unreadable, not as a wrong position.
pub(super) fn write_cursor(file: &File, seg: u64, off: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let check = cursor_check(seg, off);
    file.write_all_at(format!("{seg:020} {off:020} {check:020}\n").as_bytes(), 0)
}

/// A hash of a cursor's two numbers (FNV-1a over their bytes).
pub(super) fn cursor_check(seg: u64, off: u64) -> u64 {
    seg.to_le_bytes()
        .iter()
        .chain(&off.to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// Opens (or creates) `dir/cursor` for in-place updates and records `(seg, off)` in it.
pub(super) fn open_cursor(dir: &Path, seg: u64, off: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("cursor"))?;
    write_cursor(&file, seg, off)?;
    // A record of the older, variable-width format was shorter: nothing to cut, but a file
    // of any other origin is trimmed to the one record.
    file.set_len(CURSOR_LEN)?;
    Ok(file)
}

/// Bytes read from a segment at a time by [`super::spool::Reader::next_batch`] (more for a longer line).
pub(super) const READ_CHUNK: usize = 256 << 10;

/// Bytes of a cursor record: three 20-digit numbers, two spaces and a newline.
pub(super) const CURSOR_LEN: u64 = 63;

/// Cuts a torn last line (a crash in the middle of a write) off `path`; returns the new length.
pub(super) fn repair_tail(path: &Path) -> io::Result<u64> {
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    // Look back in chunks for the last newline.
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf[..n])?;
        if let Some(pos) = buf[..n].iter().rposition(|b| *b == b'\n') {
            let keep = start + pos as u64 + 1;
            if keep != len {
                f.set_len(keep)?;
            }
            return Ok(keep);
        }
        end = start;
    }
    f.set_len(0)?;
    Ok(0)
}

pub(super) fn count_lines(path: &Path, from: u64) -> io::Result<u64> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(from))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0;
    loop {
        let r = f.read(&mut buf)?;
        if r == 0 {
            return Ok(n);
        }
        n += buf[..r].iter().filter(|b| **b == b'\n').count() as u64;
    }
}
