use crate::common::*;
use havn_attest_agent::{NotSafe, RecordStore, Recorded};

#[test]
fn double_sign_refused_after_reopening_the_store() {
    let mut n = node();
    let key = n.agent.create_node_key().unwrap();
    let path = n.state.join("signed.log");
    let mut store = RecordStore::open(&path).unwrap();
    let (sig1, r) = key
        .sign_receipt(&mut store, b"havn/receipt/v1", b"job-1", b"receipt A")
        .unwrap();
    assert_eq!(r, Recorded::New);
    let (sig1b, r) = key
        .sign_receipt(&mut store, b"havn/receipt/v1", b"job-1", b"receipt A")
        .unwrap();
    assert_eq!(
        (r, sig1b),
        (Recorded::Repeat, sig1),
        "identical re-sign allowed"
    );
    assert!(matches!(
        key.sign_receipt(&mut store, b"havn/receipt/v1", b"job-1", b"receipt B"),
        Err(NotSafe::ConflictingReceipt { .. })
    ));
    drop(store);
    // Simulate a crash mid-append: a torn tail line.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"6a6f622d32 00ff").unwrap();
    }
    let mut store = RecordStore::open(&path).unwrap();
    assert_eq!(store.len(), 1);
    assert!(matches!(
        key.sign_receipt(&mut store, b"havn/receipt/v1", b"job-1", b"receipt B"),
        Err(NotSafe::ConflictingReceipt { .. })
    ));
    assert_eq!(
        key.sign_receipt(&mut store, b"havn/receipt/v1", b"job-2", b"receipt C")
            .unwrap()
            .1,
        Recorded::New
    );
    drop(store);
    let store = RecordStore::open(&path).unwrap();
    assert_eq!(store.len(), 2);
}
