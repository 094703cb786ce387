//! Delivery: one task per endpoint takes the oldest due alert from its outbox, has
//! attestd sign it (Standard Webhooks `v1a`, the node key, attestd's clock), adds a
//! `v1` HMAC when the endpoint has a secret, and POSTs it over HTTPS (netd's own
//! certificate; the receiver's must chain to `netd.client_ca`). 2xx: delivered. 410:
//! the endpoint is disabled for good. Anything else: retried on `alerts.retry_s`, then
//! dropped. The same `webhook-id` on every attempt, across restarts: a receiver
//! de-duplicates by it.

use super::outbox::Pending;
use super::{Alerter, Endpoint};
use crate::client::{split_url, MtlsClient};
use base64::Engine as _;
use havn_ipc::AsyncClient;
use havn_proto::ipc::{
    webhook_content, NetdAttestRequest, NetdAttestResponse, NetdAttestd, WebhookToSign,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Longest one POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait when attestd cannot sign (gate closed at boot, TPM away).
const SIGN_RETRY: Duration = Duration::from_secs(30);
/// The longest idle wait between looks at the outbox.
const IDLE: Duration = Duration::from_secs(1);

/// What one attempt came to.
enum Outcome {
    Delivered,
    Gone,
    Failed(String),
    NotSigned(String),
}

/// The Standard Webhooks headers for `p`, signed at `unix_s`.
pub fn headers(
    p: &Pending,
    unix_s: u64,
    v1a: &[u8; 64],
    secret: Option<&[u8]>,
) -> Vec<(&'static str, String)> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut sig = format!("v1a,{}", b64(v1a));
    if let Some(s) = secret {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, s);
        let mac = ring::hmac::sign(&key, &webhook_content(&p.id, unix_s, p.body.as_bytes()));
        sig.push_str(&format!(" v1,{}", b64(mac.as_ref())));
    }
    vec![
        ("webhook-id", p.id.clone()),
        ("webhook-timestamp", unix_s.to_string()),
        ("webhook-signature", sig),
    ]
}

async fn attempt(
    e: &Endpoint,
    p: &Pending,
    client: &MtlsClient,
    attestd: &Arc<Mutex<AsyncClient<NetdAttestd>>>,
) -> Outcome {
    let (Ok(id), Ok(body)) = (
        heapless::String::try_from(p.id.as_str()),
        heapless::Vec::from_slice(p.body.as_bytes()),
    ) else {
        return Outcome::Failed("alert larger than attestd signs".into());
    };
    let req = NetdAttestRequest::SignWebhook(Box::new(WebhookToSign { id, body }));
    let signed = tokio::time::timeout(crate::api::ATTESTD_WAIT, async {
        attestd.lock().await.call(&req).await
    })
    .await;
    let (unix_s, sig) = match signed {
        Ok(Ok(NetdAttestResponse::Webhook { unix_s, signature })) => (unix_s, signature.0),
        Ok(Ok(NetdAttestResponse::Error(e))) => return Outcome::NotSigned(e.to_string()),
        Ok(Ok(_)) => return Outcome::NotSigned("attestd answered out of turn".into()),
        Ok(Err(e)) => return Outcome::NotSigned(e.to_string()),
        Err(_) => return Outcome::NotSigned("attestd did not answer in time".into()),
    };
    let hs = headers(p, unix_s, &sig, e.secret.as_deref());
    let post = async {
        let (host, port, path) = split_url(&e.url)?;
        let mut c = client.connect(&host, port).await?;
        c.request_with(
            hyper::Method::POST,
            &path,
            Some(p.body.clone().into_bytes()),
            &hs,
        )
        .await
    };
    match tokio::time::timeout(POST_TIMEOUT, post).await {
        Ok(Ok(r)) if (200..300).contains(&r.status) => Outcome::Delivered,
        Ok(Ok(r)) if r.status == 410 => Outcome::Gone,
        Ok(Ok(r)) => Outcome::Failed(format!("HTTP {}", r.status)),
        Ok(Err(e)) => Outcome::Failed(e.to_string()),
        Err(_) => Outcome::Failed("timed out".into()),
    }
}

/// Delivers one endpoint's alerts until the endpoint is disabled.
pub async fn run(
    alerts: Alerter,
    index: usize,
    client: MtlsClient,
    attestd: Arc<Mutex<AsyncClient<NetdAttestd>>>,
    retry_s: Vec<u64>,
) {
    let i = alerts.inner.clone();
    let Some(e) = i.endpoints.get(index) else {
        return;
    };
    loop {
        if e.outbox.is_disabled() {
            tracing::warn!(endpoint = %e.name, "alert endpoint disabled (410): no more deliveries");
            return;
        }
        let wake = i.wake.notified();
        let now = super::unix_ms();
        let due = e.outbox.oldest();
        let Some((seq, mut p)) = due.filter(|(_, p)| p.next_ms <= now) else {
            let _ = tokio::time::timeout(IDLE, wake).await;
            continue;
        };
        match attempt(e, &p, &client, &attestd).await {
            Outcome::Delivered => {
                e.outbox.remove(seq);
                i.state
                    .metrics
                    .alerts_delivered
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(endpoint = %e.name, id = %p.id, alert = %p.kind, attempts = p.attempts + 1, "alert delivered");
            }
            Outcome::Gone => {
                let n = e.outbox.disable("the receiver answered 410 Gone");
                i.state
                    .metrics
                    .alerts_dropped
                    .fetch_add(n as u64, Ordering::Relaxed);
                tracing::error!(endpoint = %e.name, dropped = n, "alert endpoint answered 410 Gone: disabled");
                return;
            }
            Outcome::NotSigned(why) => {
                tracing::warn!(endpoint = %e.name, id = %p.id, reason = %why, "attestd did not sign the alert; retrying later");
                tokio::time::sleep(SIGN_RETRY).await;
            }
            Outcome::Failed(why) => {
                p.attempts = p.attempts.saturating_add(1);
                match retry_s.get(p.attempts as usize) {
                    Some(wait) => {
                        p.next_ms = super::unix_ms().saturating_add(wait.saturating_mul(1000));
                        tracing::warn!(endpoint = %e.name, id = %p.id, attempts = p.attempts, retry_in_s = wait, reason = %why, "alert delivery failed");
                        if let Err(err) = e.outbox.put(seq, &p) {
                            tracing::error!(error = %err, "cannot record the alert's retry");
                        }
                    }
                    None => {
                        e.outbox.remove(seq);
                        i.state
                            .metrics
                            .alerts_dropped
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::error!(endpoint = %e.name, id = %p.id, attempts = p.attempts, reason = %why, "alert dropped: every retry failed");
                    }
                }
            }
        }
    }
}
