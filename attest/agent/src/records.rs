//! Slashing protection: one job id → one receipt, ever.
//!
//! An append-only file of `hex(job_id) hex(sha256(receipt)) hex(receipt)\n` lines. The
//! record is the one durable step before a signature exists: [`RecordStore::check_and_record`]
//! fsyncs the line before it returns, and [`crate::NodeKey::sign_receipt`] signs only
//! after it. The receipt's bytes are in the record, so a receipt can always be signed
//! again identically (ed25519 is deterministic) and never differently.
//!
//! A torn last line (crash mid-write) is dropped on open: its signature was never
//! released. A failed append (a full disk) is cut back before anything else is written,
//! so the next append never glues onto a partial line.

use crate::error::{io, AgentError};
use sha2::Digest;
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
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
    /// The store could not be read or written (the append was cut back: nothing of it
    /// remains, and nothing was signed).
    #[error(transparent)]
    Store(#[from] AgentError),
}

impl NotSafe {
    /// Whether the refusal is for lack of disk space (retry once space is freed).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, NotSafe::Store(e) if e.is_disk_full())
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    hash: [u8; 32],
    /// Byte offset of the line's receipt field, and its hex length.
    offset: u64,
    hex_len: usize,
}

/// The durable job → receipt record (exclusive to one owner: take `&mut`).
#[derive(Debug)]
pub struct RecordStore {
    path: PathBuf,
    file: std::fs::File,
    /// Length of the file's complete lines.
    len: u64,
    map: HashMap<Vec<u8>, Entry>,
    /// A failed append could not be cut back: nothing more is appended until the
    /// store is reopened (which drops the torn tail).
    poisoned: bool,
}

/// The longest receipt a record holds.
pub const MAX_RECEIPT: usize = 4096;

impl RecordStore {
    /// Open (or create) the store at `path`, loading every record's job id and hash.
    pub fn open(path: &Path) -> Result<Self, AgentError> {
        let (file, text) = crate::fsutil::open_line_log(path)?;
        let mut map = HashMap::new();
        let mut offset = 0u64;
        for (n, line) in text.split_inclusive('\n').enumerate() {
            let bad = |why: &str| AgentError::State {
                path: path.display().to_string(),
                msg: format!("bad record line {}: {why}", n + 1),
            };
            let body = line.strip_suffix('\n').unwrap_or(line);
            let mut parts = body.splitn(3, ' ');
            let (Some(j), Some(h)) = (parts.next(), parts.next()) else {
                return Err(bad("expected `job hash receipt`"));
            };
            // A line from before receipts were kept (`job hash`): the job stays
            // recorded, so only an identical receipt may be signed for it again.
            let r = parts.next().unwrap_or("");
            let job = hex::decode(j).map_err(|_| bad("job id is not hex"))?;
            let mut hash = [0u8; 32];
            hex::decode_to_slice(h, &mut hash).map_err(|_| bad("hash is not 32 hex bytes"))?;
            let receipt = hex::decode(r).map_err(|_| bad("receipt is not hex"))?;
            if receipt.len() > MAX_RECEIPT {
                return Err(bad("receipt longer than the limit"));
            }
            let digest: [u8; 32] = sha2::Sha256::digest(&receipt).into();
            if !r.is_empty() && digest != hash {
                return Err(bad("receipt does not hash to its recorded hash"));
            }
            let entry = Entry {
                hash,
                offset: offset + (j.len() + h.len() + 2) as u64,
                hex_len: r.len(),
            };
            if let Some(prev) = map.insert(job, entry) {
                if prev.hash != hash {
                    return Err(bad("a second, different receipt for a job"));
                }
            }
            offset += line.len() as u64;
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            len: offset,
            map,
            poisoned: false,
        })
    }

    /// Atomically check that `job_id` has no other receipt, and record `receipt` for it
    /// (durably, before this returns).
    pub fn check_and_record(&mut self, job_id: &[u8], receipt: &[u8]) -> Result<Recorded, NotSafe> {
        if job_id.is_empty() || job_id.len() > 256 {
            return Err(NotSafe::BadJobId(job_id.len()));
        }
        if receipt.len() > MAX_RECEIPT {
            return Err(NotSafe::Store(AgentError::State {
                path: self.path.display().to_string(),
                msg: format!("receipt of {} bytes exceeds {MAX_RECEIPT}", receipt.len()),
            }));
        }
        let hash: [u8; 32] = sha2::Sha256::digest(receipt).into();
        if let Some(existing) = self.map.get(job_id) {
            return if existing.hash == hash {
                Ok(Recorded::Repeat)
            } else {
                Err(NotSafe::ConflictingReceipt {
                    job_id: hex::encode(job_id),
                    existing: hex::encode(existing.hash),
                    attempted: hex::encode(hash),
                })
            };
        }
        if self.poisoned {
            return Err(NotSafe::Store(AgentError::State {
                path: self.path.display().to_string(),
                msg: "an earlier failed append could not be cut back: reopen the store".into(),
            }));
        }
        let (j, h, r) = (hex::encode(job_id), hex::encode(hash), hex::encode(receipt));
        let line = format!("{j} {h} {r}\n");
        if let Err(e) =
            crate::fsutil::append_line(&mut self.file, &self.path, self.len, line.as_bytes())
        {
            // An I/O error was cut back; anything else means the tail may be torn.
            self.poisoned = !matches!(e, AgentError::Io { .. });
            return Err(NotSafe::Store(e));
        }
        let entry = Entry {
            hash,
            offset: self.len + (j.len() + h.len() + 2) as u64,
            hex_len: r.len(),
        };
        self.len += line.len() as u64;
        self.map.insert(job_id.to_vec(), entry);
        Ok(Recorded::New)
    }

    /// The recorded receipt hash for a job, if any.
    pub fn get(&self, job_id: &[u8]) -> Option<[u8; 32]> {
        self.map.get(job_id).map(|e| e.hash)
    }

    /// The recorded receipt bytes for a job, if any (read back from the file and
    /// checked against the recorded hash). `None` also for a job recorded before
    /// receipts were kept (its hash alone still refuses a different receipt).
    pub fn receipt(&self, job_id: &[u8]) -> Result<Option<Vec<u8>>, AgentError> {
        let Some(e) = self.map.get(job_id).filter(|e| e.hex_len > 0) else {
            return Ok(None);
        };
        let mut hexbuf = vec![0u8; e.hex_len];
        self.file
            .read_exact_at(&mut hexbuf, e.offset)
            .map_err(io(&self.path))?;
        let bad = |msg: &str| AgentError::State {
            path: self.path.display().to_string(),
            msg: format!("record of job {}: {msg}", hex::encode(job_id)),
        };
        let bytes = hex::decode(&hexbuf).map_err(|_| bad("receipt is not hex"))?;
        let digest: [u8; 32] = sha2::Sha256::digest(&bytes).into();
        if digest != e.hash {
            return Err(bad("receipt changed on disk since it was recorded"));
        }
        Ok(Some(bytes))
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
