//! Every havn-attest parser on arbitrary bytes, plus full verification of a valid
//! quote whose attest/signature/AK bytes are replaced by fuzz input.
#![no_main]

use havn_attest::{ekcert, tpm2_files, verify_quote, wire, Evidence, GoldenManifest, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wire::parse_quote_attest(data);
    let _ = wire::parse_ecdsa_signature(data);
    let _ = wire::parse_ecc_public(data);
    let _ = tpm2_files::parse_pcrs_file(data);
    let _ = ekcert::parse_certs(data);
    let _ = GoldenManifest::from_json(data);
    let _ = Evidence::from_json(data);
    if let Ok(ev) = havn_attest::tcg::parse_tcg_log(data) {
        let _ = havn_attest::tcg::replay_tcg(&ev);
    }
    if let Some(ak) = havn_attest::synth::SoftAk::from_seed([7; 32]) {
        let mut ev = havn_attest::synth::evidence(&ak, b"nonce-0123456789", [9; 32], 3);
        let third = data.len() / 3;
        ev.attest = data.get(..third).unwrap_or_default().to_vec();
        ev.signature = data.get(third..2 * third).unwrap_or_default().to_vec();
        ev.ak_public = data.get(2 * third..).unwrap_or_default().to_vec();
        let _ = verify_quote(&ev, b"nonce-0123456789", &Policy::default());
    }
});
