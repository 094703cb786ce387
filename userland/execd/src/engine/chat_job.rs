//! `chat` jobs: the request artifact (opened in memory when sealed), the gate, the warm
//! model, the receipt; and challenge material for one block of a retained chat job.

use super::{
    failed, gate, job_dir_name, mkdir, refused, sign, storage_failed, Engine, Retain, RetainedJob,
};
use havn_ipc::Client;
use havn_proto::ipc::{ExecdAttestd, JobResult, NetdExecResponse, RemoteError};
use havn_proto::{bounded, Backend, Cid, Hash32, JobPayload};
use std::path::Path;
use std::time::Instant;

impl Engine {
    /// A `chat` job: the request artifact, the gate, the warm model, the receipt.
    pub(super) fn run_chat_job(
        &mut self,
        ticket_id: u64,
        payload: &JobPayload,
        submitter: &str,
        attestd: &mut Client<ExecdAttestd>,
        started: Instant,
    ) -> NetdExecResponse {
        let Some(chat) = &self.chat else {
            return failed(
                ticket_id,
                RemoteError::UnknownWorkflow,
                "chat is not served here",
            );
        };
        let checksum = chat.checksum();
        if checksum != payload.workflow.checksum.0 {
            return failed(
                ticket_id,
                RemoteError::BadRequest,
                "workflow checksum does not match this node's chat model",
            );
        }
        if let Err(e) = self.caps.require(payload.compute_class) {
            return failed(ticket_id, RemoteError::ClassUnsupported, &e.to_string());
        }
        let (request, envelope) = match self.request_artifact(payload, "a chat job") {
            Ok(i) => (i.bytes, i.envelope),
            Err(reason) => return failed(ticket_id, RemoteError::BadRequest, &reason),
        };
        // The receipt names the stored bytes: the envelope when the request was sealed.
        let inputs_cid = Cid::of_bytes(envelope.as_deref().unwrap_or(&request));
        if let Err(r) = gate(ticket_id, payload, attestd) {
            return *r;
        }
        let job = match chat.execute(payload, &request, started) {
            Ok(j) => j,
            Err((e, reason)) => return failed(ticket_id, e, &reason),
        };
        let stored = match crate::sealed::outputs(&payload.privacy, &job.outputs) {
            Ok(s) => s,
            Err(reason) => return failed(ticket_id, RemoteError::BadRequest, &reason),
        };
        let outputs_cid = Cid::of_bytes(&stored);
        if let Err(e) =
            havn_exec::exec::write_atomic(&self.artifacts.join(outputs_cid.to_string()), &stored)
        {
            return storage_failed(ticket_id, "storing outputs", &e);
        }
        let mut rh = [0u8; 32];
        if hex::decode_to_slice(&job.out.runtime_hash, &mut rh).is_err() {
            return failed(ticket_id, RemoteError::Internal, "runtime hash encoding");
        }
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        // Energy as havn-exec models it on the CPU: 50 pJ per FLOP.
        let energy_estimate_mj = job.flops / 20_000_000;
        tracing::info!(runtime_hash = %job.out.runtime_hash, outputs = %outputs_cid,
            tokens = job.out.token_ids.len(), tokens_per_s = job.out.tokens_per_s, latency_ms, "executed");
        let report = JobResult {
            workflow_id: payload.workflow.id.clone(),
            job_id: payload.job_id.clone(),
            runtime_hash: Hash32(rh),
            outputs_cid,
            inputs_cid,
            latency_ms,
            energy_estimate_mj,
            manifest_checksum: Hash32(checksum),
            seed: payload.seed,
            gas: job.flops,
            backend: Backend::Cpu,
            compute_class: payload.compute_class,
            submitter: bounded(submitter),
        };
        match sign(ticket_id, report, attestd) {
            Ok(receipt) => {
                // Kept so that Prove can open any block of this job later.
                let dir = self
                    .checkpoints
                    .join(job_dir_name(submitter, &payload.job_id));
                let kept = mkdir(&dir).map_err(|e| e.to_string()).and_then(|()| {
                    self.retain_job(
                        &dir,
                        payload,
                        submitter,
                        &receipt.receipt.runtime_hash,
                        // A sealed request is retained as its envelope only.
                        Retain {
                            bytes: envelope.as_deref().unwrap_or(&request),
                            sealed: envelope.is_some() || payload.privacy.redact_outputs,
                        },
                        // Chat jobs are challenged block by block (`Prove`), not by leaves.
                        &[],
                    )
                });
                if let Err(e) = kept {
                    tracing::warn!(error = %e, "cannot retain the chat request; Prove will not answer for this job");
                    let _ = std::fs::remove_dir_all(&dir);
                }
                NetdExecResponse::Done { ticket_id, receipt }
            }
            Err(r) => *r,
        }
    }

    /// Challenge material for one block of a retained chat job.
    pub(super) fn prove_chat(
        &self,
        dir: &Path,
        rec: &RetainedJob,
        node_id: &str,
    ) -> NetdExecResponse {
        let Some(chat) = &self.chat else {
            return refused(RemoteError::Internal, "the chat model is no longer loaded");
        };
        let request = match std::fs::read(dir.join("inputs.safetensors")) {
            Ok(b) => b,
            Err(e) => return refused(RemoteError::Internal, &format!("retained request: {e}")),
        };
        let json = match chat.prove(&request, rec.seed, &rec.runtime_hash, node_id) {
            Ok(j) => j,
            Err((e, reason)) => return refused(e, &reason),
        };
        let mut rh = [0u8; 32];
        if hex::decode_to_slice(&rec.runtime_hash, &mut rh).is_err() {
            return refused(RemoteError::Internal, "retained runtime hash");
        }
        match self.store_artifact(&json) {
            Ok(cid) => {
                tracing::info!(proof_cid = %cid, node = node_id, "chat challenge material stored");
                NetdExecResponse::Proof {
                    proof_cid: cid,
                    inputs_cid: cid,
                    runtime_hash: Hash32(rh),
                }
            }
            Err(e) => refused(
                RemoteError::Internal,
                &format!("storing challenge material: {e}"),
            ),
        }
    }

    /// An input artifact's bytes: uploaded by an orchestrator, or an earlier output.
    pub(super) fn read_input(&self, cid: &Cid) -> Option<Vec<u8>> {
        let name = cid.to_string();
        [&self.uploads, &self.artifacts]
            .into_iter()
            .find_map(|dir| std::fs::read(dir.join(&name)).ok())
    }

    /// The request bytes named by the job's `inputs` artifact (`what`: the job kind, for
    /// the error).
    pub(super) fn request_artifact(
        &self,
        payload: &JobPayload,
        what: &str,
    ) -> Result<crate::sealed::Input, String> {
        let Some(art) = payload.inputs.iter().find(|a| a.name.as_str() == "inputs") else {
            return Err(format!("{what} needs its request as an input artifact named \"inputs\" (POST /artifact, then reference its CID)"));
        };
        let name = art.cid.to_string();
        if let Some(b) = self.read_input(&art.cid) {
            if !art.cid.verify(&b) {
                return Err(format!("input artifact {name} does not hash to its CID"));
            }
            return crate::sealed::open(self.payload_key.as_ref(), b);
        }
        Err(format!(
            "input artifact {name} is not available on this node (upload it first)"
        ))
    }
}
