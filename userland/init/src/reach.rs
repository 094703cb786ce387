//! `havn-init --check`: can each daemon reach the paths it uses, as the user it will
//! run as, with no capabilities (so no `CAP_DAC_OVERRIDE`, even for uid 0)?

use std::os::unix::fs::MetadataExt;
use std::path::{Component, PathBuf};

/// What the daemon must be able to do with the last component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Look names up in a directory (search, `x`).
    Search,
    /// Read a file.
    Read,
    /// Read and write (a device node).
    ReadWrite,
}

/// One path a daemon uses.
#[derive(Debug, Clone)]
pub struct Use {
    /// Which daemon.
    pub daemon: &'static str,
    /// Its uid and gid.
    pub ids: (u32, u32),
    /// The setting that names the path.
    pub setting: &'static str,
    /// The path.
    pub path: PathBuf,
    /// What it needs there.
    pub need: Need,
    /// Reached through a descriptor havn-init opens (as root): only the last
    /// component's own permissions matter, not the directories above it.
    pub via_fd: bool,
}

fn allowed(meta: &std::fs::Metadata, (uid, gid): (u32, u32), bits: u32) -> bool {
    let mode = meta.mode();
    let granted = if meta.uid() == uid {
        (mode >> 6) & 7
    } else if meta.gid() == gid {
        (mode >> 3) & 7
    } else {
        mode & 7
    };
    granted & bits == bits
}

/// Why `u.daemon` cannot use `u.path`, naming the component that stops it; `None`
/// when it can. A path that does not exist yet is fine if its nearest existing
/// ancestor can be searched (havn-init or the daemon creates it).
pub fn problem(u: &Use) -> Option<String> {
    let who = format!(
        "{} (uid {}, gid {}, no capabilities)",
        u.daemon, u.ids.0, u.ids.1
    );
    let mut at = PathBuf::new();
    let comps: Vec<Component> = u.path.components().collect();
    for (i, c) in comps.iter().enumerate() {
        at.push(c.as_os_str());
        if u.via_fd && i + 1 < comps.len() {
            continue;
        }
        let meta = match std::fs::metadata(&at) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => return Some(format!("{who}: {} {}: {e}", u.setting, at.display())),
        };
        let last = i + 1 == comps.len();
        let (bits, what) = match (last, u.need) {
            (false, _) | (true, Need::Search) => (1, "search"),
            (true, Need::Read) => (4, "read"),
            (true, Need::ReadWrite) => (6, "read and write"),
        };
        if !last && !meta.is_dir() {
            return Some(format!(
                "{who}: {} {}: {} is not a directory",
                u.setting,
                u.path.display(),
                at.display()
            ));
        }
        if !allowed(&meta, u.ids, bits) {
            return Some(format!(
                "{who} cannot reach {} {}: {} is mode {:04o} owned by {}:{} (no {what} permission)",
                u.setting,
                u.path.display(),
                at.display(),
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid()
            ));
        }
    }
    None
}

/// Every problem among `uses`.
pub fn problems(uses: &[Use]) -> Vec<String> {
    uses.iter().filter_map(problem).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_private_directory_on_the_way_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("home");
        std::fs::create_dir(&private).unwrap();
        std::fs::write(private.join("f"), b"x").unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let me = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        let mk = |ids, need| Use {
            daemon: "havn-test",
            ids,
            setting: "x.file",
            path: private.join("f"),
            need,
            via_fd: false,
        };
        assert_eq!(problem(&mk(me, Need::Read)), None, "the owner reaches it");
        let other = (me.0 + 4242, me.1 + 4242);
        let p = problem(&mk(other, Need::Read)).expect("another uid is stopped");
        assert!(
            p.contains(&private.display().to_string())
                && p.contains("0700")
                && p.contains("search"),
            "{p}"
        );
        // A path that does not exist yet is fine when its parent is reachable.
        let mut u = mk(me, Need::Search);
        u.path = private.join("later/deeper");
        assert_eq!(problem(&u), None);
        // Through a descriptor: the private directory above does not matter.
        let mut u = mk(other, Need::Read);
        u.via_fd = true;
        std::fs::set_permissions(private.join("f"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        assert_eq!(problem(&u), None);
    }
}
