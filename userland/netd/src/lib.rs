//! havn-netd: the node's only network-facing process. mTLS job intake for
//! orchestrators, a durable queue (WAL with group commit), a dispatcher to execd,
//! quotes and heartbeats through attestd. It holds no key that can sign a receipt.
//!
//! Code map: [`api`] HTTP routes · [`state`] job table and admission · [`wal`]
//! write-ahead log · [`dispatch`] execd dispatcher · [`heartbeat`] signed heartbeats
//! · [`metrics`] Prometheus text · [`tls`] rustls setup · [`client`] mTLS client
//! (havnctl, heartbeats, bench) · [`pki`] development PKI (havnctl pki init) ·
//! [`server`] wiring and the accept loop.

pub mod admission;
pub mod alerts;
pub mod api;
pub mod body;
pub mod chain_link;
pub mod cli;
pub mod client;
pub mod dispatch;
pub mod gossip;
pub mod grpc;
pub mod grpc_client;
pub mod heartbeat;
pub mod intake;
pub mod mesh_node;
pub mod metrics;
pub mod pki;
pub mod roles;
pub mod server;
pub mod signed_cache;
pub mod stake;
pub mod stake_api;
pub mod state;
pub mod tls;
pub mod upload;
pub mod validator;
pub mod validator_chain;
pub mod wal;
pub mod wal_salvage;

pub use server::{start, Running, StartError, StartOptions};

/// Clean shutdown (SIGTERM/SIGINT).
pub const EXIT_OK: u8 = 0;
/// Startup failed (TLS files, IPC handshake, bind, state dir).
pub const EXIT_STARTUP: u8 = 1;
/// The config file is unreadable or invalid.
pub const EXIT_CONFIG: u8 = havn_config::EXIT_CONFIG;
/// The WAL could not be written or synced (EX_IOERR).
pub const EXIT_WAL: u8 = 74;
/// The execd channel failed (execd died or restarted): init must restart netd with
/// fresh socketpairs. Queued and running jobs are re-queued from the WAL.
pub const EXIT_EXECD_LOST: u8 = 75;
/// The attestd channel failed: same remedy as [`EXIT_EXECD_LOST`].
pub const EXIT_ATTESTD_LOST: u8 = 76;
/// An internal task panicked (a bug; EX_SOFTWARE).
pub const EXIT_PANIC: u8 = 70;

/// Why a running netd stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fatal {
    /// SIGTERM or SIGINT.
    Signal,
    /// The execd channel failed.
    ExecdLost(String),
    /// The attestd channel failed.
    AttestdLost(String),
    /// The WAL failed.
    Wal(String),
    /// A core task (accept, dispatch, heartbeat) panicked.
    Panic(&'static str),
}

impl Fatal {
    /// The process exit code for this stop.
    pub fn exit_code(&self) -> u8 {
        match self {
            Fatal::Signal => EXIT_OK,
            Fatal::ExecdLost(_) => EXIT_EXECD_LOST,
            Fatal::AttestdLost(_) => EXIT_ATTESTD_LOST,
            Fatal::Wal(_) => EXIT_WAL,
            Fatal::Panic(_) => EXIT_PANIC,
        }
    }
}
