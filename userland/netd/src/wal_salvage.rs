//! `havnctl wal salvage`: the operator's way past [`WalError::Corrupt`]. Keeps every
//! valid record of the log, wherever it starts (resynchronising byte by byte past
//! corrupt regions), and writes them back as a compacted log; the original is kept
//! beside it as `wal.log.corrupt`.

use crate::wal::{encode, record_at, Snapshot, WalError};
use std::path::Path;

/// What salvage kept and dropped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Salvaged {
    /// Valid records found.
    pub records: usize,
    /// Corrupt regions skipped, as (offset, bytes).
    pub skipped: Vec<(u64, u64)>,
    /// Jobs in the rewritten log.
    pub jobs: usize,
    /// Records that did not fit (e.g. an outcome whose Accepted record was lost).
    pub warnings: Vec<String>,
}

fn io(e: std::io::Error) -> WalError {
    WalError::Io(e.to_string())
}

/// Salvages the log at `path` in place (see the module docs).
pub fn salvage(path: &Path) -> Result<Salvaged, WalError> {
    let data = std::fs::read(path).map_err(io)?;
    let mut out = Salvaged::default();
    let mut snap = Snapshot::default();
    let mut pos = 0usize;
    let mut bad_from: Option<usize> = None;
    while pos < data.len() {
        if let Some((next, rec)) = record_at(&data, pos) {
            if let Some(b) = bad_from.take() {
                out.skipped.push((b as u64, (pos - b) as u64));
            }
            if let Some(w) = snap.apply(&rec) {
                out.warnings.push(w);
            }
            out.records += 1;
            pos = next;
        } else {
            if data.get(pos) != Some(&0) && bad_from.is_none() {
                bad_from = Some(pos);
            }
            pos += 1;
        }
    }
    let mut buf = Vec::new();
    for rec in snap.records() {
        encode(&rec, &mut buf)?;
    }
    out.jobs = snap.jobs.len();
    let backup = path.with_extension("log.corrupt");
    std::fs::copy(path, &backup).map_err(io)?;
    crate::wal::replace_log(&path.with_extension("salvage"), path, &buf).map_err(|e| match e {
        crate::wal::Replace::Before(e) | crate::wal::Replace::After(e) => e,
    })?;
    Ok(out)
}
