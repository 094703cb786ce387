//! `diffusion` jobs: the request artifact (optional; opened in memory when sealed), the
//! gate, the imported UNet, the receipt; and challenge material for one DAG node of a
//! retained diffusion job (from a repeat of the run).

use super::finish::Finished;
use super::{failed, gate, refused, Engine, RetainedJob};
use crate::deadline::Deadline;
use havn_ipc::Client;
use havn_proto::ipc::{ExecdAttestd, NetdExecResponse, RemoteError};
use havn_proto::{Backend, JobPayload};
use std::path::Path;
use std::time::{Duration, Instant};

impl Engine {
    /// A `diffusion` job.
    pub(super) fn run_diffusion_job(
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
            self.diffusion.as_ref().map(|m| m.checksum()),
        );
        let checksum = match checked {
            Ok(c) => c,
            Err(r) => return *r,
        };
        // The request is optional: without one the job runs the defaults.
        let (request, envelope) = if payload.inputs.is_empty() {
            (None, None)
        } else {
            match self.request_artifact(payload, "a diffusion job") {
                Ok(i) => (Some(i.bytes), i.envelope),
                Err(reason) => return failed(ticket_id, RemoteError::BadRequest, &reason),
            }
        };
        let stored_input: &[u8] = envelope
            .as_deref()
            .or(request.as_deref().map(Vec::as_slice))
            .unwrap_or_default();
        if let Err(r) = gate(ticket_id, payload, attestd) {
            return *r;
        }
        let deadline = Deadline::arm(
            Duration::from_millis(u64::from(payload.timeout_ms)).saturating_sub(started.elapsed()),
        );
        // Checked present by check_model_job above.
        let Some(d) = &self.diffusion else {
            return failed(ticket_id, RemoteError::Internal, "the model is not loaded");
        };
        let job = match d.execute(
            &self.exec,
            request.as_deref().map(Vec::as_slice),
            payload.seed,
            deadline.flag(),
        ) {
            Ok(j) => j,
            Err((e, reason)) if e == RemoteError::ExecutionFailed && reason.contains("cancel") => {
                return failed(
                    ticket_id,
                    e,
                    &format!(
                        "the job's timeout_ms of {} ms was exceeded ({reason})",
                        payload.timeout_ms
                    ),
                )
            }
            Err((e, reason)) => return failed(ticket_id, e, &reason),
        };
        drop(deadline);
        let res = &job.result;
        tracing::info!(
            steps = job.request.steps,
            nodes = res.nodes.len(),
            "diffusion run"
        );
        let backend = if self.exec.backend_name() == "cuda" {
            Backend::Cuda
        } else {
            Backend::Cpu
        };
        let f = Finished {
            ticket_id,
            payload,
            submitter,
            started,
            checksum,
            runtime_hash: res.runtime_hash,
            outputs: &job.outputs,
            stored_input,
            sealed_input: envelope.is_some(),
            gas: res.accounting.gas,
            energy_mj: (res.accounting.energy_j * 1000.0).round().max(0.0) as u64,
            backend,
            leaves: &res.node_hashes,
        };
        self.finish_job(f, attestd)
    }

    /// Challenge material for one DAG node of a retained diffusion job.
    pub(super) fn prove_diffusion(
        &self,
        dir: &Path,
        rec: &RetainedJob,
        node_id: &str,
    ) -> NetdExecResponse {
        let Some(d) = &self.diffusion else {
            return refused(
                RemoteError::Internal,
                "the diffusion model is no longer loaded",
            );
        };
        let request = match std::fs::read(dir.join("inputs.safetensors")) {
            Ok(b) => b,
            Err(e) => return refused(RemoteError::Internal, &format!("retained request: {e}")),
        };
        let req = (!request.is_empty()).then_some(request.as_slice());
        let m = match d.prove(&self.exec, req, rec.seed, &rec.runtime_hash, node_id) {
            Ok(m) => m,
            Err((e, reason)) => return refused(e, &reason),
        };
        self.proof_response(&m.proof_json, Some(&m.inputs), &rec.runtime_hash, node_id)
    }
}
