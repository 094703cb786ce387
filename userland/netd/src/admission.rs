//! Job admission and the lookups both orchestrator APIs share, transport-neutral:
//! REST (`api`) and gRPC (`grpc`) call these and render a [`Failure`] their own way,
//! so validation, admission control and error meanings are the same on both.

use crate::api::Ctx;
use crate::intake::Submission;
use crate::state::{NoReceipt, Refusal, Resolve};
use crate::Fatal;
use havn_proto::ipc::RemoteError;
use havn_proto::{SignedReceipt, Ticket};
use hyper::StatusCode;
use std::sync::Arc;
use std::time::Instant;

/// A refusal: REST's status, message and offending field, plus how long to wait
/// before retrying (429 and 507).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The HTTP status REST answers with (gRPC maps it to a code).
    pub status: StatusCode,
    /// What went wrong, for the client.
    pub msg: String,
    /// The request field at fault, in REST's JSON path form (`inputs[0].cid`).
    pub field: Option<String>,
    /// Whole seconds to wait before retrying.
    pub retry_after: Option<u64>,
}

impl Failure {
    /// A failure with no retry hint.
    pub fn new(status: StatusCode, msg: impl Into<String>, field: Option<&str>) -> Self {
        Self {
            status,
            msg: msg.into(),
            field: field.map(str::to_string),
            retry_after: None,
        }
    }

    /// 403 naming the client, what it may not do, and who may.
    pub fn forbidden(client: &str, what: &str, who: &str) -> Self {
        tracing::info!(client, what, "refused: role");
        Self::new(
            StatusCode::FORBIDDEN,
            format!("client {client:?} may not {what}: allowed to {who} (netd.roles in node.toml)"),
            None,
        )
    }
}

/// Admits a parsed job (after the transport parsed and bounded it): the job-id
/// grammar, privacy flags, input availability, a chat request's validity, then the
/// durable admission. `start` is when the request arrived (admission latency).
pub async fn admit(
    ctx: &Ctx,
    client: &str,
    sub: &Submission<'_>,
    start: Instant,
) -> Result<Ticket, Failure> {
    let m = &ctx.state.metrics;
    let r = check_and_admit(ctx, client, sub, start).await;
    if let Err(f) = &r {
        m.reject(f.status.as_u16());
        tracing::info!(job_id = &*sub.job_id, client, status = f.status.as_u16(), reason = %f.msg, "job refused");
    }
    r
}

async fn check_and_admit(
    ctx: &Ctx,
    client: &str,
    sub: &Submission<'_>,
    start: Instant,
) -> Result<Ticket, Failure> {
    let m = &ctx.state.metrics;
    // Borrowed for the log lines and messages below (no copies, no per-request span:
    // the events carry job_id and client themselves; nothing inside `admit` logs).
    let job_id = &*sub.job_id;
    let workflow = &*sub.workflow_id;
    let class = sub.class;
    if ctx
        .state
        .draining
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        let mut f = Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node is stopping (draining): the job was not queued; retry on another node or after the restart",
            None,
        );
        f.retry_after = Some(5);
        return Err(f);
    }
    // One job-id grammar (havn-proto's): ids appear in URL paths, file names and
    // challenges, so an empty, `..`, `/` or space-carrying id is refused here.
    if !havn_proto::is_ref_id(job_id) {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "job_id must be 1-64 characters of [A-Za-z0-9._:-]",
            Some("job_id"),
        ));
    }
    // Outputs are sealed to the orchestrator's key: without one they could not be.
    match (sub.privacy.redact_outputs, sub.privacy.output_key) {
        (true, None) => {
            return Err(Failure::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "privacy.redact_outputs needs privacy.output_key, the X25519 key (64 hex) the outputs are sealed to; the job was not queued",
                Some("privacy.output_key"),
            ))
        }
        (false, Some(_)) => {
            return Err(Failure::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "privacy.output_key is set but privacy.redact_outputs is not: say which you mean",
                Some("privacy.redact_outputs"),
            ))
        }
        _ => {}
    }
    if let Some(i) = sub
        .inputs
        .iter()
        .position(|c| !crate::upload::available(ctx, c))
    {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!(
                "input artifact {} was never uploaded (upload it first: POST /artifact or UploadArtifact)",
                sub.inputs[i]
            ),
            Some(&format!("inputs[{i}].cid")),
        ));
    }
    let sealed = check_sealed_inputs(ctx, sub)?;
    // The model workflows' inputs are checked here, with the rules execd applies, so a
    // bad one is a 400 naming the field and nothing is queued. A sealed input is execd's
    // to check once opened: netd cannot read it.
    if !sealed {
        let needs = |what: &str| {
            Err((
                "inputs".to_string(),
                format!("a {workflow} job needs {what} as an input artifact (upload it, then name its CID)"),
            ))
        };
        let checked = match (workflow, sub.inputs.first()) {
            ("chat", Some(c)) => crate::upload::check_chat_request(ctx, c),
            ("chat", None) => needs("its request"),
            ("diffusion" | "transcribe", Some(c)) => {
                crate::upload::check_media_input(ctx, workflow, c)
            }
            ("transcribe", None) => needs("its WAV file"),
            _ => Ok(()),
        };
        if let Err((field, msg)) = checked {
            return Err(Failure::new(StatusCode::BAD_REQUEST, msg, Some(&field)));
        }
    }
    let refusal = match ctx.state.admit(sub, client).await {
        Ok(a) => {
            let took = start.elapsed();
            m.admission.observe(took);
            if took > ctx.admission_alert {
                ctx.alerts.raise(
                    crate::alerts::kind::ADMISSION_LATENCY,
                    serde_json::json!({
                        "job_id": job_id,
                        "admission_ms": took.as_secs_f64() * 1e3,
                        "threshold_ms": ctx.admission_alert.as_secs_f64() * 1e3,
                    }),
                );
            }
            if !a.duplicate {
                m.accepted
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            tracing::info!(
                job_id,
                client,
                ticket = a.ticket,
                eta_seconds = a.eta_seconds,
                duplicate = a.duplicate,
                workflow,
                class = ?class,
                "job accepted"
            );
            return Ok(Ticket {
                ticket_id: a.ticket,
                eta_seconds: a.eta_seconds,
            });
        }
        Err(r) => r,
    };
    let (status, msg, field): (StatusCode, String, Option<&str>) = match &refusal {
        Refusal::StakeInactive { stake, floor, why } => (
            StatusCode::FORBIDDEN,
            format!(
                "stake inactive ({why}): {stake} HAI bonded, class {class:?} needs a collateral floor of {floor} HAI"
            ),
            Some("compute_class"),
        ),
        Refusal::StakeUnknown { reason } => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("intake closed: the node's stake is unknown ({reason})"),
            None,
        ),
        Refusal::UnknownWorkflow => (
            StatusCode::NOT_FOUND,
            format!("workflow {workflow:?} is not registered on this node"),
            Some("workflow.id"),
        ),
        Refusal::ChecksumMismatch => (
            StatusCode::CONFLICT,
            format!("workflow {workflow:?} checksum does not match the registered manifest"),
            Some("workflow.checksum"),
        ),
        Refusal::ClassTooHigh { node } => (
            StatusCode::CONFLICT,
            format!("compute class {class:?} exceeds this node's class {node:?}"),
            Some("compute_class"),
        ),
        Refusal::JobIdConflict(t) => (
            StatusCode::CONFLICT,
            format!("job id already used by ticket {t} with a different payload"),
            Some("job_id"),
        ),
        Refusal::KeySealed => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the node key is sealed (attestation gate closed: a measured binary changed or \
             the TPM refused); this node serves what it already signed, read-only, and \
             takes no new jobs"
                .into(),
            None,
        ),
        Refusal::QueueFull => (StatusCode::TOO_MANY_REQUESTS, "queue full".into(), None),
        Refusal::Wal(crate::wal::WalError::NoSpace) => (
            StatusCode::INSUFFICIENT_STORAGE,
            "node storage full: the job was not accepted; retry once the operator frees space"
                .into(),
            None,
        ),
        Refusal::Wal(e) => {
            if !matches!(e, crate::wal::WalError::Encode(_)) {
                let _ = ctx.fatal.send(Fatal::Wal(e.to_string()));
            }
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot persist the job".into(),
                None,
            )
        }
    };
    let mut f = Failure::new(status, msg, field);
    f.retry_after = match status {
        StatusCode::INSUFFICIENT_STORAGE => Some(30),
        StatusCode::TOO_MANY_REQUESTS => Some(ctx.state.retry_after(workflow)),
        _ => None,
    };
    Err(f)
}

/// Encrypted inputs: each one must be sealed to this boot's payload key (another node's,
/// or an earlier boot's, is refused before queueing: it could never be opened), and a
/// `privacy.enclave` job takes only sealed inputs. Returns whether any input is sealed.
fn check_sealed_inputs(ctx: &Ctx, sub: &Submission<'_>) -> Result<bool, Failure> {
    let ours = ctx.state.node.payload_key;
    let mut any = false;
    for (i, cid) in sub.inputs.iter().enumerate() {
        let field = format!("inputs[{i}].cid");
        let header = crate::upload::sealed_header(ctx, cid).map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                format!("encrypted payload {cid}: {e}"),
                Some(&field),
            )
        })?;
        match (header, ours) {
            (Some(h), Some(k)) if h.recipient == k => any = true,
            (Some(h), Some(k)) => {
                let e = havn_payload::PayloadError::OtherRecipient {
                    sealed_to: havn_proto::PubKey32(h.recipient).to_hex(),
                    ours: havn_proto::PubKey32(k).to_hex(),
                };
                return Err(Failure::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    e.to_string(),
                    Some(&field),
                ));
            }
            (Some(_), None) => {
                return Err(Failure::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "this node has no payload key (attestd gave none): it cannot take encrypted inputs",
                    Some(&field),
                ))
            }
            (None, _) if sub.privacy.enclave => {
                return Err(Failure::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("privacy.enclave is set but input {cid} is not encrypted: seal it to this node's payload key (havnctl submit --encrypt) so that only the attested machine can read it; the job was not queued"),
                    Some(&field),
                ))
            }
            (None, _) => {}
        }
    }
    if sub.privacy.enclave && !any {
        return Err(Failure::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "privacy.enclave is set but the job has no input: an enclave job's input must be sealed to this node's payload key",
            Some("privacy.enclave"),
        ));
    }
    Ok(any)
}

/// Whose job a request names by `job_id` (job ids are scoped per submitter): a client
/// that reads only its own (`!all`) names its own; a validator or operator names the
/// one submitter that used the id, or `asked` when several did.
pub fn submitter_of(
    ctx: &Ctx,
    client: &str,
    all: bool,
    job_id: &str,
    asked: Option<&str>,
) -> Result<String, Failure> {
    if !all {
        return match asked {
            Some(s) if s != client => Err(Failure::forbidden(
                client,
                "read another client's job",
                "its submitter, validators and operators",
            )),
            _ => Ok(client.to_string()),
        };
    }
    match ctx.state.resolve(job_id, asked) {
        Ok(s) => Ok(s.to_string()),
        // Unknown to netd: ask as named (execd may still retain it), else 404 later.
        Err(Resolve::Unknown) => Ok(asked.unwrap_or("").to_string()),
        Err(Resolve::Ambiguous) => Err(Failure::new(
            StatusCode::CONFLICT,
            format!("job id {job_id:?} was used by several submitters: name the submitter (its client CN)"),
            Some("submitter"),
        )),
    }
}

/// The signed receipt of `submitter`'s job `id`.
pub fn receipt(ctx: &Ctx, submitter: &str, id: &str) -> Result<Arc<SignedReceipt>, Failure> {
    match ctx.state.receipt(submitter, id) {
        Ok(r) => Ok(r),
        Err(NoReceipt::NotDone) => Err(Failure::new(
            StatusCode::NOT_FOUND,
            "job not done yet",
            Some("job_id"),
        )),
        Err(NoReceipt::UnknownJob) => {
            Err(Failure::new(StatusCode::NOT_FOUND, "no such job", Some("job_id")))
        }
        // The node signed another result under this id before (slashing protection):
        // the id is spent, and this job's result will never be signed.
        Err(NoReceipt::Failed(why))
            if crate::dispatch::failed_with(&why, RemoteError::AlreadySigned) =>
        {
            Err(Failure::new(
                StatusCode::CONFLICT,
                format!("job id {id:?} already has a different signed receipt on this node; submit under a new id"),
                Some("job_id"),
            ))
        }
        Err(NoReceipt::Failed(why)) => Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("job failed, no receipt: {why}"),
            Some("job_id"),
        )),
    }
}
