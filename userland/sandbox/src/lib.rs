//! One restrictive sandbox profile factory (crosvm `jail/src/helpers.rs` style) and the
//! seccomp policies of the three daemons (Firecracker style: data files compiled in at
//! build time, never empty in any build).
//!
//! The sandbox is applied in two halves:
//!
//! 1. **Before exec, by the supervisor** ([`Profile`], installed on a
//!    [`std::process::Command`] with [`Profile::install`]): fd placement at the
//!    documented numbers with everything else close-on-exec, a scrubbed environment,
//!    new mount/IPC/UTS (and by default network) namespaces, `setgroups([])` +
//!    `setresgid` + `setresuid` to an unprivileged user, every capability set
//!    cleared, and `PR_SET_NO_NEW_PRIVS`. All of it runs between `fork` and `exec`,
//!    so it is precomputed in the parent and the child only makes raw syscalls.
//! 2. **First thing in the daemon's `main`** ([`enter`]): verify that the first half
//!    happened (no capabilities; for netd, not root) and install the daemon's
//!    seccomp allow-list ([`apply_seccomp`]). A filter installed before exec would
//!    have to allow `execve` and everything the dynamic loader does; installed after,
//!    `execve` is forbidden.
//!
//! ```no_run
//! // First statement of havn-netd's main, before any thread or runtime starts:
//! if let Err(e) = havn_sandbox::enter(havn_sandbox::DaemonKind::Netd) {
//!     eprintln!("havn-netd: refusing to run: {e}");
//!     std::process::exit(78);
//! }
//! // ... build the tokio runtime, serve ...
//! ```

mod child;
mod profile;
mod seccomp;
mod status;

pub use profile::{reserve_low_fds, user_ids, Profile, MAX_FDS};
pub use seccomp::{apply_seccomp, policy_json, program};
pub use status::ProcStatus;

use std::fmt;

/// The sandboxed daemons; each has its own seccomp policy and profile exceptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DaemonKind {
    /// havn-attestd: holds the TPM (device fd passed by init, or swtpm over TCP).
    Attestd,
    /// havn-execd: the executor; GPU device nodes.
    Execd,
    /// havn-netd: the only network-facing daemon; uid nobody, no capabilities.
    Netd,
}

/// The seccomp policies are named by daemon: `apply_seccomp(Policy::Netd)`.
pub type Policy = DaemonKind;

impl DaemonKind {
    /// All daemons, in start order.
    pub const ALL: [DaemonKind; 3] = [Self::Attestd, Self::Execd, Self::Netd];

    /// Short name (`netd`), also the policy file stem.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Attestd => "attestd",
            Self::Execd => "execd",
            Self::Netd => "netd",
        }
    }

    /// Binary name (`havn-netd`).
    pub const fn binary(self) -> &'static str {
        match self {
            Self::Attestd => "havn-attestd",
            Self::Execd => "havn-execd",
            Self::Netd => "havn-netd",
        }
    }

    /// Parses `netd` or `havn-netd`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.strip_prefix("havn-").unwrap_or(s);
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
}

impl fmt::Display for DaemonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.binary())
    }
}

/// Why sandboxing failed. Every error means: do not run.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A system call failed while preparing the profile.
    #[error("{what}: {source}")]
    Sys {
        /// Which step.
        what: &'static str,
        /// Cause.
        source: nix::errno::Errno,
    },
    /// The unprivileged user does not exist.
    #[error("user {0:?} not found")]
    NoSuchUser(String),
    /// More descriptors than a profile can place.
    #[error("at most {MAX_FDS} descriptors can be passed, got {0}")]
    TooManyFds(usize),
    /// A descriptor target below 3 (stdio is inherited as is).
    #[error("descriptor target {0} is reserved for stdio")]
    StdioTarget(i32),
    /// `/proc/self/status` unreadable or unparsable.
    #[error("cannot read process status: {0}")]
    Status(String),
    /// The supervisor did not drop privileges before exec: refuse to run.
    #[error("not sandboxed by havn-init: {0}")]
    NotDropped(String),
    /// A `prctl` before the filter failed.
    #[error("prctl {0}: {1}")]
    Prctl(&'static str, nix::errno::Errno),
    /// Installing the seccomp filter failed.
    #[error("seccomp: {0}")]
    Seccomp(#[from] seccompiler::Error),
}

/// The daemon half of the sandbox; call it first thing in `main`, before any thread
/// or async runtime starts (the filter is synchronised to all threads anyway, but
/// nothing should run unfiltered).
///
/// Checks that havn-init dropped privileges before exec (every capability set
/// empty, including the bounding set; for netd also a non-root uid), sets
/// `PR_SET_NO_NEW_PRIVS`, and installs `kind`'s seccomp allow-list, whose default
/// action kills the process. Returns an error, and installs nothing, if the
/// process still holds privilege: the daemon must exit.
///
/// Before the filter: the process name becomes the daemon's own (havn-init execs the
/// measured file through `/proc/self/fd/N`, which would leave `ps`, `top` and
/// `pgrep -x havn-netd` seeing `N`), and attestd makes itself undumpable (no core
/// file, no `/proc/<pid>/mem` or ptrace for a process of the same uid without
/// `CAP_SYS_PTRACE`, i.e. execd).
pub fn enter(kind: DaemonKind) -> Result<(), SandboxError> {
    let st = ProcStatus::read_self()?;
    st.check_dropped(kind)
        .map_err(|what| SandboxError::NotDropped(what.to_string()))?;
    let name =
        std::ffi::CString::new(kind.binary()).map_err(|_| SandboxError::Status("name".into()))?;
    nix::sys::prctl::set_name(&name).map_err(|e| SandboxError::Prctl("PR_SET_NAME", e))?;
    if kind == DaemonKind::Attestd {
        nix::sys::prctl::set_dumpable(false)
            .map_err(|e| SandboxError::Prctl("PR_SET_DUMPABLE", e))?;
        // Checked before the filter (which forbids prctl): never run dumpable.
        if nix::sys::prctl::get_dumpable().map_err(|e| SandboxError::Prctl("PR_GET_DUMPABLE", e))? {
            return Err(SandboxError::NotDropped("attestd is still dumpable".into()));
        }
    }
    apply_seccomp(kind)
}
