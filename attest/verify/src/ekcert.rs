//! EK certificate check against configured vendor CAs (trust anchors).
//!
//! Every certificate in the CA file is a trust anchor (put the issuing CA in it,
//! e.g. swtpm's `issuercert.pem`, plus its root if you like). The EK certificate
//! must be signed directly by one of them. Validity dates are not checked (TPM EK
//! certificates commonly run to 9999; TPMs have no trusted clock).

use crate::error::{ParseError, VerifyError};
use x509_cert::der::{Decode, DecodePem, Encode};
use x509_cert::Certificate;

const SHA256_RSA: &str = "1.2.840.113549.1.1.11";
const SHA384_RSA: &str = "1.2.840.113549.1.1.12";
const ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";

/// Parse every certificate in a PEM bundle (or a single DER certificate).
pub fn parse_certs(bytes: &[u8]) -> Result<Vec<Certificate>, ParseError> {
    let cert_err = |msg: String| ParseError::Certificate {
        what: "CA bundle",
        msg,
    };
    if bytes.first() == Some(&0x30) {
        return Ok(vec![
            Certificate::from_der(bytes).map_err(|e| cert_err(e.to_string()))?
        ]);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| cert_err(e.to_string()))?;
    let mut out = Vec::new();
    let end_marker = "-----END CERTIFICATE-----";
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let tail = rest.get(start..).unwrap_or("");
        let end = tail
            .find(end_marker)
            .ok_or_else(|| cert_err("unterminated PEM".into()))?;
        let block = tail.get(..end + end_marker.len()).unwrap_or("");
        out.push(Certificate::from_pem(block.as_bytes()).map_err(|e| cert_err(e.to_string()))?);
        rest = tail.get(end + end_marker.len()..).unwrap_or("");
    }
    if out.is_empty() {
        return Err(cert_err("no certificate found".into()));
    }
    Ok(out)
}

/// Parse one certificate from PEM or DER.
pub fn parse_cert(bytes: &[u8]) -> Result<Certificate, ParseError> {
    parse_certs(bytes)?
        .into_iter()
        .next()
        .ok_or(ParseError::Certificate {
            what: "EK certificate",
            msg: "empty".into(),
        })
}

fn verify_signed_by(cert: &Certificate, issuer: &Certificate) -> Result<(), VerifyError> {
    let issuer_name = issuer.tbs_certificate.subject.to_string();
    let bad = || VerifyError::EkCertSignature(issuer_name.clone());
    let tbs = cert.tbs_certificate.to_der().map_err(|_| bad())?;
    let sig = cert.signature.as_bytes().ok_or_else(bad)?;
    let spki = &issuer.tbs_certificate.subject_public_key_info;
    let key_bytes = spki.subject_public_key.as_bytes().ok_or_else(bad)?;
    let oid = cert.signature_algorithm.oid.to_string();
    match oid.as_str() {
        SHA256_RSA | SHA384_RSA => {
            use rsa::pkcs1::DecodeRsaPublicKey;
            use sha2::Digest;
            let key = rsa::RsaPublicKey::from_pkcs1_der(key_bytes).map_err(|_| bad())?;
            let res = if oid == SHA256_RSA {
                key.verify(
                    rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                    &sha2::Sha256::digest(&tbs),
                    sig,
                )
            } else {
                key.verify(
                    rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
                    &sha2::Sha384::digest(&tbs),
                    sig,
                )
            };
            res.map_err(|_| bad())
        }
        ECDSA_SHA256 => {
            use p256::ecdsa::signature::Verifier;
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes).map_err(|_| bad())?;
            let s = p256::ecdsa::Signature::from_der(sig).map_err(|_| bad())?;
            key.verify(&tbs, &s).map_err(|_| bad())
        }
        other => Err(VerifyError::EkCertAlgorithm(other.to_string())),
    }
}

/// Check that `ek_cert` was issued by one of `cas`; returns the issuer's subject.
pub fn verify_ek_cert(ek_cert: &Certificate, cas: &[Certificate]) -> Result<String, VerifyError> {
    let issuer = &ek_cert.tbs_certificate.issuer;
    let mut last_err = None;
    for ca in cas.iter().filter(|c| &c.tbs_certificate.subject == issuer) {
        match verify_signed_by(ek_cert, ca) {
            Ok(()) => return Ok(ca.tbs_certificate.subject.to_string()),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| VerifyError::EkCertUnknownIssuer(issuer.to_string())))
}
