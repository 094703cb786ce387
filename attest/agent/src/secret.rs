//! Secrets kept on disk only sealed by the TPM (netd's TLS key, and the libp2p key
//! the mesh adds): `<state_dir>/<name>.sealed.json`.
//!
//! A secret can be longer than a TPM sealed object holds (128 bytes), so it is
//! enveloped: a fresh 32-byte wrap key is sealed to this TPM (under the SRK, with no
//! PCR policy: a node whose gate is closed still serves TLS, read-only), and the
//! secret is encrypted under it with ChaCha20-Poly1305 (the secret's name is the
//! associated data). Unseal runs in a session salted to the SRK with response
//! encryption, so the wrap key never crosses the TPM bus in the clear.

use crate::error::{io, tpm, AgentError};
use crate::tpm::{
    flush_session, load_sealed, read_json, salted_session, seal_data, sealed_template, write_json,
    Agent, Crypt,
};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tss_esapi::{constants::SessionType, handles::ObjectHandle};
use zeroize::Zeroizing;

/// Longest secret accepted (a PEM private key is well under this).
pub const MAX_SECRET: usize = 16 * 1024;

/// The on-disk form.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SealedSecret {
    version: u32,
    /// TPM2B_PRIVATE of the sealed wrap key.
    #[serde(with = "hex::serde")]
    private: Vec<u8>,
    /// Marshalled TPM2B_PUBLIC of the sealed wrap key.
    #[serde(with = "hex::serde")]
    public: Vec<u8>,
    #[serde(with = "hex::serde")]
    nonce: Vec<u8>,
    /// ChaCha20-Poly1305 ciphertext and tag.
    #[serde(with = "hex::serde")]
    ciphertext: Vec<u8>,
}

fn check_name(name: &str) -> Result<(), AgentError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(AgentError::State {
            path: name.into(),
            msg: "a secret's name is 1-64 of [A-Za-z0-9_-]".into(),
        })
    }
}

impl Agent {
    fn secret_path(&self, name: &str) -> PathBuf {
        self.config().state_dir.join(format!("{name}.sealed.json"))
    }

    /// Whether a secret of this name is sealed here.
    pub fn has_secret(&self, name: &str) -> bool {
        check_name(name).is_ok() && self.secret_path(name).exists()
    }

    /// Seals `secret` under `name` (replacing any earlier one).
    pub fn seal_secret(&mut self, name: &str, secret: &[u8]) -> Result<(), AgentError> {
        check_name(name)?;
        let path = self.secret_path(name);
        if secret.len() > MAX_SECRET {
            return Err(AgentError::State {
                path: path.display().to_string(),
                msg: format!("secret of {} bytes exceeds {MAX_SECRET}", secret.len()),
            });
        }
        let mut wrap = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(wrap.as_mut()).map_err(|e| AgentError::Random(e.to_string()))?;
        let mut nonce = [0u8; 12];
        getrandom::getrandom(&mut nonce).map_err(|e| AgentError::Random(e.to_string()))?;
        let cipher = ChaCha20Poly1305::new(Key::from_slice(wrap.as_ref()));
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| AgentError::State {
                path: path.display().to_string(),
                msg: "encryption failed".into(),
            })?;
        let (private, public) = self.with(|c| {
            let template = sealed_template(None).map_err(tpm("secret template"))?;
            seal_data(c, template, wrap.as_ref(), "seal secret (create)")
        })?;
        write_json(
            &path,
            &SealedSecret {
                version: 1,
                private,
                public,
                nonce: nonce.to_vec(),
                ciphertext,
            },
        )
    }

    /// Unseals the secret `name`; `None` if none is sealed here. A blob from another TPM,
    /// or one altered on disk, is an error.
    pub fn unseal_secret(&mut self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, AgentError> {
        check_name(name)?;
        let path = self.secret_path(name);
        let Some(blob) = read_json::<SealedSecret>(&path)? else {
            return Ok(None);
        };
        let bad = |msg: &str| AgentError::State {
            path: path.display().to_string(),
            msg: msg.into(),
        };
        if blob.version != 1 || blob.nonce.len() != 12 {
            return Err(bad("unknown sealed secret format"));
        }
        let wrap: Zeroizing<Vec<u8>> = self.with(|c| {
            let obj = load_sealed(c, &blob.private, &blob.public)?;
            let res = salted_session(&mut c.ctx, c.srk, SessionType::Hmac, Crypt::Response)
                .and_then(|session| {
                    let r = c
                        .ctx
                        .execute_with_session(Some(session), |ctx| {
                            ctx.unseal(ObjectHandle::from(obj))
                        })
                        .map_err(AgentError::Unseal)
                        .map(|d| Zeroizing::new(d.value().to_vec()));
                    flush_session(&mut c.ctx, session);
                    r
                });
            let _ = c.ctx.flush_context(ObjectHandle::from(obj));
            res
        })?;
        if wrap.len() != 32 {
            return Err(bad("the sealed wrap key is not 32 bytes"));
        }
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&wrap));
        let plain = cipher
            .decrypt(
                Nonce::from_slice(&blob.nonce),
                Payload {
                    msg: &blob.ciphertext,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| {
                bad("the sealed secret does not decrypt (altered, or sealed under another name)")
            })?;
        Ok(Some(Zeroizing::new(plain)))
    }
}

/// Opens `path` (for writing with `write`) refusing a symlink (`O_NOFOLLOW`), anything
/// but a regular file, and a file with other hard links: what is read here and later
/// destroyed must be this file alone, never what a link points at.
fn open_single_link(path: &std::path::Path, write: bool) -> Result<std::fs::File, AgentError> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io(path))?;
    let meta = f.metadata().map_err(io(path))?;
    if !meta.is_file() || meta.nlink() != 1 {
        return Err(AgentError::State {
            path: path.display().to_string(),
            msg: "must be a regular file with one link (not a symlink or hard link): it is destroyed once sealed".into(),
        });
    }
    Ok(f)
}

/// Reads a plaintext secret file that is about to be sealed: a regular file with one
/// link, not followed through a symlink, at most `max` bytes (what is destroyed after
/// sealing must be this file alone, never the target of a link).
pub fn read_plaintext(
    path: &std::path::Path,
    max: usize,
) -> Result<Zeroizing<Vec<u8>>, AgentError> {
    use std::io::Read;
    let mut f = open_single_link(path, false)?;
    let len = f.metadata().map_err(io(path))?.len();
    if len > max as u64 {
        return Err(AgentError::State {
            path: path.display().to_string(),
            msg: format!("{len} bytes, more than the {max} a secret may have"),
        });
    }
    let mut out = Zeroizing::new(Vec::new());
    f.read_to_end(&mut out).map_err(io(path))?;
    Ok(out)
}

/// Overwrites a plaintext secret file with zeros, syncs, and removes it (after it was
/// sealed: the only copy on disk is then the sealed one). Refuses a symlink or a file
/// with other hard links (it would zero what they point at).
pub fn destroy_plaintext(path: &std::path::Path) -> Result<(), AgentError> {
    use std::io::Write;
    {
        let mut f = open_single_link(path, true)?;
        let len = f.metadata().map_err(io(path))?.len();
        f.write_all(&vec![0u8; usize::try_from(len).unwrap_or(0)])
            .map_err(io(path))?;
        f.sync_all().map_err(io(path))?;
    }
    std::fs::remove_file(path).map_err(io(path))?;
    crate::fsutil::sync_dir(path.parent().unwrap_or(std::path::Path::new(".")))
}
