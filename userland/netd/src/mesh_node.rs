//! netd's place in the validator mesh: starts the gossip swarm from `[mesh]` (the
//! libp2p identity, the only key netd holds, is kept in netd's state), keeps a freshly
//! signed manifest from attestd, publishes this node's receipts and heartbeats as they
//! are signed, and reports `/mesh/status` and the gossip metrics.

use crate::gossip::{Delivered, GossipConfig, GossipHandle, ManifestSource, MeshStatus};
use crate::state::State;
use havn_ipc::AsyncClient;
use havn_mesh::{MeshParams, MeshState};
use havn_proto::ipc::{
    NetdAttestRequest, NetdAttestResponse, NetdAttestd, NetdExecRequest, NetdExecResponse,
    NetdExecd,
};
use havn_proto::mesh::{Topic, VerdictMessage};
use havn_proto::ComputeClass;
use libp2p::identity::Keypair;
use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// How often a fresh manifest is asked of attestd (a quote each time).
const MANIFEST_EVERY: Duration = Duration::from_secs(10);
/// Verdicts kept for `/mesh/status`.
const LAST_VERDICTS: usize = 32;
/// Our own messages waiting for a peer to publish to.
const PENDING: usize = 1024;

/// Why the mesh could not start.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// A bad address in `[mesh]`.
    #[error("[mesh] {what}: {value:?} is not a multiaddr: {why}")]
    Address {
        /// Which setting.
        what: &'static str,
        /// Its value.
        value: String,
        /// Why.
        why: String,
    },
    /// The identity key could not be read or written.
    #[error("libp2p identity {path}: {why}")]
    Identity {
        /// Where.
        path: String,
        /// Why.
        why: String,
    },
    /// The swarm did not start.
    #[error(transparent)]
    Gossip(#[from] crate::gossip::GossipError),
}

/// A running mesh link.
pub struct MeshLink {
    gossip: Arc<GossipHandle>,
    class: ComputeClass,
    role: havn_config::NodeRole,
    /// A validator's work (empty on an execution node).
    pub report: Arc<std::sync::Mutex<crate::validator::Report>>,
    /// What this validator did on chain.
    chain_record: Arc<std::sync::Mutex<crate::validator_chain::ChainRecord>>,
    verdicts: std::sync::Mutex<VecDeque<serde_json::Value>>,
    receipts_verified: AtomicU64,
    verdicts_seen: AtomicU64,
    challenges_seen: AtomicU64,
    heartbeats_seen: AtomicU64,
}

impl std::fmt::Debug for MeshLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshLink")
            .field("peer_id", &self.gossip.peer_id)
            .finish()
    }
}

/// Loads netd's libp2p identity, creating it (mode 0600) at first start.
pub fn identity(dir: &Path) -> Result<Keypair, MeshError> {
    let path = dir.join("p2p.key");
    let err = |why: String| MeshError::Identity {
        path: path.display().to_string(),
        why,
    };
    match std::fs::read(&path) {
        Ok(b) => Keypair::from_protobuf_encoding(&b).map_err(|e| err(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let k = Keypair::generate_ed25519();
            let bytes = k.to_protobuf_encoding().map_err(|e| err(e.to_string()))?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| err(e.to_string()))?;
            f.write_all(&bytes)
                .and_then(|()| f.sync_all())
                .map_err(|e| err(e.to_string()))?;
            tracing::info!(peer = %k.public().to_peer_id(), "libp2p identity created");
            Ok(k)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

fn addr(what: &'static str, value: &str) -> Result<libp2p::Multiaddr, MeshError> {
    value
        .parse()
        .map_err(|e: libp2p::multiaddr::Error| MeshError::Address {
            what,
            value: value.to_string(),
            why: e.to_string(),
        })
}

async fn signed_manifest(
    attestd: &Mutex<AsyncClient<NetdAttestd>>,
    peer_id: &[u8],
) -> Option<Vec<u8>> {
    let peer_id = heapless::Vec::from_slice(peer_id).ok()?;
    match attestd
        .lock()
        .await
        .call(&NetdAttestRequest::MeshManifest { peer_id })
        .await
    {
        Ok(NetdAttestResponse::MeshManifest(m)) => postcard::to_stdvec(&*m).ok(),
        Ok(NetdAttestResponse::Error(e)) => {
            tracing::warn!(error = %e, "attestd did not sign a mesh manifest");
            None
        }
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "attestd channel failed asking for a manifest");
            None
        }
    }
}

/// Starts the mesh link when `[mesh] listen` is set.
pub async fn start(
    cfg: &havn_config::NodeConfig,
    state: Arc<State>,
    attestd: Arc<Mutex<AsyncClient<NetdAttestd>>>,
    execd: Arc<Mutex<AsyncClient<NetdExecd>>>,
    class: ComputeClass,
    chain: Option<crate::chain_link::ChainLink>,
) -> Result<Option<Arc<MeshLink>>, MeshError> {
    let Some(listen) = cfg.mesh.listen.as_deref() else {
        return Ok(None);
    };
    let listen = addr("listen", listen)?;
    let bootstrap = cfg
        .mesh
        .bootstrap
        .iter()
        .map(|b| addr("bootstrap", b))
        .collect::<Result<Vec<_>, _>>()?;
    let key = identity(&cfg.daemon_state("netd"))?;
    let peer = key.public().to_peer_id();
    let latest = Arc::new(std::sync::Mutex::new(
        signed_manifest(&attestd, &peer.to_bytes()).await,
    ));
    let source: ManifestSource = {
        let latest = latest.clone();
        Arc::new(move || latest.lock().ok().and_then(|m| m.clone()))
    };
    let params = MeshParams {
        epoch_ms: cfg.mesh.epoch_ms,
        sample_ppm: [cfg.mesh.sample_ppm; 4],
        ..MeshParams::default()
    };
    let config = GossipConfig {
        listen,
        bootstrap,
        topics: vec![
            Topic::Receipt(class),
            Topic::Verdict(class),
            Topic::Challenge,
            Topic::Heartbeat,
            Topic::Manifest,
        ],
        validate: true,
        manifest: Some(source),
        manifest_every: Duration::from_secs(2),
        heartbeat: Duration::from_millis(700),
    };
    let state_view = MeshState::new(params.clone(), havn_attest::Policy::default());
    let mut gossip = GossipHandle::start(config, key, state_view).await?;
    tracing::info!(peer = %peer, addrs = ?gossip.listening, role = ?cfg.node.role, "mesh: gossip started");
    let delivered = gossip.take_delivered();
    let gossip = Arc::new(gossip);
    let report = Arc::new(std::sync::Mutex::new(crate::validator::Report::default()));
    let chain_record = Arc::new(std::sync::Mutex::new(
        crate::validator_chain::ChainRecord::default(),
    ));
    let to_validator = match cfg.node.role {
        havn_config::NodeRole::Validator => {
            let (tx, rx) = tokio::sync::mpsc::channel(crate::gossip::DELIVERY_QUEUE);
            let duty = chain.map(|link| {
                let me = link.node_id();
                crate::validator_chain::ChainDuty::new(
                    link,
                    gossip.clone(),
                    attestd.clone(),
                    me,
                    class,
                    chain_record.clone(),
                )
            });
            let v = crate::validator::Validator::new(
                gossip.clone(),
                attestd.clone(),
                execd.clone(),
                params,
                class,
                report.clone(),
                duty,
            );
            tokio::spawn(v.run(rx));
            Some(tx)
        }
        havn_config::NodeRole::Execution => None,
    };
    let link = Arc::new(MeshLink {
        gossip,
        class,
        role: cfg.node.role,
        report,
        chain_record,
        verdicts: std::sync::Mutex::new(VecDeque::new()),
        receipts_verified: AtomicU64::new(0),
        verdicts_seen: AtomicU64::new(0),
        challenges_seen: AtomicU64::new(0),
        heartbeats_seen: AtomicU64::new(0),
    });
    tokio::spawn(refresh_manifest(attestd, peer.to_bytes(), latest));
    tokio::spawn(consume(link.clone(), delivered, execd, to_validator));
    tokio::spawn(publish_own(link.clone(), state));
    Ok(Some(link))
}

async fn refresh_manifest(
    attestd: Arc<Mutex<AsyncClient<NetdAttestd>>>,
    peer: Vec<u8>,
    latest: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
) {
    let mut tick = tokio::time::interval(MANIFEST_EVERY);
    loop {
        tick.tick().await;
        if let Some(m) = signed_manifest(&attestd, &peer).await {
            if let Ok(mut l) = latest.lock() {
                *l = Some(m);
            }
        }
    }
}

async fn consume(
    link: Arc<MeshLink>,
    mut rx: tokio::sync::mpsc::Receiver<Delivered>,
    execd: Arc<Mutex<AsyncClient<NetdExecd>>>,
    to_validator: Option<tokio::sync::mpsc::Sender<Delivered>>,
) {
    while let Some(d) = rx.recv().await {
        match &d {
            Delivered::Receipt(..) => {
                link.receipts_verified.fetch_add(1, Ordering::Relaxed);
            }
            Delivered::Verdict(v) => {
                link.verdicts_seen.fetch_add(1, Ordering::Relaxed);
                if let VerdictMessage::Verdict(sv) = v.get() {
                    if let Ok(mut q) = link.verdicts.lock() {
                        if q.len() >= LAST_VERDICTS {
                            q.pop_front();
                        }
                        q.push_back(serde_json::json!({
                            "validator": sv.verdict.validator.0.to_hex(),
                            "node": sv.verdict.node.0.to_hex(),
                            "receipt_digest": sv.verdict.receipt_digest.to_hex(),
                            "outcome": format!("{:?}", sv.verdict.outcome),
                            "epoch": sv.verdict.epoch,
                        }));
                    }
                }
            }
            Delivered::Challenge(_) => {
                link.challenges_seen.fetch_add(1, Ordering::Relaxed);
            }
            Delivered::Heartbeat(_) => {
                link.heartbeats_seen.fetch_add(1, Ordering::Relaxed);
            }
            Delivered::LeavesWanted { .. }
            | Delivered::Manifest(_)
            | Delivered::Unvalidated(..)
            | Delivered::Rejected { .. } => {}
        }
        if let Delivered::LeavesWanted {
            peer,
            request,
            channel,
        } = d
        {
            let (link, execd) = (link.clone(), execd.clone());
            tokio::spawn(async move {
                let answer = serve_leaves(&execd, &request).await;
                tracing::info!(%peer, job = %request.job_id, "leaves requested");
                let _ = link.gossip.respond(channel, answer).await;
            });
            continue;
        }
        if let Some(tx) = &to_validator {
            if tx.try_send(d).is_err() {
                tracing::warn!("mesh: the validator is behind; a gossip delivery was dropped");
            }
        }
    }
}

/// A job's leaves from execd, for a validator that asked.
async fn serve_leaves(
    execd: &Mutex<AsyncClient<NetdExecd>>,
    r: &crate::gossip::LeavesRequest,
) -> crate::gossip::LeavesResponse {
    use crate::gossip::LeavesResponse;
    let (Ok(job_id), Ok(submitter)) = (
        havn_proto::JobId::try_from(r.job_id.as_str()),
        havn_proto::Name::try_from(r.submitter.as_str()),
    ) else {
        return LeavesResponse::Refused("job id or submitter too long".into());
    };
    let req = NetdExecRequest::Leaves { job_id, submitter };
    match execd.lock().await.call(&req).await {
        Ok(NetdExecResponse::Leaves(l)) => LeavesResponse::Leaves(l.to_vec()),
        Ok(NetdExecResponse::Refused { reason, .. }) => LeavesResponse::Refused(reason.to_string()),
        Ok(_) => LeavesResponse::Refused("execd answered out of turn".into()),
        Err(e) => LeavesResponse::Refused(format!("execd unreachable: {e}")),
    }
}

/// Publishes this node's receipts and heartbeats as they are signed; what cannot go
/// out yet (no peer subscribed) waits, bounded, and is retried every second.
async fn publish_own(link: Arc<MeshLink>, state: Arc<State>) {
    let mut receipts = state.signed_receipts.subscribe();
    let mut heartbeats = state.signed_heartbeats.subscribe();
    let mut pending: VecDeque<(Topic, Vec<u8>)> = VecDeque::new();
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    loop {
        let next = tokio::select! {
            r = receipts.recv() => r.ok().and_then(|r| {
                postcard::to_stdvec(&*r).ok().map(|b| (Topic::Receipt(r.receipt.compute_class), b))
            }),
            h = heartbeats.recv() => h.ok().and_then(|h| {
                postcard::to_stdvec(&*h).ok().map(|b| (Topic::Heartbeat, b))
            }),
            _ = retry.tick() => None,
        };
        if let Some(m) = next {
            if pending.len() >= PENDING {
                pending.pop_front();
                tracing::warn!("mesh: publish queue full, dropping the oldest message");
            }
            pending.push_back(m);
        }
        while let Some((topic, bytes)) = pending.front().cloned() {
            match link.gossip.publish(topic, bytes).await {
                Ok(()) => {
                    pending.pop_front();
                }
                Err(e) => {
                    tracing::debug!(topic = topic.name(), error = %e, "mesh: publish deferred");
                    break;
                }
            }
        }
    }
}

impl MeshLink {
    /// The operator's view.
    pub async fn status(&self) -> Option<serde_json::Value> {
        let s: MeshStatus = self.gossip.status().await.ok()?;
        let verdicts: Vec<serde_json::Value> = self
            .verdicts
            .lock()
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default();
        Some(serde_json::json!({
            "peer_id": s.peer_id,
            "listening": self.gossip.listening.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "class": format!("{:?}", self.class),
            "peers": s.peers,
            "topics": s.topics,
            "known_nodes": s.known_nodes,
            "seen_receipts": s.seen_receipts,
            "receipts_verified": self.receipts_verified.load(Ordering::Relaxed),
            "verdicts_seen": self.verdicts_seen.load(Ordering::Relaxed),
            "challenges_seen": self.challenges_seen.load(Ordering::Relaxed),
            "last_verdicts": verdicts,
            "role": format!("{:?}", self.role).to_lowercase(),
            "validator": self.validator_summary(),
            "chain_events": self.chain_record.lock().map(|r| r.events.clone()).unwrap_or_default(),
        }))
    }

    /// A validator's work in brief (counts, caught nodes, settlements).
    fn validator_summary(&self) -> serde_json::Value {
        let Ok(r) = self.report.lock() else {
            return serde_json::Value::Null;
        };
        serde_json::json!({
            "receipts_by_node": r.receipts_by_node,
            "judged": r.judged,
            "confirmed": r.confirmed,
            "rejected": r.rejected,
            "abstained": r.abstained,
            "challenges_sent": r.challenges_sent,
            "equivocations": r.equivocations,
            "slashing": r.slashing.iter().map(|e| serde_json::json!({
                "node": e.challenge.challenge.receipt.receipt.node.0.to_hex(),
                "job_id": e.challenge.challenge.receipt.receipt.job_id.as_str(),
                "divergent_node": e.challenge.challenge.divergent.index,
                "upheld_by": e.upholding.len(),
                "committee": e.committee.len(),
            })).collect::<Vec<_>>(),
            "settlements": r.settlements.iter().map(|b| {
                let mut per_node = std::collections::BTreeMap::<String, u64>::new();
                for i in &b.inclusions {
                    *per_node.entry(i.receipt.receipt.node.0.to_hex()).or_default() += 1;
                }
                serde_json::json!({
                    "epoch": b.certificate.settlement.epoch,
                    "class": format!("{:?}", b.certificate.settlement.compute_class),
                    "receipts": b.certificate.settlement.receipt_count,
                    "signatures": b.certificate.signatures.len(),
                    "committee": b.certificate.committee.len(),
                    "receipts_by_node": per_node,
                })
            }).collect::<Vec<_>>(),
            "quarantined": r.quarantined.iter().map(|n| n.0.to_hex()).collect::<Vec<_>>(),
        })
    }

    /// Full settlement bundles and slashing evidence (for `havnctl verify-settlement`).
    pub fn evidence(&self) -> serde_json::Value {
        let Ok(r) = self.report.lock() else {
            return serde_json::Value::Null;
        };
        let claims = self
            .chain_record
            .lock()
            .map(|c| c.claims.clone())
            .unwrap_or_default();
        serde_json::json!({
            "settlements": r.settlements,
            "slashing": r.slashing,
            "payout_claims": claims,
        })
    }

    /// Prometheus lines for the gossip counters and a validator's work.
    pub fn render_metrics(&self) -> String {
        use crate::metrics::{counter, gauge};
        let m = &self.gossip.metrics;
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        for (name, help, v) in [
            (
                "havn_gossip_received_total",
                "Gossip messages received, before validation.",
                ld(&m.received),
            ),
            (
                "havn_gossip_accepted_total",
                "Gossip messages accepted and forwarded.",
                ld(&m.accepted),
            ),
            (
                "havn_gossip_ignored_total",
                "Gossip messages ignored (not forwarded, no penalty).",
                ld(&m.ignored),
            ),
            (
                "havn_gossip_rejected_total",
                "Gossip messages rejected (not forwarded, peer penalised).",
                ld(&m.rejected),
            ),
            (
                "havn_gossip_published_total",
                "Messages this node published.",
                ld(&m.published),
            ),
            (
                "havn_gossip_receipts_verified_total",
                "Receipts verified from the mesh.",
                ld(&self.receipts_verified),
            ),
            (
                "havn_gossip_verdicts_total",
                "Verdicts and settlement votes verified from the mesh.",
                ld(&self.verdicts_seen),
            ),
            (
                "havn_gossip_challenges_total",
                "Challenges verified from the mesh.",
                ld(&self.challenges_seen),
            ),
            (
                "havn_gossip_heartbeats_total",
                "Heartbeats verified from the mesh.",
                ld(&self.heartbeats_seen),
            ),
        ] {
            counter(&mut out, name, help, v);
        }
        out.push_str("# HELP havn_gossip_dropped_total Gossip messages dropped, by reason.\n# TYPE havn_gossip_dropped_total counter\n");
        if let Ok(r) = m.by_reason.lock() {
            for (reason, n) in r.iter() {
                out.push_str(&format!(
                    "havn_gossip_dropped_total{{reason=\"{reason}\"}} {n}\n"
                ));
            }
        }
        if let Ok(r) = self.report.lock() {
            for (name, help, v) in [
                (
                    "havn_validator_judged_total",
                    "Receipts this validator re-executed.",
                    r.judged,
                ),
                (
                    "havn_validator_rejected_total",
                    "Receipts this validator rejected.",
                    r.rejected,
                ),
                (
                    "havn_validator_challenges_total",
                    "Challenges this validator published.",
                    r.challenges_sent,
                ),
                (
                    "havn_validator_slashing_incidents_total",
                    "Upheld challenges (slashing evidence).",
                    r.slashing.len() as u64,
                ),
                (
                    "havn_validator_settlements_total",
                    "Certified epoch settlements.",
                    r.settlements.len() as u64,
                ),
            ] {
                counter(&mut out, name, help, v);
            }
            gauge(
                &mut out,
                "havn_validator_quarantines",
                "Nodes quarantined on certified liveness evidence.",
                r.quarantined.len() as u64,
            );
        }
        out
    }
}
