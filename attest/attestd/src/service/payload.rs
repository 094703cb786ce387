//! The node's payload key: an X25519 (HPKE) key pair made once per boot, kept sealed by
//! the TPM under the node key's PCR policy so a supervised restart of the daemons
//! within one boot keeps it, and replaced at the next boot. Its public half is bound
//! into every quote beside the node key; its private half goes to execd only (once
//! per start of attestd), which opens encrypted job inputs in memory. netd never holds
//! it.

use super::Service;
use havn_payload::PayloadKey;
use havn_proto::ipc::{ExecdResponse, RemoteError, Secret32};
use havn_proto::PubKey32;

/// The sealed secret that holds the payload key: `boot id ‖ 0x00 ‖ private key`.
pub const PAYLOAD_KEY_SECRET: &str = "payload-key";

/// Where Linux names the current boot.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// The payload side of attestd's state.
#[derive(Default)]
pub(super) struct PayloadKeys {
    /// This boot's key, once unsealed or made.
    pub key: Option<PayloadKey>,
    /// Whether execd already got it in this start.
    pub served: bool,
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string(BOOT_ID)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl Service {
    /// This boot's payload key: unsealed when sealed in this boot, else made and sealed.
    pub(super) fn load_or_create_payload_key(&mut self) {
        if self.payload.key.is_some() {
            return;
        }
        let boot = boot_id();
        let sealed = match self.agent.unseal_secret(PAYLOAD_KEY_SECRET) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot unseal the payload key: no encrypted payloads");
                return;
            }
        };
        if let (Some(bytes), Some(b)) = (&sealed, &boot) {
            let prefix = [b.as_bytes(), &[0u8]].concat();
            if let Some(sk) = bytes.strip_prefix(prefix.as_slice()) {
                match PayloadKey::from_secret(sk) {
                    Ok(k) => {
                        tracing::info!(payload_key = %PubKey32(k.public()), "payload key of this boot unsealed");
                        self.payload.key = Some(k);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "sealed payload key unreadable: replacing it")
                    }
                }
            }
        }
        let k = PayloadKey::generate();
        match &boot {
            Some(b) => {
                let mut blob = zeroize::Zeroizing::new([b.as_bytes(), &[0u8]].concat());
                blob.extend_from_slice(&k.secret_bytes());
                if let Err(e) = self.agent.seal_secret(PAYLOAD_KEY_SECRET, blob.as_slice()) {
                    tracing::warn!(error = %e, "cannot seal the payload key: it lasts until attestd restarts");
                }
            }
            None => tracing::warn!(
                "no boot id ({BOOT_ID}): the payload key lasts until attestd restarts"
            ),
        }
        tracing::info!(payload_key = %PubKey32(k.public()), "payload key made for this boot");
        self.payload.key = Some(k);
    }

    /// The payload key's public half (zero while there is none).
    pub(super) fn payload_public(&self) -> [u8; 32] {
        self.payload
            .key
            .as_ref()
            .map(PayloadKey::public)
            .unwrap_or_default()
    }

    /// execd's request for the private half: once per start, and only with the gate
    /// open.
    pub(super) fn payload_key_for_execd(&mut self) -> ExecdResponse {
        if let Err(reason) = self.gate() {
            tracing::warn!(%reason, "payload key refused: gate closed");
            return ExecdResponse::Error(RemoteError::GateClosed);
        }
        if self.payload.served {
            tracing::warn!("execd asked for the payload key twice: refused");
            return ExecdResponse::Error(RemoteError::NotPermitted);
        }
        let Some(k) = &self.payload.key else {
            return ExecdResponse::Error(RemoteError::NotYetAvailable);
        };
        let mut secret = [0u8; 32];
        secret.copy_from_slice(&k.secret_bytes());
        self.payload.served = true;
        tracing::info!("payload key handed to execd in memory");
        ExecdResponse::PayloadKey {
            secret: Secret32(secret),
            public: PubKey32(k.public()),
        }
    }
}
