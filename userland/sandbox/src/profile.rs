//! The restrictive profile factory (crosvm `jail/src/helpers.rs` style): the default
//! takes everything away; a daemon opts out of one restriction by name.

use crate::child::{self, Plan};
use crate::{DaemonKind, SandboxError};
use nix::sched::CloneFlags;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Once;

/// Most descriptors a profile can place in the child (above stdio).
pub const MAX_FDS: usize = child::MAX_FDS;

/// Descriptors below this number are kept occupied in the supervisor by
/// [`reserve_low_fds`].
const RESERVED_FDS: i32 = 16;

/// `nobody` when the user database has no entry (e.g. an initramfs without
/// `/etc/passwd`).
const NOBODY: (u32, u32) = (65534, 65534);

/// What a child gets. Build with [`Profile::restrictive`] (or
/// [`Profile::for_daemon`]), relax by name, then [`Profile::install`] on a `Command`.
#[derive(Debug, Clone)]
pub struct Profile {
    namespaces: CloneFlags,
    ids: Option<(u32, u32)>,
    env: Vec<(OsString, OsString)>,
    fds: Vec<(RawFd, RawFd)>,
}

impl Profile {
    /// The default: new mount (all mounts private), IPC, UTS and network
    /// namespaces; uid/gid `nobody` with no supplementary groups; every capability
    /// set (bounding, inheritable, ambient, permitted, effective) empty, root
    /// locked out of regaining them (`SECBIT_NOROOT`); `no_new_privs`; an empty
    /// environment; no descriptor above stdio.
    pub fn restrictive() -> Self {
        Self {
            namespaces: CloneFlags::CLONE_NEWNS
                | CloneFlags::CLONE_NEWIPC
                | CloneFlags::CLONE_NEWUTS
                | CloneFlags::CLONE_NEWNET,
            ids: Some(lookup_user("nobody").unwrap_or(NOBODY)),
            env: Vec::new(),
            fds: Vec::new(),
        }
    }

    /// The profile havn-init uses for `kind`, exceptions listed by name:
    /// - netd: keeps the network namespace (it serves); runs as `user` (`netd.user`).
    /// - execd: runs as `user` (`execd.user`), its own uid, so it cannot open attestd's
    ///   root-owned, mode-0700 state (GPU device nodes are world-accessible).
    /// - attestd: keeps uid 0 (its sealed state is root-owned); the TPM is passed
    ///   as a descriptor. If it reaches swtpm over TCP, add
    ///   [`keep_network`](Self::keep_network). `user` is not used.
    pub fn for_daemon(kind: DaemonKind, user: &str) -> Result<Self, SandboxError> {
        Ok(match kind {
            DaemonKind::Netd => Self::restrictive().keep_network().run_as_user(user)?,
            DaemonKind::Execd => Self::restrictive().run_as_user(user)?,
            DaemonKind::Attestd => Self::restrictive().keep_uid(),
        })
    }

    /// Exception: stay in the parent's network namespace.
    pub fn keep_network(mut self) -> Self {
        self.namespaces.remove(CloneFlags::CLONE_NEWNET);
        self
    }

    /// Addition: a new PID namespace (it applies to the daemon's children; the
    /// daemon itself keeps its pid).
    pub fn with_pid_namespace(mut self) -> Self {
        self.namespaces.insert(CloneFlags::CLONE_NEWPID);
        self
    }

    /// Exception: keep the supervisor's uid/gid (capabilities are still cleared).
    pub fn keep_uid(mut self) -> Self {
        self.ids = None;
        self
    }

    /// Run as `uid`/`gid`.
    pub fn run_as(mut self, uid: u32, gid: u32) -> Self {
        self.ids = Some((uid, gid));
        self
    }

    /// Run as the named user and its primary group (`nobody` falls back to
    /// 65534 when the user database has no entry).
    pub fn run_as_user(self, name: &str) -> Result<Self, SandboxError> {
        let ids = user_ids(name)?;
        if ids.0 == 0 || ids.1 == 0 {
            return Err(SandboxError::NotDropped(format!(
                "user {name:?} is root (uid {} gid {})",
                ids.0, ids.1
            )));
        }
        Ok(self.run_as(ids.0, ids.1))
    }

    /// Sets one environment variable in the child (the rest is empty).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// Copies `key` from this process's environment, if it is set.
    pub fn pass_env(self, key: &str) -> Self {
        match std::env::var_os(key) {
            Some(v) => self.env(key, v),
            None => self,
        }
    }

    /// Places `source` at descriptor number `target` (≥ 3) in the child. `source`
    /// must stay open until the `Command` has been spawned.
    pub fn fd(mut self, source: BorrowedFd<'_>, target: RawFd) -> Self {
        self.fds.push((source.as_raw_fd(), target));
        self
    }

    /// Namespaces the child gets.
    pub fn namespaces(&self) -> CloneFlags {
        self.namespaces
    }

    /// `(uid, gid)` the child switches to, if any.
    pub fn ids(&self) -> Option<(u32, u32)> {
        self.ids
    }

    /// The environment the child gets.
    pub fn environment(&self) -> &[(OsString, OsString)] {
        &self.env
    }

    /// Installs the profile on `cmd`: clears its environment and sets the profile's,
    /// and registers a `pre_exec` hook that applies the rest in the child. Also
    /// calls [`reserve_low_fds`] so that no descriptor the parent opens later
    /// (including the std exec-error pipe) lands on a target number.
    pub fn install(&self, cmd: &mut Command) -> Result<(), SandboxError> {
        if self.fds.len() > MAX_FDS {
            return Err(SandboxError::TooManyFds(self.fds.len()));
        }
        let mut plan = Plan {
            fds: [(-1, -1); MAX_FDS],
            nfds: self.fds.len(),
            keep: [i32::MAX; MAX_FDS],
            unshare: self.namespaces.bits(),
            private_mounts: self.namespaces.contains(CloneFlags::CLONE_NEWNS),
            ids: self.ids,
            clear_groups: self.ids.is_some() || nix::unistd::geteuid().is_root(),
            max_fd: max_fd(),
        };
        let mut targets: Vec<RawFd> = Vec::with_capacity(self.fds.len());
        for (slot, &(src, dst)) in plan.fds.iter_mut().zip(&self.fds) {
            if dst < 3 {
                return Err(SandboxError::StdioTarget(dst));
            }
            if targets.contains(&dst) || dst >= RESERVED_FDS {
                return Err(SandboxError::Sys {
                    what: "descriptor target duplicated or above the reserved range",
                    source: nix::errno::Errno::EINVAL,
                });
            }
            targets.push(dst);
            *slot = (src, dst);
        }
        targets.sort_unstable();
        for (slot, t) in plan.keep.iter_mut().zip(&targets) {
            *slot = *t;
        }
        reserve_low_fds();
        cmd.env_clear();
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        // SAFETY: `child::apply` makes only async-signal-safe raw system calls on the
        // precomputed, `Copy` plan; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || child::apply(&plan));
        }
        Ok(())
    }
}

/// The uid and gid of the user `name`, as havn-init runs a daemon under it (`nobody`
/// is 65534 when the user database has no entry); an unknown user is an error, never
/// "any user".
pub fn user_ids(name: &str) -> Result<(u32, u32), SandboxError> {
    match lookup_user(name) {
        Some(ids) => Ok(ids),
        None if name == "nobody" => Ok(NOBODY),
        None => Err(SandboxError::NoSuchUser(name.to_string())),
    }
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let u = nix::unistd::User::from_name(name).ok()??;
    Some((u.uid.as_raw(), u.gid.as_raw()))
}

fn max_fd() -> i32 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(4096, |(soft, _)| soft.min(1 << 20) as i32)
}

/// Keeps every descriptor number below 16 occupied in this process (with
/// close-on-exec placeholders), so that sockets, pipes and the std exec-error pipe
/// opened later never sit on a number a child's descriptor is moved to. Idempotent;
/// call it early in a supervisor's `main`.
pub fn reserve_low_fds() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| loop {
        // SAFETY: eventfd needs no path (works before /dev is mounted); the
        // descriptor is owned by this function.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if !(0..RESERVED_FDS).contains(&fd) {
            if fd >= 0 {
                // SAFETY: we just opened it and nothing else refers to it.
                unsafe { libc::close(fd) };
            }
            break;
        }
        // Below the line: intentionally kept open for the life of the process.
    });
}
