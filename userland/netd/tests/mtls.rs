//! Mutual TLS: a client certificate from the configured CA is required.

use crate::common::*;
use havn_netd::client::MtlsClient;
use havn_proto::ComputeClass;
use std::time::Duration;

async fn try_health(client: &MtlsClient, port: u16) -> Result<u16, String> {
    let mut c = client
        .connect("127.0.0.1", port)
        .await
        .map_err(|e| e.to_string())?;
    c.get("/health")
        .await
        .map(|r| r.status)
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_client_is_served_and_bad_clients_are_refused() {
    let node = start_node(Cfg::default(), ComputeClass::S, Duration::ZERO).await;
    let port = node.running.local_addr.port();
    let p = &pki().0;
    let ca = p.ca.cert.as_bytes();

    assert_eq!(try_health(&orchestrator(), port).await, Ok(200));
    let validator = MtlsClient::from_pem(
        ca,
        Some((p.validator.cert.as_bytes(), p.validator.key.as_bytes())),
    )
    .unwrap();
    assert_eq!(try_health(&validator, port).await, Ok(200));

    let none = MtlsClient::from_pem(ca, None).unwrap();
    let foreign = MtlsClient::from_pem(
        ca,
        Some((p.foreign.cert.as_bytes(), p.foreign.key.as_bytes())),
    )
    .unwrap();
    let expired = MtlsClient::from_pem(
        ca,
        Some((p.expired.cert.as_bytes(), p.expired.key.as_bytes())),
    )
    .unwrap();
    let server_only = MtlsClient::from_pem(
        ca,
        Some((p.server_only.cert.as_bytes(), p.server_only.key.as_bytes())),
    )
    .unwrap();
    for (what, c) in [
        ("no cert", none),
        ("wrong CA", foreign),
        ("expired", expired),
        ("no clientAuth usage", server_only),
    ] {
        let r = try_health(&c, port).await;
        assert!(r.is_err(), "{what}: expected a TLS refusal, got {r:?}");
    }
    // The server counted the four refusals (its handshake task may record the last
    // one just after our client saw the alert: allow it a moment).
    let mut c = operator().connect("127.0.0.1", port).await.unwrap();
    let mut m = String::new();
    for _ in 0..50 {
        m = c.get("/metrics").await.unwrap().text();
        if m.contains("havn_netd_tls_refused_total 4") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(m.contains("havn_netd_tls_refused_total 4"), "{m}");
}

#[test]
fn peer_identity_is_the_subject_cn() {
    let p = &pki().0;
    let der = havn_netd::tls::certs(p.orchestrator.cert.as_bytes(), "t").unwrap();
    assert_eq!(havn_netd::tls::peer_identity(&der[0]), "orchestrator");
}

#[test]
fn pki_keys_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let d = &pki().1;
    for f in [
        "ca.key",
        "node.key",
        "orchestrator.key",
        "validator.key",
        "operator.key",
        "expired.key",
    ] {
        let mode = std::fs::metadata(d.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
}

#[test]
fn identity_is_read_by_structure_not_from_the_printed_name() {
    use rcgen::{CertificateParams, DnType, KeyPair};
    let cert = |cn: Option<&str>, org: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::OrganizationName, org);
        if let Some(cn) = cn {
            p.distinguished_name.push(DnType::CommonName, cn);
        }
        let key = KeyPair::generate().unwrap();
        let c = p.self_signed(&key).unwrap();
        rustls::pki_types::CertificateDer::from(c.der().to_vec())
    };
    // An organisation whose name embeds ",CN=validator" does not make its holder one.
    assert_eq!(
        havn_netd::tls::peer_identity(&cert(Some("mallory"), "a,CN=validator")),
        "mallory"
    );
    assert_eq!(
        havn_netd::tls::peer_identity(&cert(None, "a,CN=validator")),
        "unknown"
    );
}
