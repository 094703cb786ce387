//! havn-execd: the privileged executor. Serves netd's `Run`/`Capabilities`/`Prove`
//! requests (fd 4), asks attestd's gate before every job and reports each result to attestd,
//! which assembles and signs the receipt (fd 3). Outputs go to the content-addressed
//! archival store `state_dir/artifacts/<cid>`, which netd serves read-only.
//!
//! Inputs: a job with no inputs runs the workflow's default inputs; a job whose
//! `inputs` names an artifact `inputs` reads those bytes from the upload area netd
//! writes (`state_dir/uploads/<cid>`) or the archival store, and preflight
//! refuses them unless they hash to the CID the orchestrator gave.
//!
//! Challenges: the checkpoints of the last [`RETAIN_JOBS`] finished jobs are kept so
//! that `Prove { job_id, node_id }` can put one node's Merkle proof and input tensors
//! into the artifact store for a validator (see the `engine` module).

mod chat;
mod deadline;
mod diffusion;
mod engine;
pub mod gpu_telemetry;
mod sealed;
mod transcribe;

pub use engine::{Engine, EngineError, RETAIN_JOBS};

use havn_config::{fds, NodeConfig};
use havn_ipc::{Client, IpcError, PeerPolicy, Phase, Server};
use havn_proto::ipc::{ExecdAttestd, ExecdRequest, ExecdResponse, NetdExecd};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// Command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "havn-execd",
    version,
    about = "Havn executor daemon: deterministic CPU/CUDA workflow execution behind the attestation gate",
    long_about = "Started by havn-init with its IPC channels on fds 3 (to attestd) and 4 (from netd).\n\
                  Checkpoints under state_dir/execd/, outputs to state_dir/artifacts/<cid>."
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
    /// Engine setup failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// `netd.user` cannot be looked up: netd's channel would accept any uid.
    #[error("netd.user: {0}")]
    NetdUser(havn_sandbox::SandboxError),
    /// A channel descriptor havn-init should have placed is not open.
    #[error(
        "fd {0} is not open: this daemon is started by havn-init, which places its IPC channels"
    )]
    MissingFd(i32),
    /// IPC failure.
    #[error("{channel} channel: {source}")]
    Ipc {
        /// Which channel.
        channel: &'static str,
        /// Cause.
        source: IpcError,
    },
}

impl Error {
    /// Distinct exit codes for the supervisor's logs.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::NetdUser(_) => havn_config::EXIT_CONFIG,
            Error::Engine(_) => 3,
            Error::Ipc { .. } | Error::MissingFd(_) => 4,
        }
    }
}

fn take_fd(n: i32) -> Result<OwnedFd, Error> {
    havn_ipc::inherited_fd(n).ok_or(Error::MissingFd(n))
}

/// Runs until netd's channel closes.
pub fn run(args: Args) -> Result<(), Error> {
    let cfg = NodeConfig::load(&args.config)?;
    havn_log::init(cfg.execd.daemon.log.as_deref());
    let mut engine = Engine::open(&cfg)?;
    // GPU gauges for netd's /metrics, where NVML loads.
    gpu_telemetry::spawn(cfg.node.state_dir.join("artifacts"));
    tracing::info!(
        backend = engine.backend_name(),
        threads = engine.threads(),
        "havn-execd started"
    );
    let mut attestd =
        // attestd keeps havn-init's uid (root); the channel is then pinned to the
        // process that said hello.
        Client::<ExecdAttestd>::connect(take_fd(fds::EXECD_ATTESTD)?, PeerPolicy::uid(0))
        .map_err(
            |source| Error::Ipc {
                channel: "attestd",
                source,
            },
        )?;
    // netd's uid as havn-init runs it; a user that cannot be looked up stops execd
    // (never "any uid").
    let (netd_uid, _) = havn_sandbox::user_ids(&cfg.netd.user).map_err(Error::NetdUser)?;
    let mut netd = Server::<NetdExecd>::accept(
        take_fd(fds::EXECD_NETD)?,
        PeerPolicy {
            uid: Some(netd_uid),
            ..PeerPolicy::any()
        },
    )
    .map_err(|source| Error::Ipc {
        channel: "netd",
        source,
    })?;
    // attestd signs the capability manifest it assembles from this report; netd only
    // relays the signed manifest. Not fatal: without it /capabilities answers 503.
    // Sent only after netd's handshake: attestd accepts netd's channel before it
    // answers anything, and netd may connect to execd first.
    match attestd.call(&ExecdRequest::Capabilities(Box::new(engine.capabilities()))) {
        Ok(ExecdResponse::Ack) => tracing::info!("capability report signed by attestd"),
        Ok(other) => tracing::error!(answer = ?other, "attestd refused the capability report"),
        Err(source) => {
            return Err(Error::Ipc {
                channel: "attestd",
                source,
            })
        }
    }
    // This boot's payload key, for encrypted job inputs (opened here, in memory). Not
    // fatal: without it a sealed input fails its job with the reason.
    match attestd.call(&ExecdRequest::PayloadKey) {
        Ok(ExecdResponse::PayloadKey { secret, public }) => {
            match havn_payload::PayloadKey::from_secret(&secret.0) {
                Ok(k) if k.public() == public.0 => {
                    tracing::info!(payload_key = %public, "payload key received from attestd (in memory)");
                    engine.set_payload_key(k);
                }
                _ => tracing::error!("attestd's payload key does not match its public half: encrypted inputs will fail"),
            }
        }
        Ok(other) => tracing::warn!(answer = ?other, "no payload key from attestd: encrypted inputs will fail"),
        Err(source) => {
            return Err(Error::Ipc {
                channel: "attestd",
                source,
            })
        }
    }
    // Run (0), Capabilities (1), Prove (2), Reexecute (3), Leaves (4).
    netd.set_phase(Phase::new("serving", &[0, 1, 2, 3, 4], &[]));
    loop {
        let req = match netd.recv() {
            Ok(r) => r,
            Err(e) if e.is_peer_restart() => {
                tracing::info!("netd closed its channel");
                return Ok(());
            }
            Err(source) => {
                return Err(Error::Ipc {
                    channel: "netd",
                    source,
                })
            }
        };
        let resp = engine.handle(req.msg, &mut attestd);
        if let Err(source) = netd.reply(&resp) {
            if source.is_peer_restart() {
                tracing::warn!("netd went away before the reply");
                return Ok(());
            }
            return Err(Error::Ipc {
                channel: "netd",
                source,
            });
        }
    }
}
