//! Heartbeats: every `heartbeat_ms`, attestd signs the node's liveness and queue
//! counts; netd logs the signed heartbeat as JSON and POSTs it (best effort) to the
//! configured endpoints over mTLS.

use crate::client::MtlsClient;
use crate::state::State;
use crate::Fatal;
use havn_ipc::AsyncClient;
use havn_proto::ipc::{NetdAttestRequest, NetdAttestResponse, NetdAttestd};
use havn_proto::NetdClaims;
use hyper::Method;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};

/// Heartbeat loop settings.
pub struct Heartbeats {
    /// Interval.
    pub every: Duration,
    /// `https://…` URLs to POST each signed heartbeat to.
    pub endpoints: Vec<String>,
    /// Client for the POSTs (netd's own certificate).
    pub client: Option<MtlsClient>,
    /// Where a missed heartbeat is reported.
    pub alerts: crate::alerts::Alerter,
}

/// Runs until the attestd channel fails.
pub async fn run(
    state: Arc<State>,
    attestd: Arc<Mutex<AsyncClient<NetdAttestd>>>,
    hb: Heartbeats,
    fatal: mpsc::UnboundedSender<Fatal>,
) {
    let mut tick = tokio::time::interval(hb.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let c = state.counts();
        // attestd adds the sequence number and the time; these are only our claims.
        let req = NetdAttestRequest::Heartbeat(NetdClaims {
            queue_depth: u32::try_from(c.queued).unwrap_or(u32::MAX),
            running: u32::try_from(c.running).unwrap_or(u32::MAX),
            completed: c.completed,
        });
        let r = attestd.lock().await.call(&req).await;
        match r {
            Ok(NetdAttestResponse::Heartbeat(signed)) => {
                let _ = state.signed_heartbeats.send(Arc::new(signed.clone()));
                let body = serde_json::to_vec(&signed).unwrap_or_default();
                tracing::info!(
                    seq = signed.heartbeat.seq,
                    heartbeat = %String::from_utf8_lossy(&body),
                    "heartbeat signed"
                );
                if let Some(client) = &hb.client {
                    for url in &hb.endpoints {
                        let (client, url, body) = (client.clone(), url.clone(), body.clone());
                        let alerts = hb.alerts.clone();
                        let seq = signed.heartbeat.seq;
                        tokio::spawn(async move {
                            let missed = |why: String| {
                                alerts.raise(
                                    crate::alerts::kind::HEARTBEAT_MISSED,
                                    serde_json::json!({"seq": seq, "endpoint": url, "error": why}),
                                );
                            };
                            let post = client.fetch(Method::POST, &url, Some(body));
                            match tokio::time::timeout(Duration::from_secs(5), post).await {
                                Ok(Ok(r)) if r.status < 300 => {}
                                Ok(Ok(r)) => {
                                    tracing::warn!(%url, status = r.status, "heartbeat POST refused");
                                    missed(format!("HTTP {}", r.status));
                                }
                                Ok(Err(e)) => {
                                    tracing::warn!(%url, error = %e, "heartbeat POST failed");
                                    missed(e.to_string());
                                }
                                Err(_) => {
                                    tracing::warn!(%url, "heartbeat POST timed out");
                                    missed("timed out".into());
                                }
                            }
                        });
                    }
                }
            }
            Ok(NetdAttestResponse::Error(e)) => {
                tracing::warn!(error = %e, "attestd refused to sign a heartbeat");
                hb.alerts.raise(
                    crate::alerts::kind::HEARTBEAT_MISSED,
                    serde_json::json!({"error": e.to_string()}),
                );
            }
            Ok(_) => tracing::warn!("attestd answered a heartbeat out of turn"),
            Err(e) => {
                tracing::error!(error = %e, "attestd channel failed");
                let _ = fatal.send(Fatal::AttestdLost(e.to_string()));
                return;
            }
        }
    }
}
