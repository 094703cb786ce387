//! havn-attestd: holds the TPM (through [`havn_attest_agent::Agent`]), the sealed
//! ed25519 node key and the slashing-protection record; measures the userland for
//! havn-init, gates havn-execd, signs receipts it assembles from execd's results,
//! signs heartbeats and answers quote requests relayed by havn-netd.
//!
//! Channels (descriptors placed by havn-init, see `havn_config::fds`):
//! fd 3 init → attestd, fd 4 execd → attestd, fd 5 netd → attestd.
//!
//! Phases (OpenSSH monitor style):
//! 1. **boot**: only init's channel is open; `Measure` any number of times, then one
//!    `Status` ends boot. The node key is then unsealed (or created and sealed to the
//!    measured PCRs on first boot).
//! 2. **serving**: execd may `Gate`/`Report`; netd may `Quote`/`Heartbeat`/`Identity`;
//!    init may `Status`/`Shutdown`. netd can never ask for a receipt signature: its
//!    request enum has no such variant.

mod service;

pub use service::{Service, ServiceError};

use havn_config::{fds, NodeConfig};
use havn_ipc::{IpcError, PeerPolicy, Phase, Server};
use havn_proto::ipc::{ExecdAttestd, InitAttestd, InitRequest, InitResponse, NetdAttestd};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// Command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "havn-attestd",
    version,
    about = "Havn attestation daemon: TPM, sealed node key, gate, receipt signing",
    long_about = "Started by havn-init with its IPC channels on fds 3 (init), 4 (execd) and 5 (netd).\n\
                  Holds the TPM (tpm.tcti in node.toml), the sealed ed25519 node key and the\n\
                  one-receipt-per-job record under state_dir/attestd/."
)]
pub struct Args {
    /// Path to node.toml.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

/// Why the daemon stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad config.
    #[error(transparent)]
    Config(#[from] havn_config::ConfigError),
    /// TPM / key / store failure.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// A channel descriptor havn-init should have placed is not open.
    #[error(
        "fd {0} is not open: this daemon is started by havn-init, which places its IPC channels"
    )]
    MissingFd(i32),
    /// IPC failure on a channel that must stay up.
    #[error("{channel} channel: {source}")]
    Ipc {
        /// Which channel.
        channel: &'static str,
        /// Cause.
        source: IpcError,
    },
    /// poll(2) failed.
    #[error("poll: {0}")]
    Poll(nix::errno::Errno),
}

impl Error {
    /// Distinct exit codes for the supervisor's logs.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => 2,
            Error::Service(_) => 3,
            Error::Ipc { .. } | Error::MissingFd(_) => 4,
            Error::Poll(_) => 5,
        }
    }
}

fn take_fd(n: i32) -> Result<OwnedFd, Error> {
    havn_ipc::inherited_fd(n).ok_or(Error::MissingFd(n))
}

fn ipc(channel: &'static str) -> impl FnOnce(IpcError) -> Error {
    move |source| Error::Ipc { channel, source }
}

/// Runs the daemon until init says `Shutdown` or its channel closes.
pub fn run(args: Args) -> Result<(), Error> {
    let cfg = NodeConfig::load(&args.config)?;
    init_tracing(cfg.attestd.log.as_deref());
    let mut svc = Service::open(&cfg)?;
    tracing::info!(tcti = %cfg.tpm.tcti, "havn-attestd started");

    // Phase 1: boot. Only init may talk; it reports each binary it will exec.
    let parent = nix::unistd::getppid().as_raw();
    let mut init =
        Server::<InitAttestd>::accept(take_fd(fds::ATTESTD_INIT)?, PeerPolicy::pid(parent))
            .map_err(ipc("init"))?;
    init.set_phase(Phase::new("boot", &[0], &[1]));
    loop {
        let req = init.recv().map_err(ipc("init"))?;
        let done = matches!(req.msg, InitRequest::Status);
        let resp = svc.handle_init(req.msg);
        init.reply(&resp).map_err(ipc("init"))?;
        if done {
            break;
        }
    }
    init.set_phase(Phase::new("serving", &[1, 2], &[]));
    if !svc.has_key() {
        tracing::error!("node key unavailable: the gate stays closed and nothing will be signed");
    }

    // Phase 2: execd and netd connect (init starts them after boot).
    let netd_uid = nix::unistd::User::from_name(&cfg.netd.user)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw());
    let mut execd = Some(
        Server::<ExecdAttestd>::accept(take_fd(fds::ATTESTD_EXECD)?, PeerPolicy::any())
            .map_err(ipc("execd"))?,
    );
    let netd_policy = PeerPolicy {
        uid: netd_uid,
        ..PeerPolicy::any()
    };
    let mut netd = match Server::<NetdAttestd>::accept(take_fd(fds::ATTESTD_NETD)?, netd_policy) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "netd channel refused");
            None
        }
    };

    loop {
        let mut pfds = vec![PollFd::new(init.as_fd(), PollFlags::POLLIN)];
        if let Some(e) = &execd {
            pfds.push(PollFd::new(e.as_fd(), PollFlags::POLLIN));
        }
        if let Some(n) = &netd {
            pfds.push(PollFd::new(n.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut pfds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::Poll(e)),
        }
        let ready: Vec<bool> = pfds
            .iter()
            .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(pfds);
        let mut idx = 0;
        if ready.first().copied().unwrap_or(false) {
            let req = init.recv().map_err(ipc("init"))?;
            let shutdown = matches!(req.msg, InitRequest::Shutdown);
            let resp = svc.handle_init(req.msg);
            init.reply(&resp).map_err(ipc("init"))?;
            if shutdown || matches!(resp, InitResponse::ShuttingDown) {
                tracing::info!("shutdown requested by init");
                return Ok(());
            }
        }
        idx += 1;
        if execd.is_some() {
            if ready.get(idx).copied().unwrap_or(false) {
                if let Some(ch) = execd.as_mut() {
                    match ch.recv() {
                        Ok(req) => {
                            let resp = svc.handle_execd(req.msg);
                            if let Err(e) = ch.reply(&resp) {
                                tracing::warn!(error = %e, "execd channel lost");
                                execd = None;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "execd channel closed");
                            execd = None;
                        }
                    }
                }
            }
            idx += 1;
        }
        if ready.get(idx).copied().unwrap_or(false) {
            if let Some(ch) = netd.as_mut() {
                match ch.recv() {
                    Ok(req) => {
                        let resp = svc.handle_netd(req.msg);
                        if let Err(e) = ch.reply(&resp) {
                            tracing::warn!(error = %e, "netd channel lost");
                            netd = None;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "netd channel closed");
                        netd = None;
                    }
                }
            }
        }
        if execd.is_none() && netd.is_none() {
            tracing::warn!("execd and netd are both gone; waiting for init");
        }
    }
}

fn init_tracing(filter: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter.unwrap_or("info"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .try_init();
}
