//! fsync discipline for state files.

use crate::error::{io, AgentError};
use std::io::Write;
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
