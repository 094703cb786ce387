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
//! 2. **serving**: execd may `Gate`/`Report`, and `Capabilities` once (attestd signs
//!    the capability manifest it assembles from that report); netd may
//!    `Quote`/`Heartbeat`/`Identity`/`SelfAudit`/`Capabilities`; init may
//!    `Status`/`Shutdown`/`Audit`. netd can never ask for a receipt signature: its
//!    request enum has no such variant.
//!
//! Self-audit: every `node.audit_interval_ms` havn-init hashes each running daemon's
//! `/proc/<pid>/exe` and sends `Audit`; attestd compares each digest with this boot's
//! `Measure` of that name. A mismatch closes the gate (naming the binary) until an
//! audit matches again; a match is signed (`Domain::SelfAudit`, with the userland PCR
//! read from the TPM) and served to validators through netd. With auditing on, the
//! gate also needs a good audit younger than 3 intervals.

mod counter;
mod service;

pub use service::{Service, ServiceError};

use havn_config::{fds, NodeConfig};
use havn_ipc::{IpcError, PeerPolicy, Phase, Server};
use havn_proto::ipc::{
    ChannelSpec, ExecdAttestd, InitAttestd, InitRequest, InitResponse, NetdAttestd,
};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{setsockopt, sockopt};
use std::os::fd::AsFd;
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
    /// `netd.user` or `execd.user` cannot be looked up: a channel would accept any uid.
    #[error("netd.user or execd.user: {0}")]
    NetdUser(havn_sandbox::SandboxError),
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
    /// SO_PASSCRED on a peer channel failed.
    #[error("SO_PASSCRED: {0}")]
    PassCred(nix::errno::Errno),
}

impl Error {
    /// Distinct exit codes for the supervisor's logs.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::NetdUser(_) => havn_config::EXIT_CONFIG,
            Error::Service(_) => 3,
            Error::Ipc { .. } | Error::MissingFd(_) | Error::PassCred(_) => 4,
            Error::Poll(_) => 5,
        }
    }
}

/// Answers one request on a peer's channel; a channel that fails is dropped (the
/// peer is gone until init restarts the set).
fn serve_one<C: ChannelSpec>(
    ch: &mut Option<Server<C>>,
    name: &str,
    handle: impl FnOnce(C::Request) -> C::Response,
) {
    let Some(s) = ch.as_mut() else {
        return;
    };
    match s.recv() {
        Ok(req) => {
            let resp = handle(req.msg);
            if let Err(e) = s.reply(&resp) {
                tracing::warn!(error = %e, "{name} channel lost");
                *ch = None;
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "{name} channel closed");
            *ch = None;
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
    let mut cfg = NodeConfig::load(&args.config)?;
    havn_log::init(cfg.attestd.log.as_deref());
    // On hardware havn-init opens the TPM device and passes it at fd 6: reach it through
    // that descriptor (never by walking /dev). tss-esapi's device TCTI takes a path, so
    // it is given `/proc/self/fd/6`.
    // (Held open for the daemon's life: the resource manager keeps a client's objects
    // while any of its descriptors is open.)
    let tpm_fd = cfg
        .tpm
        .tcti
        .starts_with("device:")
        .then(|| havn_ipc::inherited_fd(fds::ATTESTD_TPM))
        .flatten();
    if tpm_fd.is_some() {
        cfg.tpm.tcti = format!("device:{}", fds::path(fds::ATTESTD_TPM).display());
    }
    let mut svc = Service::open(&cfg)?;
    tracing::info!(tcti = %cfg.tpm.tcti, "havn-attestd started");

    // execd's and netd's channels: taken now and set to receive credentials before
    // either peer exists (they are started after boot), so their hellos carry them
    // even though the handshakes happen later, in the serving loop.
    let execd_fd = take_fd(fds::ATTESTD_EXECD)?;
    let netd_fd = take_fd(fds::ATTESTD_NETD)?;
    for fd in [&execd_fd, &netd_fd] {
        setsockopt(fd, sockopt::PassCred, &true).map_err(Error::PassCred)?;
    }

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
    // Status (1), Shutdown (2), Audit (3).
    init.set_phase(Phase::new("serving", &[1, 2, 3], &[]));
    if !svc.has_key() {
        tracing::error!("node key unavailable: the gate stays closed and nothing will be signed");
    }

    // Phase 2: execd and netd connect (init starts them after boot). Each handshake
    // runs once its peer's hello is waiting, so init is answered (self-audits) even
    // while a peer is still starting.
    // netd's uid as havn-init runs it; a user that cannot be looked up stops attestd
    // (never "any uid").
    let (netd_uid, _) = havn_sandbox::user_ids(&cfg.netd.user).map_err(Error::NetdUser)?;
    let (execd_uid, _) = havn_sandbox::user_ids(&cfg.execd.user).map_err(Error::NetdUser)?;
    let netd_policy = PeerPolicy {
        uid: Some(netd_uid),
        ..PeerPolicy::any()
    };
    let mut execd_pending = Some(execd_fd);
    let mut netd_pending = Some(netd_fd);
    let mut execd: Option<Server<ExecdAttestd>> = None;
    let mut netd: Option<Server<NetdAttestd>> = None;

    #[derive(Clone, Copy)]
    enum Src {
        Init,
        ExecdHello,
        Execd,
        NetdHello,
        Netd,
    }
    loop {
        let mut srcs = vec![Src::Init];
        let mut pfds = vec![PollFd::new(init.as_fd(), PollFlags::POLLIN)];
        if let Some(fd) = &execd_pending {
            pfds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            srcs.push(Src::ExecdHello);
        }
        if let Some(e) = &execd {
            pfds.push(PollFd::new(e.as_fd(), PollFlags::POLLIN));
            srcs.push(Src::Execd);
        }
        if let Some(fd) = &netd_pending {
            pfds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            srcs.push(Src::NetdHello);
        }
        if let Some(n) = &netd {
            pfds.push(PollFd::new(n.as_fd(), PollFlags::POLLIN));
            srcs.push(Src::Netd);
        }
        match poll(&mut pfds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::Poll(e)),
        }
        let ready: Vec<Src> = pfds
            .iter()
            .zip(&srcs)
            .filter(|(p, _)| p.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, s)| *s)
            .collect();
        drop(pfds);
        for src in ready {
            match src {
                Src::Init => {
                    let req = init.recv().map_err(ipc("init"))?;
                    let shutdown = matches!(req.msg, InitRequest::Shutdown);
                    let resp = svc.handle_init(req.msg);
                    init.reply(&resp).map_err(ipc("init"))?;
                    if shutdown || matches!(resp, InitResponse::ShuttingDown) {
                        tracing::info!("shutdown requested by init");
                        return Ok(());
                    }
                }
                Src::ExecdHello => {
                    if let Some(fd) = execd_pending.take() {
                        // execd runs as `execd.user`; the channel is then pinned to
                        // the process that said hello.
                        let execd_policy = PeerPolicy::uid(execd_uid);
                        let mut s = Server::<ExecdAttestd>::accept(fd, execd_policy)
                            .map_err(ipc("execd"))?;
                        // Gate (0), Report (1) and Reexecuted (3) any number of times;
                        // Capabilities (2) and PayloadKey (4) once.
                        s.set_phase(Phase::new("serving", &[0, 1, 3], &[2, 4]));
                        execd = Some(s);
                    }
                }
                Src::NetdHello => {
                    if let Some(fd) = netd_pending.take() {
                        match Server::<NetdAttestd>::accept(fd, netd_policy) {
                            Ok(s) => netd = Some(s),
                            Err(e) => tracing::error!(error = %e, "netd channel refused"),
                        }
                    }
                }
                Src::Execd => serve_one(&mut execd, "execd", |m| svc.handle_execd(m)),
                Src::Netd => serve_one(&mut netd, "netd", |m| svc.handle_netd(m)),
            }
        }
        if execd.is_none() && netd.is_none() && execd_pending.is_none() && netd_pending.is_none() {
            tracing::warn!("execd and netd are both gone; waiting for init");
        }
    }
}
