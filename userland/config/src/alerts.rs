//! `[alerts]`: SLA alerts as Standard Webhooks. netd watches its own SLAs and sends each
//! alert to every endpoint here, its body sealed (HPKE) to the endpoint's public key and
//! signed by the node key (`v1a`, Ed25519) through attestd; with `secret` also a `v1`
//! HMAC signature. Deliveries are durable (they survive a netd restart), retried on the
//! Standard Webhooks schedule, and bounded per endpoint; a `410` disables an endpoint.
//!
//! ```toml
//! [alerts]
//! admission_ms = 400          # a job whose admission took longer raises an alert
//! timeout_rate = 0.02         # ... as does a timeout rate above 2 % over window_s
//! [[alerts.endpoints]]
//! name = "ops"
//! url = "https://ops.example:9443/havn"       # trusted through netd.client_ca
//! public_key = "<64 hex: the receiver's X25519 key, havnctl alerts keygen>"
//! secret = "whsec_<base64>"                    # optional: adds a v1 HMAC signature
//! ```

use serde::Deserialize;

/// `[alerts]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alerts {
    /// Where alerts go (none: alerts are only logged).
    #[serde(default)]
    pub endpoints: Vec<AlertEndpoint>,
    /// Queue admission above this many ms raises `sla.admission_latency`.
    #[serde(default = "default_admission_ms")]
    pub admission_ms: u64,
    /// A share of finished jobs that hit their timeout above this, over `window_s`,
    /// raises `sla.timeout_rate`.
    #[serde(default = "default_timeout_rate")]
    pub timeout_rate: f64,
    /// The window of the timeout rate, in seconds.
    #[serde(default = "default_window_s")]
    pub window_s: u64,
    /// Fewest finished jobs in the window before the timeout rate is judged.
    #[serde(default = "default_min_jobs")]
    pub min_jobs: u64,
    /// One alert of a kind per this many seconds at most.
    #[serde(default = "default_repeat_s")]
    pub repeat_s: u64,
    /// Seconds between delivery attempts (the Standard Webhooks schedule: now, 5 s,
    /// 5 min, 30 min, 2 h, 5 h, 10 h, 10 h); after the last an alert is dropped.
    #[serde(default = "default_retry_s")]
    pub retry_s: Vec<u64>,
    /// Most undelivered alerts kept per endpoint (the oldest go first).
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
}

impl Default for Alerts {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            admission_ms: default_admission_ms(),
            timeout_rate: default_timeout_rate(),
            window_s: default_window_s(),
            min_jobs: default_min_jobs(),
            repeat_s: default_repeat_s(),
            retry_s: default_retry_s(),
            max_pending: default_max_pending(),
        }
    }
}

/// `[[alerts.endpoints]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertEndpoint {
    /// A short name (`[a-z0-9-]`, 1–32): the queue directory and the log's label.
    pub name: String,
    /// `https://host:port/path`; its certificate must chain to `netd.client_ca`.
    pub url: String,
    /// The receiver's X25519 public key (64 hex): alert bodies are sealed to it.
    pub public_key: String,
    /// A Standard Webhooks secret (`whsec_` + base64): adds a `v1` HMAC signature
    /// beside the node key's `v1a`, for receivers whose library checks only `v1`.
    #[serde(default)]
    pub secret: Option<String>,
}

fn default_admission_ms() -> u64 {
    400
}
fn default_timeout_rate() -> f64 {
    0.02
}
fn default_window_s() -> u64 {
    300
}
fn default_min_jobs() -> u64 {
    20
}
fn default_repeat_s() -> u64 {
    300
}
fn default_retry_s() -> Vec<u64> {
    vec![0, 5, 300, 1800, 7200, 18000, 36000, 36000]
}
fn default_max_pending() -> usize {
    1000
}

impl Alerts {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.timeout_rate) {
            return Err(format!(
                "alerts.timeout_rate must be within 0 and 1, got {}",
                self.timeout_rate
            ));
        }
        if self.window_s == 0 || self.retry_s.is_empty() || self.max_pending == 0 {
            return Err(
                "alerts.window_s, alerts.retry_s and alerts.max_pending must not be zero or empty"
                    .into(),
            );
        }
        let mut names = std::collections::BTreeSet::new();
        for e in &self.endpoints {
            let n = &e.name;
            if n.is_empty()
                || n.len() > 32
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(format!(
                    "alerts.endpoints name {n:?} must be 1-32 of [a-z0-9-]"
                ));
            }
            if !names.insert(n.as_str()) {
                return Err(format!("alerts.endpoints name {n:?} is used twice"));
            }
            if !e.url.starts_with("https://") {
                return Err(format!(
                    "alerts.endpoints {n}: url {:?} must be https://",
                    e.url
                ));
            }
            if e.public_key.len() != 64 || !e.public_key.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "alerts.endpoints {n}: public_key must be 64 hex characters (havnctl alerts keygen)"
                ));
            }
            if let Some(s) = &e.secret {
                let b64 = s.strip_prefix("whsec_").unwrap_or("");
                if b64.is_empty()
                    || !b64
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
                {
                    return Err(format!(
                        "alerts.endpoints {n}: secret must be whsec_ and base64"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<Alerts, String> {
        let a: Alerts = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        a.validate().map(|()| a)
    }

    const GOOD: &str = r#"
[[endpoints]]
name = "ops"
url = "https://127.0.0.1:9443/havn"
public_key = "4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"#;

    #[test]
    fn defaults_are_the_spec_and_bad_endpoints_are_refused_by_name() {
        let a = parse(GOOD).unwrap();
        assert_eq!(
            (a.admission_ms, a.timeout_rate, a.window_s),
            (400, 0.02, 300)
        );
        assert_eq!(a.retry_s, [0, 5, 300, 1800, 7200, 18000, 36000, 36000]);
        for (bad, why) in [
            (GOOD.replace("https://", "http://"), "https://"),
            (GOOD.replace("4310ee", "4310"), "64 hex"),
            (GOOD.replace("whsec_", ""), "whsec_"),
            (GOOD.replace("\"ops\"", "\"Ops!\""), "[a-z0-9-]"),
            (format!("{GOOD}{GOOD}"), "used twice"),
            (format!("timeout_rate = 1.5\n{GOOD}"), "timeout_rate"),
            (format!("retry_s = []\n{GOOD}"), "retry_s"),
        ] {
            let e = parse(&bad).unwrap_err();
            assert!(e.contains(why), "{why}: {e}");
        }
        assert!(parse("bogus = 1").unwrap_err().contains("unknown field"));
    }
}
