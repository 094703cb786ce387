//! `transcribe` jobs: the WAV artifact (opened in memory when sealed), the gate, the warm
//! model, the receipt; and challenge material for one encoder block of a retained job.

use super::finish::Finished;
use super::{failed, gate, refused, Engine, RetainedJob};
use havn_ipc::Client;
use havn_proto::ipc::{ExecdAttestd, NetdExecResponse, RemoteError};
use havn_proto::{Backend, JobPayload};
use std::path::Path;
use std::time::Instant;

impl Engine {
    /// A `transcribe` job.
    pub(super) fn run_transcribe_job(
        &mut self,
        ticket_id: u64,
        payload: &JobPayload,
        submitter: &str,
        attestd: &mut Client<ExecdAttestd>,
        started: Instant,
    ) -> NetdExecResponse {
        let checked = self.check_model_job(
            ticket_id,
            payload,
            self.transcribe.as_ref().map(|m| m.checksum()),
        );
        let checksum = match checked {
            Ok(c) => c,
            Err(r) => return *r,
        };
        let (wav, envelope) =
            match self.request_artifact(payload, "a transcribe job (its WAV file)") {
                Ok(i) => (i.bytes, i.envelope),
                Err(reason) => return failed(ticket_id, RemoteError::BadRequest, &reason),
            };
        if let Err(r) = gate(ticket_id, payload, attestd) {
            return *r;
        }
        // Checked present by check_model_job above.
        let Some(t) = &self.transcribe else {
            return failed(ticket_id, RemoteError::Internal, "the model is not loaded");
        };
        let job = match t.execute(&wav) {
            Ok(j) => j,
            Err((e, reason)) => return failed(ticket_id, e, &reason),
        };
        let mut rh = [0u8; 32];
        if hex::decode_to_slice(&job.transcript.runtime_hash, &mut rh).is_err() {
            return failed(ticket_id, RemoteError::Internal, "runtime hash encoding");
        }
        tracing::info!(
            tokens = job.transcript.token_ids.len(),
            encode_ms = job.transcript.encode_ms,
            decode_ms = job.transcript.decode_ms,
            "transcribed"
        );
        let f = Finished {
            ticket_id,
            payload,
            submitter,
            started,
            checksum,
            runtime_hash: rh,
            outputs: &job.outputs,
            stored_input: envelope.as_deref().unwrap_or(&wav),
            sealed_input: envelope.is_some(),
            gas: job.flops,
            // Energy as havn-exec models it on the CPU: 50 pJ per FLOP.
            energy_mj: job.flops / 20_000_000,
            backend: Backend::Cpu,
            // Transcriptions are challenged block by block (`Prove`), not by leaves.
            leaves: &[],
        };
        self.finish_job(f, attestd)
    }

    /// Challenge material for one encoder block of a retained transcription.
    pub(super) fn prove_transcribe(
        &self,
        dir: &Path,
        rec: &RetainedJob,
        node_id: &str,
    ) -> NetdExecResponse {
        let Some(t) = &self.transcribe else {
            return refused(
                RemoteError::Internal,
                "the Whisper model is no longer loaded",
            );
        };
        let wav = match std::fs::read(dir.join("inputs.safetensors")) {
            Ok(b) => b,
            Err(e) => return refused(RemoteError::Internal, &format!("retained WAV: {e}")),
        };
        let (json, input) = match t.prove(&wav, &rec.runtime_hash, node_id) {
            Ok(x) => x,
            Err((e, reason)) => return refused(e, &reason),
        };
        self.proof_response(&json, Some(&input), &rec.runtime_hash, node_id)
    }
}
