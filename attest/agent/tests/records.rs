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

#[test]
fn receipts_are_kept_in_the_record_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signed.log");
    let mut store = RecordStore::open(&path).unwrap();
    store.check_and_record(b"job-a", b"receipt a").unwrap();
    store.check_and_record(b"job-b", b"receipt bb").unwrap();
    drop(store);
    let store = RecordStore::open(&path).unwrap();
    assert_eq!(
        store.receipt(b"job-a").unwrap().as_deref(),
        Some(&b"receipt a"[..])
    );
    assert_eq!(
        store.receipt(b"job-b").unwrap().as_deref(),
        Some(&b"receipt bb"[..])
    );
    assert_eq!(store.receipt(b"job-c").unwrap(), None);
    // A record whose receipt no longer hashes to its recorded hash is refused on open.
    let text = std::fs::read_to_string(&path).unwrap();
    let flipped = text.replacen(&hex::encode(b"receipt a"), &hex::encode(b"receipt A"), 1);
    std::fs::write(&path, flipped).unwrap();
    let err = RecordStore::open(&path).unwrap_err().to_string();
    assert!(
        err.contains("bad record line 1") && err.contains("does not hash"),
        "{err}"
    );
}

#[test]
fn a_failed_append_on_a_full_disk_is_cut_back_and_the_store_recovers() {
    if !havn_testkit::require_root("mounts a small tmpfs to fill") {
        return;
    }
    let disk = havn_testkit::SmallDisk::mount(64 * 1024);
    let path = disk.path().join("signed.log");
    let mut store = RecordStore::open(&path).unwrap();
    store.check_and_record(b"job-1", b"receipt one").unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    disk.fill();
    let big = vec![7u8; 2048];
    let err = store.check_and_record(b"job-2", &big).unwrap_err();
    assert!(err.is_disk_full(), "want a disk-full refusal, got {err}");
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        len,
        "the failed append must be cut back"
    );
    assert_eq!(
        store.get(b"job-2"),
        None,
        "nothing recorded for the failed job"
    );
    disk.free();
    assert_eq!(
        store.check_and_record(b"job-2", &big).unwrap(),
        Recorded::New
    );
    drop(store);
    let store = RecordStore::open(&path).expect("the log reopens cleanly after the full disk");
    assert_eq!(store.len(), 2);
    assert_eq!(store.receipt(b"job-2").unwrap(), Some(big));
}

#[test]
fn records_written_before_receipts_were_kept_still_refuse_a_different_receipt() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signed.log");
    let old: [u8; 32] = sha2::Sha256::digest(b"receipt A").into();
    std::fs::write(
        &path,
        format!("{} {}\n", hex::encode(b"job-1"), hex::encode(old)),
    )
    .unwrap();
    let mut store = RecordStore::open(&path).expect("a log of `job hash` lines opens");
    assert_eq!(store.receipt(b"job-1").unwrap(), None);
    assert!(matches!(
        store.check_and_record(b"job-1", b"receipt B"),
        Err(NotSafe::ConflictingReceipt { .. })
    ));
    assert_eq!(
        store.check_and_record(b"job-1", b"receipt A").unwrap(),
        Recorded::Repeat
    );
    assert_eq!(
        store.check_and_record(b"job-2", b"receipt C").unwrap(),
        Recorded::New
    );
    drop(store);
    assert_eq!(RecordStore::open(&path).unwrap().len(), 2);
}
