//! Random and mutated bytes into every parser: nothing may panic.

use havn_attest::synth::{self, SoftAk};
use havn_attest::{ekcert, tpm2_files, verify_quote, wire, Evidence, GoldenManifest, Policy};
use proptest::prelude::*;

fn valid() -> Evidence {
    synth::evidence(
        &SoftAk::from_seed([7; 32]).unwrap(),
        b"nonce-0123456789",
        [9; 32],
        5,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic_on_random_bytes(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = wire::parse_quote_attest(&b);
        let _ = wire::parse_ecdsa_signature(&b);
        let _ = wire::parse_ecc_public(&b);
        let _ = tpm2_files::parse_pcrs_file(&b);
        let _ = ekcert::parse_certs(&b);
        let _ = GoldenManifest::from_json(&b);
        let _ = Evidence::from_json(&b);
        let _ = havn_attest::tcg::parse_tcg_log(&b);
    }

    #[test]
    fn mutated_firmware_log_never_panics(
        muts in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        use havn_attest::tcg::{build_tcg_log, parse_tcg_log, replay_tcg, TcgEvent};
        let mut log = build_tcg_log(&[TcgEvent { pcr: 1, event_type: 8, sha256: Some([1; 32]), data: b"x".to_vec() }]);
        for (i, v) in muts {
            let n = log.len();
            log[i % n] = v;
        }
        let n = log.len();
        log.truncate(cut % (n + 1));
        if let Ok(ev) = parse_tcg_log(&log) {
            let _ = replay_tcg(&ev);
        }
    }

    #[test]
    fn mutated_valid_structures_never_panic(
        which in 0usize..3,
        muts in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut ev = valid();
        let target = match which { 0 => &mut ev.attest, 1 => &mut ev.signature, _ => &mut ev.ak_public };
        for (i, v) in muts {
            let n = target.len();
            if n > 0 { target[i % n] = v; }
        }
        let n = target.len();
        target.truncate(cut % (n + 1));
        let _ = verify_quote(&ev, b"nonce-0123456789", &Policy::default());
    }

    #[test]
    fn random_evidence_never_verifies(
        attest in proptest::collection::vec(any::<u8>(), 0..200),
        sig in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let mut ev = valid();
        ev.attest = attest;
        ev.signature = sig;
        prop_assert!(verify_quote(&ev, b"nonce-0123456789", &Policy::default()).is_err());
    }
}
