//! What attestd signs for the validator mesh: its manifest (with a quote over the
//! manifest's own digest), sampling-lottery tickets, verdicts it assembles from its
//! execd's re-execution, and settlement votes. Verdicts and votes are recorded before
//! they are signed (`mesh-records.log`): never two different verdicts for one receipt,
//! never two different votes for one class and epoch, across restarts.

use super::{unix_ms, Service};
use havn_attest_agent::{verify_node_signature, NotSafe};
use havn_config::NodeRole;
use havn_proto::ipc::{ExecdResponse, Judgement, NetdAttestResponse, Reexecution, RemoteError};
use havn_proto::mesh::{
    EpochSettlement, MeshManifest, Role, SettlementVote, SignedChallenge, SignedMeshManifest,
    SignedVerdict, Verdict, VerdictOutcome, MAX_PEER_ID,
};
use havn_proto::sign::{Domain, Signable};
use havn_proto::{Hash32, NodeId, Sig64};

fn refusal(e: &NotSafe) -> RemoteError {
    match e {
        NotSafe::ConflictingReceipt { .. } => RemoteError::AlreadySigned,
        e if e.is_disk_full() => RemoteError::StorageFull,
        _ => RemoteError::Internal,
    }
}

impl Service {
    fn is_validator(&self) -> bool {
        self.mesh.role == NodeRole::Validator
    }

    /// Records `record` under `record_key` (refusing a different one), then signs it.
    fn record_and_sign(
        &mut self,
        domain: Domain,
        record_key: &[u8],
        record: &[u8],
    ) -> Result<Sig64, RemoteError> {
        let Some(key) = self.key.as_ref() else {
            return Err(RemoteError::GateClosed);
        };
        key.sign_receipt(&mut self.mesh.records, domain.tag(), record_key, record)
            .map(|(sig, _)| Sig64(sig))
            .map_err(|e| {
                tracing::error!(error = %e, "mesh signature refused");
                refusal(&e)
            })
    }

    /// A freshly signed manifest for netd's libp2p peer id.
    pub(super) fn mesh_manifest(
        &mut self,
        node: NodeId,
        peer_id: heapless::Vec<u8, MAX_PEER_ID>,
    ) -> NetdAttestResponse {
        let manifest = MeshManifest {
            node,
            peer_id,
            role: match self.mesh.role {
                NodeRole::Execution => Role::Execution,
                NodeRole::Validator => Role::Validator,
            },
            compute_class: self.mesh.class,
            weight: 1,
            chain_account: self.chain_account(),
            unix_ms: unix_ms(),
        };
        let digest = manifest.signing_digest();
        let quote = match self.quote(&digest, node) {
            Ok(q) => q,
            Err(e) => {
                tracing::error!(error = %e, "quote for the mesh manifest failed");
                return NetdAttestResponse::Error(RemoteError::TpmUnavailable);
            }
        };
        let (Some(key), Ok(bytes)) = (self.key.as_ref(), postcard::to_stdvec(&manifest)) else {
            return NetdAttestResponse::Error(RemoteError::GateClosed);
        };
        let signature = Sig64(key.sign(Domain::MeshManifest.tag(), &bytes));
        NetdAttestResponse::MeshManifest(Box::new(SignedMeshManifest {
            manifest,
            signature,
            quote: Box::new(quote),
        }))
    }

    /// The lottery ticket for a receipt: deterministic, so one per receipt.
    pub(super) fn lottery(&self, receipt_digest: &Hash32) -> NetdAttestResponse {
        if !self.is_validator() {
            return NetdAttestResponse::Error(RemoteError::NotPermitted);
        }
        match self.key.as_ref() {
            Some(key) => NetdAttestResponse::Ticket(Sig64(
                key.sign(Domain::Lottery.tag(), &receipt_digest.0),
            )),
            None => NetdAttestResponse::Error(RemoteError::GateClosed),
        }
    }

    /// A vote on a settlement of our class: one per (class, epoch), ever.
    pub(super) fn vote(&mut self, node: NodeId, settlement: EpochSettlement) -> NetdAttestResponse {
        if !self.is_validator() || settlement.compute_class != self.mesh.class {
            return NetdAttestResponse::Error(RemoteError::NotPermitted);
        }
        let Ok(bytes) = postcard::to_stdvec(&settlement) else {
            return NetdAttestResponse::Error(RemoteError::Internal);
        };
        let mut record_key = b"vote\0".to_vec();
        record_key
            .extend_from_slice(&postcard::to_stdvec(&settlement.compute_class).unwrap_or_default());
        record_key.extend_from_slice(&settlement.epoch.to_le_bytes());
        match self.record_and_sign(Domain::Settlement, &record_key, &bytes) {
            Ok(signature) => NetdAttestResponse::Vote(Box::new(SettlementVote {
                settlement,
                validator: node,
                signature,
            })),
            Err(e) => NetdAttestResponse::Error(e),
        }
    }

    /// The verdict on a receipt our execd re-executed, assembled here from its result:
    /// Confirm only when the runtime hash matches. One verdict per receipt, ever.
    pub(super) fn verdict(&mut self, r: Reexecution) -> ExecdResponse {
        if !self.is_validator() {
            return ExecdResponse::Error(RemoteError::NotPermitted);
        }
        if let Err(reason) = self.gate() {
            tracing::warn!(%reason, "refusing to sign a verdict: gate closed");
            return ExecdResponse::Error(RemoteError::GateClosed);
        }
        let Some(node) = self.node() else {
            return ExecdResponse::Error(RemoteError::GateClosed);
        };
        let receipt = &r.receipt.receipt;
        let Ok(receipt_bytes) = postcard::to_stdvec(receipt) else {
            return ExecdResponse::Error(RemoteError::Internal);
        };
        if !verify_node_signature(
            &receipt.node.0 .0,
            Domain::Receipt.tag(),
            &receipt_bytes,
            &r.receipt.signature.0,
        ) {
            tracing::warn!(job = %receipt.job_id, "re-executed receipt's signature does not verify: no verdict");
            return ExecdResponse::Error(RemoteError::NotPermitted);
        }
        if receipt.compute_class != self.mesh.class {
            return ExecdResponse::Error(RemoteError::NotPermitted);
        }
        let (outcome, first_divergent) = if r.runtime_hash == receipt.runtime_hash {
            (VerdictOutcome::Confirm, None)
        } else if let Some(i) = r.first_divergent {
            (VerdictOutcome::Reject, Some(i))
        } else {
            (VerdictOutcome::Abstain, None)
        };
        let receipt_digest = receipt.signing_digest();
        let verdict = Verdict {
            validator: node,
            receipt_digest,
            node: receipt.node,
            compute_class: receipt.compute_class,
            epoch: receipt
                .signed_unix_ms
                .checked_div(self.mesh.epoch_ms)
                .unwrap_or(0),
            outcome,
            first_divergent,
        };
        let Ok(bytes) = postcard::to_stdvec(&verdict) else {
            return ExecdResponse::Error(RemoteError::Internal);
        };
        // A challenge goes out only with a rejection naming the same node, and only
        // when its openings lead to the receipt's runtime hash.
        let challenge = match (r.challenge, outcome) {
            (None, _) => None,
            (Some(mut c), VerdictOutcome::Reject) => {
                c.challenger = node;
                c.epoch = verdict.epoch;
                if c.receipt != r.receipt || Some(c.divergent.index) != first_divergent {
                    tracing::warn!(job = %receipt.job_id, "challenge does not match the re-execution: refused");
                    return ExecdResponse::Error(RemoteError::BadRequest);
                }
                if let Err(why) = havn_mesh::state::check_openings(&c) {
                    tracing::warn!(job = %receipt.job_id, %why, "challenge openings do not hold: refused");
                    return ExecdResponse::Error(RemoteError::BadRequest);
                }
                Some(c)
            }
            (Some(_), _) => return ExecdResponse::Error(RemoteError::BadRequest),
        };
        let record_key = [b"verdict\0".as_slice(), &receipt_digest.0].concat();
        let signature = match self.record_and_sign(Domain::Verdict, &record_key, &bytes) {
            Ok(s) => s,
            Err(e) => return ExecdResponse::Error(e),
        };
        tracing::info!(job = %receipt.job_id, ?outcome, "verdict signed");
        let challenge = match challenge {
            None => None,
            Some(c) => {
                let Ok(cbytes) = postcard::to_stdvec(&c) else {
                    return ExecdResponse::Error(RemoteError::Internal);
                };
                let ckey = [b"challenge\0".as_slice(), &receipt_digest.0].concat();
                match self.record_and_sign(Domain::Challenge, &ckey, &cbytes) {
                    Ok(signature) => Some(SignedChallenge {
                        challenge: c,
                        signature,
                    }),
                    Err(e) => return ExecdResponse::Error(e),
                }
            }
        };
        ExecdResponse::Verdict(Box::new(Judgement {
            verdict: SignedVerdict { verdict, signature },
            challenge,
        }))
    }
}
