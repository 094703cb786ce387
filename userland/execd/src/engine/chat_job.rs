//! `chat` jobs: the request artifact (opened in memory when sealed), the gate, the warm
//! model, the receipt; and challenge material for one block of a retained chat job.

use super::finish::Finished;
use super::{failed, gate, refused, Engine, RetainedJob};
use havn_ipc::Client;
use havn_proto::ipc::{ExecdAttestd, NetdExecResponse, RemoteError};
use havn_proto::{Backend, Cid, JobPayload};
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
        let checked =
            self.check_model_job(ticket_id, payload, self.chat.as_ref().map(|m| m.checksum()));
        let checksum = match checked {
            Ok(c) => c,
            Err(r) => return *r,
        };
        let (request, envelope) = match self.request_artifact(payload, "a chat job") {
            Ok(i) => (i.bytes, i.envelope),
            Err(reason) => return failed(ticket_id, RemoteError::BadRequest, &reason),
        };
        if let Err(r) = gate(ticket_id, payload, attestd) {
            return *r;
        }
        // Checked present by check_model_job above.
        let Some(chat) = &self.chat else {
            return failed(ticket_id, RemoteError::Internal, "the model is not loaded");
        };
        let job = match chat.execute(payload, &request, started) {
            Ok(j) => j,
            Err((e, reason)) => return failed(ticket_id, e, &reason),
        };
        let mut rh = [0u8; 32];
        if hex::decode_to_slice(&job.out.runtime_hash, &mut rh).is_err() {
            return failed(ticket_id, RemoteError::Internal, "runtime hash encoding");
        }
        tracing::info!(
            tokens = job.out.token_ids.len(),
            tokens_per_s = job.out.tokens_per_s,
            "generated"
        );
        let f = Finished {
            ticket_id,
            payload,
            submitter,
            started,
            checksum,
            runtime_hash: rh,
            outputs: &job.outputs,
            // The receipt names the stored bytes: the envelope when the request was sealed.
            stored_input: envelope.as_deref().unwrap_or(&request),
            sealed_input: envelope.is_some(),
            gas: job.flops,
            // Energy as havn-exec models it on the CPU: 50 pJ per FLOP.
            energy_mj: job.flops / 20_000_000,
            backend: Backend::Cpu,
            // Chat jobs are challenged block by block (`Prove`), not by leaves.
            leaves: &[],
        };
        self.finish_job(f, attestd)
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
        self.proof_response(&json, None, &rec.runtime_hash, node_id)
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
