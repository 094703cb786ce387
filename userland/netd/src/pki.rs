//! A development PKI (rcgen): one CA, a node server certificate, orchestrator and
//! validator client certificates, and for tests an expired client certificate and
//! a client certificate from another CA. Not for production keys.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Pair {
    /// Certificate PEM.
    pub cert: String,
    /// Private key PEM (PKCS#8).
    pub key: String,
}

/// Everything `havnctl pki init` makes.
#[derive(Debug, Clone)]
pub struct DevPki {
    /// The CA (signs everything below).
    pub ca: Pair,
    /// Server certificate for netd.
    pub node: Pair,
    /// Orchestrator client certificate (CN `orchestrator`).
    pub orchestrator: Pair,
    /// Validator client certificate (CN `validator`).
    pub validator: Pair,
    /// Operator client certificate (CN `operator`).
    pub operator: Pair,
    /// A receiver's server certificate (CN `receiver`, SANs `localhost`, `127.0.0.1`):
    /// an endpoint for heartbeats and SLA alerts, which netd reaches trusting this CA.
    pub receiver: Pair,
    /// A certificate of the same CA without the clientAuth usage, for tests.
    pub server_only: Pair,
    /// Expired orchestrator client certificate (same CA), for tests.
    pub expired: Pair,
    /// Client certificate from an unrelated CA, for tests.
    pub foreign: Pair,
}

/// PKI errors.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen failed.
    #[error("rcgen: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// Writing failed.
    #[error("write {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

fn ca(cn: &str) -> Result<(CertificateParams, KeyPair, Pair), PkiError> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name
        .push(DnType::OrganizationName, "Havn dev");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::days(1);
    p.not_after = now + Duration::days(3650);
    let cert = p.self_signed(&key)?;
    let pair = Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    };
    Ok((p, key, pair))
}

fn leaf(
    issuer: &Issuer<'_, &KeyPair>,
    cn: &str,
    sans: &[String],
    eku: &[ExtendedKeyUsagePurpose],
    validity: (OffsetDateTime, OffsetDateTime),
) -> Result<Pair, PkiError> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(sans.to_vec())?;
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name
        .push(DnType::OrganizationName, "Havn dev");
    p.extended_key_usages = eku.to_vec();
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.not_before = validity.0;
    p.not_after = validity.1;
    let cert = p.signed_by(&key, issuer)?;
    Ok(Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

impl DevPki {
    /// Makes a fresh PKI. `node_name` is the server's CN; `sans` are added to
    /// `localhost` and `127.0.0.1` on the server certificate.
    pub fn generate(node_name: &str, sans: &[String]) -> Result<Self, PkiError> {
        let (ca_params, ca_key, ca_pair) = ca("Havn dev CA")?;
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let now = OffsetDateTime::now_utc();
        let valid = (now - Duration::days(1), now + Duration::days(825));
        let mut server_sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        for s in sans {
            if !server_sans.contains(s) {
                server_sans.push(s.clone());
            }
        }
        let node = leaf(
            &issuer,
            node_name,
            &server_sans,
            // clientAuth too: netd presents this certificate when it POSTs heartbeats.
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            valid,
        )?;
        let client = &[ExtendedKeyUsagePurpose::ClientAuth];
        let orchestrator = leaf(
            &issuer,
            "orchestrator",
            &["orchestrator".into()],
            client,
            valid,
        )?;
        let validator = leaf(&issuer, "validator", &["validator".into()], client, valid)?;
        let operator = leaf(&issuer, "operator", &["operator".into()], client, valid)?;
        let receiver = leaf(
            &issuer,
            "receiver",
            &["localhost".into(), "127.0.0.1".into()],
            &[ExtendedKeyUsagePurpose::ServerAuth],
            valid,
        )?;
        let server_only = leaf(
            &issuer,
            "orchestrator",
            &["orchestrator".into()],
            &[ExtendedKeyUsagePurpose::ServerAuth],
            valid,
        )?;
        let expired = leaf(
            &issuer,
            "orchestrator-expired",
            &["orchestrator-expired".into()],
            client,
            (now - Duration::days(30), now - Duration::days(1)),
        )?;
        let (f_params, f_key, _) = ca("Some other CA")?;
        let f_issuer = Issuer::from_params(&f_params, &f_key);
        let foreign = leaf(
            &f_issuer,
            "orchestrator",
            &["orchestrator".into()],
            client,
            valid,
        )?;
        Ok(Self {
            ca: ca_pair,
            node,
            orchestrator,
            validator,
            operator,
            receiver,
            server_only,
            expired,
            foreign,
        })
    }

    /// Writes `ca.pem/ca.key, node.*, orchestrator.*, validator.*, operator.*, receiver.*` (and with
    /// `test_certs` also `expired.*`, `foreign.*` and `server-only.*`) into `dir`; keys
    /// are 0600.
    /// Returns the files written.
    pub fn write(&self, dir: &Path, test_certs: bool) -> Result<Vec<PathBuf>, PkiError> {
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut sets = vec![
            ("ca", &self.ca),
            ("node", &self.node),
            ("orchestrator", &self.orchestrator),
            ("validator", &self.validator),
            ("operator", &self.operator),
            ("receiver", &self.receiver),
        ];
        if test_certs {
            sets.push(("server-only", &self.server_only));
            sets.push(("expired", &self.expired));
            sets.push(("foreign", &self.foreign));
        }
        let mut out = Vec::new();
        for (name, pair) in sets {
            let c = dir.join(format!("{name}.pem"));
            write_file(&c, pair.cert.as_bytes(), 0o644)?;
            let k = dir.join(format!("{name}.key"));
            write_file(&k, pair.key.as_bytes(), 0o600)?;
            out.push(c);
            out.push(k);
        }
        Ok(out)
    }
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    // An existing file keeps its old mode under O_CREAT: set it explicitly.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    Ok(())
}
