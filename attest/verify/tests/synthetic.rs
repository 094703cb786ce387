use havn_attest::synth::{self, SoftAk};
use havn_attest::{
    evidence_dir, tpm2_files, verify_quote, wire, GoldenManifest, Policy, VerifyError,
};

const NONCE: &[u8] = b"nonce-0123456789";

fn ak(seed: u8) -> SoftAk {
    SoftAk::from_seed([seed; 32]).unwrap()
}

#[test]
fn synthetic_quote_verifies_and_tampering_is_caught() {
    let ev = synth::evidence(&ak(7), NONCE, [9u8; 32], 20);
    let p = Policy {
        log_pcrs: (8..15).collect(),
        ..Policy::default()
    };
    let v = verify_quote(&ev, NONCE, &p).unwrap();
    assert_eq!(v.events_replayed, 20);
    assert!(v.to_string().starts_with("VALID "));

    let mut bad = ev.clone();
    bad.signature = ak(8).sign(&bad.attest);
    assert_eq!(
        verify_quote(&bad, NONCE, &p).unwrap_err(),
        VerifyError::BadSignature
    );

    let mut bad = ev.clone();
    bad.attest.push(0);
    assert!(matches!(
        verify_quote(&bad, NONCE, &p),
        Err(VerifyError::Parse(
            havn_attest::ParseError::TrailingBytes { .. }
        ))
    ));

    let mut bad = ev.clone();
    bad.events[5].digest[0] ^= 1;
    assert!(matches!(
        verify_quote(&bad, NONCE, &p),
        Err(VerifyError::EventLogReplay { .. })
    ));

    let mut bad = ev.clone();
    bad.events.last_mut().unwrap().pcr = 20;
    assert!(matches!(
        verify_quote(&bad, NONCE, &p),
        Err(VerifyError::EventLogPcrNotQuoted(20))
    ));

    assert_eq!(
        verify_quote(&ev, b"short", &p).unwrap_err(),
        VerifyError::BadNonce(5)
    );

    // The payload key is bound like the node key: another one (a relay swapping in
    // its own, to read sealed payloads) is refused.
    assert_eq!(v.payload_pubkey, synth::PAYLOAD_KEY);
    let mut bad = ev.clone();
    bad.payload_pubkey[0] ^= 1;
    assert_eq!(
        verify_quote(&bad, NONCE, &p).unwrap_err(),
        VerifyError::ExtraDataMismatch
    );
}

#[test]
fn golden_manifest_enforce_and_warn() {
    let ev = synth::evidence(&ak(7), NONCE, [9u8; 32], 4);
    let wrong = hex::encode([0xAAu8; 32]);
    let right = hex::encode(ev.pcrs[&0].0);
    let g = |policy: &str, pcr: u32, val: &str| {
        GoldenManifest::from_json(
            format!(r#"{{"pcrs": {{"{pcr}": {{"sha256": "{val}", "policy": "{policy}"}}}}}}"#)
                .as_bytes(),
        )
        .unwrap()
    };
    let with = |g: GoldenManifest| Policy {
        golden: Some(g),
        ..Policy::default()
    };
    assert!(verify_quote(&ev, NONCE, &with(g("enforce", 0, &right)))
        .unwrap()
        .warnings
        .is_empty());
    assert!(matches!(
        verify_quote(&ev, NONCE, &with(g("enforce", 0, &wrong))),
        Err(VerifyError::GoldenPcr { pcr: 0, .. })
    ));
    assert_eq!(
        verify_quote(&ev, NONCE, &with(g("warn", 0, &wrong)))
            .unwrap()
            .warnings
            .len(),
        1
    );
    assert!(matches!(
        verify_quote(&ev, NONCE, &with(g("enforce", 20, &wrong))),
        Err(VerifyError::GoldenPcrNotQuoted(20))
    ));
    let ge = GoldenManifest::from_json(
        format!(r#"{{"events": [{{"pcr": 8, "digest": "{wrong}", "description": "kernel", "policy": "enforce"}}]}}"#).as_bytes(),
    )
    .unwrap();
    assert!(matches!(
        verify_quote(&ev, NONCE, &with(ge)),
        Err(VerifyError::GoldenEventMissing { pcr: 8, .. })
    ));
    assert!(
        GoldenManifest::from_json(br#"{"pcrz": {}}"#).is_err(),
        "unknown fields refused"
    );
}

#[test]
fn ak_attribute_checks() {
    let ev = synth::evidence(&ak(7), NONCE, [9u8; 32], 0);
    // objectAttributes live at TPM2B size(2) + type(2) + nameAlg(2) = offset 6..10.
    let cases: [(u32, bool, &str); 5] = [
        (1 << 1, false, "fixedTPM not set"),
        (1 << 4, false, "fixedParent not set"),
        (1 << 5, false, "sensitiveDataOrigin not set"),
        (1 << 16, false, "restricted not set"),
        (1 << 17, true, "decrypt set"),
    ];
    for (bit, set, problem) in cases {
        let mut bad = ev.clone();
        let mut a = u32::from_be_bytes(bad.ak_public[6..10].try_into().unwrap());
        if set {
            a |= bit
        } else {
            a &= !bit
        }
        bad.ak_public[6..10].copy_from_slice(&a.to_be_bytes());
        match verify_quote(&bad, NONCE, &Policy::default()) {
            Err(VerifyError::AkAttributes { problem: p, .. }) => assert_eq!(p, problem),
            other => panic!("{problem}: {other:?}"),
        }
    }
}

#[test]
fn pcrs_file_roundtrip_matches_tpm2_tools_layout() {
    let sel = [wire::PcrSelection::sha256(&(0..12).collect::<Vec<_>>())];
    let values: Vec<Vec<u8>> = (0..12u8).map(|i| vec![i; 32]).collect();
    let f = tpm2_files::write_pcrs_file(&sel, &values);
    assert_eq!(
        f.len(),
        1200,
        "same size tpm2_quote -o writes for 12 sha256 PCRs"
    );
    let (s2, v2) = tpm2_files::parse_pcrs_file(&f).unwrap();
    assert_eq!((s2.as_slice(), v2), (&sel[..], values));
}

#[test]
fn evidence_dir_roundtrip() {
    let ev = synth::evidence(&ak(7), NONCE, [9u8; 32], 3);
    let dir = std::env::temp_dir().join(format!("havn-evdir-{}", std::process::id()));
    let q = wire::parse_quote_attest(&ev.attest).unwrap();
    evidence_dir::write_dir(&dir, &ev, "pem", NONCE, &q.extra_data).unwrap();
    let (back, j) = evidence_dir::read_dir(&dir).unwrap();
    assert_eq!(back, ev);
    assert_eq!(j.nonce, NONCE);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn policy_pcr_digest_depends_on_values() {
    // Agreement with a real TPM is proven by the agent's seal/unseal tests on swtpm.
    let sel = [wire::PcrSelection::sha256(&[0])];
    let d = havn_attest::policy_pcr_digest(&sel, &[[0u8; 32]]);
    assert_eq!(d.len(), 32);
    // Different values give different policies.
    assert_ne!(d, havn_attest::policy_pcr_digest(&sel, &[[1u8; 32]]));
}

#[test]
fn firmware_log_replays_under_userland_log() {
    use havn_attest::tcg::{build_tcg_log, parse_tcg_log, replay_tcg, TcgEvent, EV_NO_ACTION};
    use sha2::Digest;
    let fw: Vec<TcgEvent> = vec![
        TcgEvent {
            pcr: 0,
            event_type: EV_NO_ACTION,
            sha256: Some([0; 32]),
            data: b"StartupLocality\0\x03".to_vec(),
        },
        TcgEvent {
            pcr: 0,
            event_type: 8,
            sha256: Some(sha2::Sha256::digest(b"crtm").into()),
            data: b"CRTM".to_vec(),
        },
        TcgEvent {
            pcr: 7,
            event_type: 0x8000_0001,
            sha256: Some(sha2::Sha256::digest(b"secureboot").into()),
            data: vec![],
        },
        TcgEvent {
            pcr: 8,
            event_type: 0xd,
            sha256: Some(sha2::Sha256::digest(b"cmdline").into()),
            data: vec![],
        },
    ];
    let log = build_tcg_log(&fw);
    let parsed = parse_tcg_log(&log).unwrap();
    assert_eq!(parsed, fw);
    let fw_pcrs = replay_tcg(&parsed).unwrap();
    let mut pcr0 = [0u8; 32];
    pcr0[31] = 3;
    assert_eq!(
        fw_pcrs[&0],
        havn_attest::eventlog::extend(&pcr0, &fw[1].sha256.unwrap()),
        "locality-3 start"
    );

    // Quote = firmware values, then userland events on PCR 8 on top.
    let mut ev = synth::evidence(&ak(7), NONCE, [9u8; 32], 0);
    let mut pcrs: std::collections::BTreeMap<u32, [u8; 32]> =
        ev.pcrs.iter().map(|(k, v)| (*k, v.0)).collect();
    for p in 0..8 {
        pcrs.insert(p, fw_pcrs.get(&p).copied().unwrap_or([0; 32]));
    }
    pcrs.insert(8, fw_pcrs[&8]);
    let user = havn_attest::Event {
        seq: 0,
        pcr: 8,
        event_type: "binary".into(),
        digest: [5; 32],
        description: "init".into(),
    };
    let p8 = havn_attest::eventlog::extend(&pcrs[&8], &user.digest);
    pcrs.insert(8, p8);
    let sel = [wire::PcrSelection::sha256(
        &pcrs.keys().copied().collect::<Vec<_>>(),
    )];
    let mut h = sha2::Sha256::new();
    for v in pcrs.values() {
        h.update(v);
    }
    ev.attest = synth::attest_bytes(
        &havn_attest::quote_extra_data(NONCE, &[9u8; 32], &synth::PAYLOAD_KEY),
        &sel,
        &h.finalize(),
    );
    ev.signature = ak(7).sign(&ev.attest);
    ev.pcrs = pcrs
        .into_iter()
        .map(|(k, v)| (k, havn_attest::PcrValue(v)))
        .collect();
    ev.events = vec![user];
    ev.firmware_log = Some(log.clone());
    let v = verify_quote(&ev, NONCE, &Policy::default()).unwrap();
    assert_eq!((v.firmware_events, v.events_replayed), (4, 1));

    // A firmware event dropped from the log: PCR 7 no longer replays.
    let mut short = fw.clone();
    short.remove(2);
    ev.firmware_log = Some(build_tcg_log(&short));
    assert!(matches!(
        verify_quote(&ev, NONCE, &Policy::default()),
        Err(VerifyError::EventLogReplay { pcr: 7, .. })
    ));
    // Truncated bytes: a parse error, not a panic.
    ev.firmware_log = Some(log[..log.len() - 3].to_vec());
    assert!(matches!(
        verify_quote(&ev, NONCE, &Policy::default()),
        Err(VerifyError::Parse(_))
    ));
}
