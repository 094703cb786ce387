//! rustls configuration with the ring provider passed explicitly (FIELD-NOTES: an
//! implicit default provider panics when both ring and aws-lc-rs are linked).

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// TLS setup errors.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// PEM parse failure.
    #[error("{what}: bad PEM: {source}")]
    Pem {
        /// Which input.
        what: &'static str,
        /// Cause.
        source: rustls_pki_types::pem::Error,
    },
    /// No certificate in a PEM input.
    #[error("{0}: no certificate found")]
    Empty(&'static str),
    /// rustls refused the configuration.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    /// Client verifier could not be built.
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The crypto provider netd always uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a file into memory (TLS material is read once at start).
pub fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Parses all certificates in a PEM bundle.
pub fn certs(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let v = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { what, source })?;
    if v.is_empty() {
        return Err(TlsError::Empty(what));
    }
    Ok(v)
}

/// Parses one private key.
pub fn key(pem: &[u8], what: &'static str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|source| TlsError::Pem { what, source })
}

fn roots(ca_pem: &[u8], what: &'static str) -> Result<RootCertStore, TlsError> {
    let mut r = RootCertStore::empty();
    for c in certs(ca_pem, what)? {
        r.add(c)?;
    }
    Ok(r)
}

/// The mTLS server: client certificates must chain to `client_ca`.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: &[u8],
) -> Result<ServerConfig, TlsError> {
    let p = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(client_ca_pem, "client_ca")?),
        p.clone(),
    )
    .build()?;
    let mut cfg = ServerConfig::builder_with_provider(p)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(cert_pem, "tls_cert")?, key(key_pem, "tls_key")?)?;
    // gRPC (h2) and REST (http/1.1) share the port and this one client verifier; a
    // client that offers no ALPN gets REST.
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// An mTLS client trusting `ca_pem`; with `identity` = (cert chain PEM, key PEM)
/// it presents a client certificate, without it none (for tests of refusal).
/// It offers ALPN `http/1.1` (REST); [`client_config_h2`] offers `h2` (gRPC).
pub fn client_config(
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> Result<ClientConfig, TlsError> {
    client_config_alpn(ca_pem, identity, b"http/1.1")
}

/// [`client_config`] offering ALPN `h2`, for gRPC.
pub fn client_config_h2(
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> Result<ClientConfig, TlsError> {
    client_config_alpn(ca_pem, identity, b"h2")
}

fn client_config_alpn(
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
    alpn: &[u8],
) -> Result<ClientConfig, TlsError> {
    let b = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem, "ca")?);
    let mut cfg = match identity {
        Some((c, k)) => b.with_client_auth_cert(certs(c, "cert")?, key(k, "key")?)?,
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(cfg)
}

/// The peer's identity from its end-entity certificate: its one subject CN (walked by
/// structure, OID 2.5.4.3, never by splitting the printed name, where `O=a\,CN=x`
/// would read as CN `x`), else its first DNS SAN. A subject with several CNs is
/// `"ambiguous"`, one with neither `"unknown"`: neither holds a role.
pub fn peer_identity(cert: &CertificateDer<'_>) -> String {
    use x509_cert::der::asn1::{PrintableStringRef, Utf8StringRef};
    use x509_cert::der::oid::AssociatedOid;
    use x509_cert::der::Decode;
    const CN: x509_cert::der::oid::ObjectIdentifier =
        x509_cert::der::oid::ObjectIdentifier::new_unwrap("2.5.4.3");
    let Ok(c) = x509_cert::Certificate::from_der(cert.as_ref()) else {
        return "unparseable".into();
    };
    let mut cns = Vec::new();
    for rdn in c.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter().filter(|a| a.oid == CN) {
            let value = atv
                .value
                .decode_as::<Utf8StringRef<'_>>()
                .map(|s| s.as_str().to_string())
                .or_else(|_| {
                    atv.value
                        .decode_as::<PrintableStringRef<'_>>()
                        .map(|s| s.as_str().to_string())
                });
            match value {
                Ok(v) => cns.push(v),
                Err(_) => return "unparseable".into(),
            }
        }
    }
    match cns.len() {
        1 => return cns.remove(0),
        0 => {}
        _ => return "ambiguous".into(),
    }
    for ext in c.tbs_certificate.extensions.iter().flatten() {
        if ext.extn_id == x509_cert::ext::pkix::SubjectAltName::OID {
            if let Ok(san) =
                x509_cert::ext::pkix::SubjectAltName::from_der(ext.extn_value.as_bytes())
            {
                for n in san.0 {
                    if let x509_cert::ext::pkix::name::GeneralName::DnsName(d) = n {
                        return d.to_string();
                    }
                }
            }
        }
    }
    "unknown".into()
}

/// A TLS alert name for a handshake error, for logs.
pub fn alert_for(e: &std::io::Error) -> &'static str {
    use rustls::{CertificateError, Error};
    let Some(re) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) else {
        return "none (i/o)";
    };
    match re {
        Error::NoCertificatesPresented => "certificate_required",
        Error::InvalidCertificate(CertificateError::Expired)
        | Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
            "certificate_expired"
        }
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => "unknown_ca",
        Error::InvalidCertificate(CertificateError::BadSignature) => "decrypt_error",
        Error::InvalidCertificate(_) => "bad_certificate",
        Error::AlertReceived(_) => "alert_received",
        Error::PeerIncompatible(_) | Error::NoApplicationProtocol => "handshake_failure",
        _ => "other",
    }
}
