//! SLA alerts as Standard Webhooks: attestd signs an alert netd assembled with the
//! node key (`v1a`, Ed25519), over `{id}.{unix_s}.{body}` with its own clock, and only
//! a sealed alert body, so a compromised netd cannot backdate an alert, sign another
//! message shape, or have the node key vouch for plaintext claims.

use super::{unix_ms, Service};
use havn_proto::ipc::{
    is_webhook_id, webhook_content, NetdAttestResponse, RemoteError, WebhookToSign,
};
use havn_proto::Sig64;

/// The prefix every sealed alert body has.
pub const SEALED_PREFIX: &[u8] = br#"{"type":"havn.alert.sealed","sealed":""#;

/// Whether `body` is exactly `{"type":"havn.alert.sealed","sealed":"<base64>"}`.
pub fn is_sealed_alert(body: &[u8]) -> bool {
    let Some(rest) = body.strip_prefix(SEALED_PREFIX) else {
        return false;
    };
    let Some(b64) = rest.strip_suffix(br#""}"#) else {
        return false;
    };
    !b64.is_empty()
        && b64
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

impl Service {
    /// Signs a sealed alert for delivery.
    pub(super) fn sign_webhook(&mut self, w: WebhookToSign) -> NetdAttestResponse {
        if !is_webhook_id(&w.id) || !is_sealed_alert(&w.body) {
            tracing::warn!(id = %w.id, "webhook refused: not a sealed alert with a msg_ id");
            return NetdAttestResponse::Error(RemoteError::NotPermitted);
        }
        let Some(key) = self.key.as_ref() else {
            return NetdAttestResponse::Error(RemoteError::GateClosed);
        };
        let unix_s = unix_ms() / 1000;
        match key.sign_webhook(&webhook_content(&w.id, unix_s, &w.body)) {
            Some(sig) => NetdAttestResponse::Webhook {
                unix_s,
                signature: Sig64(sig),
            },
            None => NetdAttestResponse::Error(RemoteError::NotPermitted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sealed_alert_bodies_pass() {
        assert!(is_sealed_alert(
            br#"{"type":"havn.alert.sealed","sealed":"SEFWTkVOQzE="}"#
        ));
        for bad in [
            &br#"{"type":"havn.alert.sealed","sealed":""}"#[..],
            br#"{"type":"havn.alert","sealed":"QQ=="}"#,
            br#"{"type":"havn.alert.sealed","sealed":"QQ==","x":1}"#,
            br#"{"type":"havn.alert.sealed","sealed":"a\"b"}"#,
            b"plain",
        ] {
            assert!(!is_sealed_alert(bad), "{}", String::from_utf8_lossy(bad));
        }
    }
}
