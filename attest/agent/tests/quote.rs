use crate::common::*;
use havn_attest::{verify_quote, Evidence, GoldenManifest, Policy, VerifyError};
use havn_attest_agent::testing::Swtpm;

fn quoted() -> (Node, Evidence) {
    let mut n = node();
    let key = n.agent.create_node_key().unwrap();
    for i in 0..3 {
        n.agent
            .extend(
                14,
                "binary",
                &format!("/usr/bin/b{i}"),
                format!("binary {i}").as_bytes(),
            )
            .unwrap();
    }
    n.agent
        .extend(15, "config", "/etc/havn.toml", b"config")
        .unwrap();
    let q = n
        .agent
        .quote(NONCE, &key.public(), &havn_attest::synth::PAYLOAD_KEY)
        .unwrap();
    let pem = n.agent.ek_certificate_pem().unwrap();
    let ev = q.to_evidence(n.agent.event_log(), key.public(), pem);
    (n, ev)
}

#[test]
fn quote_verifies_with_event_log_ek_cert_and_golden() {
    let (n, ev) = quoted();
    let cas = havn_attest::ekcert::parse_certs(&n.tpm.ca_bundle_pem().unwrap()).unwrap();
    let golden = GoldenManifest::from_json(
        format!(
            r#"{{"pcrs": {{"0": {{"sha256": "{}", "policy": "enforce"}}, "1": {{"sha256": "{}", "policy": "warn"}}}},
                "events": [{{"pcr": 15, "digest": "{}", "description": "config", "policy": "enforce"}}], "log_pcrs": [14, 15]}}"#,
            hex::encode([0u8; 32]),
            hex::encode([1u8; 32]),
            hex::encode(ev.events[3].digest)
        )
        .as_bytes(),
    )
    .unwrap();
    let v = verify_quote(
        &ev,
        NONCE,
        &Policy {
            golden: Some(golden),
            ek_cas: Some(cas),
            ..Policy::default()
        },
    )
    .unwrap();
    assert_eq!(v.events_replayed, 4);
    assert_eq!(v.warnings.len(), 1, "PCR 1 warn-level mismatch reported");
    assert!(matches!(
        v.warnings[0],
        VerifyError::GoldenPcr { pcr: 1, .. }
    ));
    assert!(v.ek_issuer.is_some());
    assert!(
        v.clock.reset_count > 0 || v.clock.restart_count == 0,
        "endorsement AK: real counters"
    );

    // Enforced golden mismatch rejects.
    let golden = GoldenManifest::from_json(
        format!(
            r#"{{"pcrs": {{"14": {{"sha256": "{}", "policy": "enforce"}}}}}}"#,
            hex::encode([0u8; 32])
        )
        .as_bytes(),
    )
    .unwrap();
    let err = verify_quote(
        &ev,
        NONCE,
        &Policy {
            golden: Some(golden),
            ..Policy::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, VerifyError::GoldenPcr { pcr: 14, .. }),
        "{err}"
    );
}

#[test]
fn each_bad_input_is_rejected_with_its_own_error() {
    let (_n, ev) = quoted();
    let p = Policy {
        log_pcrs: vec![14, 15],
        ..Policy::default()
    };
    verify_quote(&ev, NONCE, &p).unwrap();

    // Tampered quote bytes (clock byte flipped): signature fails.
    let mut bad = ev.clone();
    bad.attest[60] ^= 1;
    assert_eq!(
        verify_quote(&bad, NONCE, &p).unwrap_err(),
        VerifyError::BadSignature
    );

    // Tampered magic: parse error names the magic.
    let mut bad = ev.clone();
    bad.attest[0] ^= 1;
    assert!(matches!(
        verify_quote(&bad, NONCE, &p),
        Err(VerifyError::Parse(havn_attest::ParseError::BadMagic(_)))
    ));

    // Wrong nonce.
    assert_eq!(
        verify_quote(&ev, b"another-nonce-xyz", &p).unwrap_err(),
        VerifyError::ExtraDataMismatch
    );

    // Different node key claimed.
    let mut bad = ev.clone();
    bad.node_pubkey[0] ^= 1;
    assert_eq!(
        verify_quote(&bad, NONCE, &p).unwrap_err(),
        VerifyError::ExtraDataMismatch
    );

    // PCR value that does not match the digest.
    let mut bad = ev.clone();
    bad.pcrs.get_mut(&3).unwrap().0[0] ^= 1;
    assert_eq!(
        verify_quote(&bad, NONCE, &p).unwrap_err(),
        VerifyError::PcrDigestMismatch
    );

    // A PCR dropped from the supplied set.
    let mut bad = ev.clone();
    bad.pcrs.remove(&3);
    assert!(matches!(
        verify_quote(&bad, NONCE, &p),
        Err(VerifyError::PcrSelectionMismatch { .. })
    ));

    // Truncated event log (last event dropped).
    let mut bad = ev.clone();
    bad.events.pop();
    assert!(matches!(
        verify_quote(&bad, NONCE, &p),
        Err(VerifyError::EventLogReplay { pcr: 15, .. })
    ));

    // Without log_pcrs, dropping every event of PCR 15 goes unnoticed by replay alone.
    assert!(verify_quote(&bad, NONCE, &Policy::default()).is_ok());

    // Truncated head (first event dropped): sequence gap.
    let mut bad = ev.clone();
    bad.events.remove(0);
    assert!(matches!(
        verify_quote(&bad, NONCE, &p),
        Err(VerifyError::EventLogSequence { index: 0, seq: 1 })
    ));

    // Reordered events (seq renumbered so only the hash chain catches it).
    let mut bad = ev.clone();
    bad.events.swap(0, 1);
    for (i, e) in bad.events.iter_mut().enumerate() {
        e.seq = i as u64;
    }
    assert!(matches!(
        verify_quote(&bad, NONCE, &p),
        Err(VerifyError::EventLogReplay { pcr: 14, .. })
    ));

    // Reordered without renumbering: sequence check.
    let mut bad = ev.clone();
    bad.events.swap(0, 1);
    assert!(matches!(
        verify_quote(&bad, NONCE, &p),
        Err(VerifyError::EventLogSequence { .. })
    ));

    // Enrolled AK pinned: a different enrolled name is refused.
    let pinned = Policy {
        enrolled_ak_name: Some(vec![0; 34]),
        ..Policy::default()
    };
    assert_eq!(
        verify_quote(&ev, NONCE, &pinned).unwrap_err(),
        VerifyError::AkNotEnrolled
    );

    // Missing EK cert when a CA is configured.
    let mut bad = ev.clone();
    bad.ek_cert_pem = None;
    let with_ca = Policy {
        ek_cas: Some(vec![]),
        ..Policy::default()
    };
    assert_eq!(
        verify_quote(&bad, NONCE, &with_ca).unwrap_err(),
        VerifyError::EkCertMissing
    );
}

#[test]
fn swapped_ak_from_another_tpm_is_rejected() {
    let (_n, ev) = quoted();
    let mut other = node_with(Swtpm::start_fresh().unwrap());
    let other_ak = other.agent.ak_public().unwrap();
    assert_ne!(other_ak, ev.ak_public);
    let mut bad = ev.clone();
    bad.ak_public = other_ak;
    assert_eq!(
        verify_quote(&bad, NONCE, &Policy::default()).unwrap_err(),
        VerifyError::BadSignature
    );

    // An AK with fixedTPM cleared (attributes tampered) is refused before the signature.
    let mut bad = ev.clone();
    bad.ak_public[2 + 4 + 3] &= !0x02; // objectAttributes low byte: fixedTPM
    assert!(matches!(
        verify_quote(&bad, NONCE, &Policy::default()),
        Err(VerifyError::AkAttributes {
            problem: "fixedTPM not set",
            ..
        })
    ));
}
