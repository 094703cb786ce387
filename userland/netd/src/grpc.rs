//! `havn.v1.Intake` over gRPC (tonic), beside REST on the same mTLS port: the
//! accept loop hands a connection that negotiated ALPN `h2` to [`serve`]. Every
//! method goes through [`crate::admission`], so validation, admission control and
//! error meanings are REST's; a [`Failure`] becomes a [`Status`] by [`status_of`].
//! Also served: `grpc.health.v1.Health` (NOT_SERVING while the node key is sealed
//! or the node is stopping) and server reflection (v1 and v1alpha).

use crate::admission::{self, Failure};
use crate::api::Ctx;
use crate::roles::Access;
use havn_grpc::v1 as pb;
use havn_grpc::v1::intake_server::{Intake, IntakeServer};
use havn_proto::{
    ArtifactLocation, Cid, ComputeClass, Hash32, InputArtifact, JobPayload, JobState, PrivacyFlags,
    SignedReceipt, WorkflowRef, MAX_INPUTS, MAX_JOB_ID, MAX_NAME, MAX_URI, MAX_WORKFLOW_ID,
};
use hyper::StatusCode;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::Service;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_health::ServingStatus;

/// The client certificate's identity, put into each request's extensions by the
/// connection that carried it.
#[derive(Debug, Clone)]
pub struct ClientId(pub Arc<str>);

/// The largest message tonic decodes at all; within it, each method checks its own
/// bound and answers INVALID_ARGUMENT naming the field.
pub const MAX_MESSAGE: usize = 4 << 20;

/// Longest `WatchJob` stays open.
pub const MAX_WATCH: Duration = Duration::from_secs(600);

/// How often `WatchJob` looks for a queued → running change (done and failed wake it
/// at once).
const WATCH_POLL: Duration = Duration::from_millis(100);

/// A [`Failure`] as a gRPC status: the code for REST's HTTP status, REST's message
/// with the field named, and `havn-field` / `retry-after` metadata.
pub fn status_of(f: &Failure) -> Status {
    let code = match f.status {
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => Code::InvalidArgument,
        StatusCode::FORBIDDEN => Code::PermissionDenied,
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::CONFLICT if f.field.as_deref() == Some("job_id") => Code::AlreadyExists,
        StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY => Code::FailedPrecondition,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::INSUFFICIENT_STORAGE => Code::ResourceExhausted,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY => Code::Unavailable,
        StatusCode::GATEWAY_TIMEOUT | StatusCode::REQUEST_TIMEOUT => Code::DeadlineExceeded,
        _ => Code::Internal,
    };
    let msg = match &f.field {
        Some(field) => format!("{field}: {}", f.msg),
        None => f.msg.clone(),
    };
    let mut s = Status::new(code, msg);
    if let Some(field) = f
        .field
        .as_deref()
        .and_then(|v| MetadataValue::try_from(v).ok())
    {
        s.metadata_mut().insert("havn-field", field);
    }
    if let Some(secs) = f.retry_after {
        s.metadata_mut()
            .insert("retry-after", MetadataValue::from(secs));
    }
    s
}

fn invalid(field: &str, msg: impl Into<String>) -> Failure {
    Failure::new(StatusCode::BAD_REQUEST, msg, Some(field))
}

fn bounded<const N: usize>(field: &str, v: &str) -> Result<heapless::String<N>, Failure> {
    heapless::String::try_from(v).map_err(|_| invalid(field, format!("at most {N} bytes")))
}

fn class_from(v: i32) -> Result<ComputeClass, Failure> {
    match pb::ComputeClass::try_from(v) {
        Ok(pb::ComputeClass::S) => Ok(ComputeClass::S),
        Ok(pb::ComputeClass::M) => Ok(ComputeClass::M),
        Ok(pb::ComputeClass::L) => Ok(ComputeClass::L),
        Ok(pb::ComputeClass::Xl) => Ok(ComputeClass::XL),
        Ok(pb::ComputeClass::Unspecified) => Err(invalid(
            "compute_class",
            "missing: one of COMPUTE_CLASS_S, _M, _L, _XL",
        )),
        Err(_) => Err(invalid(
            "compute_class",
            format!("unknown value {v}: one of COMPUTE_CLASS_S, _M, _L, _XL"),
        )),
    }
}

fn class_to(c: ComputeClass) -> pb::ComputeClass {
    match c {
        ComputeClass::S => pb::ComputeClass::S,
        ComputeClass::M => pb::ComputeClass::M,
        ComputeClass::L => pb::ComputeClass::L,
        ComputeClass::XL => pb::ComputeClass::Xl,
    }
}

/// The job payload an `AcceptJobRequest` states, with REST's bounds, each refusal
/// naming the field in REST's form.
pub fn payload_from(r: &pb::AcceptJobRequest) -> Result<JobPayload, Failure> {
    if r.job_id.is_empty() {
        return Err(invalid("job_id", "missing"));
    }
    let job_id = bounded::<MAX_JOB_ID>("job_id", &r.job_id)?;
    let w = r
        .workflow
        .as_ref()
        .ok_or_else(|| invalid("workflow", "missing"))?;
    if w.id.is_empty() {
        return Err(invalid("workflow.id", "missing"));
    }
    let checksum = Hash32::from_hex(&w.checksum)
        .map_err(|_| invalid("workflow.checksum", "must be 64 hex characters"))?;
    if r.inputs.len() > MAX_INPUTS {
        return Err(invalid("inputs", format!("at most {MAX_INPUTS} inputs")));
    }
    let mut inputs = heapless::Vec::new();
    for (i, a) in r.inputs.iter().enumerate() {
        let field = |f: &str| format!("inputs[{i}].{f}");
        let cid: Cid = a
            .cid
            .parse()
            .map_err(|_| invalid(&field("cid"), "not a CIDv1 (raw, sha2-256, base32)"))?;
        use pb::input_artifact::Location;
        let location = match &a.location {
            None | Some(Location::Inline(_)) => ArtifactLocation::Inline,
            Some(Location::Ipfs(_)) => ArtifactLocation::Ipfs,
            Some(Location::ArweaveTx(tx)) => ArtifactLocation::Arweave {
                tx: bounded::<64>(&field("arweave_tx"), tx)?,
            },
            Some(Location::Uri(uri)) => ArtifactLocation::Uri {
                uri: bounded::<MAX_URI>(&field("uri"), uri)?,
            },
        };
        let input = InputArtifact {
            name: bounded::<MAX_NAME>(&field("name"), &a.name)?,
            cid,
            location,
        };
        // Cannot fail: the length was checked above.
        let _ = inputs.push(input);
    }
    if r.timeout_ms == 0 {
        return Err(invalid("timeout_ms", "missing (milliseconds, > 0)"));
    }
    let privacy = r.privacy.clone().unwrap_or_default();
    Ok(JobPayload {
        job_id,
        workflow: WorkflowRef {
            id: bounded::<MAX_WORKFLOW_ID>("workflow.id", &w.id)?,
            checksum,
        },
        inputs,
        compute_class: class_from(r.compute_class)?,
        timeout_ms: r.timeout_ms,
        seed: r.seed,
        privacy: PrivacyFlags {
            enclave: privacy.enclave,
            redact_outputs: privacy.redact_outputs,
            output_key: match privacy.output_key.as_str() {
                "" => None,
                k => Some(havn_proto::PubKey32::from_hex(k).map_err(|_| {
                    invalid(
                        "privacy.output_key",
                        "must be 64 hex characters (an X25519 key)",
                    )
                })?),
            },
        },
    })
}

/// A signed receipt as the gRPC message, with the exact signed bytes.
pub fn receipt_to(s: &SignedReceipt) -> Result<pb::Receipt, Failure> {
    let r = &s.receipt;
    let signed_bytes = postcard::to_stdvec(r).map_err(|e| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the receipt: {e}"),
            None,
        )
    })?;
    Ok(pb::Receipt {
        workflow_id: r.workflow_id.to_string(),
        job_id: r.job_id.to_string(),
        runtime_hash: r.runtime_hash.to_hex(),
        outputs_cid: r.outputs_cid.to_string(),
        inputs_cid: r.inputs_cid.to_string(),
        latency_ms: r.latency_ms,
        energy_estimate_mj: r.energy_estimate_mj,
        manifest_checksum: r.manifest_checksum.to_hex(),
        seed: r.seed,
        gas: r.gas,
        backend: match r.backend {
            havn_proto::Backend::Cpu => pb::Backend::Cpu,
            havn_proto::Backend::Cuda => pb::Backend::Cuda,
        } as i32,
        compute_class: class_to(r.compute_class) as i32,
        node: r.node.to_string(),
        submitter: r.submitter.to_string(),
        signed_unix_ms: r.signed_unix_ms,
        signed_bytes,
        signature: s.signature.0.to_vec(),
    })
}

fn job_status(ticket: u64, job_id: String, st: &JobState) -> pb::JobStatus {
    let (state, failure_reason) = match st {
        JobState::Queued => (pb::JobState::Queued, String::new()),
        JobState::Running => (pb::JobState::Running, String::new()),
        JobState::Done => (pb::JobState::Done, String::new()),
        JobState::Failed { reason } => (pb::JobState::Failed, reason.to_string()),
    };
    pb::JobStatus {
        ticket_id: ticket,
        job_id,
        state: state as i32,
        failure_reason,
    }
}

/// The service, over the same context REST handlers share.
#[derive(Clone)]
pub struct IntakeService {
    ctx: Arc<Ctx>,
}

impl IntakeService {
    fn caller<T>(&self, req: &Request<T>) -> (Arc<str>, Access) {
        let client = req
            .extensions()
            .get::<ClientId>()
            .map(|c| c.0.clone())
            .unwrap_or_else(|| Arc::from("none"));
        let access = Access::of(&client, &self.ctx.roles);
        (client, access)
    }

    /// The ticket's state, if `client` may read it.
    fn read_job(
        &self,
        client: &str,
        access: Access,
        ticket: u64,
    ) -> Result<(String, JobState), Failure> {
        match self.ctx.state.status(ticket) {
            Some((_, _, owner)) if !access.reads_job(client, owner.as_deref()) => {
                Err(Failure::forbidden(
                    client,
                    "read another client's job",
                    "its submitter, validators and operators",
                ))
            }
            Some((job_id, state, _)) => Ok((job_id, state)),
            None => Err(Failure::new(
                StatusCode::NOT_FOUND,
                "no such ticket",
                Some("ticket_id"),
            )),
        }
    }
}

type GrpcResult<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Intake for IntakeService {
    async fn accept_job(&self, req: Request<pb::AcceptJobRequest>) -> GrpcResult<pb::Ticket> {
        let start = Instant::now();
        let (client, access) = self.caller(&req);
        let m = &self.ctx.state.metrics;
        if !access.orchestrator {
            m.reject(403);
            return Err(status_of(&Failure::forbidden(
                &client,
                "submit jobs",
                "orchestrators",
            )));
        }
        let r = req.into_inner();
        let len = prost::Message::encoded_len(&r);
        if len > self.ctx.max_body {
            m.reject(400);
            return Err(status_of(&invalid(
                "request",
                format!(
                    "AcceptJobRequest is {len} bytes, over this node's limit of {} (netd.max_body_bytes)",
                    self.ctx.max_body
                ),
            )));
        }
        let payload = payload_from(&r).map_err(|f| {
            m.reject(400);
            tracing::info!(client = %client, reason = %f.msg, "job refused: malformed payload (gRPC)");
            status_of(&f)
        })?;
        let sub = crate::intake::Submission::from_payload(&payload).map_err(|e| {
            status_of(&Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode the job payload: {e}"),
                None,
            ))
        })?;
        let t = admission::admit(&self.ctx, &client, &sub, start)
            .await
            .map_err(|f| status_of(&f))?;
        Ok(Response::new(pb::Ticket {
            ticket_id: t.ticket_id,
            eta_seconds: t.eta_seconds,
        }))
    }

    async fn get_job(&self, req: Request<pb::GetJobRequest>) -> GrpcResult<pb::JobStatus> {
        let (client, access) = self.caller(&req);
        let ticket = req.get_ref().ticket_id;
        let (job_id, state) = self
            .read_job(&client, access, ticket)
            .map_err(|f| status_of(&f))?;
        Ok(Response::new(job_status(ticket, job_id, &state)))
    }

    type WatchJobStream = ReceiverStream<Result<pb::JobStatus, Status>>;

    async fn watch_job(
        &self,
        req: Request<pb::WatchJobRequest>,
    ) -> GrpcResult<Self::WatchJobStream> {
        let (client, access) = self.caller(&req);
        let r = req.into_inner();
        let ticket = r.ticket_id;
        let wait = match r.max_wait_seconds {
            0 => MAX_WATCH,
            s => Duration::from_secs(u64::from(s)).min(MAX_WATCH),
        };
        // Refused up front (unknown ticket, another client's job) as a status, not a
        // stream that ends at once.
        let (job_id, first) = self
            .read_job(&client, access, ticket)
            .map_err(|f| status_of(&f))?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let state = self.ctx.state.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + wait;
            let mut last = first;
            if tx
                .send(Ok(job_status(ticket, job_id.clone(), &last)))
                .await
                .is_err()
            {
                return;
            }
            loop {
                let terminal = matches!(last, JobState::Done | JobState::Failed { .. });
                if terminal || Instant::now() >= deadline {
                    return;
                }
                tokio::select! {
                    _ = state.wait_terminal(ticket, (Instant::now() + WATCH_POLL).min(deadline)) => {}
                    _ = tx.closed() => return,
                }
                let Some((_, now, _)) = state.status(ticket) else {
                    return;
                };
                if now != last {
                    last = now;
                    if tx
                        .send(Ok(job_status(ticket, job_id.clone(), &last)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_receipt(&self, req: Request<pb::GetReceiptRequest>) -> GrpcResult<pb::Receipt> {
        let (client, access) = self.caller(&req);
        if !(access.validator || access.operator || access.orchestrator) {
            return Err(status_of(&Failure::forbidden(
                &client,
                "read receipts",
                "submitters, validators and operators",
            )));
        }
        let r = req.into_inner();
        if !havn_proto::is_ref_id(&r.job_id) {
            return Err(status_of(&invalid(
                "job_id",
                "ids are 1-64 characters of [A-Za-z0-9._:-]",
            )));
        }
        let asked = (!r.submitter.is_empty()).then_some(r.submitter.as_str());
        let all = access.validator || access.operator;
        let submitter = admission::submitter_of(&self.ctx, &client, all, &r.job_id, asked)
            .map_err(|f| status_of(&f))?;
        let s = admission::receipt(&self.ctx, &submitter, &r.job_id).map_err(|f| status_of(&f))?;
        Ok(Response::new(receipt_to(&s).map_err(|f| status_of(&f))?))
    }

    async fn upload_artifact(
        &self,
        req: Request<Streaming<pb::ArtifactChunk>>,
    ) -> GrpcResult<pb::Artifact> {
        let (client, access) = self.caller(&req);
        if !access.orchestrator {
            return Err(status_of(&Failure::forbidden(
                &client,
                "upload job inputs",
                "orchestrators",
            )));
        }
        let max = crate::upload::MAX_ARTIFACT_BYTES;
        let deadline = crate::body::deadline(self.ctx.body_deadline, max);
        let mut stream = req.into_inner();
        let mut bytes = Vec::new();
        let read = async {
            while let Some(chunk) = stream.message().await? {
                if bytes.len() + chunk.data.len() > max {
                    return Err(status_of(&invalid(
                        "data",
                        format!("an artifact is at most {max} bytes"),
                    )));
                }
                bytes.extend_from_slice(&chunk.data);
            }
            Ok(())
        };
        match tokio::time::timeout(deadline, read).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(Status::deadline_exceeded(format!(
                    "the upload took longer than {} s",
                    deadline.as_secs()
                )))
            }
        }
        let size = bytes.len() as u64;
        let cid = crate::upload::store_upload(&self.ctx, &client, bytes)
            .await
            .map_err(|f| status_of(&f))?;
        Ok(Response::new(pb::Artifact {
            cid: cid.to_string(),
            size,
        }))
    }
}

type HttpRequest = hyper::Request<hyper::body::Incoming>;
type HttpResponse = hyper::Response<tonic::body::Body>;
type BoxRoute = Arc<
    dyn Fn(
            HttpRequest,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<HttpResponse, Infallible>> + Send>,
        > + Send
        + Sync,
>;

/// One generated server as a route (the reflection builders return opaque types).
fn route<S>(svc: S) -> BoxRoute
where
    S: Service<HttpRequest, Response = HttpResponse, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    Arc::new(move |req| {
        // Generated servers are always ready: no poll_ready needed.
        let mut s = svc.clone();
        Box::pin(s.call(req))
    })
}

/// Everything served over `h2`: Intake, health and reflection, routed by path.
#[derive(Clone)]
pub struct Grpc {
    intake: BoxRoute,
    health: BoxRoute,
    reflection_v1: BoxRoute,
    reflection_v1alpha: BoxRoute,
    reporter: tonic_health::server::HealthReporter,
    state: Arc<crate::state::State>,
}

/// Building the reflection service failed (a descriptor set that does not decode).
#[derive(Debug, thiserror::Error)]
#[error("gRPC reflection: {0}")]
pub struct ReflectionError(#[from] tonic_reflection::server::Error);

impl Grpc {
    /// The services over `ctx`; health is SERVING only while the node key is unsealed.
    pub fn new(ctx: Arc<Ctx>) -> Result<Self, ReflectionError> {
        let reporter = tonic_health::server::HealthReporter::new();
        let health = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
        );
        let serving = ctx.state.node.node_key.is_some();
        let state = ctx.state.clone();
        let intake =
            IntakeServer::new(IntakeService { ctx }).max_decoding_message_size(MAX_MESSAGE);
        let files = [
            havn_grpc::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ];
        let mut v1 = tonic_reflection::server::Builder::configure();
        let mut v1alpha = tonic_reflection::server::Builder::configure();
        for f in files {
            v1 = v1.register_encoded_file_descriptor_set(f);
            v1alpha = v1alpha.register_encoded_file_descriptor_set(f);
        }
        let g = Self {
            intake: route(intake),
            health: route(health),
            reflection_v1: route(v1.build_v1()?),
            reflection_v1alpha: route(v1alpha.build_v1alpha()?),
            reporter,
            state,
        };
        g.set_serving(serving);
        Ok(g)
    }

    /// What the latest self-audit says of the gate: health follows it (and stays
    /// NOT_SERVING once draining or with the node key sealed).
    pub fn gate(&self, open: bool) {
        let draining = self
            .state
            .draining
            .load(std::sync::atomic::Ordering::Relaxed);
        self.set_serving(open && !draining && self.state.node.node_key.is_some());
    }

    /// Sets the health of the node ("") and of `havn.v1.Intake`.
    pub fn set_serving(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        let reporter = self.reporter.clone();
        // The reporter's setters are async only to take a lock: never blocks long.
        tokio::spawn(async move {
            for name in ["", havn_grpc::SERVICE] {
                reporter.set_service_status(name, status).await;
            }
        });
    }

    /// Routes one request by its path's service name.
    pub async fn route(&self, req: HttpRequest) -> Result<HttpResponse, Infallible> {
        let path = req.uri().path();
        let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
        let r = match service {
            havn_grpc::SERVICE => &self.intake,
            "grpc.health.v1.Health" => &self.health,
            "grpc.reflection.v1.ServerReflection" => &self.reflection_v1,
            "grpc.reflection.v1alpha.ServerReflection" => &self.reflection_v1alpha,
            other => {
                return Ok(
                    Status::unimplemented(format!("no service {other:?} on this node")).into_http(),
                )
            }
        };
        r(req).await
    }
}
