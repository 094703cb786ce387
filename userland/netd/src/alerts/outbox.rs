//! The durable outbox: one file per undelivered alert per endpoint,
//! `state_dir/netd/alerts/<endpoint>/<seq:016x>.json`, written temp → fsync → rename,
//! so an alert raised survives a netd restart and keeps its `webhook-id` for every
//! retry. Bounded: past `max_pending` the oldest is dropped (a dead endpoint cannot
//! fill the disk). A `410 Gone` leaves `<endpoint>.disabled` and no queue.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One undelivered alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The `webhook-id` (the same on every attempt, and for every endpoint).
    pub id: String,
    /// The alert's kind (`sla.admission_latency`, ...), for logs.
    pub kind: String,
    /// The HTTP body: the alert sealed to this endpoint's key.
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due, Unix ms.
    pub next_ms: u64,
}

/// Outbox errors (I/O, or a full disk).
#[derive(Debug, thiserror::Error)]
#[error("alert outbox {path}: {source}")]
pub struct OutboxError {
    path: PathBuf,
    source: std::io::Error,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutboxError + '_ {
    move |source| OutboxError {
        path: path.to_path_buf(),
        source,
    }
}

/// One endpoint's queue.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
    disabled: PathBuf,
    max_pending: usize,
}

impl Outbox {
    /// The queue of endpoint `name` under `root` (created).
    pub fn open(root: &Path, name: &str, max_pending: usize) -> Result<Self, OutboxError> {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(Self {
            disabled: root.join(format!("{name}.disabled")),
            dir,
            max_pending,
        })
    }

    /// Whether a `410` disabled the endpoint.
    pub fn is_disabled(&self) -> bool {
        self.disabled.exists()
    }

    /// Disables the endpoint for good and drops its queue; returns how many were dropped.
    pub fn disable(&self, why: &str) -> usize {
        let _ = std::fs::write(&self.disabled, why);
        let n = self.list().len();
        let _ = std::fs::remove_dir_all(&self.dir);
        n
    }

    /// Pending files, oldest first.
    fn list(&self) -> Vec<(u64, PathBuf)> {
        let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                let seq = p
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".json")
                    .and_then(|s| u64::from_str_radix(s, 16).ok())?;
                Some((seq, p))
            })
            .collect();
        v.sort();
        v
    }

    /// The highest sequence number queued (0 when empty).
    pub fn last_seq(&self) -> u64 {
        self.list().last().map_or(0, |(s, _)| *s)
    }

    /// How many alerts wait.
    pub fn len(&self) -> usize {
        self.list().len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:016x}.json"))
    }

    /// Writes `p` durably as `seq`; returns how many old alerts were dropped to stay
    /// within `max_pending`.
    pub fn put(&self, seq: u64, p: &Pending) -> Result<usize, OutboxError> {
        let path = self.path(seq);
        let tmp = self.dir.join(format!(".{seq:016x}.tmp"));
        let bytes = serde_json::to_vec(p).unwrap_or_default();
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        let all = self.list();
        let over = all.len().saturating_sub(self.max_pending);
        for (_, old) in all.iter().take(over) {
            let _ = std::fs::remove_file(old);
        }
        Ok(over)
    }

    /// The oldest pending alert and its sequence number.
    pub fn oldest(&self) -> Option<(u64, Pending)> {
        for (seq, path) in self.list() {
            match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Pending>(&b).ok())
            {
                Some(p) => return Some((seq, p)),
                None => {
                    // A torn or foreign file: it can never be delivered.
                    tracing::warn!(path = %path.display(), "unreadable alert dropped");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        None
    }

    /// Removes a delivered (or given-up) alert.
    pub fn remove(&self, seq: u64) {
        let _ = std::fs::remove_file(self.path(seq));
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(n: u32) -> Pending {
        Pending {
            id: format!("msg_{n}"),
            kind: "k".into(),
            body: "{}".into(),
            attempts: 0,
            next_ms: 0,
        }
    }

    #[test]
    fn alerts_persist_in_order_stay_bounded_and_a_disabled_endpoint_keeps_none() {
        let root = std::env::temp_dir().join(format!("havn-outbox-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let o = Outbox::open(&root, "ops", 3).unwrap();
        for n in 1..=5 {
            let dropped = o.put(u64::from(n), &pending(n)).unwrap();
            assert_eq!(dropped, usize::from(n > 3));
        }
        assert_eq!(o.len(), 3);
        // Reopened (a restart): the same queue, oldest first.
        let o = Outbox::open(&root, "ops", 3).unwrap();
        assert_eq!(o.oldest().unwrap(), (3, pending(3)));
        assert_eq!(o.last_seq(), 5);
        o.remove(3);
        assert_eq!(o.oldest().unwrap().0, 4);
        assert_eq!(o.disable("410"), 2);
        assert!(o.is_disabled() && o.is_empty());
        let _ = std::fs::remove_dir_all(&root);
    }
}
