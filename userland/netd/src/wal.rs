//! The durable job queue's write-ahead log.
//!
//! File: `<state_dir>/wal.log`, a sequence of records, each
//! `len: u32 LE ‖ crc32(body): u32 LE ‖ body` where `body` is the postcard encoding
//! of a [`Record`] and `len ≤ MAX_RECORD` (checked before allocating), followed by
//! zeros: the file is **preallocated** (real zero blocks, written and synced ahead
//! of the log's end, [`WalOptions::prealloc_bytes`] at a time), so a commit
//! overwrites blocks that already exist and its sync has no metadata (file size,
//! extent) to journal. An all-zero header marks the end of the log (no record
//! encodes to an empty body).
//!
//! One writer thread owns the file and does **group commit**: it takes every batch
//! that arrived while the previous commit ran, writes them all, makes them durable
//! once and then answers all of them. A caller learns its records are durable only
//! from that answer. Where the filesystem allows it the file is opened
//! `O_DIRECT | O_DSYNC` and each commit is one aligned write of the 4 KiB blocks it
//! touches (the log's last partial block is kept in memory and rewritten with the
//! new records: its bytes that are already durable are written unchanged, so a torn
//! block write cannot lose them); elsewhere (tmpfs) it is `pwrite` + `fdatasync`.
//! Replay tolerates a torn tail: the log ends at the first record that is short,
//! fails its CRC or does not decode, and any non-zero bytes after that end (nothing
//! there was ever acknowledged, because each acknowledgement follows the durable
//! write of everything before it) are zeroed. When the log grows past a threshold
//! the writer compacts it: a snapshot of the live jobs is written to `wal.compact`,
//! synced, and renamed over `wal.log`.

use havn_proto::{JobPayload, SignedReceipt};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
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
        /// bounded strings are inline; its encoding is ~100–300 bytes). Shared with
        /// the job table and the writer's shadow (encoded like a `Vec<u8>`).
        payload: Arc<[u8]>,
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
    /// The client identity that submitted the job (written with its `Accepted`; logs
    /// from before it have none).
    Owner {
        /// Ticket.
        ticket: u64,
        /// The client certificate's identity.
        client: String,
    },
}

impl Record {
    /// The ticket the record is about.
    pub fn ticket(&self) -> u64 {
        match self {
            Record::Accepted { ticket, .. }
            | Record::Started { ticket }
            | Record::Done { ticket, .. }
            | Record::Failed { ticket, .. }
            | Record::Owner { ticket, .. } => *ticket,
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
    /// The disk is full: nothing of the batch was written (the log is intact and
    /// takes the next batch once space is freed).
    #[error("wal: no space left to grow the log; nothing was written")]
    NoSpace,
    /// A record in the middle is bad and valid records follow it: cutting the log
    /// there would drop acknowledged jobs, so replay refuses.
    #[error(
        "wal: the record at offset {offset} is corrupt, but a valid record follows at offset \
         {next}; cutting the log there would lose acknowledged jobs, so netd refuses to start. \
         Back the file up, then run `havnctl wal salvage <state_dir>/netd/wal.log` to keep \
         every valid record"
    )]
    Corrupt {
        /// Where the log stops parsing.
        offset: u64,
        /// The first valid record after it.
        next: u64,
    },
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

mod replay;
mod snapshot;

pub(crate) use replay::{load, record_at};
pub use replay::{replay, Replay, TORN_WINDOW};
pub use snapshot::{LoggedJob, Outcome, Snapshot};

/// Where [`replace_log`] failed.
#[derive(Debug)]
pub(crate) enum Replace {
    /// Before the rename: the old log is untouched.
    Before(WalError),
    /// After it (syncing the directory): the new log is in place.
    After(WalError),
}

/// Replaces the log at `path` with `bytes`, durably: written and synced as `tmp`,
/// renamed over `path`, the directory synced (compaction and `havnctl wal salvage`).
pub(crate) fn replace_log(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<(), Replace> {
    let written = (|| {
        let mut f = File::create(tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(tmp);
        return Err(Replace::Before(io(e)));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Replace::After(io(e)))
}

/// Group-commit statistics.
#[derive(Debug, Default)]
pub struct WalStats {
    /// Group commits (durable writes).
    pub syncs: AtomicU64,
    /// Records written.
    pub records: AtomicU64,
    /// Compactions done.
    pub compactions: AtomicU64,
    /// Nanoseconds spent making groups durable (the write and its sync).
    pub sync_ns: AtomicU64,
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
    direct: bool,
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
    /// Whether commits are made durable (always true in the daemon; the bench can
    /// show the cost).
    pub fsync: bool,
    /// Zeros written ahead of the log's end, per extension (at least 4 KiB).
    pub prealloc_bytes: u64,
    /// Try `O_DIRECT | O_DSYNC` (falls back to `pwrite` + `fdatasync` where the
    /// filesystem refuses it).
    pub direct: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            compact_bytes: 64 << 20,
            retain_terminal: 100_000,
            fsync: true,
            // About 1 ms to write and sync on a virtio disk; at full intake rate one
            // extension every ~0.2 s.
            prealloc_bytes: 1 << 20,
            direct: true,
        }
    }
}

/// The alignment and unit of direct writes.
const BLOCK: usize = 4096;

/// A heap buffer whose usable part starts on a [`BLOCK`] boundary (for `O_DIRECT`).
/// Never grows in place: a larger one is allocated, so the alignment holds.
struct AlignedBuf {
    raw: Vec<u8>,
    off: usize,
}

impl AlignedBuf {
    fn new(cap: usize) -> Self {
        let raw = vec![0u8; cap.div_ceil(BLOCK) * BLOCK + BLOCK];
        let off = raw.as_ptr().align_offset(BLOCK).min(BLOCK);
        Self { raw, off }
    }

    fn cap(&self) -> usize {
        self.raw.len() - BLOCK
    }

    fn get_mut(&mut self, n: usize) -> &mut [u8] {
        let off = self.off;
        self.raw.get_mut(off..off + n).unwrap_or_default()
    }
}

/// How the writer makes a group durable.
enum Mode {
    /// `O_DIRECT | O_DSYNC`: one aligned write per group; the log's last partial
    /// block (`len % BLOCK` bytes) is at the start of `buf`.
    Direct { buf: AlignedBuf },
    /// `pwrite` at the log's end, then `fdatasync` (if `fsync`).
    Buffered,
}

impl Mode {
    /// Direct mode starts with the log's last partial block in its buffer.
    fn new(direct: bool, tail: &[u8]) -> Self {
        if !direct {
            return Mode::Buffered;
        }
        let mut buf = AlignedBuf::new(256 << 10);
        buf.get_mut(tail.len()).copy_from_slice(tail);
        Mode::Direct { buf }
    }
}

/// Opens the log for the writer: direct if asked and possible.
fn open_log(path: &Path, opts: &WalOptions) -> Result<(File, bool), WalError> {
    use std::os::unix::fs::OpenOptionsExt;
    if opts.direct && opts.fsync {
        match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
            .open(path)
        {
            Ok(f) => return Ok((f, true)),
            // tmpfs and some others refuse O_DIRECT with EINVAL.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::info!(path = %path.display(), "O_DIRECT refused by the filesystem; wal uses pwrite + fdatasync");
            }
            Err(e) => return Err(io(e)),
        }
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io)?;
    Ok((f, false))
}

impl Wal {
    /// Replays `dir/wal.log` (cutting a torn tail) and starts its writer at the
    /// log's end. The writer's shadow (what compaction rewrites) is that replay, so
    /// it always describes the file. Returns the replay for the caller's job table.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<(Self, Replay), WalError> {
        let path = dir.join(WAL_FILE);
        let (replay, alloc, tail) = load(&path, true)?;
        if alloc == 0 {
            // A new log: make the directory entry durable once.
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        let (file, direct) = open_log(&path, &opts)?;
        let mode = Mode::new(direct, &tail);
        let len = replay.end;
        let snapshot = replay.snapshot.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(WalStats::default());
        let lazy = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut w = Writer {
            lazy: lazy.clone(),
            dir: dir.to_path_buf(),
            path,
            file,
            mode,
            len,
            alloc,
            shadow: Snapshot {
                skip_ids: true,
                ..snapshot
            },
            opts,
            poisoned: false,
            stats: stats.clone(),
            compact_after: 0,
        };
        std::thread::Builder::new()
            .name("netd-wal".into())
            .spawn(move || w.run(rx))
            .map_err(io)?;
        Ok((
            Self {
                tx,
                lazy,
                stats,
                direct,
            },
            replay,
        ))
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

    /// Whether commits are `O_DIRECT | O_DSYNC` writes (else `pwrite` + `fdatasync`).
    pub fn direct(&self) -> bool {
        self.direct
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
    mode: Mode,
    /// The log's end.
    len: u64,
    /// The file's size: zeros from `len` up to here are written and synced.
    alloc: u64,
    shadow: Snapshot,
    opts: WalOptions,
    poisoned: bool,
    stats: Arc<WalStats>,
    /// No compaction before the log is this long (after a skipped one).
    compact_after: u64,
}

/// Why a compaction did not happen.
#[derive(Debug)]
enum Compaction {
    /// Before the new file replaced the log (e.g. a full disk): nothing changed.
    Skipped(WalError),
    /// After: the writer's view of the file may be wrong.
    Failed(WalError),
}

/// Most batches folded into one group commit.
const MAX_GROUP: usize = 1024;

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
            if io_result.is_ok() && self.len > self.opts.compact_bytes.max(self.compact_after) {
                match self.compact() {
                    Ok(()) => self.compact_after = 0,
                    Err(Compaction::Skipped(e)) => {
                        // The live log is untouched: try again after it grew a step.
                        tracing::warn!(error = %e, "wal compaction skipped (the log is intact)");
                        self.compact_after = self.len + self.opts.compact_bytes / 2;
                    }
                    Err(Compaction::Failed(e)) => {
                        tracing::error!(error = %e, "wal compaction failed after the swap; log poisoned");
                        self.poisoned = true;
                    }
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
        let t0 = std::time::Instant::now();
        // Grow the preallocated space first: if the disk is full, nothing of this
        // batch has been written and the log stays usable (no poisoning).
        let start = self.len - self.len % BLOCK as u64;
        let keep = self.len - start;
        let total = (keep + buf.len() as u64).div_ceil(BLOCK as u64) * BLOCK as u64;
        if let Err(e) = self.ensure_alloc(start + total) {
            if e.raw_os_error() == Some(28) || e.raw_os_error() == Some(122) {
                tracing::warn!(error = %e, "wal: disk full; batch refused, log intact");
                return Err(WalError::NoSpace);
            }
            tracing::error!(error = %e, "wal preallocation failed; log poisoned");
            self.poisoned = true;
            return Err(io(e));
        }
        match self.commit_bytes(buf) {
            Ok(()) => {
                let ns = t0.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
                self.stats.sync_ns.fetch_add(ns, Ordering::Relaxed);
                self.len = self.len.saturating_add(buf.len() as u64);
                self.stats.syncs.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "wal write/sync failed; log poisoned");
                self.poisoned = true;
                Err(io(e))
            }
        }
    }

    /// Writes `buf` at the log's end and makes it durable (does not move `len`).
    fn commit_bytes(&mut self, buf: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let start = self.len - self.len % BLOCK as u64;
        let keep = (self.len - start) as usize;
        let total = (keep + buf.len()).div_ceil(BLOCK) * BLOCK;
        self.ensure_alloc(start + total as u64)?;
        match &mut self.mode {
            Mode::Buffered => {
                self.file.write_all_at(buf, self.len)?;
                if self.opts.fsync {
                    self.file.sync_data()?;
                }
            }
            Mode::Direct { buf: ab } => {
                if ab.cap() < total {
                    let mut bigger = AlignedBuf::new(total.max(ab.cap() * 2));
                    bigger.get_mut(keep).copy_from_slice(ab.get_mut(keep));
                    *ab = bigger;
                }
                let block = ab.get_mut(total);
                block[keep..keep + buf.len()].copy_from_slice(buf);
                block[keep + buf.len()..].fill(0);
                // O_DSYNC: durable when the write returns.
                self.file.write_all_at(block, start)?;
                // The new last partial block goes to the front for the next group.
                let end = keep + buf.len();
                let last = end - end % BLOCK;
                block.copy_within(last..end, 0);
            }
        }
        Ok(())
    }

    /// The file size to preallocate for a log that must hold `upto` bytes: whole
    /// [`WalOptions::prealloc_bytes`] steps, at least one step past `upto`.
    fn alloc_target(&self, upto: u64) -> u64 {
        let step = self.opts.prealloc_bytes.max(BLOCK as u64);
        upto.div_ceil(step) * step + step
    }

    /// Makes sure zeros are written and synced up to at least `upto`, so commits
    /// never grow the file.
    fn ensure_alloc(&mut self, upto: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        if upto <= self.alloc {
            return Ok(());
        }
        let target = self.alloc_target(upto);
        // Through a buffered handle (the zeros need no alignment), then one sync
        // for the new size.
        let f = OpenOptions::new().write(true).open(&self.path)?;
        let zeros = vec![0u8; (target - self.alloc).min(1 << 20) as usize];
        let mut at = self.alloc;
        let grown = (|| {
            while at < target {
                let n = (target - at).min(zeros.len() as u64) as usize;
                f.write_all_at(zeros.get(..n).unwrap_or_default(), at)?;
                at += n as u64;
            }
            f.sync_data()
        })();
        if let Err(e) = grown {
            // Give back what the failed extension took (it held only zeros).
            let _ = f.set_len(self.alloc).and_then(|()| f.sync_data());
            return Err(e);
        }
        self.alloc = target;
        Ok(())
    }

    fn compact(&mut self) -> Result<(), Compaction> {
        self.shadow.prune(self.opts.retain_terminal);
        let tmp = self.dir.join(COMPACT_FILE);
        let mut buf = Vec::new();
        for rec in self.shadow.records() {
            encode(&rec, &mut buf).map_err(Compaction::Skipped)?;
        }
        let len = buf.len() as u64;
        // Preallocated like the live log: the records, then at least one step of zeros.
        let alloc = self.alloc_target(len);
        buf.resize(alloc as usize, 0);
        match replace_log(&tmp, &self.path, &buf) {
            Ok(()) => {}
            Err(Replace::Before(e)) => return Err(Compaction::Skipped(e)),
            Err(Replace::After(e)) => return Err(Compaction::Failed(e)),
        }
        let (file, direct) = open_log(&self.path, &self.opts).map_err(Compaction::Failed)?;
        let start = (len - len % BLOCK as u64) as usize;
        self.mode = Mode::new(direct, buf.get(start..len as usize).unwrap_or_default());
        self.file = file;
        self.len = len;
        self.alloc = alloc;
        self.stats.compactions.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            bytes = self.len,
            jobs = self.shadow.jobs.len(),
            "wal compacted"
        );
        Ok(())
    }
}
