//! Gossip: havn-netd's libp2p swarm (gossipsub over TCP + noise + yamux, identify),
//! wired to [`havn_mesh`]'s validation chain. netd parses every gossip message through
//! [`havn_mesh::MeshState`] before gossipsub may forward it (manual validation), gives
//! each message a content-hash id, and scores peers by what they send. Tensors and
//! proofs never ride gossip.
//!
//! The swarm runs on its own task; [`GossipHandle`] talks to it through channels.

mod behaviour;
mod run;
#[cfg(feature = "fixtures")]
pub mod testnet;

pub use behaviour::{message_id, peer_score_params, GRAYLIST_THRESHOLD};
pub use run::{Delivered, GossipMetrics};

use havn_mesh::MeshState;
use havn_proto::mesh::Topic;
use libp2p::{identity::Keypair, Multiaddr, PeerId};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Gives the node's manifest, freshly signed (attestd signs a new one, with a new
/// time and quote, each time): republishing the same bytes would be a duplicate that
/// no peer forwards, and a manifest older than the window is refused.
pub type ManifestSource = Arc<dyn Fn() -> Option<Vec<u8>> + Send + Sync>;

/// How a node joins the mesh.
#[derive(Clone)]
pub struct GossipConfig {
    /// Where to listen (e.g. `/ip4/127.0.0.1/tcp/0`).
    pub listen: Multiaddr,
    /// Peers to dial at start.
    pub bootstrap: Vec<Multiaddr>,
    /// Topics to subscribe to.
    pub topics: Vec<Topic>,
    /// Validate messages before forwarding (always, but for the bench's baseline mesh).
    pub validate: bool,
    /// The node's own signed manifest (postcard), republished so new peers learn it.
    pub manifest: Option<ManifestSource>,
    /// How often the manifest is republished.
    pub manifest_every: Duration,
    /// gossipsub heartbeat.
    pub heartbeat: Duration,
}

impl GossipConfig {
    /// Loopback defaults for `topics`.
    pub fn loopback(topics: Vec<Topic>) -> Self {
        Self {
            listen: "/ip4/127.0.0.1/tcp/0"
                .parse()
                .unwrap_or_else(|_| Multiaddr::empty()),
            bootstrap: Vec::new(),
            topics,
            validate: true,
            manifest: None,
            manifest_every: Duration::from_secs(10),
            heartbeat: Duration::from_millis(700),
        }
    }
}

/// Why the gossip layer could not start or act.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// Building the transport or behaviour failed.
    #[error("libp2p setup: {0}")]
    Setup(String),
    /// Listening failed.
    #[error("cannot listen on {addr}: {why}")]
    Listen {
        /// Address.
        addr: Multiaddr,
        /// Why.
        why: String,
    },
    /// The swarm task has stopped.
    #[error("the gossip task has stopped")]
    Stopped,
    /// A leaves request failed (unreachable peer, timeout).
    #[error("fetch: {0}")]
    Fetch(String),
    /// Publishing failed (no peer subscribed yet, message too large, duplicate).
    #[error("publish on {topic}: {why}")]
    Publish {
        /// Topic.
        topic: &'static str,
        /// Why.
        why: String,
    },
}

/// A validator asks an executing node for the leaves of one of its jobs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeavesRequest {
    /// Who submitted the job.
    pub submitter: String,
    /// The job.
    pub job_id: String,
}

/// The answer: the job's leaves, or why not.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LeavesResponse {
    /// The per-node output hashes, in topological order.
    Leaves(Vec<havn_proto::Hash32>),
    /// Refused (unknown job, not retained).
    Refused(String),
}

/// What an operator sees of the mesh (`havnctl mesh status`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MeshStatus {
    /// Our peer id.
    pub peer_id: String,
    /// Connected peers with their score and the topics they joined.
    pub peers: Vec<PeerStatus>,
    /// Topics we are subscribed to, with their mesh size.
    pub topics: Vec<(String, usize)>,
    /// Nodes with verified manifests.
    pub known_nodes: usize,
    /// Receipts in the seen cache.
    pub seen_receipts: usize,
}

/// One connected peer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerStatus {
    /// Peer id.
    pub peer_id: String,
    /// Its gossipsub score (with our application component).
    pub score: f64,
    /// Topics it subscribed to.
    pub topics: Vec<String>,
}

pub(crate) enum Command {
    Publish {
        topic: Topic,
        bytes: Vec<u8>,
        checked: bool,
        done: oneshot::Sender<Result<(), GossipError>>,
    },
    Dial(Multiaddr),
    Status(oneshot::Sender<MeshStatus>),
    Score(PeerId, oneshot::Sender<Option<f64>>),
    WithState(Box<dyn FnOnce(&mut MeshState) + Send>),
    Fetch {
        peer: PeerId,
        request: LeavesRequest,
        reply: oneshot::Sender<Result<LeavesResponse, String>>,
    },
    Respond(
        libp2p::request_response::ResponseChannel<LeavesResponse>,
        LeavesResponse,
    ),
}

/// Verified messages queued for the consumer at most.
pub const DELIVERY_QUEUE: usize = 4096;

/// A running gossip node.
pub struct GossipHandle {
    cmd: mpsc::Sender<Command>,
    /// Verified messages and rejections, in arrival order.
    pub delivered: mpsc::Receiver<Delivered>,
    /// Our peer id.
    pub peer_id: PeerId,
    /// Where we listen.
    pub listening: Vec<Multiaddr>,
    /// Counters.
    pub metrics: Arc<GossipMetrics>,
}

impl GossipHandle {
    /// Starts a node with `identity` (the only key netd holds) and the mesh view
    /// `state`; returns once it listens.
    pub async fn start(
        config: GossipConfig,
        identity: Keypair,
        state: MeshState,
    ) -> Result<Self, GossipError> {
        let mut swarm = behaviour::build(&config, identity)?;
        let peer_id = *swarm.local_peer_id();
        swarm
            .listen_on(config.listen.clone())
            .map_err(|e| GossipError::Listen {
                addr: config.listen.clone(),
                why: e.to_string(),
            })?;
        let listening = run::await_listen(&mut swarm, &config.listen).await?;
        for a in &config.bootstrap {
            if let Err(e) = swarm.dial(a.clone()) {
                tracing::warn!(addr = %a, error = %e, "cannot dial a bootstrap peer");
            }
        }
        let (cmd, cmd_rx) = mpsc::channel(1024);
        let (tx, delivered) = mpsc::channel(DELIVERY_QUEUE);
        let metrics = Arc::new(GossipMetrics::default());
        let task = run::Runner::new(swarm, config, state, tx, Arc::clone(&metrics));
        tokio::spawn(task.run(cmd_rx));
        Ok(Self {
            cmd,
            delivered,
            peer_id,
            listening,
            metrics,
        })
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, GossipError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(make(tx))
            .await
            .map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)
    }

    /// Takes the delivery queue (for a consumer task); the handle keeps publishing.
    pub fn take_delivered(&mut self) -> mpsc::Receiver<Delivered> {
        let (_, closed) = mpsc::channel(1);
        std::mem::replace(&mut self.delivered, closed)
    }

    /// Publishes `bytes` on `topic` (refused locally when over the topic's bound).
    pub async fn publish(&self, topic: Topic, bytes: Vec<u8>) -> Result<(), GossipError> {
        self.ask(|done| Command::Publish {
            topic,
            bytes,
            checked: true,
            done,
        })
        .await?
    }

    /// Publishes without our own size check: what a misbehaving peer does (tests).
    pub async fn publish_unchecked(&self, topic: Topic, bytes: Vec<u8>) -> Result<(), GossipError> {
        self.ask(|done| Command::Publish {
            topic,
            bytes,
            checked: false,
            done,
        })
        .await?
    }

    /// Dials a peer.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), GossipError> {
        self.cmd
            .send(Command::Dial(addr))
            .await
            .map_err(|_| GossipError::Stopped)
    }

    /// The operator's view.
    pub async fn status(&self) -> Result<MeshStatus, GossipError> {
        self.ask(Command::Status).await
    }

    /// A peer's gossipsub score as we see it.
    pub async fn score(&self, peer: PeerId) -> Result<Option<f64>, GossipError> {
        self.ask(|tx| Command::Score(peer, tx)).await
    }

    /// Asks `peer` for a job's leaves over `/havn/1/leaves`.
    pub async fn fetch_leaves(
        &self,
        peer: PeerId,
        request: LeavesRequest,
    ) -> Result<LeavesResponse, GossipError> {
        self.ask(|reply| Command::Fetch {
            peer,
            request,
            reply,
        })
        .await?
        .map_err(GossipError::Fetch)
    }

    /// Answers a peer's leaves request (see [`Delivered::LeavesWanted`]).
    pub async fn respond(
        &self,
        channel: libp2p::request_response::ResponseChannel<LeavesResponse>,
        response: LeavesResponse,
    ) -> Result<(), GossipError> {
        self.cmd
            .send(Command::Respond(channel, response))
            .await
            .map_err(|_| GossipError::Stopped)
    }

    /// Runs `f` on the mesh view inside the swarm task (e.g. to mark a quarantine).
    pub async fn with_state<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut MeshState) -> T + Send + 'static,
    ) -> Result<T, GossipError> {
        let (tx, rx) = oneshot::channel();
        let job = Box::new(move |s: &mut MeshState| {
            let _ = tx.send(f(s));
        });
        self.cmd
            .send(Command::WithState(job))
            .await
            .map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)
    }
}
