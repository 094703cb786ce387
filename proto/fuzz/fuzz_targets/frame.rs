//! Frame decoder: any bytes → a typed error or a message that re-encodes to the
//! same frame. Never a panic, never an allocation past MAX_FRAME.
#![no_main]
use havn_proto::frame::{self, Hello};
use havn_proto::ipc::NetdExecRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = frame::decode::<NetdExecRequest>(data) {
        assert_eq!(frame::encode(&m).unwrap(), data);
    }
    if let Ok(h) = frame::decode::<Hello>(data) {
        let _ = h.check(havn_proto::ipc::Channel::NetdExecd);
    }
    if let Ok(header) = <[u8; 4]>::try_from(data.get(..4).unwrap_or(&[])) {
        let _ = frame::check_len(header);
    }
});
