use havn_proto::frame::{self, Hello, HEADER_LEN, MAX_FRAME, PROTOCOL_VERSION};
use havn_proto::ipc::*;
use havn_proto::vectors;
use havn_proto::WireError;

fn run_frame() -> Vec<u8> {
    frame::encode(&NetdExecRequest::Run {
        ticket_id: 9,
        payload: vectors::job_payload(),
        submitter: havn_proto::bounded("orchestrator"),
    })
    .unwrap()
}

#[test]
fn well_formed_frame_decodes() {
    let f = run_frame();
    let m: NetdExecRequest = frame::decode(&f).unwrap();
    assert_eq!(
        m,
        NetdExecRequest::Run {
            ticket_id: 9,
            payload: vectors::job_payload(),
            submitter: havn_proto::bounded("orchestrator"),
        }
    );
}

#[test]
fn every_truncation_is_truncated() {
    let f = run_frame();
    for cut in 0..f.len() {
        match frame::decode::<NetdExecRequest>(&f[..cut]) {
            Err(WireError::Truncated { .. }) => {}
            other => panic!(
                "cut at {cut}/{}: expected Truncated, got {other:?}",
                f.len()
            ),
        }
    }
}

#[test]
fn trailing_garbage_after_frame_is_refused() {
    let mut f = run_frame();
    f.push(0);
    assert_eq!(
        frame::decode::<NetdExecRequest>(&f),
        Err(WireError::TrailingBytes { extra: 1 })
    );
}

#[test]
fn trailing_garbage_inside_body_is_refused() {
    // Header claims one more byte than the message uses.
    let mut f = frame::encode(&NetdExecRequest::Capabilities).unwrap();
    f.push(0xee);
    let len = (f.len() - HEADER_LEN) as u32;
    f[..HEADER_LEN].copy_from_slice(&len.to_le_bytes());
    assert_eq!(
        frame::decode::<NetdExecRequest>(&f),
        Err(WireError::TrailingBytes { extra: 1 })
    );
}

#[test]
fn oversized_length_prefix_is_refused_before_allocation() {
    // A header announcing 4 GiB: refused from the header alone.
    let header = u32::MAX.to_le_bytes();
    assert_eq!(
        frame::check_len(header),
        Err(WireError::FrameTooLong {
            len: u32::MAX as usize,
            max: MAX_FRAME
        })
    );
    let mut f = header.to_vec();
    f.extend_from_slice(&[0; 16]);
    assert!(matches!(
        frame::decode::<NetdExecRequest>(&f),
        Err(WireError::FrameTooLong { .. })
    ));
    let just_over = ((MAX_FRAME + 1) as u32).to_le_bytes();
    assert!(matches!(
        frame::check_len(just_over),
        Err(WireError::FrameTooLong { .. })
    ));
    assert_eq!(
        frame::check_len((MAX_FRAME as u32).to_le_bytes()),
        Ok(MAX_FRAME)
    );
}

#[test]
fn oversized_outgoing_message_is_refused() {
    let big = vec![0u8; MAX_FRAME + 1];
    assert!(matches!(
        frame::encode(&big),
        Err(WireError::FrameTooLong { .. })
    ));
}

#[test]
fn unknown_tag_is_unknown_message() {
    let f = [1, 0, 0, 0, 0x7f];
    assert_eq!(
        frame::decode::<NetdExecRequest>(&f),
        Err(WireError::UnknownMessage {
            ty: "NetdExecRequest",
            tag: 0x7f
        })
    );
}

#[test]
fn garbage_body_is_decode_error() {
    // Tag 0 (Run) followed by a truncated ticket varint.
    let f = [2, 0, 0, 0, 0, 0x80];
    assert!(matches!(
        frame::decode::<NetdExecRequest>(&f),
        Err(WireError::Decode {
            ty: "NetdExecRequest",
            ..
        })
    ));
}

#[test]
fn hello_checks_version_channel_and_schema() {
    let ok = Hello::new(Channel::NetdExecd, 7);
    assert_eq!(ok.check(Channel::NetdExecd), Ok(()));
    let f = frame::encode(&ok).unwrap();
    assert_eq!(frame::decode::<Hello>(&f).unwrap(), ok);

    let old = Hello {
        version: PROTOCOL_VERSION + 1,
        ..ok
    };
    assert_eq!(
        old.check(Channel::NetdExecd),
        Err(WireError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: PROTOCOL_VERSION + 1
        })
    );
    assert!(matches!(
        ok.check(Channel::NetdAttestd),
        Err(WireError::SchemaMismatch { .. })
    ));
    let mut other_schema = ok;
    other_schema.schema.0[0] ^= 1;
    assert!(matches!(
        other_schema.check(Channel::NetdExecd),
        Err(WireError::SchemaMismatch { .. })
    ));
    let bad = Hello {
        magic: *b"SSH-",
        ..ok
    };
    assert_eq!(bad.check(Channel::NetdExecd), Err(WireError::BadMagic));
}

#[test]
fn schema_hashes_differ_per_channel() {
    let hs: Vec<_> = Channel::ALL
        .iter()
        .map(|c| frame::schema_hash(*c))
        .collect();
    for i in 0..hs.len() {
        for j in i + 1..hs.len() {
            assert_ne!(hs[i], hs[j]);
        }
    }
}

/// A field as it is today, and the same message after one change each.
mod shapes {
    #[derive(serde::Serialize, postcard_schema::Schema)]
    pub struct Now {
        pub seq: u32,
        pub reason: heapless::String<64>,
    }
    #[derive(serde::Serialize, postcard_schema::Schema)]
    pub struct Widened {
        pub seq: u64,
        pub reason: heapless::String<64>,
    }
    #[derive(serde::Serialize, postcard_schema::Schema)]
    pub struct Reordered {
        pub reason: heapless::String<64>,
        pub seq: u32,
    }
    #[derive(serde::Serialize, postcard_schema::Schema)]
    pub struct Signed {
        pub seq: i32,
        pub reason: heapless::String<64>,
    }
}

#[test]
fn the_schema_hash_follows_the_types_structure_and_bounds() {
    use postcard_schema::Schema;
    let now = frame::type_digest(shapes::Now::SCHEMA);
    for (what, other) in [
        (
            "widening u32 to u64",
            frame::type_digest(shapes::Widened::SCHEMA),
        ),
        (
            "reordering fields",
            frame::type_digest(shapes::Reordered::SCHEMA),
        ),
        ("u32 to i32", frame::type_digest(shapes::Signed::SCHEMA)),
    ] {
        assert_ne!(now, other, "{what} must change the type digest");
    }
    // The real channels: the hash covers the request type and every bound.
    let ch = Channel::NetdAttestd;
    assert_eq!(
        frame::schema_hash(ch),
        frame::schema_hash_with(ch, frame::BOUNDS)
    );
    let mut bounds = frame::BOUNDS.to_vec();
    let reason = bounds
        .iter_mut()
        .find(|(n, _)| *n == "MAX_REASON")
        .expect("MAX_REASON is a bound");
    reason.1 += 1;
    assert_ne!(
        frame::schema_hash(ch),
        frame::schema_hash_with(ch, &bounds),
        "changing a bound must change the schema hash"
    );
    // Not a function of sample values: the test vectors are not involved.
    let (req, _) = frame::channel_schemas(ch);
    assert_eq!(req.name, "NetdAttestRequest");
}

#[test]
fn message_tags_are_dense() {
    assert_eq!(NetdExecRequest::Capabilities.tag(), 1);
    assert_eq!(InitRequest::Shutdown.tag(), 2);
    assert_eq!(InitRequest::VARIANTS, 4);
    assert_eq!(NetdAttestResponse::VARIANTS, 12);
    assert_eq!(NetdAttestResponse::Error(RemoteError::Internal).tag(), 3);
    // New variants go at the end: existing tags never move.
    assert_eq!(
        InitRequest::Audit {
            entries: Box::default()
        }
        .tag(),
        3
    );
    assert_eq!(NetdAttestRequest::SelfAudit.tag(), 3);
    assert_eq!(NetdAttestRequest::Capabilities.tag(), 4);
}

#[test]
fn overlong_varint_is_non_canonical() {
    // Found by the `frame` fuzz target: postcard itself accepts `80 00` as 0.
    let canonical = frame::encode(&NetdExecRequest::Run {
        ticket_id: 0,
        payload: vectors::job_payload(),
        submitter: havn_proto::bounded("orchestrator"),
    })
    .unwrap();
    let mut body = canonical[HEADER_LEN..].to_vec();
    assert_eq!(&body[..2], &[0, 0], "tag 0 then ticket 0");
    body.splice(1..2, [0x80, 0x00]);
    let mut f = (body.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(&body);
    assert_eq!(
        frame::decode::<NetdExecRequest>(&f),
        Err(WireError::NonCanonical {
            ty: "NetdExecRequest"
        })
    );
}

#[test]
fn netd_channel_cannot_carry_a_receipt_signing_request() {
    // netd's channel to attestd decodes only NetdAttestRequest, which has no variant
    // that signs a receipt. A receipt report that a compromised netd frames as if it
    // were execd, and sends on its own channel, is refused.
    let report = frame::encode(&ExecdRequest::Report(JobResult::from(vectors::receipt()))).unwrap();
    let got = frame::decode::<NetdAttestRequest>(&report);
    assert!(
        got.is_err(),
        "a Report frame decoded on netd's channel as {got:?}"
    );
}
