//! A validator's re-execution of another node's receipt, and the leaves this node
//! serves for its own finished jobs. execd computes; attestd assembles and signs the
//! verdict (and the challenge) from what execd reports.
//!
//! Re-execution runs the receipt's workflow with its seed on the same input bytes (the
//! receipt's `inputs_cid`; only the workflow's default inputs are held here, so a job
//! on other inputs gets `Abstain` rather than a false challenge). A matching runtime
//! hash is confirmed. A mismatch with the executing node's leaves names the first leaf
//! that differs (all earlier leaves agree, so its parents' commitments match) and
//! becomes a challenge with the openings; another validator's challenge is upheld when
//! this run agrees with it on that node and its parents.

use super::{job_dir_name, read_retained, refused, Engine};
use havn_exec::{preflight, Job, RunOptions, RunResult};
use havn_ipc::Client;
use havn_proto::ipc::{
    ExecdAttestd, ExecdRequest, ExecdResponse, Leaves, NetdExecResponse, ReexecEvidence,
    Reexecution, RemoteError,
};
use havn_proto::merkle;
use havn_proto::mesh::{Challenge, Opening, SignedChallenge, MAX_CHALLENGE_OPENINGS};
use havn_proto::{Cid, Hash32, NodeId, PubKey32, SignedReceipt};

fn opening(leaves: &[[u8; 32]], index: usize) -> Option<Opening> {
    Some(Opening {
        index: u32::try_from(index).ok()?,
        hash: Hash32(*leaves.get(index)?),
        path: merkle::merkle_path(leaves, index)
            .into_iter()
            .map(|(h, l)| (Hash32(h), l))
            .collect(),
    })
}

/// The challenge body for the first leaf where `theirs` and `ours` differ.
fn challenge(
    receipt: &SignedReceipt,
    theirs: &[[u8; 32]],
    ours: &RunResult,
) -> Option<(u32, Challenge)> {
    let k = theirs
        .iter()
        .zip(&ours.node_hashes)
        .position(|(a, b)| a != b)?;
    let parents = ours.parents(k);
    if parents.len() > MAX_CHALLENGE_OPENINGS {
        return None;
    }
    let c = Challenge {
        // attestd names itself the challenger and sets the epoch.
        challenger: NodeId(PubKey32([0; 32])),
        receipt: receipt.clone(),
        merkle_root: Hash32(merkle::merkle_root(theirs)),
        leaves: u32::try_from(theirs.len()).ok()?,
        divergent: opening(theirs, k)?,
        recomputed: Hash32(*ours.node_hashes.get(k)?),
        parents: parents.iter().filter_map(|p| opening(theirs, *p)).collect(),
        epoch: 0,
    };
    Some((c.divergent.index, c))
}

/// Whether our run upholds another validator's challenge: on the divergent node we
/// computed what the challenger did (not what was committed), and on each parent we
/// computed what was committed.
fn upholds(c: &SignedChallenge, ours: &RunResult) -> bool {
    let c = &c.challenge;
    let at = |o: &Opening| {
        usize::try_from(o.index)
            .ok()
            .and_then(|i| ours.node_hashes.get(i))
            .map(|h| Hash32(*h))
    };
    at(&c.divergent) == Some(c.recomputed)
        && c.recomputed != c.divergent.hash
        && c.parents.iter().all(|p| at(p) == Some(p.hash))
}

impl Engine {
    /// Re-executes `receipt`'s job and has attestd sign the verdict.
    pub(crate) fn reexecute(
        &mut self,
        receipt: SignedReceipt,
        evidence: ReexecEvidence,
        attestd: &mut Client<ExecdAttestd>,
    ) -> NetdExecResponse {
        let r = &receipt.receipt;
        let span = tracing::info_span!("reexecute", job = %r.job_id, node = %r.node);
        let _g = span.enter();
        let Some(w) = self.workflows.get(r.workflow_id.as_str()) else {
            return refused(
                RemoteError::UnknownWorkflow,
                "the receipt's workflow is not registered here",
            );
        };
        let checksum = w.manifest.checksum();
        if checksum != r.manifest_checksum.0 {
            return refused(
                RemoteError::BadRequest,
                "the receipt's manifest is not the one registered here",
            );
        }
        let default_cid = Cid::of_bytes(&w.default_inputs);
        let result = if r.inputs_cid != default_cid {
            // Not the default inputs: without those bytes no honest judgement is
            // possible here, so the verdict is Abstain, never a false challenge.
            tracing::info!(inputs = %r.inputs_cid, "the job ran on inputs this node does not hold: abstaining");
            None
        } else {
            let job = Job {
                checksum,
                manifest: w.manifest.clone(),
                weights: w.weights.clone(),
                inputs: w.default_inputs.clone(),
                inputs_cid: default_cid,
                seed: r.seed,
            };
            match preflight(&self.registry, &job)
                .and_then(|p| self.exec.execute(&p, &RunOptions::default()))
            {
                Ok(res) => Some(res),
                Err(e) => {
                    tracing::warn!(error = %e, "re-execution failed: abstaining");
                    None
                }
            }
        };
        let (runtime_hash, first, body) = match &result {
            None => (Hash32([0; 32]), None, None),
            Some(res) if res.runtime_hash == r.runtime_hash.0 => (r.runtime_hash, None, None),
            Some(res) => match &evidence {
                ReexecEvidence::None => {
                    return NetdExecResponse::Diverged {
                        runtime_hash: Hash32(res.runtime_hash),
                    }
                }
                ReexecEvidence::Leaves(theirs) => {
                    let theirs: Vec<[u8; 32]> = theirs.iter().map(|h| h.0).collect();
                    let commits = theirs.len() == res.node_hashes.len()
                        && merkle::runtime_hash(&checksum, r.seed, &merkle::merkle_root(&theirs))
                            == r.runtime_hash.0;
                    match commits.then(|| challenge(&receipt, &theirs, res)).flatten() {
                        Some((k, c)) => (Hash32(res.runtime_hash), Some(k), Some(c)),
                        None => {
                            tracing::warn!(
                                "the node's leaves do not lead to its receipt: abstaining"
                            );
                            (Hash32(res.runtime_hash), None, None)
                        }
                    }
                }
                ReexecEvidence::Challenge(c)
                    if c.challenge.receipt == receipt && upholds(c, res) =>
                {
                    (
                        Hash32(res.runtime_hash),
                        Some(c.challenge.divergent.index),
                        None,
                    )
                }
                ReexecEvidence::Challenge(_) => (Hash32(res.runtime_hash), None, None),
            },
        };
        let req = ExecdRequest::Reexecuted(Box::new(Reexecution {
            receipt,
            runtime_hash,
            first_divergent: first,
            challenge: body,
        }));
        match attestd.call(&req) {
            Ok(ExecdResponse::Verdict(j)) => NetdExecResponse::Judged(j),
            Ok(ExecdResponse::Error(e)) => refused(e, "attestd refused to sign the verdict"),
            Ok(other) => refused(
                RemoteError::Internal,
                &format!("unexpected answer {other:?}"),
            ),
            Err(e) => refused(RemoteError::Internal, &format!("attestd unreachable: {e}")),
        }
    }

    /// The leaves this node committed to for one of its retained jobs.
    pub(crate) fn leaves(&self, submitter: &str, job_id: &str) -> NetdExecResponse {
        let dir = self.retained.join(job_dir_name(submitter, job_id));
        let Some(rec) =
            read_retained(&dir).filter(|r| r.job_id == job_id && r.submitter == submitter)
        else {
            return refused(RemoteError::UnknownJob, "job is not retained here");
        };
        let mut out = Leaves::new();
        for h in &rec.leaves {
            match Hash32::from_hex(h) {
                Ok(h) if out.push(h).is_ok() => {}
                _ => {
                    return refused(
                        RemoteError::Internal,
                        "retained leaves unreadable or too many",
                    )
                }
            }
        }
        if out.is_empty() {
            return refused(RemoteError::UnknownJob, "no leaves retained for this job");
        }
        NetdExecResponse::Leaves(Box::new(out))
    }
}
