//! fsync discipline for state files.

use crate::error::{io, AgentError};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// Write `bytes` to `path` atomically: temp file, fsync, rename, fsync directory.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))?;
    sync_dir(dir)
}

/// fsync a directory so a rename or create in it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), AgentError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Opens (or creates, durably) an append-only file of newline-terminated records and
/// returns it positioned at the end, with its complete lines. A torn last line (a crash
/// mid-append, never acknowledged) is cut off and the cut is fsynced.
pub fn open_line_log(path: &Path) -> Result<(std::fs::File, String), AgentError> {
    let existed = path.exists();
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(io(path))?;
    if !existed {
        file.sync_all().map_err(io(path))?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io(path))?;
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    if complete != text.len() {
        file.set_len(u64::try_from(complete).unwrap_or(0))
            .map_err(io(path))?;
        file.sync_all().map_err(io(path))?;
        text.truncate(complete);
    }
    file.seek(std::io::SeekFrom::End(0)).map_err(io(path))?;
    Ok((file, text))
}

/// Appends one complete line at `len` (the file's length of complete lines) and fsyncs
/// it. A failed write or sync is cut back to `len` before the error returns, so nothing
/// of a failed append remains for the next one to glue onto; if even the cut fails the
/// error says so and the owner must reopen the file (which drops a torn tail).
pub fn append_line(
    file: &mut std::fs::File,
    path: &Path,
    len: u64,
    line: &[u8],
) -> Result<(), AgentError> {
    let written = file.write_all(line).and_then(|()| file.sync_data());
    if let Err(e) = written {
        if let Err(cut) = file.set_len(len).and_then(|()| file.sync_data()) {
            return Err(AgentError::State {
                path: path.display().to_string(),
                msg: format!("append failed ({e}) and cutting it back failed too ({cut})"),
            });
        }
        return Err(io(path)(e));
    }
    Ok(())
}
