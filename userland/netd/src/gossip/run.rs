//! The swarm task: every gossip message goes through the mesh view's validation
//! chain, and gossipsub is told Accept, Ignore or Reject; receipts that arrive
//! together are verified in one signature batch.

use super::behaviour::{Behaviour, BehaviourEvent};
use super::{Command, GossipConfig, GossipError, MeshStatus, PeerStatus};
use futures::{FutureExt, StreamExt};
use havn_mesh::{Action, MeshState, Penalty, Rejection, Verified};
use havn_proto::mesh::{MeshManifest, SignedChallenge, Topic, VerdictMessage};
use havn_proto::{SignedHeartbeat, SignedReceipt};
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId, TopicHash};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc;

/// Most gossip messages validated together (one signature batch).
const BATCH: usize = 64;
/// Our application penalty per invalid message.
const INVALID_PENALTY: f64 = -100.0;

/// What the node's gossip layer hands on: only verified values, and rejections.
#[allow(clippy::large_enum_variant)] // receipts are the common case: not boxed
#[derive(Debug)]
pub enum Delivered {
    /// A receipt.
    Receipt(Verified<SignedReceipt>, Instant),
    /// A verdict or settlement vote.
    Verdict(Verified<VerdictMessage>),
    /// A challenge.
    Challenge(Box<Verified<SignedChallenge>>),
    /// A heartbeat.
    Heartbeat(Verified<SignedHeartbeat>),
    /// A node's manifest, verified (its quote included) and now in the mesh view; the
    /// quote itself stays behind (it is tens of KiB).
    Manifest(MeshManifest),
    /// A message without validation (the bench's baseline mesh only).
    Unvalidated(Topic, Vec<u8>, Instant),
    /// A peer asks for one of our jobs' leaves: answer with
    /// [`super::GossipHandle::respond`].
    LeavesWanted {
        /// Who asks.
        peer: PeerId,
        /// What.
        request: super::LeavesRequest,
        /// Where the answer goes.
        channel: libp2p::request_response::ResponseChannel<super::LeavesResponse>,
    },
    /// A message that failed a check.
    Rejected {
        /// Topic.
        topic: &'static str,
        /// Why.
        rejection: Rejection,
        /// Who forwarded it.
        from: PeerId,
    },
}

/// Gossip counters (Prometheus names in netd's metrics).
#[derive(Debug, Default)]
pub struct GossipMetrics {
    /// Messages received (before validation).
    pub received: AtomicU64,
    /// Accepted (and forwarded).
    pub accepted: AtomicU64,
    /// Ignored.
    pub ignored: AtomicU64,
    /// Rejected.
    pub rejected: AtomicU64,
    /// Published by us.
    pub published: AtomicU64,
    /// Verified messages not handed on because the consumer lagged (bounded queue).
    pub undelivered: AtomicU64,
    /// Drops by reason label.
    pub by_reason: Mutex<BTreeMap<&'static str, u64>>,
}

impl GossipMetrics {
    fn drop_reason(&self, r: &Rejection) {
        if let Ok(mut m) = self.by_reason.lock() {
            *m.entry(r.label()).or_insert(0) += 1;
        }
    }
}

use havn_mesh::params::now_ms;

pub(super) async fn await_listen(
    swarm: &mut Swarm<Behaviour>,
    addr: &Multiaddr,
) -> Result<Vec<Multiaddr>, GossipError> {
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => return Ok(vec![address]),
            SwarmEvent::ListenerError { error, .. } => {
                return Err(GossipError::Listen {
                    addr: addr.clone(),
                    why: error.to_string(),
                })
            }
            SwarmEvent::ListenerClosed { reason, .. } => {
                return Err(GossipError::Listen {
                    addr: addr.clone(),
                    why: format!("{reason:?}"),
                })
            }
            _ => {}
        }
    }
}

struct Incoming {
    from: PeerId,
    id: MessageId,
    topic: Topic,
    data: Vec<u8>,
}

pub(super) struct Runner {
    swarm: Swarm<Behaviour>,
    config: GossipConfig,
    state: MeshState,
    out: mpsc::Sender<Delivered>,
    metrics: Arc<GossipMetrics>,
    app_score: HashMap<PeerId, f64>,
    topics: HashMap<TopicHash, Topic>,
    last_manifest: Option<Instant>,
    fetches: HashMap<
        libp2p::request_response::OutboundRequestId,
        tokio::sync::oneshot::Sender<Result<super::LeavesResponse, String>>,
    >,
}

impl Runner {
    pub(super) fn new(
        swarm: Swarm<Behaviour>,
        config: GossipConfig,
        state: MeshState,
        out: mpsc::Sender<Delivered>,
        metrics: Arc<GossipMetrics>,
    ) -> Self {
        let topics = Topic::ALL
            .into_iter()
            .map(|t| (IdentTopic::new(t.name()).hash(), t))
            .collect();
        Self {
            swarm,
            config,
            state,
            out,
            metrics,
            app_score: HashMap::new(),
            topics,
            last_manifest: None,
            fetches: HashMap::new(),
        }
    }

    pub(super) async fn run(mut self, mut cmds: mpsc::Receiver<Command>) {
        let mut republish = tokio::time::interval(self.config.manifest_every);
        let mut prune = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => {
                    let mut batch = Vec::new();
                    self.take(ev, &mut batch);
                    // Whatever else is ready joins this batch.
                    while batch.len() < BATCH {
                        match self.swarm.select_next_some().now_or_never() {
                            Some(ev) => self.take(ev, &mut batch),
                            None => break,
                        }
                    }
                    self.validate(batch).await;
                }
                cmd = cmds.recv() => match cmd {
                    Some(c) => self.command(c),
                    None => return,
                },
                _ = republish.tick() => self.publish_manifest(),
                _ = prune.tick() => self.state.prune(now_ms()),
            }
        }
    }

    fn publish_manifest(&mut self) {
        // New subscribers trigger this too: at most one manifest per 200 ms.
        if self
            .last_manifest
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_millis(200))
        {
            return;
        }
        let Some(source) = self.config.manifest.clone() else {
            return;
        };
        self.last_manifest = Some(Instant::now());
        if let Some(m) = source() {
            // We are in our own view (a validator counts itself on the committee); the
            // publisher never receives its own message, so it is checked here.
            if let Err(e) = self.state.on_manifest(&m, now_ms()) {
                tracing::error!(error = %e, "our own manifest does not verify");
            }
            // Before any peer joined the topic this fails; the next tick retries.
            let _ = self
                .swarm
                .behaviour_mut()
                .gossipsub
                .publish(IdentTopic::new(Topic::Manifest.name()), m);
        }
    }

    fn take(&mut self, ev: SwarmEvent<BehaviourEvent>, batch: &mut Vec<Incoming>) {
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                self.metrics.received.fetch_add(1, Ordering::Relaxed);
                match self.topics.get(&message.topic) {
                    Some(t) => batch.push(Incoming {
                        from: propagation_source,
                        id: message_id,
                        topic: *t,
                        data: message.data,
                    }),
                    None => {
                        // We subscribe only to our topics; anything else is misrouted.
                        self.report(&message_id, &propagation_source, MessageAcceptance::Reject);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed {
                topic,
                ..
            })) if self.topics.get(&topic) == Some(&Topic::Manifest) => self.publish_manifest(),
            SwarmEvent::Behaviour(BehaviourEvent::Fetch(ev)) => self.fetch_event(ev),
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                tracing::debug!(peer = %peer_id, "peer disconnected");
            }
            _ => {}
        }
    }

    fn fetch_event(
        &mut self,
        ev: libp2p::request_response::Event<super::LeavesRequest, super::LeavesResponse>,
    ) {
        use libp2p::request_response::{Event, Message};
        match ev {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => self.hand_on(Delivered::LeavesWanted {
                peer,
                request,
                channel,
            }),
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(tx) = self.fetches.remove(&request_id) {
                    let _ = tx.send(Ok(response));
                }
            }
            Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(tx) = self.fetches.remove(&request_id) {
                    let _ = tx.send(Err(error.to_string()));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "leaves request from a peer failed");
            }
            Event::ResponseSent { .. } => {}
        }
    }

    /// Hands a result to the consumer; a full queue drops it (counted), so a slow
    /// consumer costs deliveries, never memory.
    fn hand_on(&self, d: Delivered) {
        if self.out.try_send(d).is_err() {
            self.metrics.undelivered.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn report(&mut self, id: &MessageId, from: &PeerId, a: MessageAcceptance) {
        let counter = match a {
            MessageAcceptance::Accept => &self.metrics.accepted,
            MessageAcceptance::Ignore => &self.metrics.ignored,
            MessageAcceptance::Reject => &self.metrics.rejected,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if self.config.validate {
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(id, from, a);
        }
    }

    async fn validate(&mut self, batch: Vec<Incoming>) {
        if batch.is_empty() {
            return;
        }
        let now = now_ms();
        if !self.config.validate {
            for m in batch {
                self.metrics.accepted.fetch_add(1, Ordering::Relaxed);
                self.hand_on(Delivered::Unvalidated(m.topic, m.data, Instant::now()));
            }
            return;
        }
        // Receipts: one signature batch.
        let (receipts, others): (Vec<Incoming>, Vec<Incoming>) = batch
            .into_iter()
            .partition(|m| matches!(m.topic, Topic::Receipt(_)));
        if !receipts.is_empty() {
            let input: Vec<_> = receipts
                .iter()
                .filter_map(|m| match m.topic {
                    Topic::Receipt(c) => Some((c, m.data.as_slice())),
                    _ => None,
                })
                .collect();
            let results = self.state.on_receipts(&input, now);
            for (m, r) in receipts.iter().zip(results) {
                let at = Instant::now();
                self.settle(m, r.map(|v| Delivered::Receipt(v, at)));
            }
        }
        for m in others {
            let r = match m.topic {
                Topic::Receipt(_) => continue,
                Topic::Verdict(c) => self
                    .state
                    .on_verdict(c, &m.data, now)
                    .map(Delivered::Verdict),
                Topic::Challenge => self
                    .state
                    .on_challenge(&m.data, now)
                    .map(|c| Delivered::Challenge(Box::new(c))),
                Topic::Heartbeat => self
                    .state
                    .on_heartbeat(&m.data, now)
                    .map(Delivered::Heartbeat),
                Topic::Manifest => self
                    .state
                    .on_manifest(&m.data, now)
                    .map(|v| Delivered::Manifest(v.into_inner().manifest)),
            };
            self.settle(&m, r);
        }
    }

    fn settle(&mut self, m: &Incoming, r: Result<Delivered, Rejection>) {
        match r {
            Ok(d) => {
                self.report(&m.id, &m.from, MessageAcceptance::Accept);
                self.hand_on(d);
            }
            Err(rejection) => {
                let acceptance = match rejection.action() {
                    Action::Ignore => MessageAcceptance::Ignore,
                    Action::Reject => MessageAcceptance::Reject,
                };
                self.report(&m.id, &m.from, acceptance);
                self.metrics.drop_reason(&rejection);
                match rejection.penalty() {
                    Penalty::None => {}
                    Penalty::Invalid => {
                        let s = self.app_score.entry(m.from).or_insert(0.0);
                        *s += INVALID_PENALTY;
                        let s = *s;
                        self.swarm
                            .behaviour_mut()
                            .gossipsub
                            .set_application_score(&m.from, s);
                    }
                }
                tracing::debug!(topic = m.topic.name(), reason = %rejection, from = %m.from, "gossip message dropped");
                self.hand_on(Delivered::Rejected {
                    topic: m.topic.name(),
                    rejection,
                    from: m.from,
                });
            }
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Publish {
                topic,
                bytes,
                checked,
                done,
            } => {
                let r = if checked && bytes.len() > topic.max_size() {
                    Err(GossipError::Publish {
                        topic: topic.name(),
                        why: format!(
                            "{} bytes is over the topic's {}",
                            bytes.len(),
                            topic.max_size()
                        ),
                    })
                } else {
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .publish(IdentTopic::new(topic.name()), bytes)
                        .map(|_| {
                            self.metrics.published.fetch_add(1, Ordering::Relaxed);
                        })
                        .map_err(|e| GossipError::Publish {
                            topic: topic.name(),
                            why: e.to_string(),
                        })
                };
                let _ = done.send(r);
            }
            Command::Dial(a) => {
                if let Err(e) = self.swarm.dial(a.clone()) {
                    tracing::warn!(addr = %a, error = %e, "dial failed");
                }
            }
            Command::Status(tx) => {
                let _ = tx.send(self.status());
            }
            Command::Score(p, tx) => {
                let _ = tx.send(self.swarm.behaviour().gossipsub.peer_score(&p));
            }
            Command::WithState(f) => f(&mut self.state),
            Command::Fetch {
                peer,
                request,
                reply,
            } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .fetch
                    .send_request(&peer, request);
                self.fetches.insert(id, reply);
            }
            Command::Respond(channel, response) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .fetch
                    .send_response(channel, response);
            }
        }
    }

    fn status(&self) -> MeshStatus {
        let gs = &self.swarm.behaviour().gossipsub;
        let name = |h: &TopicHash| {
            self.topics
                .get(h)
                .map_or_else(|| h.to_string(), |t| t.name().to_string())
        };
        MeshStatus {
            peer_id: self.swarm.local_peer_id().to_string(),
            peers: gs
                .all_peers()
                .map(|(p, topics)| PeerStatus {
                    peer_id: p.to_string(),
                    score: gs.peer_score(p).unwrap_or(0.0),
                    topics: topics.into_iter().map(name).collect(),
                })
                .collect(),
            topics: gs
                .topics()
                .map(|h| (name(h), gs.mesh_peers(h).count()))
                .collect(),
            known_nodes: self.state.nodes().count(),
            seen_receipts: self.state.seen_len(),
        }
    }
}
