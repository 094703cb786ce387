use crate::common::*;
use havn_attest::{ekcert, wire, VerifyError};
use havn_attest_agent::testing::Swtpm;
use havn_attest_agent::{Agent, AgentConfig, AgentError};

#[test]
fn ak_is_restricted_p256_in_endorsement_and_stable_across_restart() {
    let mut n = node();
    let ak = n.agent.ak_public().unwrap();
    let parsed = wire::parse_ecc_public(&ak).unwrap();
    havn_attest::verify::check_ak(&parsed).unwrap();
    let name = n.agent.ak_name().unwrap();
    assert!(n
        .agent
        .ak_pem()
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    n.tpm.restart().unwrap();
    n.agent.reconnect().unwrap();
    assert_eq!(
        n.agent.ak_name().unwrap(),
        name,
        "AK re-derived identically after TPM restart"
    );
}

#[test]
fn ek_cert_chains_to_local_ca_and_unknown_ca_is_rejected() {
    let mut n = node();
    let pem = n
        .agent
        .ek_certificate_pem()
        .unwrap()
        .expect("swtpm_setup provisioned an EK cert");
    let cert = ekcert::parse_cert(pem.as_bytes()).unwrap();
    let cas = ekcert::parse_certs(&n.tpm.ca_bundle_pem().unwrap()).unwrap();
    let issuer = ekcert::verify_ek_cert(&cert, &cas).unwrap();
    assert!(issuer.contains("swtpm-localca"), "{issuer}");

    let other = Swtpm::start_fresh().unwrap();
    let other_cas = ekcert::parse_certs(&other.ca_bundle_pem().unwrap()).unwrap();
    let err = ekcert::verify_ek_cert(&cert, &other_cas).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::EkCertSignature(_) | VerifyError::EkCertUnknownIssuer(_)
        ),
        "{err:?}"
    );
}

#[test]
fn seal_pcr_set_of_only_resettable_pcrs_is_refused() {
    quiet();
    let mut cfg = AgentConfig::new(
        "swtpm:host=127.0.0.1,port=1",
        std::path::Path::new("/nonexistent"),
    );
    cfg.seal_pcrs = vec![16, 23];
    assert!(matches!(
        Agent::open(cfg.clone()),
        Err(AgentError::BadPcrSet(..))
    ));
    cfg.seal_pcrs = vec![];
    assert!(matches!(Agent::open(cfg), Err(AgentError::BadPcrSet(..))));
}

#[test]
fn bad_tcti_and_absent_tpm_are_errors_not_hangs() {
    quiet();
    let cfg = AgentConfig::new("nonsense", std::path::Path::new("/tmp/havn-no-tpm"));
    assert!(matches!(Agent::open(cfg), Err(AgentError::BadTcti(_))));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = AgentConfig::new(
        &format!("swtpm:host=127.0.0.1,port={port}"),
        std::path::Path::new("/tmp/havn-no-tpm"),
    );
    assert!(matches!(
        Agent::open(cfg),
        Err(AgentError::TpmUnavailable(_))
    ));
}

#[test]
fn credential_activation_binds_ak_to_ek() {
    use havn_attest::credential::{check_activation, make_credential};
    let mut n = node();
    let cert =
        ekcert::parse_cert(n.agent.ek_certificate_pem().unwrap().unwrap().as_bytes()).unwrap();
    let ak_name = n.agent.ak_name().unwrap();
    let secret = [0x5au8; 32];
    let ch = make_credential(&cert, &ak_name, &secret).unwrap();
    let answer = n
        .agent
        .activate_credential(&ch.id_object, &ch.encrypted_secret)
        .unwrap();
    check_activation(&secret, &answer).unwrap();
    assert_eq!(
        check_activation(&secret, &[0u8; 32]).unwrap_err(),
        VerifyError::CredentialMismatch
    );

    // Wrapped for another AK name: the TPM refuses (integrity check fails).
    let mut wrong_name = ak_name.clone();
    wrong_name[5] ^= 1;
    let ch = make_credential(&cert, &wrong_name, &secret).unwrap();
    assert!(n
        .agent
        .activate_credential(&ch.id_object, &ch.encrypted_secret)
        .is_err());

    // Wrapped to another TPM's EK: this TPM cannot recover it.
    let mut other = node_with(Swtpm::start_fresh().unwrap());
    let other_cert = ekcert::parse_cert(
        other
            .agent
            .ek_certificate_pem()
            .unwrap()
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let ch = make_credential(&other_cert, &ak_name, &secret).unwrap();
    assert!(n
        .agent
        .activate_credential(&ch.id_object, &ch.encrypted_secret)
        .is_err());
    // And the other TPM (holding that EK) cannot either: its AK has a different name.
    assert!(other
        .agent
        .activate_credential(&ch.id_object, &ch.encrypted_secret)
        .is_err());
}
