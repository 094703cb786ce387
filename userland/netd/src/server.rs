//! Wiring: TLS, IPC capabilities/identity, WAL replay, the accept loop, and the
//! dispatcher and heartbeat tasks.
//!
//! Files touched: the TLS files (read once here) and `state_dir/netd/` (the WAL).
//! Nothing else is opened, so netd runs as uid 65534 with no capabilities provided
//! init created the state dir owned by that uid.

use crate::api::{self, Ctx};
use crate::client::MtlsClient;
use crate::heartbeat::{self, Heartbeats};
use crate::state::{NodeInfo, State};
use crate::tls::{self, TlsError};
use crate::wal::{Wal, WalError, WalOptions};
use crate::Fatal;
use havn_config::NodeConfig;
use havn_ipc::{AsyncClient, IpcError};
use havn_proto::ipc::{
    NetdAttestRequest, NetdAttestResponse, NetdAttestd, NetdExecRequest, NetdExecResponse,
    NetdExecd,
};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Mutex, Semaphore};
use tokio::task::AbortHandle;
use tokio_rustls::TlsAcceptor;

/// Startup failures.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// TLS material.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// An IPC channel failed during startup.
    #[error("ipc ({channel}): {source}")]
    Ipc {
        /// Which.
        channel: &'static str,
        /// Cause.
        source: IpcError,
    },
    /// A daemon answered something unexpected.
    #[error("{0} answered out of turn at startup")]
    Protocol(&'static str),
    /// A daemon refused.
    #[error("{0} refused at startup: {1}")]
    Refused(&'static str, havn_proto::ipc::RemoteError),
    /// The state dir or WAL.
    #[error("state: {0}")]
    State(String),
    /// Under havn-init and attestd holds no sealed TLS key: netd.tls_key named no key
    /// file at attestd's first start.
    #[error("no TLS key: attestd holds none sealed (netd.tls_key must name the PEM key file at the first start; attestd seals it then)")]
    NoTlsKey,
    /// The mesh link did not start.
    #[error("mesh: {0}")]
    Mesh(String),
    /// `[chain]` names a deployment, owner or endpoint that cannot work.
    #[error("chain: {0}")]
    Chain(String),
    /// `[mesh]` names something that cannot work (a malformed address).
    #[error("{0}")]
    MeshConfig(String),
    /// The WAL is corrupt in the middle: the operator decides (salvage).
    #[error("{0}")]
    WalCorrupt(String),
    /// Binding the listener.
    #[error("bind {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

impl From<WalError> for StartError {
    fn from(e: WalError) -> Self {
        match e {
            WalError::Corrupt { .. } => StartError::WalCorrupt(e.to_string()),
            e => StartError::State(e.to_string()),
        }
    }
}

/// Longest netd drains on SIGTERM (havn-init waits longer before it kills a daemon).
pub const DRAIN: Duration = Duration::from_secs(3);

/// Knobs that are not in node.toml (tests and the bench change them).
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// WAL tuning.
    pub wal: WalOptions,
    /// Whether to run the heartbeat loop.
    pub heartbeats: bool,
    /// TLS handshake deadline.
    pub handshake_timeout: Duration,
    /// Concurrent connections; more are closed at accept.
    pub max_connections: usize,
    /// Longest an API request waits for attestd (a TPM can hang); then 504.
    pub attestd_wait: Duration,
    /// Time any request body gets before 408 (plus one second per 64 KiB of the
    /// route's size limit).
    pub body_deadline: Duration,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            wal: WalOptions::default(),
            heartbeats: true,
            handshake_timeout: Duration::from_secs(10),
            max_connections: 4096,
            attestd_wait: crate::api::ATTESTD_WAIT,
            body_deadline: crate::body::BASE_DEADLINE,
        }
    }
}

/// A started netd.
pub struct Running {
    /// The bound API address.
    pub local_addr: SocketAddr,
    /// The job table.
    pub state: Arc<State>,
    grpc: crate::grpc::Grpc,
    fatal_rx: mpsc::UnboundedReceiver<Fatal>,
    tasks: Vec<AbortHandle>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Running({})", self.local_addr)
    }
}

impl Running {
    /// Drains before a stop: new jobs are refused (503 with `Retry-After`), gRPC health
    /// turns NOT_SERVING and `/health` says `"draining"`, then waits up to `max` for the
    /// running job to finish (a job cut short is re-queued from the WAL at the next
    /// start anyway).
    pub async fn drain(&self, max: Duration) {
        self.state
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.grpc.set_serving(false);
        tracing::info!(
            max_ms = max.as_millis() as u64,
            "draining: intake closed, health NOT_SERVING"
        );
        let end = tokio::time::Instant::now() + max;
        while self.state.counts().running > 0 && tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for a fatal condition or SIGTERM/SIGINT; on a signal, drains for up to
    /// [`DRAIN`] first.
    pub async fn wait(&mut self) -> Fatal {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let sigterm = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let why = tokio::select! {
            f = self.fatal_rx.recv() => f.unwrap_or(Fatal::Signal),
            _ = sigterm => Fatal::Signal,
            _ = tokio::signal::ctrl_c() => Fatal::Signal,
        };
        if matches!(why, Fatal::Signal) {
            self.drain(DRAIN).await;
        }
        why
    }

    /// Waits for a fatal condition only (no signal handlers; for tests).
    pub async fn fatal(&mut self) -> Fatal {
        self.fatal_rx.recv().await.unwrap_or(Fatal::Signal)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn ipc(channel: &'static str) -> impl FnOnce(IpcError) -> StartError {
    move |source| StartError::Ipc { channel, source }
}

/// Starts netd on already-connected IPC channels.
pub async fn start(
    cfg: &NodeConfig,
    mut execd: AsyncClient<NetdExecd>,
    mut attestd: AsyncClient<NetdAttestd>,
    opts: StartOptions,
) -> Result<Running, StartError> {
    let n = &cfg.netd;
    // TLS files are read once, here. The private key exists on disk only sealed by the
    // TPM: attestd unseals it and hands it over in memory. Only where attestd holds
    // none (development stand-ins) is `netd.tls_key` read as a file.
    let cert = tls::read(&n.tls_cert)?;
    let key = match attestd
        .call(&NetdAttestRequest::TlsKey)
        .await
        .map_err(ipc("attestd"))?
    {
        NetdAttestResponse::TlsKey(pem) => {
            tracing::info!("TLS key received from attestd (sealed by the TPM on disk)");
            zeroize::Zeroizing::new(pem.to_vec())
        }
        NetdAttestResponse::Error(havn_proto::ipc::RemoteError::NotYetAvailable)
            if n.tls_key == std::path::Path::new(havn_config::SEALED_TLS_KEY) =>
        {
            return Err(StartError::NoTlsKey);
        }
        NetdAttestResponse::Error(havn_proto::ipc::RemoteError::NotYetAvailable) => {
            tracing::warn!(path = %n.tls_key.display(), "attestd holds no sealed TLS key: reading the plaintext file");
            zeroize::Zeroizing::new(tls::read(&n.tls_key)?)
        }
        NetdAttestResponse::Error(e) => return Err(StartError::Refused("attestd", e)),
        _ => return Err(StartError::Protocol("attestd")),
    };
    let ca = tls::read(&n.client_ca)?;
    let server_cfg = tls::server_config(&cert, &key, &ca)?;
    let hb_client = MtlsClient::from_pem(&ca, Some((&cert, &key))).ok();

    let caps = match execd
        .call(&NetdExecRequest::Capabilities)
        .await
        .map_err(ipc("execd"))?
    {
        NetdExecResponse::Capabilities(c) => c,
        NetdExecResponse::Failed { error, .. } => return Err(StartError::Refused("execd", error)),
        _ => return Err(StartError::Protocol("execd")),
    };
    // With the node key sealed (gate closed at boot) netd still serves what was
    // already signed, read-only; everything that needs the key answers 503.
    // This boot's payload key (encrypted inputs must be sealed to it), from attestd.
    let mut payload = None;
    let node_key = match attestd
        .call(&NetdAttestRequest::Identity)
        .await
        .map_err(ipc("attestd"))?
    {
        NetdAttestResponse::Identity {
            node,
            chain_account,
            payload_key,
        } => {
            payload = (payload_key.0 != [0; 32]).then_some(payload_key.0);
            Some((node, chain_account))
        }
        NetdAttestResponse::Error(havn_proto::ipc::RemoteError::GateClosed) => {
            tracing::error!("the node key is sealed (gate closed): serving read-only, no new jobs");
            None
        }
        NetdAttestResponse::Error(e) => return Err(StartError::Refused("attestd", e)),
        _ => return Err(StartError::Protocol("attestd")),
    };
    tracing::info!(
        node = %node_key.map_or_else(|| "sealed".to_string(), |(k, _)| k.to_hex()),
        class = ?caps.compute_class,
        workflows = caps.workflows.len(),
        "execd capabilities and attestd identity received"
    );

    let dir = cfg.daemon_state("netd");
    std::fs::create_dir_all(&dir)
        .map_err(|e| StartError::State(format!("{}: {e}", dir.display())))?;
    // One read of the log: the writer starts at its end, the table from its jobs.
    let (wal, replay) = Wal::open(&dir, opts.wal.clone())?;
    for w in &replay.warnings {
        tracing::warn!(warning = %w, "wal replay");
    }
    if replay.truncated_bytes > 0 {
        tracing::warn!(bytes = replay.truncated_bytes, "wal: torn tail truncated");
    }
    let requeued = replay
        .snapshot
        .jobs
        .values()
        .filter(|j| j.outcome.is_none())
        .count();
    tracing::info!(
        records = replay.records,
        jobs = replay.snapshot.jobs.len(),
        requeued,
        "wal replayed"
    );
    let retain = opts.wal.retain_terminal;
    tracing::info!(
        direct = wal.direct(),
        "wal open ({})",
        if wal.direct() {
            "O_DIRECT|O_DSYNC block writes"
        } else {
            "pwrite + fdatasync"
        }
    );
    let account = node_key
        .map(|(_, a)| havn_chain_client::alloy::primitives::Address::from(a))
        .unwrap_or_default();
    let stake = Arc::new(match &cfg.chain {
        Some(c) => crate::stake::StakeView::chain(
            account.to_string(),
            Duration::from_millis(c.max_staleness_ms),
        ),
        None => {
            tracing::warn!("no [chain] in node.toml: an unstaked development node (intake does not check stake)");
            crate::stake::StakeView::unchecked()
        }
    });
    let info = NodeInfo {
        compute_class: caps.compute_class,
        workflows: caps.workflows.iter().cloned().collect(),
        stake: stake.clone(),
        node_key: node_key.map(|(k, _)| k.to_hex()),
        payload_key: payload,
    };
    let state = Arc::new(State::new(
        &replay.snapshot,
        wal,
        info,
        n.queue_capacity,
        retain,
    ));

    let listener = TcpListener::bind(n.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: n.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: n.listen,
        source,
    })?;
    tracing::info!(addr = %local_addr, "listening (mTLS)");

    let (fatal_tx, fatal_rx) = mpsc::unbounded_channel();
    let attestd = Arc::new(Mutex::new(attestd));
    // Shared by the dispatcher (Run, held until the job finishes) and the proof route
    // (Prove): tokio's Mutex is FIFO, so a proof request waits for at most the running
    // job and goes before the next one.
    let execd = Arc::new(Mutex::new(execd));
    let signed = Arc::new(crate::signed_cache::SignedCache::default());
    let chain = match (&cfg.chain, node_key) {
        (Some(c), Some((k, _))) => {
            let link = crate::chain_link::ChainLink::new(
                c,
                cfg,
                attestd.clone(),
                account,
                havn_chain_client::alloy::primitives::B256::from(k.0),
                stake.clone(),
            )
            .map_err(|e| StartError::Chain(e.to_string()))?;
            tracing::info!(%account, rpc = %c.rpc, "chain link: StakeGuard read every {} ms", c.refresh_ms);
            link.clone()
                .spawn_refresher(Duration::from_millis(c.refresh_ms));
            Some(link)
        }
        _ => None,
    };
    let alerts = crate::alerts::Alerter::new(
        &cfg.alerts,
        &dir.join("alerts"),
        node_key.map_or_else(|| "sealed".to_string(), |(k, _)| k.to_hex()),
        state.clone(),
    )
    .map_err(|e| StartError::State(e.to_string()))?;
    if node_key.is_none() {
        // Queued now; signed and delivered once the key unseals.
        alerts.raise(
            crate::alerts::kind::GATE_CLOSED,
            serde_json::json!({"error": "the node key is sealed at start: no new jobs"}),
        );
    }
    let mesh = crate::mesh_node::start(
        cfg,
        state.clone(),
        attestd.clone(),
        execd.clone(),
        caps.compute_class,
        chain.clone(),
    )
    .await
    .map_err(|e| match e {
        crate::mesh_node::MeshError::Address { .. } => StartError::MeshConfig(e.to_string()),
        e => StartError::Mesh(e.to_string()),
    })?;
    let ctx = Arc::new(Ctx {
        signed: signed.clone(),
        state: state.clone(),
        attestd: attestd.clone(),
        execd: execd.clone(),
        max_body: n.max_body_bytes,
        fatal: fatal_tx.clone(),
        artifacts: cfg.node.state_dir.join("artifacts"),
        attestd_wait: opts.attestd_wait,
        body_deadline: opts.body_deadline,
        roles: cfg.netd.roles.clone(),
        uploads: cfg.uploads_dir(),
        mesh,
        chain,
        alerts: alerts.clone(),
        admission_alert: Duration::from_millis(cfg.alerts.admission_ms),
        grid_gco2_per_kwh: n.grid_gco2_per_kwh,
    });
    let grpc = crate::grpc::Grpc::new(ctx.clone()).map_err(|e| StartError::State(e.to_string()))?;
    let mut tasks = Vec::new();
    critical(
        "accept",
        accept_loop(
            listener,
            TlsAcceptor::from(Arc::new(server_cfg)),
            ctx,
            grpc.clone(),
            opts.clone(),
        ),
        &fatal_tx,
        &mut tasks,
    );
    critical(
        "dispatch",
        crate::dispatch::run(state.clone(), execd, fatal_tx.clone(), alerts.clone()),
        &fatal_tx,
        &mut tasks,
    );
    critical(
        "signed-cache",
        crate::signed_cache::refresh(
            signed,
            attestd.clone(),
            fatal_tx.clone(),
            alerts.clone(),
            grpc.clone(),
        ),
        &fatal_tx,
        &mut tasks,
    );
    match &hb_client {
        Some(client) => {
            for (i, e) in alerts.endpoints().iter().enumerate() {
                tracing::info!(endpoint = %e.name, url = %e.url, pending = e.outbox.len(), "alert endpoint");
                critical(
                    "alerts",
                    crate::alerts::deliver::run(
                        alerts.clone(),
                        i,
                        client.clone(),
                        attestd.clone(),
                        cfg.alerts.retry_s.clone(),
                    ),
                    &fatal_tx,
                    &mut tasks,
                );
            }
        }
        None if !alerts.endpoints().is_empty() => {
            tracing::error!("no client TLS identity: alerts are queued but not delivered");
        }
        None => {}
    }
    critical(
        "alert-watch",
        crate::alerts::watch_timeouts(alerts.clone(), cfg.alerts.clone(), Duration::from_secs(5)),
        &fatal_tx,
        &mut tasks,
    );
    if opts.heartbeats {
        let hb = Heartbeats {
            every: Duration::from_millis(n.heartbeat_ms),
            endpoints: n.heartbeat_endpoints.clone(),
            client: hb_client,
            alerts,
        };
        critical(
            "heartbeat",
            heartbeat::run(state.clone(), attestd, hb, fatal_tx.clone()),
            &fatal_tx,
            &mut tasks,
        );
    }
    // Jobs re-queued from the WAL start now.
    state.work.notify_one();
    Ok(Running {
        local_addr,
        state,
        grpc,
        fatal_rx,
        tasks,
    })
}

/// Spawns a task whose panic stops the daemon ([`Fatal::Panic`]) instead of
/// leaving it half-alive (e.g. accepting jobs nobody dispatches).
fn critical<F>(
    name: &'static str,
    fut: F,
    fatal: &mpsc::UnboundedSender<Fatal>,
    tasks: &mut Vec<AbortHandle>,
) where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let h = tokio::spawn(fut);
    tasks.push(h.abort_handle());
    let fatal = fatal.clone();
    let watcher = tokio::spawn(async move {
        if let Err(e) = h.await {
            if e.is_panic() {
                tracing::error!(task = name, "task panicked");
                let _ = fatal.send(Fatal::Panic(name));
            }
        }
    });
    tasks.push(watcher.abort_handle());
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ctx: Arc<Ctx>,
    grpc: crate::grpc::Grpc,
    opts: StartOptions,
) {
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; closing");
            continue;
        };
        let acceptor = acceptor.clone();
        let ctx = ctx.clone();
        let grpc = grpc.clone();
        let hs_timeout = opts.handshake_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp.set_nodelay(true);
            let tls = match tokio::time::timeout(hs_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    ctx.state
                        .metrics
                        .tls_refused
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(%peer, alert = tls::alert_for(&e), error = %e,
                        "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let client: Arc<str> = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(tls::peer_identity)
                .unwrap_or_else(|| "none".into())
                .into();
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            tracing::info!(%peer, client = %client, protocol = if h2 { "grpc" } else { "rest" }, "mTLS client connected");
            let r = if h2 {
                let svc = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(crate::grpc::ClientId(client.clone()));
                    let grpc = grpc.clone();
                    async move { grpc.route(req).await }
                });
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .max_concurrent_streams(256)
                    .serve_connection(TokioIo::new(tls), svc)
                    .await
            } else {
                let svc = service_fn(move |req| api::handle(ctx.clone(), client.clone(), req));
                hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30))
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(tls), svc)
                    .await
            };
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
