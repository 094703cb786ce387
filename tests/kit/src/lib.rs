//! Test fixtures shared by the crates' tests (dev-dependency only).
//!
//! - [`require_root`]: a test that needs root skips, printing why, outside CI, and
//!   fails under `CI=true` (never passes vacuously there).
//! - [`SmallDisk`]: a small tmpfs mounted on a temp directory, which a test fills to
//!   `ENOSPC` and frees again (needs root: call [`require_root`] first).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether the tests run under CI (`CI=true`), where nothing may be skipped.
pub fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Prints `skipping: <why>` and, when `HAVN_SKIP_LOG` names a file, appends the
/// reason there with the test binary's name, so the test command can count skips in
/// its summary (a passing test's output is otherwise captured).
pub fn note_skip(why: &str) {
    eprintln!("skipping: {why}");
    if let Some(path) = std::env::var_os("HAVN_SKIP_LOG") {
        let exe = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{exe}: {why}");
        }
    }
}

/// `true` when running as root. Otherwise prints `skipping: <why>` and returns `false`,
/// or panics under `CI=true`.
pub fn require_root(why: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        return true;
    }
    assert!(!under_ci(), "needs root under CI=true (uid {uid}): {why}");
    note_skip(&format!("not root (uid {uid}): {why}"));
    false
}

/// `found`, or else: prints `skipping: <what> missing: <why>` and returns `false`, or
/// panics under `CI=true` (the test command installs everything a test needs).
pub fn require(found: bool, what: &str, why: &str) -> bool {
    if found {
        return true;
    }
    assert!(!under_ci(), "{what} is missing under CI=true: {why}");
    note_skip(&format!("{what} missing: {why}"));
    false
}

/// `true` when `tool` is on `PATH`. Otherwise prints `skipping: <why>` and returns
/// `false`, or panics under `CI=true` (the test command installs every tool).
pub fn require_tool(tool: &str, why: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()));
    if found {
        return true;
    }
    assert!(!under_ci(), "{tool} is not on PATH under CI=true: {why}");
    note_skip(&format!("{tool} not on PATH: {why}"));
    false
}

/// A tmpfs of a few hundred KiB, mounted on a fresh temp directory and unmounted on drop.
#[derive(Debug)]
pub struct SmallDisk {
    dir: tempfile::TempDir,
    filler: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `bytes` (rounded up to pages) with mode 0755.
    ///
    /// # Panics
    /// When the mount fails (call [`require_root`] first).
    pub fn mount(bytes: u64) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the tmpfs");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes},mode=0755"))
            .arg("tmpfs")
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            st.success(),
            "mount tmpfs on {}: {st}",
            dir.path().display()
        );
        let filler = dir.path().join(".filler");
        Self { dir, filler }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk with one file until a write gets `ENOSPC`. Returns the bytes written.
    pub fn fill(&self) -> u64 {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.filler)
            .expect("open filler");
        let block = [0xA5u8; 4096];
        let mut total = 0u64;
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", self.filler.display()),
            }
        }
        // Byte-sized leftovers too, so not even a short line fits.
        while let Ok(n) = f.write(&[0u8]) {
            if n == 0 {
                break;
            }
            total += 1;
        }
        total
    }

    /// Frees what [`SmallDisk::fill`] took.
    pub fn free(&self) {
        match std::fs::remove_file(&self.filler) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("removing {}: {e}", self.filler.display()),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: a daemon that still holds a file open must not make the test panic.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A path through which any user can exec `bin`: `/proc/self/fd/N` of a descriptor
/// this process keeps open (N ≥ 200, close-on-exec), so a test that drops to an
/// unprivileged uid before exec works from a clone under a mode-0700 directory (the
/// way havn-init execs the measured daemons). The descriptor is kept for the life of
/// the test process.
pub fn exec_path(bin: &str) -> PathBuf {
    use std::collections::HashMap;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::sync::{Mutex, OnceLock};
    static OPEN: OnceLock<Mutex<HashMap<String, OwnedFd>>> = OnceLock::new();
    let mut open = OPEN
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let fd = open.entry(bin.to_string()).or_insert_with(|| {
        let f = std::fs::File::open(bin).unwrap_or_else(|e| panic!("open {bin}: {e}"));
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own returns a new descriptor (or -1).
        let high = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 200) };
        assert!(
            high >= 0,
            "F_DUPFD_CLOEXEC: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `high` was just returned to us and nothing else owns it.
        unsafe { OwnedFd::from_raw_fd(high) }
    });
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Files under `dir` (recursively, skipping entries named `skip`) whose bytes contain
/// `needle`: where a secret that must stay in memory reached the disk.
pub fn files_containing(dir: &Path, needle: &[u8], skip: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return hits;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == skip) {
            continue;
        }
        if p.is_dir() {
            hits.extend(files_containing(&p, needle, skip));
        } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
            hits.push(p);
        }
    }
    hits
}
