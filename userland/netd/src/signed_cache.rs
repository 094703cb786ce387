//! What attestd already signed and netd may serve without asking it again: the
//! capability manifest (signed once per start of the set) and the latest self-audit
//! answer (refreshed in the background). A busy or stalled TPM then never delays
//! `/capabilities` or `/attest/audit`: attestd is asked off the request path.

use crate::api::{error, json, Ctx, Resp};
use crate::Fatal;
use havn_ipc::AsyncClient;
use havn_proto::ipc::{NetdAttestRequest, NetdAttestResponse, NetdAttestd, RemoteError};
use havn_proto::{SignedCapabilityManifest, SignedSelfAudit};
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::StatusCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the refresher asks attestd for the latest self-audit.
pub const REFRESH: Duration = Duration::from_secs(1);
/// A self-audit answer older than this is not served from the cache (the refresher
/// has not reached attestd since): the request asks attestd itself.
pub const AUDIT_STALE: Duration = Duration::from_secs(10);

/// attestd's last answer to a self-audit request.
pub type AuditAnswer = Result<Arc<SignedSelfAudit>, RemoteError>;

/// See the module docs.
#[derive(Debug, Default)]
pub struct SignedCache {
    capabilities: Mutex<Option<Arc<SignedCapabilityManifest>>>,
    audit: Mutex<Option<(AuditAnswer, Instant)>>,
}

impl SignedCache {
    /// The signed capability manifest, once attestd has answered with it.
    pub fn capabilities(&self) -> Option<Arc<SignedCapabilityManifest>> {
        self.capabilities
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Keeps the signed capability manifest.
    pub fn set_capabilities(&self, m: SignedCapabilityManifest) {
        *self.capabilities.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(m));
    }

    /// attestd's latest self-audit answer, if it is younger than [`AUDIT_STALE`].
    pub fn audit(&self) -> Option<AuditAnswer> {
        let g = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref()
            .filter(|(_, at)| at.elapsed() < AUDIT_STALE)
            .map(|(a, _)| a.clone())
    }

    /// Keeps attestd's latest self-audit answer (a record, or why there is none).
    pub fn set_audit(&self, a: AuditAnswer) {
        *self.audit.lock().unwrap_or_else(|p| p.into_inner()) = Some((a, Instant::now()));
    }
}

/// Relays a read-only request to attestd and its answer as JSON: quotes
/// (`/attest/quote`, the nonce is the only input), the latest signed self-audit
/// (`/attest/audit`) and the capability manifest attestd assembled and signed
/// (`/capabilities`). netd supplies none of the signed bytes.
pub(crate) async fn relay_attestd(ctx: &Ctx, req: NetdAttestRequest) -> Resp {
    let wait = ctx.attestd_wait;
    let answer = ask_attestd(&ctx.attestd, &ctx.fatal, req.clone(), wait).await;
    let r = match answer {
        Some(r) => r,
        None => {
            tracing::warn!(request = ?req, wait_ms = wait.as_millis() as u64,
                "attestd did not answer in time");
            let mut r = error(
                StatusCode::GATEWAY_TIMEOUT,
                &format!(
                    "attestd did not answer within {} ms (the TPM is busy or not responding)",
                    wait.as_millis()
                ),
                None,
            );
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("5"));
            return r;
        }
    };
    match (&req, r) {
        (NetdAttestRequest::Quote { .. }, Ok(NetdAttestResponse::Quote(ev))) => {
            json(StatusCode::OK, &*ev)
        }
        (NetdAttestRequest::SelfAudit, Ok(NetdAttestResponse::SelfAudit(a))) => {
            let r = json(StatusCode::OK, &*a);
            ctx.signed.set_audit(Ok(Arc::new(*a)));
            r
        }
        (NetdAttestRequest::Capabilities, Ok(NetdAttestResponse::Capabilities(m))) => {
            let r = json(StatusCode::OK, &*m);
            ctx.signed.set_capabilities(*m);
            r
        }
        (req, Ok(NetdAttestResponse::Error(e))) => {
            if matches!(req, NetdAttestRequest::SelfAudit) {
                ctx.signed.set_audit(Err(e));
            }
            attestd_refused(e)
        }
        (_, Ok(_)) => error(
            StatusCode::BAD_GATEWAY,
            "attestd answered out of turn",
            None,
        ),
        // Logged and reported as fatal by the call task.
        (_, Err(())) => error(StatusCode::SERVICE_UNAVAILABLE, "attestd unavailable", None),
    }
}

/// attestd's refusal as a response.
pub(crate) fn attestd_refused(e: RemoteError) -> Resp {
    let status = match e {
        RemoteError::NotPermitted => StatusCode::NOT_FOUND,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut r = error(status, &format!("attestd refused: {e}"), None);
    if e == RemoteError::NotYetAvailable {
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// Asks attestd one request; `None` when no answer came within `wait`, `Some(Err)`
/// when the channel failed (reported as fatal).
pub(crate) async fn ask_attestd(
    attestd: &Arc<tokio::sync::Mutex<AsyncClient<NetdAttestd>>>,
    fatal: &tokio::sync::mpsc::UnboundedSender<Fatal>,
    req: NetdAttestRequest,
    wait: Duration,
) -> Option<Result<NetdAttestResponse, ()>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (ch, fatal, sent) = (attestd.clone(), fatal.clone(), req);
    // The call runs in its own task: if this request gives up, a late answer is
    // still read off the channel, so requests and answers stay paired. The task
    // waits for the channel (another call may hold it) no longer than `wait`, so a
    // hung attestd leaves at most one call pending, not one per retry.
    tokio::spawn(async move {
        let Ok(mut a) = tokio::time::timeout(wait, ch.lock()).await else {
            return;
        };
        let r = a.call(&sent).await;
        if let Err(e) = &r {
            tracing::error!(error = %e, "attestd channel failed");
            let _ = fatal.send(Fatal::AttestdLost(e.to_string()));
        }
        let _ = tx.send(r);
    });
    match tokio::time::timeout(wait, rx).await {
        Ok(Ok(Ok(r))) => Some(Ok(r)),
        Ok(Ok(Err(_))) => Some(Err(())),
        Ok(Err(_)) | Err(_) => None,
    }
}

/// Keeps the cache fresh: every [`REFRESH`], attestd's latest self-audit answer, and
/// the capability manifest until it is signed. Runs until netd stops.
pub async fn refresh(
    signed: Arc<SignedCache>,
    attestd: Arc<tokio::sync::Mutex<AsyncClient<NetdAttestd>>>,
    fatal: tokio::sync::mpsc::UnboundedSender<Fatal>,
    alerts: crate::alerts::Alerter,
    grpc: crate::grpc::Grpc,
) {
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match ask_attestd(&attestd, &fatal, NetdAttestRequest::SelfAudit, REFRESH).await {
            Some(Ok(NetdAttestResponse::SelfAudit(a))) => {
                signed.set_audit(Ok(Arc::new(*a)));
                grpc.gate(true);
            }
            Some(Ok(NetdAttestResponse::Error(e))) => {
                signed.set_audit(Err(e));
                // GateClosed: the last self-audit found a running daemon that is not
                // what was measured. (NotPermitted: auditing is off; NotYetAvailable:
                // no audit yet. Neither is a breach.)
                if e == RemoteError::GateClosed {
                    grpc.gate(false);
                    alerts.raise(
                        crate::alerts::kind::SELF_AUDIT,
                        serde_json::json!({"error": e.to_string()}),
                    );
                }
            }
            Some(Ok(_)) | None => {}
            Some(Err(())) => return,
        }
        if signed.capabilities().is_none() {
            if let Some(Ok(NetdAttestResponse::Capabilities(m))) =
                ask_attestd(&attestd, &fatal, NetdAttestRequest::Capabilities, REFRESH).await
            {
                signed.set_capabilities(*m);
            }
        }
    }
}
