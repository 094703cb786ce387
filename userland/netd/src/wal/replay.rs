//! Reading the log back: the scan, the torn-tail cut, and the refusal when valid
//! records lie beyond a bad one.

use super::*;

/// What replay found.
#[derive(Debug, Default)]
pub struct Replay {
    /// The jobs.
    pub snapshot: Snapshot,
    /// Records read.
    pub records: usize,
    /// Bytes of a torn or corrupt tail that were cut (zeroed) after the log's end.
    pub truncated_bytes: u64,
    /// Offset of the log's end (where the next record goes).
    pub end: u64,
    /// Records that did not fit (logged, ignored).
    pub warnings: Vec<String>,
}

/// Walks the records of `data` from the start, handing each decoded one to `each`;
/// returns the offset of the log's end: the first header that is all zeros (the
/// preallocated tail), short, over [`MAX_RECORD`], fails its CRC or does not decode.
fn scan(data: &[u8], mut each: impl FnMut(Record)) -> usize {
    let mut pos = 0usize;
    while let Some(hdr) = data.get(pos..pos.saturating_add(HEADER)) {
        let mut len4 = [0u8; 4];
        let mut crc4 = [0u8; 4];
        len4.copy_from_slice(hdr.get(..4).unwrap_or(&[0; 4]));
        crc4.copy_from_slice(hdr.get(4..8).unwrap_or(&[0; 4]));
        let len = u32::from_le_bytes(len4) as usize;
        if len == 0 || len > MAX_RECORD {
            break;
        }
        let start = pos.saturating_add(HEADER);
        let Some(body) = data.get(start..start.saturating_add(len)) else {
            break;
        };
        if crc32fast::hash(body) != u32::from_le_bytes(crc4) {
            break;
        }
        let Ok(rec) = postcard::from_bytes::<Record>(body) else {
            break;
        };
        each(rec);
        pos = start.saturating_add(len);
    }
    pos
}

/// Whether a valid record starts at `pos`: a plausible length, its CRC, a decodable
/// body. Returns its end.
pub(crate) fn record_at(data: &[u8], pos: usize) -> Option<(usize, Record)> {
    let hdr = data.get(pos..pos.checked_add(HEADER)?)?;
    let len = u32::from_le_bytes(hdr.get(..4)?.try_into().ok()?) as usize;
    if len == 0 || len > MAX_RECORD {
        return None;
    }
    let crc = u32::from_le_bytes(hdr.get(4..8)?.try_into().ok()?);
    let start = pos + HEADER;
    let body = data.get(start..start.checked_add(len)?)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let rec = postcard::from_bytes::<Record>(body).ok()?;
    Some((start + len, rec))
}

/// How far past the log's end a torn last commit can leave valid records: a power
/// loss in the middle of one multi-block write may persist later blocks of it and not
/// earlier ones. Valid records within this window were never acknowledged (the write
/// that held them did not finish); one beyond it belongs to an earlier, acknowledged
/// commit, so the bad record is corruption in the middle of the log.
pub const TORN_WINDOW: usize = 8 << 20;

/// The offset of the first valid record more than [`TORN_WINDOW`] bytes after `end`
/// (the log's end), if any.
pub(crate) fn valid_after(data: &[u8], end: usize) -> Option<usize> {
    (end.saturating_add(TORN_WINDOW)..data.len().saturating_sub(HEADER))
        .find(|&p| data.get(p) != Some(&0) && record_at(data, p).is_some())
}

/// Zeroes any non-zero bytes after the log's end (a torn or corrupt tail) and syncs;
/// returns how many bytes that covered. The zeros stay as preallocated space.
fn cut_tail(f: &File, data: &[u8], end: usize) -> Result<u64, WalError> {
    use std::os::unix::fs::FileExt;
    let tail = data.get(end..).unwrap_or_default();
    let Some(last) = tail.iter().rposition(|&b| b != 0) else {
        return Ok(0);
    };
    let n = last + 1;
    f.write_all_at(&vec![0u8; n], end as u64).map_err(io)?;
    f.sync_data().map_err(io)?;
    Ok(n as u64)
}

/// Reads `path`, cutting a torn or corrupt tail in place (a missing file is an
/// empty log).
pub fn replay(path: &Path) -> Result<Replay, WalError> {
    Ok(load(path, false)?.0)
}

/// Replays the log at `path` (creating it if `create`); also returns the file's
/// size and the bytes of the log's last partial block (for the writer).
pub(crate) fn load(path: &Path, create: bool) -> Result<(Replay, u64, Vec<u8>), WalError> {
    let mut f = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Replay::default(), 0, Vec::new()))
        }
        Err(e) => return Err(io(e)),
    };
    let mut data = Vec::new();
    f.read_to_end(&mut data).map_err(io)?;
    let mut out = Replay::default();
    let end = scan(&data, |rec| {
        if let Some(w) = out.snapshot.apply(&rec) {
            out.warnings.push(w);
        }
        out.records = out.records.saturating_add(1);
    });
    // A torn tail (a crash or power loss mid-commit) leaves nothing acknowledged after
    // it, and at most one commit's worth of unacknowledged records; valid records
    // further on mean corruption in the middle, and cutting there would drop
    // acknowledged jobs.
    if let Some(next) = valid_after(&data, end) {
        return Err(WalError::Corrupt {
            offset: end as u64,
            next: next as u64,
        });
    }
    out.truncated_bytes = cut_tail(&f, &data, end)?;
    out.end = end as u64;
    let tail = data
        .get(end - end % BLOCK..end)
        .unwrap_or_default()
        .to_vec();
    Ok((out, data.len() as u64, tail))
}
