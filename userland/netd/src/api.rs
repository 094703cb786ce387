//! The orchestrator API (HTTP/1.1 over mTLS). Every error is a JSON body
//! `{"error": "...", "field": "..."?}` with the right status; no input panics.

use crate::admission::Failure;
use crate::roles::Access;
use crate::signed_cache::{attestd_refused, relay_attestd};
use crate::state::State;
use crate::Fatal;
use bytes::Bytes;
use havn_ipc::AsyncClient;
use havn_proto::ipc::{
    NetdAttestRequest, NetdAttestd, NetdExecRequest, NetdExecResponse, NetdExecd, RemoteError,
};
use havn_proto::{Hash32, JobPayload};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex};

/// What every request handler shares.
pub struct Ctx {
    /// Job table.
    pub state: Arc<State>,
    /// The attestd channel (shared with heartbeats; calls are sequential).
    pub attestd: Arc<Mutex<AsyncClient<NetdAttestd>>>,
    /// The execd channel (shared with the dispatcher, whose `Run` holds it until the
    /// job finishes; tokio's mutex is FIFO).
    pub execd: Arc<Mutex<AsyncClient<NetdExecd>>>,
    /// Body limit.
    pub max_body: usize,
    /// Where fatal conditions are reported.
    pub fatal: mpsc::UnboundedSender<Fatal>,
    /// The content-addressed archival store execd writes outputs to (read-only here).
    pub artifacts: std::path::PathBuf,
    /// Longest a request waits for attestd, queueing included.
    pub attestd_wait: Duration,
    /// Where `POST /artifact` stores job inputs (`state_dir/uploads`).
    pub uploads: std::path::PathBuf,
    /// Base time a request body gets (see [`crate::body::deadline`]).
    pub body_deadline: Duration,
    /// Client roles by certificate identity.
    pub roles: havn_config::Roles,
    /// What attestd already signed (capability manifest, latest self-audit answer).
    pub signed: Arc<crate::signed_cache::SignedCache>,
    /// The validator mesh link, when `[mesh]` is configured.
    pub mesh: Option<Arc<crate::mesh_node::MeshLink>>,
    /// The chain link, when `[chain]` is configured (and the node key unsealed).
    pub chain: Option<crate::chain_link::ChainLink>,
    /// SLA alerts.
    pub alerts: crate::alerts::Alerter,
    /// Admission above this raises `sla.admission_latency`.
    pub admission_alert: Duration,
    /// `netd.grid_gco2_per_kwh`.
    pub grid_gco2_per_kwh: Option<f64>,
}

pub type Resp = Response<Full<Bytes>>;

/// Longest a proof request waits for the execd channel (a running job holds it).
pub const PROOF_WAIT: Duration = Duration::from_secs(120);

/// Default for how long an API request waits for attestd: a quote takes about a
/// millisecond on swtpm and well under a second on hardware TPMs; a TPM that stopped
/// answering must not hang the orchestrator's request.
pub const ATTESTD_WAIT: Duration = Duration::from_secs(10);

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

pub(crate) fn json<T: Serialize>(status: StatusCode, v: &T) -> Resp {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"{\"error\":\"encoding\"}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// 403 naming the client, what it may not do, and who may.
fn forbidden(client: &str, what: &str, who: &str) -> Resp {
    failure(Failure::forbidden(client, what, who))
}

/// A JSON error response.
pub fn error(status: StatusCode, msg: &str, field: Option<&str>) -> Resp {
    json(status, &ErrorBody { error: msg, field })
}

/// Routes one request. Never fails (errors are responses).
pub async fn handle(
    ctx: Arc<Ctx>,
    client: Arc<str>,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let access = Access::of(&client, &ctx.roles);
    // The hot route first: no path copy, no segment vector.
    if req.method() == Method::POST && req.uri().path() == "/job/accept" {
        let r = if access.orchestrator {
            accept(&ctx, &client, req).await
        } else {
            forbidden(&client, "submit jobs", "orchestrators")
        };
        tracing::debug!(method = "POST", path = "/job/accept", status = r.status().as_u16(), client = %client, "request");
        return Ok(r);
    }
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let r = match (method.clone(), segs.as_slice()) {
        (Method::POST, ["job", "accept"]) if !access.orchestrator => {
            forbidden(&client, "submit jobs", "orchestrators")
        }
        (Method::POST, ["job", "accept"]) => accept(&ctx, &client, req).await,
        (_, ["job", "accept"]) => error(StatusCode::METHOD_NOT_ALLOWED, "use POST", None),
        (Method::GET, ["job", t]) => job_status(&ctx, &client, access, t, req.uri().query()).await,
        (Method::GET, ["job", j, "proof", n]) => {
            if !(access.validator || access.orchestrator) {
                return Ok(forbidden(
                    &client,
                    "fetch challenge material",
                    "submitters and validators",
                ));
            }
            match submitter_of(&ctx, &client, access.validator, j, req.uri().query()) {
                // execd's retention is keyed by submitter too: an orchestrator only ever
                // reaches its own jobs' material.
                Ok(submitter) => proof(&ctx, &client, &submitter, j, n).await,
                Err(r) => *r,
            }
        }
        (Method::GET, ["receipt", id]) => {
            if !(access.validator || access.operator || access.orchestrator) {
                return Ok(forbidden(
                    &client,
                    "read receipts",
                    "submitters, validators and operators",
                ));
            }
            let all = access.validator || access.operator;
            match submitter_of(&ctx, &client, all, id, req.uri().query()) {
                Ok(submitter) => receipt(&ctx, &submitter, id),
                Err(r) => *r,
            }
        }
        (Method::GET, ["artifact", cid]) => {
            if access.validator
                || access.operator
                || (access.orchestrator && ctx.state.may_read_artifact(&client, cid))
            {
                artifact(&ctx, cid)
            } else {
                forbidden(
                    &client,
                    "read this artifact",
                    "validators, operators, and the submitter of the job it belongs to",
                )
            }
        }
        (Method::POST, ["artifact"]) if !access.orchestrator => {
            forbidden(&client, "upload job inputs", "orchestrators")
        }
        (Method::POST, ["artifact"]) => crate::upload::upload(&ctx, &client, req).await,
        (_, ["artifact"]) => error(StatusCode::METHOD_NOT_ALLOWED, "use POST", None),
        (Method::GET, ["health"]) => health(&ctx),
        (Method::GET, ["metrics"]) if !access.operator => {
            forbidden(&client, "read metrics", "operators")
        }
        (Method::GET, ["metrics"]) => metrics(&ctx),
        (Method::GET, ["mesh", "status"]) if !(access.operator || access.validator) => {
            forbidden(&client, "read the mesh status", "operators and validators")
        }
        (Method::GET, ["mesh", "evidence"]) if !(access.operator || access.validator) => {
            forbidden(&client, "read mesh evidence", "operators and validators")
        }
        (Method::GET, ["mesh", "evidence"]) => match &ctx.mesh {
            None => error(
                StatusCode::NOT_FOUND,
                "this node is in no mesh ([mesh] listen is not set)",
                None,
            ),
            Some(m) => json(StatusCode::OK, &m.evidence()),
        },
        (Method::GET, ["mesh", "status"]) => match &ctx.mesh {
            None => error(
                StatusCode::NOT_FOUND,
                "this node is in no mesh ([mesh] listen is not set)",
                None,
            ),
            Some(m) => match m.status().await {
                Some(s) => json(StatusCode::OK, &s),
                None => error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the gossip task has stopped",
                    None,
                ),
            },
        },
        (Method::GET, ["stake"]) if !(access.operator || access.validator) => {
            forbidden(&client, "read the stake", "operators and validators")
        }
        (Method::GET, ["stake"]) => crate::stake_api::status(&ctx).await,
        (Method::POST, ["stake", "bond"]) if !access.operator => {
            forbidden(&client, "bond stake", "operators")
        }
        (Method::POST, ["stake", "bond"]) => crate::stake_api::bond(&ctx, req).await,
        (_, ["stake"]) | (_, ["stake", "bond"]) => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed", None)
        }
        (Method::GET, ["attest", "quote"]) => quote(&ctx, &client, req.uri().query()).await,
        // Served from what attestd already signed when it can be (no TPM round trip).
        (Method::GET, ["attest", "audit"]) => match ctx.signed.audit() {
            Some(Ok(a)) => json(StatusCode::OK, &*a),
            Some(Err(e)) => attestd_refused(e),
            None => relay_attestd(&ctx, NetdAttestRequest::SelfAudit).await,
        },
        (Method::GET, ["capabilities"]) => match ctx.signed.capabilities() {
            Some(m) => json(StatusCode::OK, &*m),
            None => relay_attestd(&ctx, NetdAttestRequest::Capabilities).await,
        },
        (_, ["attest", "audit"]) | (_, ["capabilities"]) => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed", None)
        }
        (_, ["job", _])
        | (_, ["job", _, "proof", _])
        | (_, ["receipt", _])
        | (_, ["health"])
        | (_, ["metrics"])
        | (_, ["mesh", "status"])
        | (_, ["mesh", "evidence"])
        | (_, ["attest", "quote"]) => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed", None)
        }
        _ => error(StatusCode::NOT_FOUND, "no such endpoint", None),
    };
    tracing::debug!(%method, path = %path, status = r.status().as_u16(), client = %client, "request");
    Ok(r)
}

fn parse_payload(body: &[u8]) -> Result<JobPayload, Box<Resp>> {
    // Plain serde_json first (no path tracking; it also rejects trailing bytes). Only a
    // body it refuses pays for the path-tracking parse that names the bad field.
    if let Ok(p) = serde_json::from_slice::<JobPayload>(body) {
        return Ok(p);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let p: JobPayload = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        let field = havn_proto::chat::json_error_field(&path, &msg);
        Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("malformed job payload: {msg}"),
            field.as_deref(),
        ))
    })?;
    de.end().map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("malformed job payload: {e}"),
            None,
        ))
    })?;
    Ok(p)
}

async fn accept(ctx: &Ctx, client: &str, req: Request<Incoming>) -> Resp {
    let start = Instant::now();
    let m = &ctx.state.metrics;
    // Bounded while reading (never more than max_body bytes buffered), by a deadline,
    // and JSON only.
    let body = match crate::body::read(req, ctx.max_body, ctx.body_deadline, true).await {
        Ok(b) => b,
        Err((why, resp)) => {
            m.reject(why.status().as_u16());
            tracing::info!(client, status = why.status().as_u16(), "job refused: body");
            return resp;
        }
    };
    // The borrowed fast path (no 6 KB `JobPayload`); the full parse names the bad
    // field when it refuses.
    let sub = match crate::intake::Submission::parse(&body, parse_payload) {
        Ok(p) => p,
        Err(crate::intake::ParseError::Invalid(r)) => {
            m.reject(400);
            tracing::info!(client, status = 400, "job refused: malformed payload");
            return *r;
        }
        Err(crate::intake::ParseError::Encode(e)) => {
            tracing::error!(client, error = %e, "cannot encode an accepted payload");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the job payload",
                None,
            );
        }
    };
    match crate::admission::admit(ctx, client, &sub, start).await {
        Ok(t) => json(StatusCode::OK, &t),
        Err(f) => failure(f),
    }
}

/// A [`Failure`] as REST's JSON error, with `Retry-After` when it has a hint.
pub(crate) fn failure(f: Failure) -> Resp {
    let mut r = error(f.status, &f.msg, f.field.as_deref());
    if let Some(secs) = f.retry_after {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(RETRY_AFTER, v);
        }
    }
    r
}

#[derive(Serialize)]
struct StatusBody {
    ticket_id: u64,
    job_id: String,
    state: havn_proto::JobState,
}

/// Longest `GET /job/{ticket}?wait=S` holds a request.
pub const MAX_STATUS_WAIT_S: u64 = 60;

/// `GET /job/{ticket}`; with `?wait=S` (1 to 60) it answers once the job is done or
/// failed, or after S seconds with its state then (long polling, no client backoff).
async fn job_status(ctx: &Ctx, client: &str, access: Access, t: &str, query: Option<&str>) -> Resp {
    // Refused before any wait, and checked again with the state it answers with (a
    // ticket created during a long poll may be another client's).
    if let Ok(Some(owner)) = t.parse::<u64>().map(|n| ctx.state.owner_of_ticket(n)) {
        if !access.reads_job(client, owner.as_deref()) {
            return forbidden(
                client,
                "read another client's job",
                "its submitter, validators and operators",
            );
        }
    }
    let Ok(ticket) = t.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "ticket must be a number",
            Some("ticket"),
        );
    };
    let wait = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("wait="));
    if let Some(w) = wait {
        match w.parse::<u64>() {
            Ok(s) if (1..=MAX_STATUS_WAIT_S).contains(&s) => {
                let deadline = Instant::now() + Duration::from_secs(s);
                ctx.state.wait_terminal(ticket, deadline).await;
            }
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("wait must be whole seconds from 1 to {MAX_STATUS_WAIT_S}"),
                    Some("wait"),
                )
            }
        }
    }
    match ctx.state.status(ticket) {
        Some((_, _, owner)) if !access.reads_job(client, owner.as_deref()) => forbidden(
            client,
            "read another client's job",
            "its submitter, validators and operators",
        ),
        Some((job_id, state, _)) => json(
            StatusCode::OK,
            &StatusBody {
                ticket_id: ticket,
                job_id,
                state,
            },
        ),
        None => error(StatusCode::NOT_FOUND, "no such ticket", Some("ticket")),
    }
}

/// Whose job a request names by `job_id` ([`crate::admission::submitter_of`]), with
/// the submitter asked for as `?submitter=CN` (percent-encoded).
fn submitter_of(
    ctx: &Ctx,
    client: &str,
    all: bool,
    job_id: &str,
    query: Option<&str>,
) -> Result<String, Box<Resp>> {
    let decoded = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("submitter="))
        .map(|v| {
            // percent-encoding passes a malformed escape through: refuse it instead.
            let escapes_ok = v.split('%').skip(1).all(|rest| {
                rest.get(..2)
                    .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            });
            escapes_ok
                .then(|| percent_encoding::percent_decode_str(v).decode_utf8().ok())
                .flatten()
        });
    let asked = match &decoded {
        Some(Some(s)) => Some(s.as_ref()),
        Some(None) => {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "submitter is not valid percent-encoded UTF-8",
                Some("submitter"),
            )))
        }
        None => None,
    };
    crate::admission::submitter_of(ctx, client, all, job_id, asked)
        .map_err(|f| Box::new(failure(f)))
}

fn receipt(ctx: &Ctx, submitter: &str, id: &str) -> Resp {
    match crate::admission::receipt(ctx, submitter, id) {
        Ok(r) => json(StatusCode::OK, &*r),
        Err(f) => failure(f),
    }
}

/// Serves an output artifact by CID, after checking the bytes still hash to it.
fn artifact(ctx: &Ctx, cid: &str) -> Resp {
    let Ok(parsed) = cid.parse::<havn_proto::Cid>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "not a CIDv1 (raw, sha2-256, base32)",
            Some("cid"),
        );
    };
    match std::fs::read(ctx.artifacts.join(parsed.to_string())) {
        Ok(bytes) if parsed.verify(&bytes) => {
            let mut r = Response::new(Full::new(Bytes::from(bytes)));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            r
        }
        Ok(_) => {
            tracing::error!(%cid, "stored artifact does not match its CID");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "stored artifact is corrupt",
                Some("cid"),
            )
        }
        Err(_) => error(StatusCode::NOT_FOUND, "no such artifact", Some("cid")),
    }
}

/// What `GET /job/{job_id}/proof/{node_id}` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ProofBody {
    /// The job.
    pub job_id: String,
    /// The challenged DAG node.
    pub node_id: String,
    /// CID of the proof JSON, served at `/artifact/{cid}`.
    pub proof_cid: havn_proto::Cid,
    /// CID of the node's input tensors (safetensors), served at `/artifact/{cid}`.
    pub inputs_cid: havn_proto::Cid,
    /// The runtime hash the proof commits to (the receipt's).
    pub runtime_hash: Hash32,
}

/// Challenge material for one DAG node of a finished job: asks execd to put the node's
/// proof and input tensors into the artifact store and answers their CIDs.
async fn proof(ctx: &Ctx, client: &str, submitter: &str, job: &str, node: &str) -> Resp {
    for (v, field) in [(job, "job_id"), (node, "node_id")] {
        if !havn_proto::is_ref_id(v) {
            return error(
                StatusCode::BAD_REQUEST,
                "ids are 1-64 characters of [A-Za-z0-9._:-]",
                Some(field),
            );
        }
    }
    let req = NetdExecRequest::Prove {
        job_id: havn_proto::bounded(job),
        node_id: havn_proto::bounded(node),
        submitter: havn_proto::bounded(submitter),
    };
    let execd = ctx.execd.clone();
    // The call runs in its own task: a client that hangs up must not cancel it between
    // the request and the answer, which would leave the answer for the next caller.
    let call = tokio::spawn(async move {
        let mut ch = tokio::time::timeout(PROOF_WAIT, execd.lock()).await.ok()?;
        Some(ch.call(&req).await)
    });
    let answer = match call.await {
        Ok(Some(a)) => a,
        Ok(None) => {
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "execd is busy with a running job; retry later",
                None,
            );
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("10"));
            return r;
        }
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "proof task failed", None),
    };
    match answer {
        Ok(NetdExecResponse::Proof {
            proof_cid,
            inputs_cid,
            runtime_hash,
        }) => {
            if let Ok(r) = ctx.state.receipt(submitter, job) {
                if r.receipt.runtime_hash != runtime_hash {
                    tracing::error!(job, signed = %r.receipt.runtime_hash, proof = %runtime_hash,
                        "execd's proof commits to another runtime hash than the receipt");
                    return error(
                        StatusCode::BAD_GATEWAY,
                        "the proof does not match the signed receipt",
                        None,
                    );
                }
            }
            tracing::info!(client, job, node, %proof_cid, %inputs_cid, "challenge material served");
            // The job's submitter may fetch this material too (validators may anyway).
            ctx.state.grant_artifacts(
                submitter,
                job,
                &[proof_cid.to_string(), inputs_cid.to_string()],
            );
            json(
                StatusCode::OK,
                &ProofBody {
                    job_id: job.to_string(),
                    node_id: node.to_string(),
                    proof_cid,
                    inputs_cid,
                    runtime_hash,
                },
            )
        }
        Ok(NetdExecResponse::Refused { error: e, reason }) => {
            let (status, field) = match e {
                RemoteError::UnknownJob => (StatusCode::NOT_FOUND, Some("job_id")),
                RemoteError::UnknownNode => (StatusCode::NOT_FOUND, Some("node_id")),
                RemoteError::BadRequest => (StatusCode::BAD_REQUEST, None),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, None),
            };
            error(status, &format!("{e}: {reason}"), field)
        }
        Ok(_) => error(StatusCode::BAD_GATEWAY, "execd answered out of turn", None),
        Err(e) => {
            tracing::error!(error = %e, "execd channel failed");
            let _ = ctx.fatal.send(Fatal::ExecdLost(e.to_string()));
            error(StatusCode::SERVICE_UNAVAILABLE, "execd unavailable", None)
        }
    }
}

fn health(ctx: &Ctx) -> Resp {
    let c = ctx.state.counts();
    let n = &ctx.state.node;
    json(
        StatusCode::OK,
        &serde_json::json!({
            "status": if ctx.state.draining.load(std::sync::atomic::Ordering::Relaxed) {
                "draining"
            } else if n.node_key.is_some() {
                "ok"
            } else {
                "read-only"
            },
            // false: the node key stayed sealed at boot (gate closed); read-only.
            "signing": n.node_key.is_some(),
            "node": n.node_key,
            "compute_class": n.compute_class,
            "stake": n.stake.json(),
            "workflows": n.workflows.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
            "queued": c.queued,
            "running": c.running,
            "completed": c.completed,
        }),
    )
}

fn metrics(ctx: &Ctx) -> Resp {
    let c = ctx.state.counts();
    let s = ctx.state.wal().stats();
    let text = ctx.state.metrics.render(crate::metrics::Gauges {
        queue_depth: c.queued as u64,
        running: c.running as u64,
        wal_syncs: s.syncs.load(std::sync::atomic::Ordering::Relaxed),
        wal_records: s.records.load(std::sync::atomic::Ordering::Relaxed),
        wal_sync_ns: s.sync_ns.load(std::sync::atomic::Ordering::Relaxed),
        grid_gco2_per_kwh: ctx.grid_gco2_per_kwh,
    });
    let text = match &ctx.mesh {
        Some(m) => text + &m.render_metrics(),
        None => text,
    };
    // GPU gauges where execd samples NVML (no GPU, no file, no gauges).
    let gpu = std::fs::read(
        ctx.artifacts
            .join(havn_proto::telemetry::GPU_TELEMETRY_FILE),
    )
    .ok()
    .and_then(|b| serde_json::from_slice(&b).ok())
    .map(|t| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        crate::metrics::render_gpu(&t, now)
    })
    .unwrap_or_default();
    let text = text + &gpu;
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

async fn quote(ctx: &Ctx, client: &str, query: Option<&str>) -> Resp {
    let nonce = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("nonce="));
    let Some(nonce) = nonce else {
        return error(StatusCode::BAD_REQUEST, "missing nonce", Some("nonce"));
    };
    let Ok(nonce) = Hash32::from_hex(nonce) else {
        return error(
            StatusCode::BAD_REQUEST,
            "nonce must be 64 hex characters",
            Some("nonce"),
        );
    };
    tracing::info!(client, nonce = %nonce, "quote requested");
    relay_attestd(ctx, NetdAttestRequest::Quote { nonce }).await
}
