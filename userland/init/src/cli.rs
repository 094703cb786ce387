//! Command line.

use crate::Backoff;
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

/// havn-init: the Havn node supervisor (PID 1 in the appliance image).
///
/// Starts havn-attestd, havn-execd and havn-netd in that order, each in its
/// sandbox profile with its IPC socketpairs at fixed descriptor numbers, has
/// attestd measure every binary (sha256) before execd and netd are exec'd, restarts
/// the whole set with exponential backoff when any daemon exits, and on
/// SIGTERM/SIGINT stops netd, execd, then attestd and exits 0.
///
/// Daemon binaries: `[<daemon>].binary` in the config, else `node.bin_dir/havn-<daemon>`,
/// else the directory havn-init lives in. Logs are JSON lines on stderr (filter:
/// --log, else RUST_LOG, else `info`). Must run as root (except --check).
///
/// Exit codes: 0 clean shutdown, 66 daemon binary missing, 70 supervisor or
/// attestd channel failure, 71 sandbox or TPM device setup, 77 refused (not root),
/// 78 bad config.
#[derive(Debug, Clone, Parser)]
#[command(name = "havn-init", version, about, long_about)]
pub struct Args {
    /// The node config (node.toml).
    #[arg(long, value_name = "PATH")]
    pub config: PathBuf,

    /// Validate the config, resolve and hash the daemon binaries, print the start
    /// plan (binaries, digests, descriptors, sandbox profiles) and exit.
    #[arg(long)]
    pub check: bool,

    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,

    /// First restart delay after a daemon exits.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub backoff_initial_ms: u64,

    /// Largest restart delay.
    #[arg(long, value_name = "MS", default_value_t = 5_000)]
    pub backoff_max_ms: u64,

    /// A set that stayed up this long resets the backoff.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub stable_after_ms: u64,

    /// How long a daemon gets between SIGTERM and SIGKILL.
    #[arg(long, value_name = "MS", default_value_t = 5_000)]
    pub stop_timeout_ms: u64,
}

impl Args {
    /// The restart backoff these flags describe.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(
            Duration::from_millis(self.backoff_initial_ms),
            Duration::from_millis(self.backoff_max_ms),
            Duration::from_millis(self.stable_after_ms),
        )
    }

    /// SIGTERM → SIGKILL grace period.
    pub fn stop_timeout(&self) -> Duration {
        Duration::from_millis(self.stop_timeout_ms)
    }
}
