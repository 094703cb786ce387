//! Liveness: which nodes a validator heard enough heartbeats from in an epoch, and
//! quarantine evidence once certified settlements show a node non-live for
//! `quarantine_after` consecutive epochs.

use crate::params::MeshParams;
use crate::settle;
use crate::validate::Verified;
use havn_proto::mesh::{InclusionProof, QuarantineEvidence, SettlementCertificate};
use havn_proto::{NodeId, SignedHeartbeat};
use std::collections::{BTreeMap, BTreeSet};

/// Heartbeats counted per node and epoch (distinct sequence numbers, bounded).
#[derive(Debug, Default)]
pub struct Liveness {
    seen: BTreeMap<(u64, NodeId), BTreeSet<u64>>,
}

impl Liveness {
    /// Counts a verified heartbeat in its epoch.
    pub fn record(&mut self, params: &MeshParams, hb: &Verified<SignedHeartbeat>) {
        let h = &hb.get().heartbeat;
        let epoch = params.epoch_of(h.unix_ms);
        let cap =
            usize::try_from(params.live_min_heartbeats().saturating_mul(4)).unwrap_or(usize::MAX);
        let set = self.seen.entry((epoch, h.node)).or_default();
        if set.len() < cap {
            set.insert(h.seq);
        }
    }

    /// Heartbeats counted for a node in an epoch.
    pub fn count(&self, epoch: u64, node: &NodeId) -> usize {
        self.seen.get(&(epoch, *node)).map_or(0, BTreeSet::len)
    }

    /// Each node's liveness in `epoch`, by this validator's count.
    pub fn live_set<'a>(
        &self,
        params: &MeshParams,
        epoch: u64,
        nodes: impl IntoIterator<Item = &'a NodeId>,
    ) -> BTreeMap<NodeId, bool> {
        let min = params.live_min_heartbeats();
        nodes
            .into_iter()
            .map(|n| {
                let c = u64::try_from(self.count(epoch, n)).unwrap_or(u64::MAX);
                (*n, c >= min)
            })
            .collect()
    }

    /// Forgets epochs before `epoch`.
    pub fn prune_before(&mut self, epoch: u64) {
        self.seen = self
            .seen
            .split_off(&(epoch, NodeId(havn_proto::PubKey32([0; 32]))));
    }
}

/// Tracks, from certified settlements, each node's run of non-live epochs.
#[derive(Debug, Default)]
pub struct QuarantineTracker {
    runs: BTreeMap<NodeId, Vec<(SettlementCertificate, InclusionProof)>>,
}

impl QuarantineTracker {
    /// Feeds one certified settlement and the liveness set it was built from; returns
    /// evidence for each node whose non-live run reached `params.quarantine_after`, and
    /// the nodes that are live again (whose quarantine lifts).
    pub fn observe(
        &mut self,
        params: &MeshParams,
        cert: &SettlementCertificate,
        liveness: &BTreeMap<NodeId, bool>,
    ) -> (Vec<QuarantineEvidence>, Vec<NodeId>) {
        let mut evidence = Vec::new();
        let mut revived = Vec::new();
        let epoch = cert.settlement.epoch;
        for node in liveness.keys() {
            let Some((live, proof)) = settle::liveness_proof(liveness, node) else {
                continue;
            };
            if live {
                if self.runs.remove(node).is_some() {
                    revived.push(*node);
                }
                continue;
            }
            let run = self.runs.entry(*node).or_default();
            if run
                .last()
                .is_some_and(|(c, _)| c.settlement.epoch.saturating_add(1) != epoch)
            {
                run.clear();
            }
            run.push((cert.clone(), proof));
            let need = usize::try_from(params.quarantine_after).unwrap_or(3);
            if run.len() >= need {
                let from = run.len().saturating_sub(need);
                let epochs = run.get(from..).unwrap_or(&[]).iter().cloned().collect();
                evidence.push(QuarantineEvidence {
                    node: *node,
                    epochs,
                });
            }
        }
        (evidence, revived)
    }
}
