//! A validator's chain duties: what the mesh decided goes on chain from the validators'
//! own nodes, with certificates the contracts check themselves.
//!
//! - A certified epoch settlement becomes a payout tree (one leaf per settled receipt:
//!   its digest, node key, the payee account the node's attested manifest names, and
//!   the fee `gas × FEE_WEI_PER_GAS`); each validator signs its root (EIP-712, through
//!   attestd), the signatures are gossiped, and whoever holds ≥ 2/3 of the committee's
//!   signatures settles it on PayoutRouter and claims every leaf (each pays the node's
//!   bond owner, once).
//! - Upheld slashing evidence: the challenger opens the challenge on the Adjudicator
//!   (its challenge bond at risk); every validator with the evidence signs the upheld
//!   outcome; a quorum resolves it and StakeGuard slashes the node.
//! - Quarantine and release on certified liveness evidence, the same way.
//!
//! Every transaction is simulated first: a revert another validator made inevitable
//! (already settled, paid, resolved, quarantined) is not sent, and counts as done.

use std::collections::BTreeMap;
use std::sync::Arc;

use havn_chain_client::alloy::primitives::{Address, Bytes, B256, U256};
use havn_chain_client::eip712;
use havn_chain_client::payout::{PayoutLeaf, PayoutTree};
use havn_chain_client::ChainError;
use havn_ipc::AsyncClient;
use havn_proto::chain::{ChainSignature, ChainVote};
use havn_proto::ipc::{NetdAttestRequest, NetdAttestResponse, NetdAttestd};
use havn_proto::mesh::ChainVoteMessage;
use havn_proto::sign::Signable;
use havn_proto::{ComputeClass, Hash32, NodeId, SignedReceipt};
use serde::Serialize;
use tokio::sync::Mutex;

use crate::chain_link::ChainLink;

use havn_chain_client::FEE_WEI_PER_GAS;

/// Most subjects (settlements, quarantines, adjudications) kept in the vote book.
const MAX_SUBJECTS: usize = 1024;

/// Most events and claim files kept for `/mesh/status` and `/mesh/evidence`.
const MAX_RECORDS: usize = 4096;

/// What this validator did on chain, and the claim files of what it settled (a node's
/// operator can check or claim a payout with one: `havnctl payout claim`).
#[derive(Debug, Default, Clone, Serialize)]
pub struct ChainRecord {
    /// Transactions, oldest first.
    pub events: Vec<ChainEvent>,
    /// One per settled receipt.
    pub claims: Vec<havn_chain_client::payout::Claim>,
}

/// One thing this validator did on chain.
#[derive(Debug, Clone, Serialize)]
pub struct ChainEvent {
    /// `settle`, `payout`, `challenge`, `slash`, `quarantine`, `release`.
    pub kind: &'static str,
    /// The node concerned (hex node key), if any.
    pub node: Option<String>,
    /// HAI wei moved, if any.
    pub amount: Option<String>,
    /// The transaction.
    pub tx: String,
    /// The epoch.
    pub epoch: u64,
}

/// What the mesh decided that goes on chain.
#[derive(Debug, Clone)]
pub enum Work {
    /// A certified settlement with its receipts.
    Settle {
        /// Epoch.
        epoch: u64,
        /// The settled receipts.
        receipts: Vec<SignedReceipt>,
    },
    /// Upheld slashing evidence.
    Slash {
        /// The receipt's digest.
        receipt: Hash32,
        /// The accused.
        node: NodeId,
        /// The challenge's epoch.
        epoch: u64,
        /// Who challenged (it opens the challenge on chain, its bond at risk).
        challenger: NodeId,
    },
    /// Quarantine (or release) of a node.
    Liveness {
        /// The node.
        node: NodeId,
        /// The epoch of the evidence.
        epoch: u64,
        /// Release rather than quarantine.
        release: bool,
    },
}

struct Subject {
    vote: ChainVote,
    sigs: BTreeMap<Address, [u8; 65]>,
    done: bool,
    /// Settlement: the tree behind the root. Quarantine/release: the account.
    tree: Option<PayoutTree>,
    account: Option<Address>,
    node: Option<NodeId>,
}

/// The validator's chain side.
pub struct ChainDuty {
    link: ChainLink,
    gossip: Arc<crate::gossip::GossipHandle>,
    attestd: Arc<Mutex<AsyncClient<NetdAttestd>>>,
    me: NodeId,
    class: ComputeClass,
    subjects: BTreeMap<Vec<u8>, Subject>,
    /// Slashing work waiting for the challenge to appear on chain.
    slashes: Vec<Work>,
    record: Arc<std::sync::Mutex<ChainRecord>>,
}

/// Whether a revert means another validator already did it.
fn already(e: &ChainError) -> bool {
    matches!(e, ChainError::Reverted(r) if matches!(r.name.as_str(),
        "AlreadyPaid" | "AlreadyResolved" | "AlreadyQuarantined" | "NotQuarantined" | "SettlementConflict"))
}

impl ChainDuty {
    /// The duty of validator `me` of `class` over `link`.
    pub fn new(
        link: ChainLink,
        gossip: Arc<crate::gossip::GossipHandle>,
        attestd: Arc<Mutex<AsyncClient<NetdAttestd>>>,
        me: NodeId,
        class: ComputeClass,
        record: Arc<std::sync::Mutex<ChainRecord>>,
    ) -> Self {
        Self {
            link,
            gossip,
            attestd,
            me,
            class,
            subjects: BTreeMap::new(),
            slashes: Vec::new(),
            record,
        }
    }

    fn event(&self, e: ChainEvent) {
        tracing::info!(kind = e.kind, node = ?e.node, amount = ?e.amount, tx = %e.tx, "on chain");
        if let Ok(mut r) = self.record.lock() {
            if r.events.len() < MAX_RECORDS {
                r.events.push(e);
            }
        }
    }

    /// The chain account `node`'s attested manifest names.
    async fn account_of(&self, node: NodeId) -> Option<Address> {
        self.gossip
            .with_state(move |s| s.node(&node).map(|k| k.manifest.chain_account))
            .await
            .ok()
            .flatten()
            .filter(|a| *a != [0; 20])
            .map(Address::from)
    }

    fn digest(&self, v: &ChainVote) -> B256 {
        havn_chain_client::vote::digest(v, &self.link.chain().domain())
    }

    /// Takes a gossiped vote: kept when its signature recovers to the account it names
    /// (which the mesh already matched to the validator's attested manifest).
    pub fn add(&mut self, m: &ChainVoteMessage) -> bool {
        let Ok(sig) = <[u8; 65]>::try_from(m.signature.signature.as_slice()) else {
            return false;
        };
        let signer = Address::from(m.signature.signer);
        if eip712::recover(&self.digest(&m.vote), &sig) != Some(signer) {
            tracing::warn!(validator = %m.validator, "a chain vote whose signature does not recover to its account: dropped");
            return false;
        }
        let key = havn_chain_client::vote::subject(&m.vote);
        let s = self.subjects.entry(key).or_insert_with(|| Subject {
            vote: m.vote.clone(),
            sigs: BTreeMap::new(),
            done: false,
            tree: None,
            account: None,
            node: None,
        });
        if s.vote != m.vote {
            tracing::warn!(validator = %m.validator, "a chain vote for another outcome of this subject");
            return false;
        }
        s.sigs.insert(signer, sig);
        true
    }

    /// Our own vote on `vote`, through attestd; the message to gossip.
    async fn sign(&mut self, vote: ChainVote) -> Option<ChainVoteMessage> {
        let answer = self
            .attestd
            .lock()
            .await
            .call(&NetdAttestRequest::ChainVote(Box::new(vote.clone())))
            .await;
        let signature: ChainSignature = match answer {
            Ok(NetdAttestResponse::Chain(s)) => *s,
            other => {
                tracing::warn!(?vote, answer = ?other, "attestd did not sign the chain vote");
                return None;
            }
        };
        let m = ChainVoteMessage {
            validator: self.me,
            vote,
            signature,
        };
        self.add(&m).then_some(m)
    }

    /// Does `w`; returns the votes to gossip.
    pub async fn work(&mut self, w: Work) -> Vec<ChainVoteMessage> {
        match w {
            Work::Settle { epoch, receipts } => {
                let mut leaves: Vec<PayoutLeaf> = Vec::with_capacity(receipts.len());
                for r in &receipts {
                    let Some(payee) = self.account_of(r.receipt.node).await else {
                        tracing::warn!(node = %r.receipt.node, "no chain account in the node's manifest: its receipt is not paid");
                        continue;
                    };
                    leaves.push(PayoutLeaf {
                        receipt: B256::from(r.receipt.signing_digest().0),
                        node_key: B256::from(r.receipt.node.0 .0),
                        payee,
                        fee: U256::from(r.receipt.gas) * U256::from(FEE_WEI_PER_GAS),
                    });
                }
                let tree = PayoutTree::new(leaves);
                let vote = ChainVote::Settlement {
                    epoch,
                    compute_class: self.class,
                    payout_root: Hash32(tree.root().0),
                    receipts: u32::try_from(tree.leaves().len()).unwrap_or(u32::MAX),
                };
                let out = self.sign(vote.clone()).await;
                if let Some(s) = self
                    .subjects
                    .get_mut(&havn_chain_client::vote::subject(&vote))
                {
                    s.tree = Some(tree);
                }
                out.into_iter().collect()
            }
            Work::Liveness {
                node,
                epoch,
                release,
            } => {
                let Some(account) = self.account_of(node).await else {
                    return Vec::new();
                };
                let vote = if release {
                    ChainVote::Release { node, epoch }
                } else {
                    ChainVote::Quarantine { node, epoch }
                };
                let out = self.sign(vote.clone()).await;
                if let Some(s) = self
                    .subjects
                    .get_mut(&havn_chain_client::vote::subject(&vote))
                {
                    s.account = Some(account);
                    s.node = Some(node);
                }
                out.into_iter().collect()
            }
            w @ Work::Slash { .. } => {
                self.slashes.push(w);
                Vec::new()
            }
        }
    }

    /// Opens our challenges and signs outcomes of challenges that appeared on chain;
    /// returns the votes to gossip.
    pub async fn tick(&mut self) -> Vec<ChainVoteMessage> {
        let mut out = Vec::new();
        let pending = std::mem::take(&mut self.slashes);
        for w in pending {
            let Work::Slash {
                receipt,
                node,
                epoch,
                challenger,
            } = w
            else {
                continue;
            };
            let again = Work::Slash {
                receipt,
                node,
                epoch,
                challenger,
            };
            let r = B256::from(receipt.0);
            let open = self
                .link
                .chain()
                .adjudicator()
                .challengeOfReceipt(r)
                .call()
                .await;
            let id = match open {
                Ok(id) if !id.is_zero() => id,
                Ok(_) if challenger == self.me => {
                    let Some(accused) = self.account_of(node).await else {
                        continue;
                    };
                    match self.link.chain().challenge(accused, r, epoch).await {
                        Ok((id, tx)) => {
                            self.event(ChainEvent {
                                kind: "challenge",
                                node: Some(node.0.to_hex()),
                                amount: None,
                                tx: tx.to_string(),
                                epoch,
                            });
                            id
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "opening the challenge on chain failed; retrying");
                            self.slashes.push(again);
                            continue;
                        }
                    }
                }
                _ => {
                    // Not open yet (the challenger opens it): look again next tick.
                    self.slashes.push(again);
                    continue;
                }
            };
            let vote = ChainVote::Adjudication {
                challenge_id: Hash32(id.to_be_bytes()),
                receipt,
                upheld: true,
            };
            if let Some(m) = self.sign(vote.clone()).await {
                out.push(m);
            }
            if let Some(s) = self
                .subjects
                .get_mut(&havn_chain_client::vote::subject(&vote))
            {
                s.node = Some(node);
            }
        }
        out
    }

    /// Keeps the vote book bounded: settled subjects go first, then the lowest keys.
    fn prune(&mut self) {
        while self.subjects.len() > MAX_SUBJECTS {
            let victim = self
                .subjects
                .iter()
                .find(|(_, s)| s.done)
                .or_else(|| self.subjects.iter().next())
                .map(|(k, _)| k.clone());
            match victim {
                Some(k) => {
                    self.subjects.remove(&k);
                }
                None => break,
            }
        }
        self.slashes.truncate(MAX_SUBJECTS);
    }

    /// Submits every subject that holds ≥ 2/3 of a committee of `committee` members.
    pub async fn submit_ready(&mut self, committee: usize) {
        self.prune();
        let need = (committee * 2).div_ceil(3).max(1);
        let keys: Vec<Vec<u8>> = self
            .subjects
            .iter()
            // A settlement waits for our own payout tree (built with our vote): without
            // it there is nothing to claim.
            .filter(|(_, s)| {
                !s.done
                    && s.sigs.len() >= need
                    && (s.tree.is_some() || !matches!(s.vote, ChainVote::Settlement { .. }))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            let Some(s) = self.subjects.get(&k) else {
                continue;
            };
            let cert: Vec<Bytes> = s
                .sigs
                .values()
                .map(|sig| Bytes::copy_from_slice(sig))
                .collect();
            let done = match self
                .submit(&s.vote, cert, s.tree.clone(), s.account, s.node)
                .await
            {
                Ok(()) => true,
                Err(e) if already(&e) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "chain submission failed; retrying with more votes");
                    false
                }
            };
            if let Some(s) = self.subjects.get_mut(&k) {
                s.done = done;
            }
        }
    }

    async fn submit(
        &self,
        vote: &ChainVote,
        cert: Vec<Bytes>,
        tree: Option<PayoutTree>,
        account: Option<Address>,
        node: Option<NodeId>,
    ) -> Result<(), ChainError> {
        let chain = self.link.chain();
        match vote {
            ChainVote::Settlement { epoch, .. } => {
                let Some(s) = havn_chain_client::vote::settlement(vote) else {
                    return Ok(());
                };
                // Another validator may have settled it already: then only claim.
                if chain.settled_root(s.epoch, s.computeClass).await? != s.payoutRoot {
                    let tx = chain.settle(&s, cert.clone()).await?;
                    self.event(ChainEvent {
                        kind: "settle",
                        node: None,
                        amount: None,
                        tx: tx.to_string(),
                        epoch: *epoch,
                    });
                }
                let mult =
                    U256::from(havn_chain_client::multiplier_tenths(s.computeClass).unwrap_or(10));
                if let (Some(t), Ok(mut r)) = (tree.as_ref(), self.record.lock()) {
                    for leaf in t.leaves() {
                        let Some((leaf, proof)) = t.proof(&leaf.receipt) else {
                            continue;
                        };
                        if r.claims.len() < MAX_RECORDS {
                            r.claims.push(havn_chain_client::payout::Claim {
                                epoch: s.epoch,
                                compute_class: s.computeClass,
                                payout_root: s.payoutRoot,
                                receipts: s.receipts,
                                certificate: cert.clone(),
                                leaf,
                                proof,
                            });
                        }
                    }
                }
                for leaf in tree.iter().flat_map(|t| t.leaves().to_vec()) {
                    if chain.is_paid(leaf.receipt).await? {
                        continue;
                    }
                    let Some((leaf, proof)) = tree.as_ref().and_then(|t| t.proof(&leaf.receipt))
                    else {
                        continue;
                    };
                    match chain.claim(&s, Vec::new(), &leaf, proof).await {
                        Ok(tx) => self.event(ChainEvent {
                            kind: "payout",
                            node: Some(hex(&leaf.node_key)),
                            amount: Some((leaf.fee * mult / U256::from(10)).to_string()),
                            tx: tx.to_string(),
                            epoch: *epoch,
                        }),
                        Err(e) if already(&e) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, receipt = %leaf.receipt, "payout claim failed")
                        }
                    }
                }
                Ok(())
            }
            ChainVote::Quarantine { epoch, node } | ChainVote::Release { epoch, node } => {
                let Some(account) = account else {
                    return Ok(());
                };
                let release = matches!(vote, ChainVote::Release { .. });
                let tx = if release {
                    chain.release(account, *epoch, cert).await?
                } else {
                    chain.quarantine(account, *epoch, cert).await?
                };
                self.event(ChainEvent {
                    kind: if release { "release" } else { "quarantine" },
                    node: Some(node.0.to_hex()),
                    amount: None,
                    tx: tx.to_string(),
                    epoch: *epoch,
                });
                Ok(())
            }
            ChainVote::Adjudication {
                challenge_id,
                upheld,
                ..
            } => {
                let id = U256::from_be_bytes(challenge_id.0);
                let tx = chain.resolve(id, *upheld, cert).await?;
                let c = chain.adjudicator().challengeOf(id).call().await?;
                self.event(ChainEvent {
                    kind: if *upheld {
                        "slash"
                    } else {
                        "challenge_rejected"
                    },
                    node: node.map(|n| n.0.to_hex()),
                    amount: Some(c.slashed.to_string()),
                    tx: tx.to_string(),
                    epoch: c.epoch,
                });
                Ok(())
            }
        }
    }
}

fn hex(b: &B256) -> String {
    havn_chain_client::alloy::hex::encode(b.as_slice())
}
