//! The persisted userland event log: one JSON event per line, appended and fsynced
//! (O(1) per extend). A torn last line from a crash is dropped on open.

use crate::error::{io, AgentError};
use havn_attest::Event;
use std::path::{Path, PathBuf};

pub(crate) struct EventLogFile {
    path: PathBuf,
    file: std::fs::File,
}

impl EventLogFile {
    pub(crate) fn open(path: &Path) -> Result<(Self, Vec<Event>), AgentError> {
        let (file, text) = crate::fsutil::open_line_log(path)?;
        let mut events = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let e: Event = serde_json::from_str(line).map_err(|e| AgentError::State {
                path: path.display().to_string(),
                msg: format!("line {}: {e}", n + 1),
            })?;
            events.push(e);
        }
        Ok((
            Self {
                path: path.to_path_buf(),
                file,
            },
            events,
        ))
    }

    /// Append one event durably; returns the file length before it (for rollback).
    pub(crate) fn append(&mut self, e: &Event) -> Result<u64, AgentError> {
        let before = self.file.metadata().map_err(io(&self.path))?.len();
        let mut line = serde_json::to_vec(e).map_err(|err| AgentError::State {
            path: self.path.display().to_string(),
            msg: err.to_string(),
        })?;
        line.push(b'\n');
        crate::fsutil::append_line(&mut self.file, &self.path, before, &line)?;
        Ok(before)
    }

    /// Truncate back to `len` bytes (rollback, or 0 for a new boot).
    pub(crate) fn truncate(&mut self, len: u64) -> Result<(), AgentError> {
        self.file.set_len(len).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))
    }
}
