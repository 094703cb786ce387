//! The daemon's command line and process-level run loop (main.rs is a thin shell).

use crate::{Fatal, StartOptions, EXIT_CONFIG, EXIT_STARTUP};
use clap::Parser;
use havn_ipc::{AsyncClient, PeerPolicy};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// havn-netd: the node's mTLS job intake, durable queue and heartbeat daemon.
///
/// Started by havn-init as uid 65534 with no capabilities and a seccomp filter,
/// with two IPC socketpairs already open: fd 3 = client end of netd → execd,
/// fd 4 = client end of netd → attestd. It reads its TLS files once at start and
/// writes only below `<state_dir>/netd/` (the job WAL).
///
/// Exit codes: 0 clean stop (SIGTERM/SIGINT); 1 startup failure; 70 internal task
/// panicked; 74 a durable WAL write failed; 75 the execd channel failed (restart
/// netd with fresh channels); 76 the attestd channel failed (same); 78 bad config.
#[derive(Debug, Parser)]
#[command(name = "havn-netd", version)]
pub struct Args {
    /// Node configuration file (the [netd] section and node.state_dir are used).
    #[arg(long, value_name = "FILE", default_value = "/etc/havn/node.toml")]
    pub config: PathBuf,
    /// Log filter, overriding [netd] log (e.g. `debug`, `havn_netd=trace`).
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,
}

/// Loads the config, starts logging, connects the two channels and serves until a
/// fatal condition. Returns the process exit code.
pub fn run(args: &Args, execd_fd: OwnedFd, attestd_fd: OwnedFd) -> u8 {
    let cfg = match havn_config::NodeConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("havn-netd: {e}");
            return EXIT_CONFIG;
        }
    };
    let filter = args
        .log
        .clone()
        .or_else(|| cfg.netd.daemon.log.clone())
        .unwrap_or_else(|| "info".into());
    havn_log::init(Some(&filter));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("netd")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return EXIT_STARTUP;
        }
    };
    rt.block_on(async move {
        // attestd runs as havn-init's uid (root), execd as `execd.user`; each channel is
        // pinned to the process that said hello (havn-ipc), so nothing else may speak
        // on it. A user that cannot be looked up is a configuration error.
        let execd_uid = match havn_sandbox::user_ids(&cfg.execd.user) {
            Ok((uid, _)) => uid,
            Err(e) => {
                tracing::error!(error = %e, "execd.user");
                return EXIT_CONFIG;
            }
        };
        let execd = match AsyncClient::connect(execd_fd, PeerPolicy::uid(execd_uid)).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "execd channel (fd 3) handshake failed");
                return EXIT_STARTUP;
            }
        };
        let attestd = match AsyncClient::connect(attestd_fd, PeerPolicy::uid(0)).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "attestd channel (fd 4) handshake failed");
                return EXIT_STARTUP;
            }
        };
        let mut running = match crate::start(&cfg, execd, attestd, StartOptions::default()).await {
            Ok(r) => r,
            Err(
                e @ (crate::StartError::WalCorrupt(_)
                | crate::StartError::NoTlsKey
                | crate::StartError::MeshConfig(_)),
            ) => {
                // Restarting cannot fix it: havn-init stops and shows this.
                tracing::error!(error = %e, "startup refused");
                eprintln!("havn-netd: {e}");
                return EXIT_CONFIG;
            }
            Err(e) => {
                tracing::error!(error = %e, "startup failed");
                return EXIT_STARTUP;
            }
        };
        let why = running.wait().await;
        match &why {
            Fatal::Signal => tracing::info!("stopping on signal"),
            other => tracing::error!(reason = ?other, code = other.exit_code(), "stopping"),
        }
        why.exit_code()
    })
}
