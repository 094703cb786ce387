use havn_proto::frame;
use havn_proto::ipc::*;
use havn_proto::sign::{Domain, Signable};
use havn_proto::*;
use proptest::prelude::*;

fn arb_str<const N: usize>() -> impl Strategy<Value = heapless::String<N>> {
    proptest::string::string_regex("[a-z0-9._-]{0,40}")
        .unwrap()
        .prop_map(|s| bounded::<N>(&s))
}

fn arb_hash() -> impl Strategy<Value = Hash32> {
    any::<[u8; 32]>().prop_map(Hash32)
}

fn arb_class() -> impl Strategy<Value = ComputeClass> {
    prop_oneof![
        Just(ComputeClass::S),
        Just(ComputeClass::M),
        Just(ComputeClass::L),
        Just(ComputeClass::XL)
    ]
}

fn arb_receipt() -> impl Strategy<Value = Receipt> {
    (
        arb_str::<64>(),
        arb_str::<64>(),
        arb_hash(),
        any::<[u8; 32]>(),
        any::<u64>(),
        any::<u64>(),
        arb_hash(),
        any::<u64>(),
        any::<u64>(),
        arb_class(),
        any::<[u8; 32]>(),
        any::<bool>(),
    )
        .prop_map(
            |(w, j, rh, cid, lat, en, mc, seed, gas, class, node, gpu)| Receipt {
                workflow_id: w,
                job_id: j,
                runtime_hash: rh,
                outputs_cid: Cid::from_digest(cid),
                inputs_cid: Cid::from_digest(rh.0),
                latency_ms: lat,
                energy_estimate_mj: en,
                manifest_checksum: mc,
                seed,
                gas,
                backend: if gpu { Backend::Cuda } else { Backend::Cpu },
                compute_class: class,
                node: NodeId(PubKey32(node)),
                submitter: j_owner(),
                signed_unix_ms: lat ^ en,
            },
        )
}

fn j_owner() -> havn_proto::Name {
    havn_proto::bounded("orchestrator")
}

fn arb_payload() -> impl Strategy<Value = JobPayload> {
    (
        arb_str::<64>(),
        arb_str::<64>(),
        arb_hash(),
        proptest::collection::vec((arb_str::<64>(), any::<[u8; 32]>()), 0..16),
        arb_class(),
        any::<u32>(),
        any::<u64>(),
        any::<(bool, bool)>(),
    )
        .prop_map(
            |(job, wf, ck, ins, class, timeout, seed, (enclave, redact))| JobPayload {
                job_id: job,
                workflow: WorkflowRef {
                    id: wf,
                    checksum: ck,
                },
                inputs: ins
                    .into_iter()
                    .map(|(n, d)| InputArtifact {
                        name: bounded(&n),
                        cid: Cid::from_digest(d),
                        location: ArtifactLocation::Ipfs,
                    })
                    .collect(),
                compute_class: class,
                timeout_ms: timeout,
                seed,
                privacy: PrivacyFlags {
                    enclave,
                    redact_outputs: redact,
                    output_key: redact.then_some(havn_proto::PubKey32([seed as u8; 32])),
                },
            },
        )
}

proptest! {
    #[test]
    fn receipt_round_trips_and_is_byte_stable(r in arb_receipt()) {
        let bytes = postcard::to_stdvec(&r).unwrap();
        let back: Receipt = postcard::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&back, &r);
        prop_assert_eq!(postcard::to_stdvec(&back).unwrap(), bytes);
        // JSON round trip (what the HTTP API and receipts/ use).
        let json = serde_json::to_string(&r).unwrap();
        let back: Receipt = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &r);
        // Signing digest is a function of the value only.
        prop_assert_eq!(r.signing_digest(), back.signing_digest());
    }

    #[test]
    fn payload_round_trips_through_frames_and_json(p in arb_payload(), ticket in any::<u64>()) {
        let msg = NetdExecRequest::Run { ticket_id: ticket, payload: p.clone(), submitter: havn_proto::bounded("o") };
        let f = frame::encode(&msg).unwrap();
        let back: NetdExecRequest = frame::decode(&f).unwrap();
        prop_assert_eq!(&back, &msg);
        prop_assert_eq!(frame::encode(&back).unwrap(), f);
        let json = serde_json::to_vec(&p).unwrap();
        let back: JobPayload = serde_json::from_slice(&json).unwrap();
        prop_assert_eq!(back, p);
    }

    /// Attacker bytes never panic, and whatever decodes re-encodes to the same bytes
    /// (one value, one encoding).
    #[test]
    fn random_bodies_never_panic_and_decoded_values_are_canonical(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        fn check<M: Message + PartialEq + std::fmt::Debug>(body: &[u8]) {
            if let Ok(m) = frame::decode_body::<M>(body) {
                let again = postcard::to_stdvec(&m).unwrap();
                assert_eq!(again, body, "{} decoded from non-canonical bytes", M::NAME);
            }
        }
        check::<InitRequest>(&body);
        check::<InitResponse>(&body);
        check::<ExecdRequest>(&body);
        check::<ExecdResponse>(&body);
        check::<NetdExecRequest>(&body);
        check::<NetdExecResponse>(&body);
        check::<NetdAttestRequest>(&body);
        check::<NetdAttestResponse>(&body);
        check::<frame::Hello>(&body);
    }
}

#[test]
fn domain_separation_changes_digest() {
    let r = vectors::receipt();
    let bytes = postcard::to_stdvec(&r).unwrap();
    assert_eq!(r.signing_digest(), Domain::Receipt.digest(&bytes));
    assert_ne!(r.signing_digest(), Domain::Heartbeat.digest(&bytes));
}

#[test]
fn json_rejects_over_bound_strings_and_bad_cids() {
    let mut v = serde_json::to_value(vectors::job_payload()).unwrap();
    v["job_id"] = serde_json::Value::String("x".repeat(65));
    let err = serde_json::from_value::<JobPayload>(v)
        .unwrap_err()
        .to_string();
    assert!(!err.is_empty());
    let mut v = serde_json::to_value(vectors::job_payload()).unwrap();
    v["inputs"][0]["cid"] = serde_json::Value::String("QmNotACidv1".into());
    let err = serde_json::from_value::<JobPayload>(v)
        .unwrap_err()
        .to_string();
    assert!(err.contains("multibase"), "{err}");
}

#[test]
fn compute_class_economics_match_spec() {
    let fee: Vec<_> = ComputeClass::ALL
        .iter()
        .map(|c| c.fee_multiplier_centi())
        .collect();
    assert_eq!(fee, [100, 150, 250, 400]);
    let floor: Vec<_> = ComputeClass::ALL
        .iter()
        .map(|c| c.collateral_floor_hai())
        .collect();
    assert_eq!(floor, [2_000, 5_000, 9_000, 18_000]);
    assert!(!ComputeClass::S.requires_gpu() && ComputeClass::M.requires_gpu());
    assert_eq!(ComputeClass::parse("xl"), Some(ComputeClass::XL));
    assert_eq!(ComputeClass::parse("XXL"), None);
}
