//! TPM2_MakeCredential in pure Rust, for enrolling an AK against an EK certificate.
//!
//! The verifier wraps a random credential to the EK (RSA-2048, default EK template:
//! nameAlg SHA-256, AES-128-CFB) bound to the AK's name; only a TPM holding that EK
//! *and* a loaded object with that name can recover it (TPM2_ActivateCredential).
//! A node that returns the credential proves its AK lives in the TPM the EK
//! certificate vouches for; record the AK name then (`Policy::enrolled_ak_name`).
//!
//! TPM 2.0 Part 1 §24 (credential protection), Part 3 TPM2_MakeCredential.

use crate::error::VerifyError;
use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use x509_cert::Certificate;

type HmacSha256 = Hmac<Sha256>;

/// What the verifier sends the node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CredentialChallenge {
    /// TPM2B_ID_OBJECT contents: `TPM2B_DIGEST(outer HMAC) ‖ encIdentity`.
    #[serde(with = "hex::serde")]
    pub id_object: Vec<u8>,
    /// TPM2B_ENCRYPTED_SECRET contents: the seed, RSA-OAEP(SHA-256, "IDENTITY\0") to the EK.
    #[serde(with = "hex::serde")]
    pub encrypted_secret: Vec<u8>,
}

fn mac(key: &[u8]) -> Result<HmacSha256, VerifyError> {
    <HmacSha256 as Mac>::new_from_slice(key).map_err(|_| VerifyError::Credential("HMAC key"))
}

/// KDFa (SP 800-108 counter mode, HMAC-SHA256), `bits` output bits.
pub fn kdfa(
    key: &[u8],
    label: &str,
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Result<Vec<u8>, VerifyError> {
    let bytes =
        usize::try_from(bits.div_ceil(8)).map_err(|_| VerifyError::Credential("KDF length"))?;
    let mut out = Vec::with_capacity(bytes + 32);
    let mut counter = 1u32;
    while out.len() < bytes {
        let mut m = mac(key)?;
        m.update(&counter.to_be_bytes());
        m.update(label.as_bytes());
        m.update(&[0]);
        m.update(context_u);
        m.update(context_v);
        m.update(&bits.to_be_bytes());
        let block: [u8; 32] = m.finalize().into_bytes().into();
        out.extend_from_slice(&block);
        counter = counter.wrapping_add(1);
    }
    out.truncate(bytes);
    Ok(out)
}

/// The EK's RSA public key from its certificate (RSA-2048 only).
pub fn ek_rsa_key(ek_cert: &Certificate) -> Result<rsa::RsaPublicKey, VerifyError> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::traits::PublicKeyParts;
    let spki = &ek_cert.tbs_certificate.subject_public_key_info;
    let bytes = spki
        .subject_public_key
        .as_bytes()
        .ok_or(VerifyError::Credential("EK public key"))?;
    let key = rsa::RsaPublicKey::from_pkcs1_der(bytes)
        .map_err(|_| VerifyError::Credential("EK is not RSA"))?;
    if key.size() != 256 {
        return Err(VerifyError::Credential("EK is not RSA-2048"));
    }
    Ok(key)
}

/// Wrap `credential` (≤ 32 bytes) for the AK named `ak_name`, to the EK in `ek_cert`.
pub fn make_credential(
    ek_cert: &Certificate,
    ak_name: &[u8],
    credential: &[u8],
) -> Result<CredentialChallenge, VerifyError> {
    if credential.is_empty() || credential.len() > 32 {
        return Err(VerifyError::Credential("credential must be 1..=32 bytes"));
    }
    let ek = ek_rsa_key(ek_cert)?;
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let encrypted_secret = ek
        .encrypt(
            &mut OsRng,
            rsa::Oaep::new_with_label::<Sha256, _>("IDENTITY\0"),
            &seed,
        )
        .map_err(|_| VerifyError::Credential("RSA-OAEP"))?;
    let sym = kdfa(&seed, "STORAGE", ak_name, &[], 128)?;
    let mut enc_identity = u16::try_from(credential.len())
        .unwrap_or(0)
        .to_be_bytes()
        .to_vec();
    enc_identity.extend_from_slice(credential);
    cfb_mode::Encryptor::<aes::Aes128>::new_from_slices(&sym, &[0u8; 16])
        .map_err(|_| VerifyError::Credential("AES key"))?
        .encrypt(&mut enc_identity);
    let hmac_key = kdfa(&seed, "INTEGRITY", &[], &[], 256)?;
    let mut m = mac(&hmac_key)?;
    m.update(&enc_identity);
    m.update(ak_name);
    let outer: [u8; 32] = m.finalize().into_bytes().into();
    let mut id_object = 32u16.to_be_bytes().to_vec();
    id_object.extend_from_slice(&outer);
    id_object.extend_from_slice(&enc_identity);
    Ok(CredentialChallenge {
        id_object,
        encrypted_secret,
    })
}

/// Compare the node's answer with the credential (constant time).
pub fn check_activation(expected: &[u8], returned: &[u8]) -> Result<(), VerifyError> {
    let same = expected.len() == returned.len()
        && expected
            .iter()
            .zip(returned)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(VerifyError::CredentialMismatch)
    }
}
