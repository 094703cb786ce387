//! Every IPC decoder: the first byte picks the message type, the rest is the body.
//! Whatever decodes must re-encode to the same bytes (canonical encoding).
#![no_main]
use havn_proto::frame::decode_body;
use havn_proto::ipc::*;
use libfuzzer_sys::fuzz_target;

fn check<M: Message>(body: &[u8]) {
    if let Ok(m) = decode_body::<M>(body) {
        assert_eq!(postcard::to_stdvec(&m).unwrap(), body, "{}", M::NAME);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((sel, body)) = data.split_first() else { return };
    match sel % 8 {
        0 => check::<InitRequest>(body),
        1 => check::<InitResponse>(body),
        2 => check::<ExecdRequest>(body),
        3 => check::<ExecdResponse>(body),
        4 => check::<NetdExecRequest>(body),
        5 => check::<NetdExecResponse>(body),
        6 => check::<NetdAttestRequest>(body),
        _ => check::<NetdAttestResponse>(body),
    }
});
