//! The end every model job shares (chat, diffusion, transcribe): store the outputs (sealed
//! when the job asked), sign the receipt through attestd, retain the request for
//! challenges.

use super::{failed, job_dir_name, mkdir, refused, sign, storage_failed, Engine, Retain};
use havn_ipc::Client;
use havn_proto::ipc::{ExecdAttestd, JobResult, NetdExecResponse, RemoteError};
use havn_proto::{bounded, Backend, Cid, Hash32, JobPayload};
use std::time::Instant;

/// What a finished model job hands to [`Engine::finish_job`].
pub(super) struct Finished<'a> {
    pub ticket_id: u64,
    pub payload: &'a JobPayload,
    pub submitter: &'a str,
    pub started: Instant,
    /// The workflow checksum the receipt names.
    pub checksum: [u8; 32],
    pub runtime_hash: [u8; 32],
    /// The outputs file (plaintext; sealed here when `redact_outputs`).
    pub outputs: &'a [u8],
    /// The input as stored (the envelope when it was sealed).
    pub stored_input: &'a [u8],
    /// The input arrived sealed.
    pub sealed_input: bool,
    pub gas: u64,
    pub energy_mj: u64,
    pub backend: Backend,
    /// Leaves a validator may ask for (DAG jobs), else empty.
    pub leaves: &'a [[u8; 32]],
}

impl Engine {
    /// The checks every model job starts with: the workflow is served (`checksum` is
    /// this node's, None when the model is not loaded), the payload names that checksum,
    /// and this node can honour the job's compute class.
    pub(super) fn check_model_job(
        &self,
        ticket_id: u64,
        payload: &JobPayload,
        checksum: Option<[u8; 32]>,
    ) -> Result<[u8; 32], Box<NetdExecResponse>> {
        let wf = payload.workflow.id.as_str();
        let Some(checksum) = checksum else {
            return Err(Box::new(failed(
                ticket_id,
                RemoteError::UnknownWorkflow,
                &format!("{wf} is not served here"),
            )));
        };
        if checksum != payload.workflow.checksum.0 {
            return Err(Box::new(failed(
                ticket_id,
                RemoteError::BadRequest,
                &format!("workflow checksum does not match this node's {wf} model"),
            )));
        }
        if let Err(e) = self.caps.require(payload.compute_class) {
            return Err(Box::new(failed(
                ticket_id,
                RemoteError::ClassUnsupported,
                &e.to_string(),
            )));
        }
        Ok(checksum)
    }

    /// Stores the outputs, signs the receipt and retains the request.
    pub(super) fn finish_job(
        &mut self,
        f: Finished<'_>,
        attestd: &mut Client<ExecdAttestd>,
    ) -> NetdExecResponse {
        let p = f.payload;
        let stored = match crate::sealed::outputs(&p.privacy, f.outputs) {
            Ok(s) => s,
            Err(reason) => return failed(f.ticket_id, RemoteError::BadRequest, &reason),
        };
        let outputs_cid = Cid::of_bytes(&stored);
        if let Err(e) =
            havn_exec::exec::write_atomic(&self.artifacts.join(outputs_cid.to_string()), &stored)
        {
            return storage_failed(f.ticket_id, "storing outputs", &e);
        }
        let latency_ms = u64::try_from(f.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(runtime_hash = %Hash32(f.runtime_hash), outputs = %outputs_cid, latency_ms, "executed");
        let report = JobResult {
            workflow_id: p.workflow.id.clone(),
            job_id: p.job_id.clone(),
            runtime_hash: Hash32(f.runtime_hash),
            outputs_cid,
            inputs_cid: Cid::of_bytes(f.stored_input),
            latency_ms,
            energy_estimate_mj: f.energy_mj,
            manifest_checksum: Hash32(f.checksum),
            seed: p.seed,
            gas: f.gas,
            backend: f.backend,
            compute_class: p.compute_class,
            submitter: bounded(f.submitter),
        };
        match sign(f.ticket_id, report, attestd) {
            Ok(receipt) => {
                let dir = self.checkpoints.join(job_dir_name(f.submitter, &p.job_id));
                let kept = mkdir(&dir).map_err(|e| e.to_string()).and_then(|()| {
                    self.retain_job(
                        &dir,
                        p,
                        f.submitter,
                        &receipt.receipt.runtime_hash,
                        Retain {
                            bytes: f.stored_input,
                            sealed: f.sealed_input || p.privacy.redact_outputs,
                        },
                        f.leaves,
                    )
                });
                if let Err(e) = kept {
                    tracing::warn!(error = %e, "cannot retain the request; Prove will not answer for this job");
                    let _ = std::fs::remove_dir_all(&dir);
                }
                NetdExecResponse::Done {
                    ticket_id: f.ticket_id,
                    receipt,
                }
            }
            Err(r) => *r,
        }
    }

    /// Stores challenge material (`inputs` None: the proof carries everything) and answers
    /// with its CIDs and the retained runtime hash.
    pub(super) fn proof_response(
        &self,
        proof: &[u8],
        inputs: Option<&[u8]>,
        runtime_hash_hex: &str,
        node_id: &str,
    ) -> NetdExecResponse {
        let mut rh = [0u8; 32];
        if hex::decode_to_slice(runtime_hash_hex, &mut rh).is_err() {
            return refused(RemoteError::Internal, "retained runtime hash");
        }
        let stored = self.store_artifact(proof).and_then(|p| {
            Ok((
                p,
                inputs
                    .map(|i| self.store_artifact(i))
                    .transpose()?
                    .unwrap_or(p),
            ))
        });
        match stored {
            Ok((proof_cid, inputs_cid)) => {
                tracing::info!(%proof_cid, %inputs_cid, node = node_id, "challenge material stored");
                NetdExecResponse::Proof {
                    proof_cid,
                    inputs_cid,
                    runtime_hash: Hash32(rh),
                }
            }
            Err(e) => refused(
                RemoteError::Internal,
                &format!("storing challenge material: {e}"),
            ),
        }
    }
}
