//! The committed test vectors: `proto/vectors/messages.txt`, one `name hex` line per
//! sample. Regenerate after an intended wire change with `HAVN_BLESS=1 cargo test -p
//! havn-proto` and bump `PROTOCOL_VERSION` if the change is incompatible.
use havn_proto::vectors::all_samples;
use std::path::PathBuf;

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors/messages.txt")
}

fn render() -> String {
    let mut out = String::from(
        "# havn-proto test vectors: <name> <postcard hex>. Generated; see tests/vectors.rs.\n",
    );
    for s in all_samples() {
        assert!(!s.bytes.is_empty(), "{} encoded to nothing", s.name);
        out.push_str(&format!(
            "{} {}\n",
            s.name,
            data_encoding::HEXLOWER.encode(&s.bytes)
        ));
    }
    out
}

#[test]
fn committed_vectors_match_encodings() {
    let now = render();
    if std::env::var_os("HAVN_BLESS").is_some() {
        std::fs::write(path(), &now).unwrap();
    }
    let committed = std::fs::read_to_string(path())
        .expect("proto/vectors/messages.txt missing: run with HAVN_BLESS=1");
    for (want, got) in committed.lines().zip(now.lines()) {
        assert_eq!(
            got, want,
            "wire encoding changed; if intended, re-bless and bump PROTOCOL_VERSION"
        );
    }
    assert_eq!(
        committed.lines().count(),
        now.lines().count(),
        "sample set changed"
    );
}

#[test]
fn every_channel_variant_has_a_vector() {
    use havn_proto::ipc::*;
    let names: Vec<String> = all_samples().into_iter().map(|s| s.name).collect();
    let count = |prefix: &str| {
        names
            .iter()
            .filter(|n| n.starts_with(&format!("{prefix}::")))
            .count() as u32
    };
    assert_eq!(count("InitRequest"), InitRequest::VARIANTS);
    assert_eq!(count("InitResponse"), InitResponse::VARIANTS);
    assert_eq!(count("ExecdRequest"), ExecdRequest::VARIANTS);
    assert_eq!(count("ExecdResponse"), ExecdResponse::VARIANTS);
    assert_eq!(count("NetdExecRequest"), NetdExecRequest::VARIANTS);
    assert_eq!(count("NetdExecResponse"), NetdExecResponse::VARIANTS);
    assert_eq!(count("NetdAttestRequest"), NetdAttestRequest::VARIANTS);
    assert_eq!(count("NetdAttestResponse"), NetdAttestResponse::VARIANTS);
}

#[test]
fn vectors_decode_back_to_samples() {
    use havn_proto::frame::decode_body;
    use havn_proto::ipc::*;
    for s in all_samples() {
        let ty = s.name.split("::").next().unwrap();
        let ok = match ty {
            "InitRequest" => decode_body::<InitRequest>(&s.bytes).is_ok(),
            "InitResponse" => decode_body::<InitResponse>(&s.bytes).is_ok(),
            "ExecdRequest" => decode_body::<ExecdRequest>(&s.bytes).is_ok(),
            "ExecdResponse" => decode_body::<ExecdResponse>(&s.bytes).is_ok(),
            "NetdExecRequest" => decode_body::<NetdExecRequest>(&s.bytes).is_ok(),
            "NetdExecResponse" => decode_body::<NetdExecResponse>(&s.bytes).is_ok(),
            "NetdAttestRequest" => decode_body::<NetdAttestRequest>(&s.bytes).is_ok(),
            "NetdAttestResponse" => decode_body::<NetdAttestResponse>(&s.bytes).is_ok(),
            "Hello" => decode_body::<havn_proto::frame::Hello>(&s.bytes).is_ok(),
            _ => true,
        };
        assert!(ok, "vector {} does not decode", s.name);
    }
}
