//! The persisted userland event log: one JSON event per line, appended and fsynced
//! (O(1) per extend). A torn last line from a crash is dropped on open.

use crate::error::{io, AgentError};
use havn_attest::Event;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

pub(crate) struct EventLogFile {
    path: PathBuf,
    file: std::fs::File,
}

impl EventLogFile {
    pub(crate) fn open(path: &Path) -> Result<(Self, Vec<Event>), AgentError> {
        let existed = path.exists();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io(path))?;
        if !existed {
            crate::fsutil::sync_dir(path.parent().unwrap_or(Path::new(".")))?;
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(io(path))?;
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        if complete != text.len() {
            file.set_len(u64::try_from(complete).unwrap_or(0))
                .map_err(io(path))?;
            file.sync_all().map_err(io(path))?;
        }
        file.seek(std::io::SeekFrom::End(0)).map_err(io(path))?;
        let mut events = Vec::new();
        for (n, line) in text.get(..complete).unwrap_or("").lines().enumerate() {
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
        self.file.write_all(&line).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))?;
        Ok(before)
    }

    /// Truncate back to `len` bytes (rollback, or 0 for a new boot).
    pub(crate) fn truncate(&mut self, len: u64) -> Result<(), AgentError> {
        self.file.set_len(len).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))
    }
}
