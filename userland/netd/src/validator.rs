//! A validator's work in the mesh (`[node] role = "validator"`). netd only routes:
//! every judgement is execd's re-execution signed by attestd, every vote is attestd's.
//!
//! - **Sampling**: a node's first `first_jobs_sampled` receipts, then each receipt whose
//!   lottery ticket (attestd's deterministic signature) draws under the threshold that
//!   makes the committee sample it with the class's probability.
//! - **Judging**: execd re-executes; a mismatch fetches the executing node's leaves over
//!   `/havn/1/leaves` and becomes a challenge naming the first divergent node, gossiped
//!   with the rejection; other validators' challenges are re-executed and upheld or not.
//! - **Slashing evidence**: a challenge plus `Reject` verdicts naming its node from
//!   ≥ 2/3 of the committee's weight, checked with [`havn_mesh::evidence::verify_slashing`].
//! - **Settlement**: half an epoch after each epoch ends, the receipts that were
//!   confirmed or unchallenged and the liveness of every execution node are settled,
//!   voted on through attestd, and certified once ≥ 2/3 of the committee's weight agree.

use crate::gossip::{Delivered, GossipHandle, LeavesRequest, LeavesResponse};
use havn_ipc::AsyncClient;
use havn_mesh::bundle::{Inclusion, SettlementBundle};
use havn_mesh::liveness::{Liveness, QuarantineTracker};
use havn_mesh::settle::{self, Quorum};
use havn_mesh::{lottery, MeshParams};
use havn_proto::ipc::{
    Judgement, Leaves, NetdAttestRequest, NetdAttestResponse, NetdAttestd, NetdExecRequest,
    NetdExecResponse, NetdExecd, ReexecEvidence,
};
use havn_proto::mesh::{
    Role, SettlementVote, SignedChallenge, SignedVerdict, SlashingEvidence, Topic, VerdictMessage,
    VerdictOutcome,
};
use havn_proto::sign::Signable;
use havn_proto::{ComputeClass, Hash32, NodeId, SignedReceipt};
use libp2p::PeerId;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};

/// What `/mesh/status` shows of a validator's work.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    /// Receipts of this class verified from gossip, by node (hex key).
    pub receipts_by_node: BTreeMap<String, u64>,
    /// Receipts re-executed here.
    pub judged: u64,
    /// Of which confirmed, rejected (with a challenge or upholding one), abstained.
    pub confirmed: u64,
    /// Rejected.
    pub rejected: u64,
    /// Abstained.
    pub abstained: u64,
    /// Challenges this validator published.
    pub challenges_sent: u64,
    /// Slashing evidence assembled here (one per upheld challenge).
    pub slashing: Vec<SlashingEvidence>,
    /// Equivocations seen in gossip.
    pub equivocations: u64,
    /// Certified settlements, with every receipt's inclusion proof.
    pub settlements: Vec<SettlementBundle>,
    /// Nodes quarantined on certified liveness evidence.
    pub quarantined: Vec<NodeId>,
}

/// One epoch's votes, with the receipts and liveness its settlement was built from.
type Voting = (Quorum, Vec<SignedReceipt>, BTreeMap<NodeId, bool>);

/// The channels and settings the validator works with.
pub struct Validator {
    gossip: Arc<GossipHandle>,
    attestd: Arc<Mutex<AsyncClient<NetdAttestd>>>,
    execd: Arc<Mutex<AsyncClient<NetdExecd>>>,
    params: MeshParams,
    class: ComputeClass,
    report: Arc<std::sync::Mutex<Report>>,
    seen_per_node: HashMap<NodeId, u64>,
    receipts: BTreeMap<u64, BTreeMap<Hash32, SignedReceipt>>,
    judged: HashMap<Hash32, VerdictOutcome>,
    verdicts: HashMap<Hash32, BTreeMap<NodeId, SignedVerdict>>,
    challenges: HashMap<Hash32, SignedChallenge>,
    slashed: BTreeSet<Hash32>,
    /// Nodes with slashing evidence against them: every later receipt of theirs is
    /// re-executed, and none settles unless confirmed.
    caught: BTreeSet<NodeId>,
    liveness: Liveness,
    quarantine: QuarantineTracker,
    start_epoch: u64,
    settled: BTreeSet<u64>,
    quorums: BTreeMap<u64, Voting>,
    pending_votes: Vec<SettlementVote>,
    /// The chain side, when `[chain]` is configured.
    chain: Option<crate::validator_chain::ChainDuty>,
    chain_work: Vec<crate::validator_chain::Work>,
}

use havn_mesh::params::now_ms;

impl Validator {
    /// A validator of `class` over the node's gossip, attestd and execd channels.
    pub fn new(
        gossip: Arc<GossipHandle>,
        attestd: Arc<Mutex<AsyncClient<NetdAttestd>>>,
        execd: Arc<Mutex<AsyncClient<NetdExecd>>>,
        params: MeshParams,
        class: ComputeClass,
        report: Arc<std::sync::Mutex<Report>>,
        chain: Option<crate::validator_chain::ChainDuty>,
    ) -> Self {
        let start_epoch = params.epoch_of(now_ms());
        Self {
            gossip,
            attestd,
            execd,
            params,
            class,
            report,
            seen_per_node: HashMap::new(),
            receipts: BTreeMap::new(),
            judged: HashMap::new(),
            verdicts: HashMap::new(),
            challenges: HashMap::new(),
            slashed: BTreeSet::new(),
            caught: BTreeSet::new(),
            liveness: Liveness::default(),
            quarantine: QuarantineTracker::default(),
            start_epoch,
            settled: BTreeSet::new(),
            quorums: BTreeMap::new(),
            pending_votes: Vec::new(),
            chain,
            chain_work: Vec::new(),
        }
    }

    fn note(&self, f: impl FnOnce(&mut Report)) {
        if let Ok(mut r) = self.report.lock() {
            f(&mut r);
        }
    }

    /// Works until the delivery channel closes.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Delivered>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                d = rx.recv() => match d {
                    Some(d) => self.on(d).await,
                    None => return,
                },
                _ = tick.tick() => {
                    self.settle_due().await;
                    self.chain_tick().await;
                }
            }
        }
    }

    async fn on(&mut self, d: Delivered) {
        match d {
            Delivered::Receipt(v, _) => {
                let r = v.get().clone();
                if r.receipt.compute_class != self.class {
                    return;
                }
                let epoch = self.params.epoch_of(r.receipt.signed_unix_ms);
                let node = r.receipt.node.0.to_hex();
                self.note(|rep| *rep.receipts_by_node.entry(node).or_default() += 1);
                self.receipts
                    .entry(epoch)
                    .or_default()
                    .insert(v.digest(), r.clone());
                if self.sampled(&r, &v.digest()).await {
                    self.judge(r, ReexecEvidence::None).await;
                }
            }
            Delivered::Challenge(c) => {
                let c = c.into_inner();
                let digest = c.challenge.receipt.receipt.signing_digest();
                if c.challenge.receipt.receipt.compute_class != self.class {
                    return;
                }
                self.challenges.entry(digest).or_insert_with(|| c.clone());
                if !self.judged.contains_key(&digest) {
                    let r = c.challenge.receipt.clone();
                    self.judge(r, ReexecEvidence::Challenge(Box::new(c))).await;
                }
                self.check_slashing(&digest).await;
            }
            Delivered::Verdict(m) => match m.into_inner() {
                VerdictMessage::Verdict(sv) => {
                    let digest = sv.verdict.receipt_digest;
                    self.verdicts
                        .entry(digest)
                        .or_default()
                        .insert(sv.verdict.validator, sv);
                    self.check_slashing(&digest).await;
                }
                VerdictMessage::Vote(v) => self.vote(v),
                VerdictMessage::ChainVote(m) => {
                    if self.chain.as_mut().is_some_and(|c| c.add(&m)) {
                        let n = self.committee_size().await;
                        if let Some(c) = self.chain.as_mut() {
                            c.submit_ready(n).await;
                        }
                    }
                }
            },
            Delivered::Heartbeat(h) => self.liveness.record(&self.params, &h),
            Delivered::Rejected {
                rejection: havn_mesh::Rejection::Equivocation(_),
                ..
            } => self.note(|r| r.equivocations += 1),
            Delivered::Manifest(_)
            | Delivered::Unvalidated(..)
            | Delivered::LeavesWanted { .. }
            | Delivered::Rejected { .. } => {}
        }
    }

    /// The sampling decision: a node's first jobs always; then the lottery.
    async fn sampled(&mut self, r: &SignedReceipt, digest: &Hash32) -> bool {
        let n = self.seen_per_node.entry(r.receipt.node).or_insert(0);
        *n += 1;
        if *n <= u64::from(self.params.first_jobs_sampled) || self.caught.contains(&r.receipt.node)
        {
            return true;
        }
        let class = self.class;
        let size = self
            .gossip
            .with_state(move |s| s.committee(class).len())
            .await
            .unwrap_or(1);
        let threshold = lottery::threshold(
            self.params.sample_ppm(class),
            u32::try_from(size.max(1)).unwrap_or(u32::MAX),
        );
        let req = NetdAttestRequest::Lottery {
            receipt_digest: *digest,
        };
        match self.attestd.lock().await.call(&req).await {
            Ok(NetdAttestResponse::Ticket(t)) => lottery::sampled(&t, threshold),
            other => {
                tracing::warn!(answer = ?other, "no lottery ticket: not sampling");
                false
            }
        }
    }

    async fn reexecute(
        &self,
        receipt: SignedReceipt,
        evidence: ReexecEvidence,
    ) -> Option<NetdExecResponse> {
        let req = NetdExecRequest::Reexecute { receipt, evidence };
        match self.execd.lock().await.call(&req).await {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!(error = %e, "execd channel failed during a re-execution");
                None
            }
        }
    }

    /// The executing node's leaves, over `/havn/1/leaves` (empty when it does not
    /// answer: the re-execution then abstains rather than guessing).
    async fn fetch_leaves(&self, r: &SignedReceipt) -> Leaves {
        let node = r.receipt.node;
        let peer = self
            .gossip
            .with_state(move |s| s.peer_of(&node))
            .await
            .ok()
            .flatten()
            .and_then(|b| PeerId::from_bytes(&b).ok());
        let Some(peer) = peer else {
            return Leaves::new();
        };
        let req = LeavesRequest {
            submitter: r.receipt.submitter.to_string(),
            job_id: r.receipt.job_id.to_string(),
        };
        match self.gossip.fetch_leaves(peer, req).await {
            Ok(LeavesResponse::Leaves(l)) => {
                l.into_iter().take(havn_proto::ipc::MAX_LEAVES).collect()
            }
            Ok(LeavesResponse::Refused(why)) => {
                tracing::warn!(%peer, %why, "the executing node refused its leaves");
                Leaves::new()
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot fetch the executing node's leaves");
                Leaves::new()
            }
        }
    }

    async fn judge(&mut self, r: SignedReceipt, evidence: ReexecEvidence) {
        let digest = r.receipt.signing_digest();
        let mut answer = self.reexecute(r.clone(), evidence).await;
        if let Some(NetdExecResponse::Diverged { runtime_hash }) = &answer {
            tracing::warn!(job = %r.receipt.job_id, node = %r.receipt.node, ours = %runtime_hash,
                signed = %r.receipt.runtime_hash, "re-execution diverged: fetching the node's leaves");
            let leaves = self.fetch_leaves(&r).await;
            answer = self
                .reexecute(r.clone(), ReexecEvidence::Leaves(Box::new(leaves)))
                .await;
        }
        match answer {
            Some(NetdExecResponse::Judged(j)) => self.publish_judgement(digest, *j).await,
            other => tracing::warn!(job = %r.receipt.job_id, answer = ?other, "no verdict"),
        }
    }

    async fn publish_judgement(&mut self, digest: Hash32, j: Judgement) {
        let outcome = j.verdict.verdict.outcome;
        self.judged.insert(digest, outcome);
        self.note(|r| {
            r.judged += 1;
            match outcome {
                VerdictOutcome::Confirm => r.confirmed += 1,
                VerdictOutcome::Reject => r.rejected += 1,
                VerdictOutcome::Abstain => r.abstained += 1,
            }
        });
        if let Some(c) = j.challenge {
            tracing::warn!(node = %c.challenge.receipt.receipt.node, divergent = c.challenge.divergent.index,
                "challenge: the node's output diverges");
            self.publish(Topic::Challenge, &c).await;
            self.challenges.insert(digest, c);
            self.note(|r| r.challenges_sent += 1);
        }
        self.verdicts
            .entry(digest)
            .or_default()
            .insert(j.verdict.verdict.validator, j.verdict.clone());
        self.publish(
            Topic::Verdict(self.class),
            &VerdictMessage::Verdict(j.verdict),
        )
        .await;
        self.check_slashing(&digest).await;
    }

    async fn publish<T: serde::Serialize>(&self, topic: Topic, v: &T) {
        let Ok(bytes) = postcard::to_stdvec(v) else {
            return;
        };
        for _ in 0..50 {
            match self.gossip.publish(topic, bytes.clone()).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::debug!(topic = topic.name(), error = %e, "publish deferred");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        tracing::warn!(topic = topic.name(), "could not publish");
    }

    async fn check_slashing(&mut self, digest: &Hash32) {
        if self.slashed.contains(digest) {
            return;
        }
        let Some(c) = self.challenges.get(digest).cloned() else {
            return;
        };
        let class = self.class;
        let committee = self
            .gossip
            .with_state(move |s| s.committee(class))
            .await
            .unwrap_or_default();
        let k = c.challenge.divergent.index;
        let upholding: Vec<SignedVerdict> = self
            .verdicts
            .get(digest)
            .map(|m| {
                m.values()
                    .filter(|v| {
                        v.verdict.outcome == VerdictOutcome::Reject
                            && v.verdict.first_divergent == Some(k)
                            && committee.iter().any(|cm| cm.node == v.verdict.validator)
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let ev = SlashingEvidence {
            challenge: c,
            committee: committee.iter().copied().collect(),
            upholding: upholding.into_iter().collect(),
        };
        if havn_mesh::evidence::verify_slashing(&ev, None).is_ok() {
            tracing::warn!(node = %ev.challenge.challenge.receipt.receipt.node,
                job = %ev.challenge.challenge.receipt.receipt.job_id, "slashing evidence: challenge upheld by the committee");
            self.slashed.insert(*digest);
            self.caught
                .insert(ev.challenge.challenge.receipt.receipt.node);
            if self.chain.is_some() {
                let c = &ev.challenge.challenge;
                self.chain_work.push(crate::validator_chain::Work::Slash {
                    receipt: *digest,
                    node: c.receipt.receipt.node,
                    epoch: c.epoch,
                    challenger: c.challenger,
                });
            }
            self.note(|r| r.slashing.push(ev));
        }
    }

    fn vote(&mut self, v: SettlementVote) {
        let e = v.settlement.epoch;
        match self.quorums.get_mut(&e) {
            Some((q, ..)) if *q.settlement() == v.settlement => {
                let _ = q.add(&v.settlement, &v.validator, &v.signature);
                self.certify(e);
            }
            Some(_) => {
                tracing::warn!(epoch = e, validator = %v.validator, "a vote for another settlement of this epoch")
            }
            None => {
                if self.pending_votes.len() < 1024 {
                    self.pending_votes.push(v);
                }
            }
        }
    }

    fn certify(&mut self, epoch: u64) {
        let Some((q, receipts, live)) = self.quorums.get(&epoch) else {
            return;
        };
        let Some(cert) = q.certificate() else {
            return;
        };
        let already = self
            .report
            .lock()
            .map(|r| {
                r.settlements
                    .iter()
                    .any(|b| b.certificate.settlement == cert.settlement)
            })
            .unwrap_or(true);
        if already {
            // The certificate kept is the first that formed (a bare quorum): later
            // votes add nothing a verifier needs.
            return;
        }
        let digests: Vec<Hash32> = receipts
            .iter()
            .map(|r| r.receipt.signing_digest())
            .collect();
        let mut sorted = digests.clone();
        sorted.sort();
        sorted.dedup();
        let inclusions = receipts
            .iter()
            .filter_map(|r| {
                Some(Inclusion {
                    receipt: r.clone(),
                    proof: settle::inclusion_proof(&sorted, &r.receipt.signing_digest())?,
                })
            })
            .collect();
        if self.chain.is_some() {
            self.chain_work.push(crate::validator_chain::Work::Settle {
                epoch,
                receipts: receipts.clone(),
            });
        }
        let (evidence, revived) = self.quarantine.observe(&self.params, &cert, live);
        if self.chain.is_some() {
            for e in &evidence {
                self.chain_work
                    .push(crate::validator_chain::Work::Liveness {
                        node: e.node,
                        epoch,
                        release: false,
                    });
            }
            for n in &revived {
                self.chain_work
                    .push(crate::validator_chain::Work::Liveness {
                        node: *n,
                        epoch,
                        release: true,
                    });
            }
        }
        tracing::info!(epoch, receipts = receipts.len(), "settlement certified");
        let quarantined: Vec<NodeId> = evidence.iter().map(|e| e.node).collect();
        let gossip = self.gossip.clone();
        let (q2, r2) = (quarantined.clone(), revived.clone());
        tokio::spawn(async move {
            let _ = gossip
                .with_state(move |s| {
                    for n in &q2 {
                        s.set_quarantined(n, true);
                    }
                    for n in &r2 {
                        s.set_quarantined(n, false);
                    }
                })
                .await;
        });
        self.note(|r| {
            r.settlements.push(SettlementBundle {
                certificate: cert,
                inclusions,
            });
            r.quarantined.extend(quarantined);
            r.quarantined.retain(|n| !revived.contains(n));
        });
    }

    async fn committee_size(&self) -> usize {
        let class = self.class;
        self.gossip
            .with_state(move |s| s.committee(class).len())
            .await
            .unwrap_or(0)
    }

    /// Puts what the mesh decided on chain: signs and gossips chain votes, opens our
    /// challenges, submits every subject with a quorum of signatures.
    async fn chain_tick(&mut self) {
        let Some(mut duty) = self.chain.take() else {
            return;
        };
        let mut out = Vec::new();
        for w in std::mem::take(&mut self.chain_work) {
            out.extend(duty.work(w).await);
        }
        out.extend(duty.tick().await);
        for m in out {
            self.publish(
                Topic::Verdict(self.class),
                &VerdictMessage::ChainVote(Box::new(m)),
            )
            .await;
        }
        let n = self.committee_size().await;
        duty.submit_ready(n).await;
        self.chain = Some(duty);
    }

    /// Settles every epoch that ended at least half an epoch ago.
    async fn settle_due(&mut self) {
        let now = now_ms();
        let half = self.params.epoch_ms / 2;
        let last_done = self
            .params
            .epoch_of(now.saturating_sub(half))
            .saturating_sub(1);
        let first = self.start_epoch.saturating_add(1);
        let mut e = self
            .settled
            .last()
            .map_or(first, |l| l.saturating_add(1))
            .max(first);
        while e <= last_done {
            self.settle(e).await;
            self.settled.insert(e);
            e = e.saturating_add(1);
        }
        // Old state goes (receipts of settled epochs stay only in the bundles).
        let keep = last_done.saturating_sub(self.params.past_epochs.saturating_add(2));
        self.receipts = self.receipts.split_off(&keep);
        self.liveness.prune_before(keep);
    }

    async fn settle(&mut self, epoch: u64) {
        let class = self.class;
        let (committee, nodes) = self
            .gossip
            .with_state(move |s| {
                let nodes: Vec<NodeId> = s
                    .nodes()
                    .filter(|(_, k)| {
                        k.manifest.role == Role::Execution && k.manifest.compute_class == class
                    })
                    .map(|(n, _)| *n)
                    .collect();
                (s.committee(class), nodes)
            })
            .await
            .unwrap_or_default();
        if committee.is_empty() {
            return;
        }
        let receipts: Vec<SignedReceipt> = self
            .receipts
            .get(&epoch)
            .map(|m| {
                m.iter()
                    .filter(|(d, r)| {
                        // A caught node's receipts settle only once confirmed here.
                        (!self.caught.contains(&r.receipt.node)
                            || self.judged.get(d) == Some(&VerdictOutcome::Confirm))
                            && !self.challenges.contains_key(d)
                            && self.verdicts.get(d).is_none_or(|vs| {
                                vs.values()
                                    .all(|v| v.verdict.outcome == VerdictOutcome::Confirm)
                            })
                    })
                    .map(|(_, r)| r.clone())
                    .collect()
            })
            .unwrap_or_default();
        let live = self.liveness.live_set(&self.params, epoch, &nodes);
        let digests: Vec<Hash32> = receipts
            .iter()
            .map(|r| r.receipt.signing_digest())
            .collect();
        let (s, _) = settle::build(class, epoch, &digests, &live, &committee);
        let Ok(q) = Quorum::new(s.clone(), committee) else {
            return;
        };
        let vote = match self
            .attestd
            .lock()
            .await
            .call(&NetdAttestRequest::Vote(Box::new(s)))
            .await
        {
            Ok(NetdAttestResponse::Vote(v)) => *v,
            other => {
                tracing::warn!(epoch, answer = ?other, "attestd did not vote");
                return;
            }
        };
        self.quorums.insert(epoch, (q, receipts, live));
        self.publish(Topic::Verdict(class), &VerdictMessage::Vote(vote.clone()))
            .await;
        self.vote(vote);
        let pending = std::mem::take(&mut self.pending_votes);
        for v in pending {
            if v.settlement.epoch == epoch {
                self.vote(v);
            } else if v.settlement.epoch > epoch {
                self.pending_votes.push(v);
            }
        }
    }
}
