//! havn-init: the node's supervisor. It runs as PID 1 in the appliance image and as
//! an ordinary supervisor on a dev host (as root: it creates namespaces and drops
//! privileges for its children).
//!
//! # What it does
//! 1. Reads `node.toml` ([`havn_config::NodeConfig`]) and resolves the three daemon
//!    binaries: `[<daemon>].binary`, else `node.bin_dir/havn-<daemon>`, else the
//!    directory havn-init itself lives in ([`plan::Plan`]).
//! 2. Creates one `SOCK_SEQPACKET` socketpair per IPC channel and hands each daemon
//!    its ends at the numbers in [`havn_config::fds`]; nothing else crosses exec
//!    (every other descriptor is close-on-exec), and the environment is rebuilt
//!    from a per-daemon allow-list ([`plan::DaemonPlan::env`]). With
//!    `tpm.tcti = "device:/dev/tpmrm0"` init opens the device and passes it to
//!    attestd as fd 6 (pass descriptors, do not open paths inside the sandbox).
//! 3. Creates `state_dir/<daemon>/` (0700, owned by the daemon's uid) and starts
//!    the set in order ([`spawn::start_set`]):
//!    - **attestd** first (caps cleared, `no_new_privs`, new mount/IPC/UTS
//!      namespaces, keeps uid 0 and, for a `swtpm:` TCTI, the network namespace);
//!    - init hashes (sha256) each binary and sends `InitRequest::Measure` for
//!      **attestd, execd, netd, in that order**, right after the init↔attestd
//!      handshake and **before** exec'ing execd and netd. attestd's own digest is
//!      the first message: attestd extends it itself, as in a measured-boot chain
//!      where each loader reports the next stage (here init is the loader that
//!      reports attestd after the fact, since attestd holds the TPM). Then one
//!      `InitRequest::Status`, which ends attestd's boot phase (only after it does
//!      attestd accept execd and netd). Every restart re-hashes and re-measures:
//!      the event log grows and the userland PCR moves, so a verifier replays the
//!      log rather than expecting one fixed PCR value. The file is hashed, then
//!      exec'd by path: a window in which a writable binary could be swapped; the
//!      appliance's binaries sit on a read-only, verity-checked root (dev hosts:
//!      keep `bin_dir` root-owned);
//!    - **execd** (caps cleared, `no_new_privs`, new mount/IPC/UTS/network
//!      namespaces, keeps uid 0 for device nodes);
//!    - **netd** (uid `netd.user` = `nobody`, no groups, no caps, `no_new_privs`,
//!      new mount/IPC/UTS namespaces, keeps the network namespace: it serves).
//!
//!    Each daemon then calls `havn_sandbox::enter(kind)` first thing in `main`,
//!    which refuses to run unless the above happened and installs its seccomp
//!    allow-list.
//! 4. Supervises ([`supervise::Supervisor`]): SIGCHLD through a signalfd, reaping
//!    every child (and, as PID 1, every orphan).
//! 5. Self-audits every `node.audit_interval_ms` (default 30 s, 0 = off; the first
//!    one as soon as a set is up): hashes each running daemon's
//!    `/proc/<pid>/exe` and sends `InitRequest::Audit`; attestd closes its gate on a
//!    mismatch and signs a matching audit for validators ([`spawn::audit`]). A
//!    channel failure during an audit restarts the set.
//!
//! # Restart rule: the whole set
//! Every channel is a socketpair created by init, and no channel can carry a
//! replacement end to a surviving peer, so a single daemon cannot be restarted
//! alone: **when any daemon exits, init stops the rest of the set in shutdown
//! order and starts the whole set again** (fresh socketpairs, fresh
//! measurements) after a backoff of `--backoff-initial-ms` (100 ms) doubling up to
//! `--backoff-max-ms` (5 s), reset once a set has been up `--stable-after-ms`
//! (30 s). Surviving peers see `WireError::PeerRestarted` (EOF on the socketpair)
//! before they are stopped; they never hang.
//!
//! # Shutdown
//! SIGTERM or SIGINT: netd, then execd, then attestd (which first gets
//! `InitRequest::Shutdown`): SIGTERM, up to `--stop-timeout-ms` (5 s), then
//! SIGKILL; every child is reaped; exit 0 (as PID 1: sync and power off).

pub mod backoff;
pub mod cli;
pub mod given_fds;
pub mod pid1;
pub mod plan;
pub mod reach;
pub mod spawn;
pub mod supervise;

pub use backoff::Backoff;
pub use cli::Args;

use std::path::PathBuf;

/// Why havn-init stopped or could not start a set.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The config file.
    #[error(transparent)]
    Config(#[from] havn_config::ConfigError),
    /// A daemon binary is missing or unreadable.
    #[error("{daemon} binary {path}: {source}")]
    Binary {
        /// Which daemon.
        daemon: &'static str,
        /// Path tried.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A file a daemon is given (node.toml, a TLS file) could not be read.
    #[error("{what} {path}: {source}")]
    File {
        /// Which setting.
        what: &'static str,
        /// Path tried.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A daemon stopped on a configuration error: restarting would only repeat it.
    #[error("{daemon} stopped on an error that restarting cannot fix (exit {code}: configuration, or state that needs the operator); its message is above. Fix it and start havn-init again")]
    DaemonConfig {
        /// Which daemon.
        daemon: &'static str,
        /// Its exit code.
        code: i32,
    },
    /// A daemon's state directory could not be prepared.
    #[error("state directory {path}: {source}")]
    StateDir {
        /// Directory.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The sandbox profile could not be built.
    #[error("sandbox for {daemon}: {source}")]
    Sandbox {
        /// Which daemon.
        daemon: &'static str,
        /// Cause.
        source: havn_sandbox::SandboxError,
    },
    /// fork/exec failed.
    #[error("spawn {daemon}: {source}")]
    Spawn {
        /// Which daemon.
        daemon: &'static str,
        /// Cause.
        source: std::io::Error,
    },
    /// The TPM device could not be opened.
    #[error("TPM device {path}: {source}")]
    Tpm {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The init ↔ attestd channel failed (handshake or measurement).
    #[error("attestd channel: {0}")]
    Attestd(String),
    /// A system call of the supervisor itself failed.
    #[error("{what}: {source}")]
    Sys {
        /// Which step.
        what: &'static str,
        /// Cause.
        source: nix::errno::Errno,
    },
    /// Refused to run.
    #[error("{0}")]
    Refused(String),
}

impl InitError {
    /// Whether the error is the operator's configuration (node.toml, a file or binary
    /// it names, a daemon that refused its config): restarting cannot fix it.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            InitError::Config(_)
                | InitError::File { .. }
                | InitError::Binary { .. }
                | InitError::DaemonConfig { .. }
        )
    }

    /// Distinct exit codes (sysexits-style) for `main`.
    pub fn exit_code(&self) -> i32 {
        match self {
            InitError::Config(_) => 78,
            InitError::Binary { .. } | InitError::File { .. } => 66,
            InitError::DaemonConfig { .. } => 78,
            InitError::Refused(_) => 77,
            InitError::Sandbox { .. } | InitError::Tpm { .. } | InitError::StateDir { .. } => 71,
            InitError::Spawn { .. } | InitError::Attestd(_) | InitError::Sys { .. } => 70,
        }
    }
}

/// `main` minus the process scrub and logging setup: load, plan, then either print
/// the plan (`--check`) or supervise until SIGTERM/SIGINT.
pub fn run(args: &Args) -> Result<(), InitError> {
    let is_pid1 = nix::unistd::getpid().as_raw() == 1;
    if is_pid1 {
        pid1::mount_early_filesystems();
    }
    havn_sandbox::reserve_low_fds();
    let cfg = havn_config::NodeConfig::load(&args.config)?;
    let plan = plan::Plan::new(&cfg, &args.config)?;
    if args.check {
        print!("{}", plan.describe()?);
        let problems = reach::problems(&plan.path_uses(&cfg)?);
        if problems.is_empty() {
            println!("paths: every daemon reaches what it uses, as the user it runs as");
            return Ok(());
        }
        for p in &problems {
            println!("UNREACHABLE: {p}");
        }
        return Err(InitError::Refused(format!(
            "{} path(s) a daemon cannot reach (listed above)",
            problems.len()
        )));
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(InitError::Refused(
            "havn-init must run as root: it creates namespaces and drops privileges for \
             the daemons (try --check to validate a config without root)"
                .into(),
        ));
    }
    let audit_every = (cfg.node.audit_interval_ms > 0)
        .then(|| std::time::Duration::from_millis(cfg.node.audit_interval_ms));
    let mut sup = supervise::Supervisor::new(plan, args.backoff(), args.stop_timeout())?
        .with_audit(audit_every);
    sup.run()?;
    if is_pid1 {
        pid1::power_off();
    }
    Ok(())
}
