//! attestd's durable heartbeat counter: strictly increasing across restarts, without
//! an fsync per heartbeat.
//!
//! The file holds a high-water mark `H` (decimal). Values below `H` may have been
//! handed out; a start begins at `H`. Before handing out `H` itself the counter
//! reserves the next block (`H + BLOCK`) durably. A crash loses at most the unused
//! rest of one block: gaps, never a repeat.

use havn_attest_agent::AgentError;
use std::path::{Path, PathBuf};

/// Values reserved per durable write (one write every ~85 min at one heartbeat per 5 s).
pub const BLOCK: u64 = 1024;

/// See the module docs.
#[derive(Debug)]
pub struct Counter {
    path: PathBuf,
    next: u64,
    reserved: u64,
}

impl Counter {
    /// Opens (or starts at 0) the counter kept in `path`.
    pub fn open(path: &Path) -> Result<Self, AgentError> {
        let mark = match std::fs::read_to_string(path) {
            Ok(text) => text.trim().parse::<u64>().map_err(|e| AgentError::State {
                path: path.display().to_string(),
                msg: format!("heartbeat counter is not a number: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => {
                return Err(AgentError::Io {
                    path: path.display().to_string(),
                    source: e,
                })
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            next: mark,
            reserved: mark,
        })
    }

    /// The next value; never one handed out before, by this or an earlier start.
    pub fn next(&mut self) -> Result<u64, AgentError> {
        if self.next >= self.reserved {
            let mark = self
                .next
                .checked_add(BLOCK)
                .ok_or_else(|| AgentError::State {
                    path: self.path.display().to_string(),
                    msg: "heartbeat counter exhausted".into(),
                })?;
            havn_attest_agent::fsutil::atomic_write(&self.path, format!("{mark}\n").as_bytes())?;
            self.reserved = mark;
        }
        let v = self.next;
        self.next += 1;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_never_repeat_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("seq");
        let mut c = Counter::open(&p).unwrap();
        let a: Vec<u64> = (0..3).map(|_| c.next().unwrap()).collect();
        assert_eq!(a, [0, 1, 2]);
        drop(c);
        let mut c = Counter::open(&p).unwrap();
        let b = c.next().unwrap();
        assert_eq!(b, BLOCK, "a restart starts past everything reserved");
        for _ in 0..BLOCK {
            c.next().unwrap();
        }
        drop(c);
        assert_eq!(Counter::open(&p).unwrap().next().unwrap(), 3 * BLOCK);
        std::fs::write(&p, "not a number").unwrap();
        assert!(Counter::open(&p)
            .unwrap_err()
            .to_string()
            .contains("not a number"));
    }
}
