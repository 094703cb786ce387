//! One node's view of the mesh: the verified manifests it knows, what it has seen, and
//! the handlers that take each topic's bytes through [`crate::validate`]'s stages.

use crate::params::MeshParams;
use crate::sig;
use crate::validate::{self, Rejection, Verified};
use havn_proto::mesh::{
    Challenge, EquivocationEvidence, MeshManifest, Role, SignedChallenge, SignedMeshManifest,
    Topic, VerdictMessage, VerdictOutcome,
};
use havn_proto::sign::Signable;
use havn_proto::{ComputeClass, Hash32, Name, NodeId, SignedHeartbeat, SignedReceipt};
use std::collections::{BTreeMap, HashMap};

/// Most receipts remembered per window (a flood beyond this is ignored, unforwarded).
pub const MAX_SEEN: usize = 1 << 20;

/// A node with a verified manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownNode {
    /// Its latest verified manifest.
    pub manifest: MeshManifest,
    /// Whether certified quarantine evidence holds against it.
    pub quarantined: bool,
    /// Receipts of it this node has verified (for "first jobs are always sampled").
    pub receipts_verified: u64,
}

type JobKey = (NodeId, Name, havn_proto::JobId);

/// The view.
#[derive(Debug)]
pub struct MeshState {
    params: MeshParams,
    policy: havn_attest::Policy,
    nodes: BTreeMap<NodeId, KnownNode>,
    peers: HashMap<Vec<u8>, NodeId>,
    /// (node, submitter, job) → (epoch, the first verified receipt).
    seen: HashMap<JobKey, (u64, SignedReceipt)>,
    /// (validator, receipt digest) → the verdict's digest.
    verdicts: HashMap<(NodeId, Hash32), Hash32>,
    /// Equivocations found.
    pub equivocations: Vec<EquivocationEvidence>,
}

impl MeshState {
    /// An empty view that verifies manifests' quotes under `policy`.
    pub fn new(params: MeshParams, policy: havn_attest::Policy) -> Self {
        Self {
            params,
            policy,
            nodes: BTreeMap::new(),
            peers: HashMap::new(),
            seen: HashMap::new(),
            verdicts: HashMap::new(),
            equivocations: Vec::new(),
        }
    }

    /// The parameters.
    pub fn params(&self) -> &MeshParams {
        &self.params
    }

    /// A known node.
    pub fn node(&self, id: &NodeId) -> Option<&KnownNode> {
        self.nodes.get(id)
    }

    /// Every known node.
    pub fn nodes(&self) -> impl Iterator<Item = (&NodeId, &KnownNode)> {
        self.nodes.iter()
    }

    /// The libp2p peer id (multihash bytes) a node's manifest binds.
    pub fn peer_of(&self, node: &NodeId) -> Option<Vec<u8>> {
        self.nodes.get(node).map(|k| k.manifest.peer_id.to_vec())
    }

    /// The node a libp2p peer id (multihash bytes) belongs to.
    pub fn node_of_peer(&self, peer: &[u8]) -> Option<NodeId> {
        self.peers.get(peer).copied()
    }

    /// Marks a node quarantined (on certified evidence) or live again.
    pub fn set_quarantined(&mut self, id: &NodeId, quarantined: bool) {
        if let Some(k) = self.nodes.get_mut(id) {
            k.quarantined = quarantined;
        }
    }

    /// The committee of a class: known, unquarantined validators of it, by node key.
    pub fn committee(&self, class: ComputeClass) -> Vec<havn_proto::mesh::CommitteeMember> {
        self.nodes
            .iter()
            .filter(|(_, k)| {
                k.manifest.role == Role::Validator
                    && k.manifest.compute_class == class
                    && !k.quarantined
            })
            .map(|(id, k)| havn_proto::mesh::CommitteeMember {
                node: *id,
                weight: k.manifest.weight,
            })
            .collect()
    }

    /// Forgets receipts and verdicts from before the window.
    pub fn prune(&mut self, now_ms: u64) {
        let now = self.params.epoch_of(now_ms);
        let keep_from = now.saturating_sub(self.params.past_epochs);
        self.seen.retain(|_, (epoch, _)| *epoch >= keep_from);
    }

    /// How many receipts the seen cache holds (for the memory figure).
    pub fn seen_len(&self) -> usize {
        self.seen.len()
    }

    /// `/havn/1/manifest`: a manifest whose signature holds and whose quote binds its
    /// node key to this manifest and verifies under the policy.
    pub fn on_manifest(
        &mut self,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Verified<SignedMeshManifest>, Rejection> {
        let m: SignedMeshManifest = validate::decode(Topic::Manifest, bytes)?;
        validate::in_window(&self.params, m.manifest.unix_ms, now_ms)?;
        if let Some(k) = self.nodes.get(&m.manifest.node) {
            if k.manifest == m.manifest {
                return Err(Rejection::Duplicate);
            }
            if k.manifest.unix_ms >= m.manifest.unix_ms {
                return Err(Rejection::StaleManifest);
            }
        }
        let digest = validate::signature(&m.manifest.node, &m.manifest, &m.signature)?;
        if m.quote.node != m.manifest.node {
            return Err(Rejection::BadQuote(
                "the quote binds another node key".into(),
            ));
        }
        if m.quote.nonce != digest {
            return Err(Rejection::BadQuote(
                "the quote's nonce is not this manifest's digest".into(),
            ));
        }
        let ev = havn_attest::Evidence::from_wire(&m.quote);
        havn_attest::verify_quote(&ev, &digest.0, &self.policy)
            .map_err(|e| Rejection::BadQuote(e.to_string()))?;
        let id = m.manifest.node;
        let previous = self.nodes.insert(
            id,
            KnownNode {
                manifest: m.manifest.clone(),
                quarantined: false,
                receipts_verified: 0,
            },
        );
        if let Some(p) = previous {
            self.peers.remove(p.manifest.peer_id.as_slice());
            if let Some(k) = self.nodes.get_mut(&id) {
                k.quarantined = p.quarantined;
                k.receipts_verified = p.receipts_verified;
            }
        }
        self.peers.insert(m.manifest.peer_id.to_vec(), id);
        Ok(Verified::new(m, digest))
    }

    /// `/havn/1/receipt/{class}`, one message.
    pub fn on_receipt(
        &mut self,
        class: ComputeClass,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Verified<SignedReceipt>, Rejection> {
        self.on_receipts(&[(class, bytes)], now_ms)
            .pop()
            .unwrap_or(Err(Rejection::Overloaded))
    }

    /// `/havn/1/receipt/{class}`, a batch: stages 1–4 one by one, then the signatures
    /// of all survivors in one batch, then the seen cache in order.
    pub fn on_receipts(
        &mut self,
        msgs: &[(ComputeClass, &[u8])],
        now_ms: u64,
    ) -> Vec<Result<Verified<SignedReceipt>, Rejection>> {
        let mut staged: Vec<Result<(SignedReceipt, u64), Rejection>> = msgs
            .iter()
            .map(|(class, bytes)| self.receipt_stages(*class, bytes, now_ms))
            .collect();
        let items: Vec<sig::Item> = staged
            .iter()
            .filter_map(|s| s.as_ref().ok())
            .map(|(r, _)| sig::Item {
                node: r.receipt.node,
                digest: r.receipt.signing_digest(),
                sig: r.signature,
            })
            .collect();
        let mut good = sig::verify_batch(&items).into_iter();
        for s in staged.iter_mut() {
            if s.is_ok() && !good.next().unwrap_or(false) {
                *s = Err(Rejection::BadSignature);
            }
        }
        staged
            .into_iter()
            .map(|s| s.and_then(|(r, epoch)| self.record_receipt(r, epoch)))
            .collect()
    }

    fn receipt_stages(
        &self,
        class: ComputeClass,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<(SignedReceipt, u64), Rejection> {
        let r: SignedReceipt = validate::decode(Topic::Receipt(class), bytes)?;
        validate::class_matches(Topic::Receipt(class), r.receipt.compute_class)?;
        let epoch = validate::in_window(&self.params, r.receipt.signed_unix_ms, now_ms)?;
        if let Some((_, first)) = self.seen.get(&job_key(&r)) {
            if *first == r {
                return Err(Rejection::Duplicate);
            }
        }
        validate::known_node(self, &r.receipt.node)?;
        Ok((r, epoch))
    }

    /// Stage 6, after the signature: the seen cache and equivocation.
    fn record_receipt(
        &mut self,
        r: SignedReceipt,
        epoch: u64,
    ) -> Result<Verified<SignedReceipt>, Rejection> {
        let key = job_key(&r);
        if let Some((_, first)) = self.seen.get(&key) {
            if *first == r {
                return Err(Rejection::Duplicate);
            }
            let ev = EquivocationEvidence {
                first: first.clone(),
                second: r,
            };
            self.equivocations.push(ev.clone());
            return Err(Rejection::Equivocation(Box::new(ev)));
        }
        if self.seen.len() >= MAX_SEEN {
            return Err(Rejection::Overloaded);
        }
        let digest = r.receipt.signing_digest();
        self.seen.insert(key, (epoch, r.clone()));
        if let Some(k) = self.nodes.get_mut(&r.receipt.node) {
            k.receipts_verified = k.receipts_verified.saturating_add(1);
        }
        Ok(Verified::new(r, digest))
    }

    /// `/havn/1/heartbeat`.
    pub fn on_heartbeat(
        &self,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Verified<SignedHeartbeat>, Rejection> {
        let h: SignedHeartbeat = validate::decode(Topic::Heartbeat, bytes)?;
        validate::in_window(&self.params, h.heartbeat.unix_ms, now_ms)?;
        // A quarantined node's heartbeats are what make it live again.
        if self.node(&h.heartbeat.node).is_none() {
            return Err(Rejection::UnknownNode(h.heartbeat.node));
        }
        let d = validate::signature(&h.heartbeat.node, &h.heartbeat, &h.signature)?;
        Ok(Verified::new(h, d))
    }

    /// `/havn/1/verdict/{class}`: a verdict or a settlement vote from a validator of the
    /// class; a second, different verdict by one validator on one receipt is refused.
    pub fn on_verdict(
        &mut self,
        class: ComputeClass,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Verified<VerdictMessage>, Rejection> {
        let topic = Topic::Verdict(class);
        let m: VerdictMessage = validate::decode(topic, bytes)?;
        match &m {
            VerdictMessage::Verdict(v) => {
                let body = &v.verdict;
                validate::class_matches(topic, body.compute_class)?;
                validate::epoch_in_window(&self.params, body.epoch, now_ms)?;
                validate::known_validator(self, &body.validator, class)?;
                let d = validate::signature(&body.validator, body, &v.signature)?;
                let key = (body.validator, body.receipt_digest);
                match self.verdicts.get(&key) {
                    Some(prev) if *prev == d => return Err(Rejection::Duplicate),
                    Some(_) => return Err(Rejection::DoubleVerdict(body.validator)),
                    None => {}
                }
                if body.outcome == VerdictOutcome::Reject && body.first_divergent.is_none() {
                    return Err(Rejection::Undecodable(
                        "a rejection must name the divergent node".into(),
                    ));
                }
                self.verdicts.insert(key, d);
                Ok(Verified::new(m, d))
            }
            VerdictMessage::Vote(v) => {
                validate::class_matches(topic, v.settlement.compute_class)?;
                validate::epoch_in_window(&self.params, v.settlement.epoch, now_ms)?;
                validate::known_validator(self, &v.validator, class)?;
                let d = validate::signature(&v.validator, &v.settlement, &v.signature)?;
                Ok(Verified::new(m, d))
            }
            VerdictMessage::ChainVote(c) => {
                // The chain signature itself is checked by the receiver that knows the
                // deployment (its EIP-712 domain); here: a known validator of the class,
                // naming the chain account its attested manifest names.
                if let havn_proto::chain::ChainVote::Settlement {
                    compute_class,
                    epoch,
                    ..
                } = &c.vote
                {
                    validate::class_matches(topic, *compute_class)?;
                    validate::epoch_in_window(&self.params, *epoch, now_ms)?;
                }
                validate::known_validator(self, &c.validator, class)?;
                let named = self.node(&c.validator).map(|k| k.manifest.chain_account);
                if named != Some(c.signature.signer) {
                    return Err(Rejection::Undecodable(
                        "a chain vote from another account than the validator's manifest names"
                            .into(),
                    ));
                }
                let d = havn_proto::sign::tagged_digest(
                    b"havn/chain-vote-message/v1",
                    &postcard::to_stdvec(&**c).unwrap_or_default(),
                );
                Ok(Verified::new(m, d))
            }
        }
    }

    /// `/havn/1/challenge`: from a validator of the receipt's class, over a receipt its
    /// node signed, with openings that lead to the receipt's runtime hash.
    pub fn on_challenge(
        &mut self,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Verified<SignedChallenge>, Rejection> {
        let c: SignedChallenge = validate::decode(Topic::Challenge, bytes)?;
        let body = &c.challenge;
        validate::epoch_in_window(&self.params, body.epoch, now_ms)?;
        let r = &body.receipt;
        validate::known_validator(self, &body.challenger, r.receipt.compute_class)?;
        let d = validate::signature(&body.challenger, body, &c.signature)?;
        validate::signature(&r.receipt.node, &r.receipt, &r.signature).map_err(|_| {
            Rejection::BadChallenge("the receipt's signature does not verify".into())
        })?;
        check_openings(body).map_err(Rejection::BadChallenge)?;
        Ok(Verified::new(c, d))
    }
}

fn job_key(r: &SignedReceipt) -> JobKey {
    (
        r.receipt.node,
        r.receipt.submitter.clone(),
        r.receipt.job_id.clone(),
    )
}

/// A challenge's openings hold together: each opens its leaf under the Merkle root, the
/// root (with the receipt's checksum and seed) gives the receipt's runtime hash, the
/// parents come before the divergent node, and the recomputed hash differs.
pub fn check_openings(c: &Challenge) -> Result<(), String> {
    use havn_proto::merkle;
    let r = &c.receipt.receipt;
    let leaves = usize::try_from(c.leaves).map_err(|_| "leaf count".to_string())?;
    let rh = merkle::runtime_hash(&r.manifest_checksum.0, r.seed, &c.merkle_root.0);
    if rh != r.runtime_hash.0 {
        return Err("the Merkle root does not give the receipt's runtime hash".into());
    }
    let open = |o: &havn_proto::mesh::Opening| -> Result<(), String> {
        let path: Vec<([u8; 32], bool)> = o.path.iter().map(|(h, l)| (h.0, *l)).collect();
        let index = usize::try_from(o.index).map_err(|_| "index".to_string())?;
        if merkle::verify_path(&c.merkle_root.0, &o.hash.0, index, leaves, &path) {
            Ok(())
        } else {
            Err(format!("opening of leaf {} does not verify", o.index))
        }
    };
    open(&c.divergent)?;
    for p in &c.parents {
        if p.index >= c.divergent.index {
            return Err(format!(
                "parent {} does not come before node {}",
                p.index, c.divergent.index
            ));
        }
        open(p)?;
    }
    if c.recomputed == c.divergent.hash {
        return Err("the recomputed hash equals the committed one".into());
    }
    Ok(())
}
