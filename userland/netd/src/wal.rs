//! The durable job queue's write-ahead log.
//!
//! File: `<state_dir>/wal.log`, a sequence of records, each
//! `len: u32 LE ‖ crc32(body): u32 LE ‖ body` where `body` is the postcard encoding
//! of a [`Record`] and `len ≤ MAX_RECORD` (checked before allocating).
//!
//! One writer thread owns the file and does **group commit**: it takes every batch
//! that arrived while the previous `fdatasync` ran, writes them all, syncs once and
//! then answers all of them. A caller learns its records are durable only from
//! that answer. Replay tolerates a torn tail (it truncates the file at the first
//! record that is short or fails its CRC: nothing after it was ever acknowledged,
//! because each acknowledgement follows an `fdatasync` of everything before it).
//! When the file grows past a threshold the writer compacts it: a snapshot of the
//! live jobs is written to `wal.compact`, synced, and renamed over `wal.log`.

use havn_proto::{JobPayload, SignedReceipt};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Largest record body accepted on replay (a job payload plus a receipt is < 8 KiB).
pub const MAX_RECORD: usize = 1 << 20;
const HEADER: usize = 8;
/// The log file's name inside the state directory.
pub const WAL_FILE: &str = "wal.log";
const COMPACT_FILE: &str = "wal.compact";

/// One log record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Record {
    /// A job was accepted under this ticket (fsynced before the ticket is returned).
    Accepted {
        /// Ticket.
        ticket: u64,
        /// The job, postcard-encoded (`JobPayload` is large in memory because its
        /// bounded strings are inline; its encoding is ~100–300 bytes).
        payload: Vec<u8>,
    },
    /// The job was handed to execd.
    Started {
        /// Ticket.
        ticket: u64,
    },
    /// The job finished with this receipt (the first one is kept).
    Done {
        /// Ticket.
        ticket: u64,
        /// Receipt signed by attestd.
        receipt: Box<SignedReceipt>,
    },
    /// The job failed for good.
    Failed {
        /// Ticket.
        ticket: u64,
        /// Why.
        reason: String,
    },
}

/// Postcard bytes of a payload (canonical: equal payloads, equal bytes).
pub fn encode_payload(p: &JobPayload) -> Result<Vec<u8>, WalError> {
    postcard::to_allocvec(p).map_err(|e| WalError::Encode(e.to_string()))
}

impl Record {
    /// The ticket the record is about.
    pub fn ticket(&self) -> u64 {
        match self {
            Record::Accepted { ticket, .. }
            | Record::Started { ticket }
            | Record::Done { ticket, .. }
            | Record::Failed { ticket, .. } => *ticket,
        }
    }
}

/// WAL failures. Any write or sync failure poisons the log: every later commit
/// fails too, and the daemon exits (after a failed fsync the page cache cannot
/// be trusted).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WalError {
    /// I/O failed.
    #[error("wal i/o: {0}")]
    Io(String),
    /// A record could not be encoded.
    #[error("wal encode: {0}")]
    Encode(String),
    /// An earlier failure poisoned the log.
    #[error("wal poisoned by an earlier failure")]
    Poisoned,
    /// The writer thread is gone.
    #[error("wal writer stopped")]
    Stopped,
}

fn io(e: std::io::Error) -> WalError {
    WalError::Io(e.to_string())
}

/// Encodes one record with its header.
///
/// The body is serialised straight into `out` behind a header placeholder that is
/// patched afterwards (no per-record allocation); on error `out` is left as it was.
pub fn encode(rec: &Record, out: &mut Vec<u8>) -> Result<(), WalError> {
    let mark = out.len();
    out.extend_from_slice(&[0; HEADER]);
    let body_len = match postcard::to_io(rec, &mut *out) {
        Ok(_) => out.len() - mark - HEADER,
        Err(e) => {
            out.truncate(mark);
            return Err(WalError::Encode(e.to_string()));
        }
    };
    if body_len > MAX_RECORD {
        out.truncate(mark);
        return Err(WalError::Encode(format!("record of {body_len} bytes")));
    }
    let crc = crc32fast::hash(out.get(mark + HEADER..).unwrap_or_default());
    if let Some(h) = out.get_mut(mark..mark + HEADER) {
        h[..4].copy_from_slice(&(body_len as u32).to_le_bytes());
        h[4..].copy_from_slice(&crc.to_le_bytes());
    }
    Ok(())
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Signed receipt.
    Done(Box<SignedReceipt>),
    /// Failure reason.
    Failed(String),
}

/// A job as the log knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedJob {
    /// The orchestrator's job id.
    pub job_id: String,
    /// The payload, postcard-encoded.
    pub body: Arc<[u8]>,
    /// Whether it was handed to execd at least once.
    pub started: bool,
    /// Its end, if any (the first one logged).
    pub outcome: Option<Outcome>,
}

/// The jobs a log describes, keyed by ticket, with the order terminal jobs ended.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Jobs by ticket.
    pub jobs: BTreeMap<u64, LoggedJob>,
    /// Terminal tickets, oldest first (for retention).
    pub terminal: VecDeque<u64>,
    /// Whether `apply` decodes payloads to fill `job_id` (replay does; the writer's
    /// compaction shadow does not need it).
    pub skip_ids: bool,
}

impl Snapshot {
    /// Applies one record. Returns a warning for records that do not fit.
    pub fn apply(&mut self, rec: &Record) -> Option<String> {
        match rec {
            Record::Accepted { ticket, payload } => {
                if self.jobs.contains_key(ticket) {
                    return Some(format!("duplicate Accepted for ticket {ticket}"));
                }
                let job_id = if self.skip_ids {
                    String::new()
                } else {
                    match postcard::from_bytes::<JobPayload>(payload) {
                        Ok(p) => p.job_id.to_string(),
                        Err(_) => return Some(format!("undecodable payload for ticket {ticket}")),
                    }
                };
                self.jobs.insert(
                    *ticket,
                    LoggedJob {
                        job_id,
                        body: payload.as_slice().into(),
                        started: false,
                        outcome: None,
                    },
                );
            }
            Record::Started { ticket } => match self.jobs.get_mut(ticket) {
                Some(j) => j.started = true,
                None => return Some(format!("Started for unknown ticket {ticket}")),
            },
            Record::Done { ticket, receipt } => {
                return self.finish(*ticket, Outcome::Done(receipt.clone()));
            }
            Record::Failed { ticket, reason } => {
                return self.finish(*ticket, Outcome::Failed(reason.clone()));
            }
        }
        None
    }

    /// [`Snapshot::apply`] for a record that is no longer needed: outcomes are moved
    /// in rather than cloned (the writer's shadow, after a group commit).
    pub fn apply_owned(&mut self, rec: Record) -> Option<String> {
        match rec {
            Record::Done { ticket, receipt } => self.finish(ticket, Outcome::Done(receipt)),
            Record::Failed { ticket, reason } => self.finish(ticket, Outcome::Failed(reason)),
            rec => self.apply(&rec),
        }
    }

    fn finish(&mut self, ticket: u64, outcome: Outcome) -> Option<String> {
        match self.jobs.get_mut(&ticket) {
            Some(j) if j.outcome.is_some() => Some(format!(
                "second outcome for ticket {ticket} ignored (the first is kept)"
            )),
            Some(j) => {
                j.outcome = Some(outcome);
                self.terminal.push_back(ticket);
                None
            }
            None => Some(format!("outcome for unknown ticket {ticket}")),
        }
    }

    /// Drops the oldest terminal jobs beyond `keep`.
    pub fn prune(&mut self, keep: usize) {
        while self.terminal.len() > keep {
            if let Some(t) = self.terminal.pop_front() {
                self.jobs.remove(&t);
            }
        }
    }

    /// Records that rebuild this snapshot.
    fn records(&self) -> impl Iterator<Item = Record> + '_ {
        // Accepted records in ticket order, then outcomes in the order they ended.
        let accepted = self.jobs.iter().map(|(t, j)| Record::Accepted {
            ticket: *t,
            payload: j.body.to_vec(),
        });
        let ended = self.terminal.iter().filter_map(|t| {
            self.jobs
                .get(t)
                .and_then(|j| j.outcome.as_ref())
                .map(|o| match o {
                    Outcome::Done(r) => Record::Done {
                        ticket: *t,
                        receipt: r.clone(),
                    },
                    Outcome::Failed(reason) => Record::Failed {
                        ticket: *t,
                        reason: reason.clone(),
                    },
                })
        });
        accepted.chain(ended)
    }
}

/// What replay found.
#[derive(Debug, Default)]
pub struct Replay {
    /// The jobs.
    pub snapshot: Snapshot,
    /// Records read.
    pub records: usize,
    /// Bytes cut off a torn or corrupt tail.
    pub truncated_bytes: u64,
    /// Records that did not fit (logged, ignored).
    pub warnings: Vec<String>,
}

/// Reads `path`, truncating a torn or corrupt tail in place.
pub fn replay(path: &Path) -> Result<Replay, WalError> {
    let mut out = Replay::default();
    let mut f = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(e)),
    };
    let mut data = Vec::new();
    f.read_to_end(&mut data).map_err(io)?;
    let mut pos = 0usize;
    while let Some(hdr) = data.get(pos..pos.saturating_add(HEADER)) {
        let mut len4 = [0u8; 4];
        let mut crc4 = [0u8; 4];
        len4.copy_from_slice(hdr.get(..4).unwrap_or(&[0; 4]));
        crc4.copy_from_slice(hdr.get(4..8).unwrap_or(&[0; 4]));
        let len = u32::from_le_bytes(len4) as usize;
        if len > MAX_RECORD {
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
        if let Some(w) = out.snapshot.apply(&rec) {
            out.warnings.push(w);
        }
        out.records = out.records.saturating_add(1);
        pos = start.saturating_add(len);
    }
    if pos < data.len() {
        out.truncated_bytes = (data.len() - pos) as u64;
        f.set_len(pos as u64).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    Ok(out)
}

/// Group-commit statistics.
#[derive(Debug, Default)]
pub struct WalStats {
    /// fdatasync calls.
    pub syncs: AtomicU64,
    /// Records written.
    pub records: AtomicU64,
    /// Compactions done.
    pub compactions: AtomicU64,
}

/// Called on the writer thread once a batch is durable (or failed). Keep it short.
pub type Callback = Box<dyn FnOnce(Result<(), WalError>) + Send>;

enum Ack {
    None,
    Wake(oneshot::Sender<Result<(), WalError>>),
    Call(Callback),
}

struct Batch {
    recs: Vec<Record>,
    ack: Ack,
}

/// Handle to the writer thread. Cloneable; the thread ends when all handles drop.
#[derive(Clone)]
pub struct Wal {
    tx: mpsc::UnboundedSender<Batch>,
    /// Records nobody waits for: written ahead of the next group, without waking
    /// the writer on their own.
    lazy: Arc<std::sync::Mutex<Vec<Record>>>,
    stats: Arc<WalStats>,
}

/// A pending commit: resolves once the records are on disk.
pub struct Pending(oneshot::Receiver<Result<(), WalError>>);

impl Pending {
    /// Waits for the fsync.
    pub async fn wait(self) -> Result<(), WalError> {
        self.0.await.unwrap_or(Err(WalError::Stopped))
    }
}

/// Writer tuning.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// Compact when the file exceeds this many bytes.
    pub compact_bytes: u64,
    /// Terminal jobs kept across compaction.
    pub retain_terminal: usize,
    /// Whether to fdatasync (always true in the daemon; the bench can show the cost).
    pub fsync: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            compact_bytes: 64 << 20,
            retain_terminal: 100_000,
            fsync: true,
        }
    }
}

impl Wal {
    /// Starts the writer on `dir/wal.log`, given the snapshot replay produced.
    pub fn start(dir: &Path, snapshot: Snapshot, opts: WalOptions) -> Result<Self, WalError> {
        let path = dir.join(WAL_FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(WalStats::default());
        let lazy = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut w = Writer {
            lazy: lazy.clone(),
            dir: dir.to_path_buf(),
            path,
            file,
            len,
            shadow: Snapshot {
                skip_ids: true,
                ..snapshot
            },
            opts,
            poisoned: false,
            stats: stats.clone(),
        };
        std::thread::Builder::new()
            .name("netd-wal".into())
            .spawn(move || w.run(rx))
            .map_err(io)?;
        Ok(Self { tx, lazy, stats })
    }

    /// Queues records for the next group commit (call under the state lock to keep
    /// log order equal to decision order); await the result for durability.
    pub fn submit(&self, recs: Vec<Record>) -> Pending {
        let (tx, rx) = oneshot::channel();
        // If the writer is gone the receiver reports Stopped.
        let _ = self.tx.send(Batch {
            recs,
            ack: Ack::Wake(tx),
        });
        Pending(rx)
    }

    /// Queues records for the next group commit; `then` runs on the writer thread
    /// once they are durable (no task wake-up needed).
    pub fn submit_then(&self, recs: Vec<Record>, then: Callback) {
        if let Err(e) = self.tx.send(Batch {
            recs,
            ack: Ack::Call(then),
        }) {
            if let Ack::Call(f) = e.0.ack {
                f(Err(WalError::Stopped));
            }
        }
    }

    /// Writes and waits for durability.
    pub async fn commit(&self, recs: Vec<Record>) -> Result<(), WalError> {
        self.submit(recs).wait().await
    }

    /// Queues a record nobody waits for: it is written ahead of the next group
    /// commit (so before any record submitted after it) and does not wake the
    /// writer by itself. Used for `Started`, whose loss is harmless.
    pub fn append(&self, rec: Record) {
        self.lazy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(rec);
    }

    /// Counters.
    pub fn stats(&self) -> &WalStats {
        &self.stats
    }
}

struct Writer {
    lazy: Arc<std::sync::Mutex<Vec<Record>>>,
    dir: PathBuf,
    path: PathBuf,
    file: File,
    len: u64,
    shadow: Snapshot,
    opts: WalOptions,
    poisoned: bool,
    stats: Arc<WalStats>,
}

/// Most batches folded into one group commit.
const MAX_GROUP: usize = 4096;

impl Writer {
    fn run(&mut self, mut rx: mpsc::UnboundedReceiver<Batch>) {
        let mut buf = Vec::with_capacity(64 << 10);
        // Reused across groups: no per-group allocation on the writer thread.
        let mut group: Vec<Batch> = Vec::with_capacity(64);
        let mut results: Vec<Result<(), WalError>> = Vec::with_capacity(64);
        while let Some(first) = rx.blocking_recv() {
            let lazy = std::mem::take(&mut *self.lazy.lock().unwrap_or_else(|p| p.into_inner()));
            group.clear();
            results.clear();
            if !lazy.is_empty() {
                group.push(Batch {
                    recs: lazy,
                    ack: Ack::None,
                });
            }
            group.push(first);
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(b) => group.push(b),
                    Err(_) => break,
                }
            }
            buf.clear();
            for b in &group {
                let mark = buf.len();
                let mut r = Ok(());
                for rec in &b.recs {
                    if let Err(e) = encode(rec, &mut buf) {
                        r = Err(e);
                        break;
                    }
                }
                if r.is_err() {
                    buf.truncate(mark);
                }
                results.push(r);
            }
            let io_result = self.write_sync(&buf);
            if io_result.is_ok() {
                let n: u64 = group
                    .iter()
                    .zip(&results)
                    .filter(|(_, r)| r.is_ok())
                    .map(|(b, _)| b.recs.len() as u64)
                    .sum();
                self.stats.records.fetch_add(n, Ordering::Relaxed);
            }
            // Answer first: the waiters' tickets depend only on the sync. The shadow
            // (read by compaction alone, below) is updated after, off their path.
            for (b, r) in group.iter_mut().zip(&results) {
                let r = match (&io_result, r) {
                    (Err(e), _) => Err(e.clone()),
                    (Ok(()), r) => r.clone(),
                };
                match std::mem::replace(&mut b.ack, Ack::None) {
                    Ack::None => {}
                    Ack::Wake(tx) => {
                        let _ = tx.send(r);
                    }
                    Ack::Call(f) => f(r),
                }
            }
            let durable = io_result.is_ok();
            for (b, r) in group.drain(..).zip(results.drain(..)) {
                if durable && r.is_ok() {
                    for rec in b.recs {
                        let _ = self.shadow.apply_owned(rec);
                    }
                }
            }
            if io_result.is_ok() && self.len > self.opts.compact_bytes {
                if let Err(e) = self.compact() {
                    tracing::error!(error = %e, "wal compaction failed; log poisoned");
                    self.poisoned = true;
                }
            }
        }
    }

    fn write_sync(&mut self, buf: &[u8]) -> Result<(), WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        if buf.is_empty() {
            // A barrier: everything before it was synced by an earlier group.
            return Ok(());
        }
        let r = self.file.write_all(buf).and_then(|()| {
            if self.opts.fsync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        match r {
            Ok(()) => {
                self.len = self.len.saturating_add(buf.len() as u64);
                self.stats.syncs.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "wal write/fsync failed; log poisoned");
                self.poisoned = true;
                Err(io(e))
            }
        }
    }

    fn compact(&mut self) -> Result<(), WalError> {
        self.shadow.prune(self.opts.retain_terminal);
        let tmp = self.dir.join(COMPACT_FILE);
        let mut buf = Vec::new();
        for rec in self.shadow.records() {
            encode(&rec, &mut buf)?;
        }
        {
            let mut f = File::create(&tmp).map_err(io)?;
            f.write_all(&buf).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        let mut file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        self.len = file.seek(SeekFrom::End(0)).map_err(io)?;
        self.file = file;
        self.stats.compactions.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            bytes = self.len,
            jobs = self.shadow.jobs.len(),
            "wal compacted"
        );
        Ok(())
    }
}
