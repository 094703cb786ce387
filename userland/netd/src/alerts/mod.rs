//! SLA alerts. netd watches its own SLAs (queue admission above `alerts.admission_ms`,
//! a timeout rate above `alerts.timeout_rate` over `alerts.window_s`, missed
//! heartbeats, the attestation gate closed, a failed self-audit) and raises an alert:
//! a JSON record sealed (HPKE, `havn-payload`) to each endpoint's public key, queued
//! durably ([`outbox`]), and delivered as a Standard Webhooks request signed by the
//! node key through attestd ([`deliver`]). One alert per kind per `alerts.repeat_s`.
//!
//! The plaintext alert: `{"type", "id", "node", "unix_ms", "data"}`; the HTTP body:
//! `{"type":"havn.alert.sealed","sealed":"<base64 envelope>"}`.

pub mod deliver;
pub mod outbox;

use crate::state::State;
use base64::Engine as _;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Alert kinds.
pub mod kind {
    /// A job's admission (request to durable ticket) took longer than the SLA.
    pub const ADMISSION_LATENCY: &str = "sla.admission_latency";
    /// Too many jobs ran past their timeout over the window.
    pub const TIMEOUT_RATE: &str = "sla.timeout_rate";
    /// A heartbeat could not be signed or delivered.
    pub const HEARTBEAT_MISSED: &str = "sla.heartbeat_missed";
    /// attestd's gate is closed: the node takes no new work.
    pub const GATE_CLOSED: &str = "attestation.gate_closed";
    /// The latest self-audit failed (a running daemon differs from its measurement).
    pub const SELF_AUDIT: &str = "attestation.self_audit_failed";
}

/// One configured receiver.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Its name (queue directory, logs).
    pub name: String,
    /// `https://…`.
    pub url: String,
    /// X25519 key alert bodies are sealed to.
    pub public_key: [u8; 32],
    /// The `v1` HMAC secret, when configured.
    pub secret: Option<Vec<u8>>,
    /// Its durable queue.
    pub outbox: outbox::Outbox,
}

struct Inner {
    node: String,
    endpoints: Vec<Endpoint>,
    repeat: Duration,
    last: Mutex<HashMap<String, Instant>>,
    seq: AtomicU64,
    wake: Notify,
    state: Arc<State>,
}

/// Raises alerts (cheap to clone).
#[derive(Clone)]
pub struct Alerter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Alerter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Alerter({} endpoints)", self.inner.endpoints.len())
    }
}

/// Why the alert endpoints could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    /// A key or secret that does not decode.
    #[error("alerts.endpoints {0}: {1}")]
    Endpoint(String, String),
    /// The queue directory.
    #[error(transparent)]
    Outbox(#[from] outbox::OutboxError),
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Alerter {
    /// The alerter for `cfg`, its queues under `dir` (`state_dir/netd/alerts`).
    pub fn new(
        cfg: &havn_config::alerts::Alerts,
        dir: &Path,
        node: String,
        state: Arc<State>,
    ) -> Result<Self, AlertsError> {
        let mut endpoints = Vec::new();
        for e in &cfg.endpoints {
            let bad = |m: &str| AlertsError::Endpoint(e.name.clone(), m.to_string());
            let mut public_key = [0u8; 32];
            for (i, b) in public_key.iter_mut().enumerate() {
                *b = e
                    .public_key
                    .get(2 * i..2 * i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| bad("public_key is not 64 hex characters"))?;
            }
            let secret = match &e.secret {
                Some(s) => Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(s.trim_start_matches("whsec_"))
                        .map_err(|_| bad("secret is not whsec_ and base64"))?,
                ),
                None => None,
            };
            endpoints.push(Endpoint {
                outbox: outbox::Outbox::open(dir, &e.name, cfg.max_pending)?,
                name: e.name.clone(),
                url: e.url.clone(),
                public_key,
                secret,
            });
        }
        let seq = endpoints
            .iter()
            .map(|e| e.outbox.last_seq())
            .max()
            .unwrap_or(0);
        Ok(Self {
            inner: Arc::new(Inner {
                node,
                endpoints,
                repeat: Duration::from_secs(cfg.repeat_s),
                last: Mutex::new(HashMap::new()),
                // Ids stay unique across restarts: past every queued one and the clock.
                seq: AtomicU64::new(seq.max(unix_ms())),
                wake: Notify::new(),
                state,
            }),
        })
    }

    /// The configured endpoints.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.inner.endpoints
    }

    /// Raises an alert of `kind` (at most one per kind per `repeat_s`): logged, sealed
    /// to each endpoint, queued durably, and handed to the delivery tasks. Returns the
    /// `webhook-id`, or `None` when rate-limited.
    pub fn raise(&self, kind: &str, data: serde_json::Value) -> Option<String> {
        let i = &self.inner;
        {
            let mut last = i.last.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if last
                .get(kind)
                .is_some_and(|t| now.duration_since(*t) < i.repeat)
            {
                return None;
            }
            last.insert(kind.to_string(), now);
        }
        let seq = i.seq.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let id = format!("msg_{}_{seq}", &i.node[..i.node.len().min(16)]);
        i.state
            .metrics
            .alerts_raised
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(alert = kind, id = %id, data = %data, endpoints = i.endpoints.len(), "SLA alert raised");
        let plain = serde_json::json!({
            "type": kind,
            "id": id,
            "node": i.node,
            "unix_ms": unix_ms(),
            "data": data,
        });
        let plain = serde_json::to_vec(&plain).unwrap_or_default();
        for e in &i.endpoints {
            if e.outbox.is_disabled() {
                continue;
            }
            let body = match havn_payload::seal(&e.public_key, &plain) {
                Ok(env) => format!(
                    r#"{{"type":"havn.alert.sealed","sealed":"{}"}}"#,
                    base64::engine::general_purpose::STANDARD.encode(env)
                ),
                Err(err) => {
                    tracing::error!(endpoint = %e.name, error = %err, "cannot seal an alert");
                    continue;
                }
            };
            let p = outbox::Pending {
                id: id.clone(),
                kind: kind.to_string(),
                body,
                attempts: 0,
                next_ms: 0,
            };
            match e.outbox.put(seq, &p) {
                Ok(0) => {}
                Ok(n) => {
                    i.state
                        .metrics
                        .alerts_dropped
                        .fetch_add(n as u64, Ordering::Relaxed);
                    tracing::warn!(endpoint = %e.name, dropped = n, "alert queue full: the oldest dropped");
                }
                Err(err) => {
                    i.state
                        .metrics
                        .alerts_dropped
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(endpoint = %e.name, error = %err, "cannot queue an alert");
                }
            }
        }
        i.wake.notify_waiters();
        Some(id)
    }
}

/// Watches the timeout rate: every `every`, the share of jobs finished over the last
/// `window` that ran past their timeout.
pub async fn watch_timeouts(alerts: Alerter, cfg: havn_config::alerts::Alerts, every: Duration) {
    let window = Duration::from_secs(cfg.window_s);
    let mut samples: std::collections::VecDeque<(Instant, u64, u64)> = Default::default();
    let mut tick = tokio::time::interval(every);
    let metrics = &alerts.inner.state.metrics;
    loop {
        tick.tick().await;
        let finished =
            metrics.completed.load(Ordering::Relaxed) + metrics.failed.load(Ordering::Relaxed);
        let timed_out = metrics.timed_out.load(Ordering::Relaxed);
        let now = Instant::now();
        samples.push_back((now, finished, timed_out));
        while samples
            .front()
            .is_some_and(|(t, _, _)| now.duration_since(*t) > window)
        {
            samples.pop_front();
        }
        let Some(&(_, f0, t0)) = samples.front() else {
            continue;
        };
        let (df, dt) = (finished.saturating_sub(f0), timed_out.saturating_sub(t0));
        if df >= cfg.min_jobs.max(1) {
            let rate = dt as f64 / df as f64;
            if rate > cfg.timeout_rate {
                alerts.raise(
                    kind::TIMEOUT_RATE,
                    serde_json::json!({
                        "timeout_rate": rate,
                        "threshold": cfg.timeout_rate,
                        "jobs": df,
                        "timed_out": dt,
                        "window_s": cfg.window_s,
                    }),
                );
            }
        }
    }
}
