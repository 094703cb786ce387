//! Slashing protection: one job id → one receipt hash, ever.
//!
//! An append-only file of `hex(job_id) hex(receipt_hash)\n` lines; each record is
//! fsynced before [`RecordStore::check_and_record`] returns, so a signature is only
//! produced after the record is durable. A torn last line (crash mid-write) is
//! dropped on open: its signature was never released.

use crate::error::{io, AgentError};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Outcome of a check-and-record that allows signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// First receipt for this job; now recorded.
    New,
    /// The same receipt was recorded before: re-signing it is harmless.
    Repeat,
}

/// Why signing is not safe.
#[derive(Debug, thiserror::Error)]
pub enum NotSafe {
    /// A different receipt for this job was already signed.
    #[error("job {job_id}: already signed receipt {existing}, refusing {attempted}")]
    ConflictingReceipt {
        /// Job id (hex).
        job_id: String,
        /// Recorded receipt hash (hex).
        existing: String,
        /// Refused receipt hash (hex).
        attempted: String,
    },
    /// The job id is empty or longer than 256 bytes.
    #[error("job id length {0} outside 1..=256")]
    BadJobId(usize),
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] AgentError),
}

/// The durable job → receipt record (exclusive to one owner: take `&mut`).
#[derive(Debug)]
pub struct RecordStore {
    path: PathBuf,
    file: std::fs::File,
    map: HashMap<Vec<u8>, [u8; 32]>,
}

impl RecordStore {
    /// Open (or create) the store at `path`, loading every record.
    pub fn open(path: &Path) -> Result<Self, AgentError> {
        // A torn tail is a crash mid-append: never acknowledged, so no signature left.
        let (file, text) = crate::fsutil::open_line_log(path)?;
        let mut map = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let bad = || AgentError::State {
                path: path.display().to_string(),
                msg: format!("bad record line {}", n + 1),
            };
            let (j, h) = line.split_once(' ').ok_or_else(bad)?;
            let job = hex::decode(j).map_err(|_| bad())?;
            let mut hash = [0u8; 32];
            hex::decode_to_slice(h, &mut hash).map_err(|_| bad())?;
            if let Some(prev) = map.insert(job, hash) {
                if prev != hash {
                    return Err(bad());
                }
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            map,
        })
    }

    /// Atomically check that `job_id` has no other receipt, and record `receipt_hash` for it.
    pub fn check_and_record(
        &mut self,
        job_id: &[u8],
        receipt_hash: &[u8; 32],
    ) -> Result<Recorded, NotSafe> {
        if job_id.is_empty() || job_id.len() > 256 {
            return Err(NotSafe::BadJobId(job_id.len()));
        }
        if let Some(existing) = self.map.get(job_id) {
            return if existing == receipt_hash {
                Ok(Recorded::Repeat)
            } else {
                Err(NotSafe::ConflictingReceipt {
                    job_id: hex::encode(job_id),
                    existing: hex::encode(existing),
                    attempted: hex::encode(receipt_hash),
                })
            };
        }
        let line = format!("{} {}\n", hex::encode(job_id), hex::encode(receipt_hash));
        self.file
            .write_all(line.as_bytes())
            .map_err(io(&self.path))
            .map_err(NotSafe::Store)?;
        self.file
            .sync_data()
            .map_err(io(&self.path))
            .map_err(NotSafe::Store)?;
        self.map.insert(job_id.to_vec(), *receipt_hash);
        Ok(Recorded::New)
    }

    /// The recorded receipt hash for a job, if any.
    pub fn get(&self, job_id: &[u8]) -> Option<[u8; 32]> {
        self.map.get(job_id).copied()
    }

    /// Number of jobs recorded.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no job is recorded.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
