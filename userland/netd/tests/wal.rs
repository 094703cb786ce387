//! WAL format, replay, torn tails, compaction.

use crate::common::*;
use havn_netd::wal::{self, Outcome, Record, Wal, WalOptions};
use havn_proto::JobPayload;

fn payload(id: &str) -> JobPayload {
    serde_json::from_value(job(id)).unwrap()
}

fn accepted(t: u64) -> Record {
    Record::Accepted {
        ticket: t,
        payload: postcard::to_allocvec(&payload(&format!("w{t}")))
            .unwrap()
            .into(),
    }
}

#[tokio::test]
async fn replay_restores_jobs_and_keeps_the_first_receipt() {
    let dir = tmpdir("wal");
    let w = Wal::open(&dir, WalOptions::default()).unwrap().0;
    let r1 = receipt_for(&payload("w1"));
    let mut r1b = r1.clone();
    r1b.receipt.gas = 999;
    w.commit(vec![accepted(1), accepted(2), accepted(3)])
        .await
        .unwrap();
    w.commit(vec![
        Record::Started { ticket: 1 },
        Record::Started { ticket: 2 },
    ])
    .await
    .unwrap();
    w.commit(vec![
        Record::Done {
            ticket: 1,
            receipt: Box::new(r1.clone()),
        },
        Record::Done {
            ticket: 1,
            receipt: Box::new(r1b),
        },
        Record::Failed {
            ticket: 3,
            reason: "x".into(),
        },
    ])
    .await
    .unwrap();
    drop(w);
    let rep = wal::replay(&dir.join(wal::WAL_FILE)).unwrap();
    assert_eq!(rep.records, 8);
    assert_eq!(rep.truncated_bytes, 0);
    let j = &rep.snapshot.jobs;
    assert_eq!(j[&1].outcome, Some(Outcome::Done(Box::new(r1))));
    assert!(j[&2].started && j[&2].outcome.is_none());
    assert_eq!(j[&3].outcome, Some(Outcome::Failed("x".into())));
    assert_eq!(rep.warnings.len(), 1, "{:?}", rep.warnings);
}

/// Writes `bytes` at `at` in the log (as a crash mid-commit would leave them).
fn write_at(path: &std::path::Path, at: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, at).unwrap();
}

#[tokio::test]
async fn torn_last_record_is_cut_and_the_log_goes_on_after_it() {
    let dir = tmpdir("torn");
    let path = dir.join(wal::WAL_FILE);
    let w = Wal::open(&dir, WalOptions::default()).unwrap().0;
    w.commit(vec![accepted(1), accepted(2)]).await.unwrap();
    drop(w);
    let clean = wal::replay(&path).unwrap();
    assert_eq!(
        clean.truncated_bytes, 0,
        "the preallocated zeros are not a torn tail"
    );
    let end = clean.end;
    let file_len = std::fs::metadata(&path).unwrap().len();
    assert!(
        file_len > end,
        "the log is preallocated ({file_len} bytes for a {end}-byte log)"
    );
    // A torn third record: a full header and half a body.
    let mut rec = Vec::new();
    wal::encode(&accepted(3), &mut rec).unwrap();
    let half = &rec[..rec.len() / 2];
    write_at(&path, end, half);
    let rep = wal::replay(&path).unwrap();
    assert_eq!(rep.snapshot.jobs.len(), 2);
    assert_eq!(rep.end, end);
    let last_nonzero = half.iter().rposition(|&b| b != 0).unwrap() + 1;
    assert_eq!(rep.truncated_bytes, last_nonzero as u64);
    assert_eq!(
        wal::replay(&path).unwrap().truncated_bytes,
        0,
        "the cut is durable"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        file_len,
        "the space stays allocated"
    );
    // A record with a bad CRC at the tail is cut the same way.
    let mut bad = rec.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    write_at(&path, end, &bad);
    let rep = wal::replay(&path).unwrap();
    assert_eq!(rep.snapshot.jobs.len(), 2);
    assert_eq!(rep.truncated_bytes, rec.len() as u64);
    // An absurd length prefix is refused before allocating.
    write_at(&path, end, &[0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]);
    assert_eq!(wal::replay(&path).unwrap().truncated_bytes, 4);
    // Stray bytes far past the end (a torn write of a later block) are cut too.
    write_at(&path, end + 10_000, &[1, 2, 3]);
    assert_eq!(wal::replay(&path).unwrap().truncated_bytes, 10_003);
    // The writer starts at the end again: new records follow the two good ones.
    let w = Wal::open(&dir, WalOptions::default()).unwrap().0;
    w.commit(vec![accepted(4)]).await.unwrap();
    drop(w);
    let rep = wal::replay(&path).unwrap();
    assert_eq!(
        rep.snapshot.jobs.keys().copied().collect::<Vec<_>>(),
        vec![1, 2, 4]
    );
    assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
}

/// Both write paths (`O_DIRECT | O_DSYNC` block rewrites and `pwrite` +
/// `fdatasync`) keep every committed record across restarts, including records
/// that straddle 4 KiB blocks and the preallocation boundary.
#[tokio::test]
async fn direct_and_buffered_writers_keep_every_record_across_blocks_and_extensions() {
    for direct in [true, false] {
        let dir = tmpdir(if direct { "direct" } else { "buffered" });
        let opts = WalOptions {
            direct,
            prealloc_bytes: 8192,
            ..WalOptions::default()
        };
        let mut t = 0u64;
        for restart in 0..3 {
            let (w, before) = Wal::open(&dir, opts.clone()).unwrap();
            assert_eq!(
                before.snapshot.jobs.len() as u64,
                t,
                "open replays what is there"
            );
            if direct && !w.direct() {
                println!(
                    "{}: O_DIRECT refused by this filesystem; testing the fallback twice",
                    dir.display()
                );
            }
            assert!(
                direct || !w.direct(),
                "direct: false must not open O_DIRECT"
            );
            // Groups of 1..7 records (~100 bytes each): tails land all over a block.
            for g in 1..=40u64 {
                let recs: Vec<Record> = (0..g % 7 + 1)
                    .map(|_| {
                        t += 1;
                        accepted(t)
                    })
                    .collect();
                w.commit(recs).await.unwrap();
            }
            drop(w);
            let rep = wal::replay(&dir.join(wal::WAL_FILE)).unwrap();
            assert_eq!(
                rep.snapshot.jobs.len() as u64,
                t,
                "direct={direct} restart={restart}"
            );
            assert_eq!(rep.truncated_bytes, 0, "direct={direct} restart={restart}");
            assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
            assert!(rep.end > 8192, "the log outgrew the first extension");
        }
    }
}

#[tokio::test]
async fn compaction_keeps_every_live_job_and_drops_started_records() {
    let dir = tmpdir("compact");
    let opts = WalOptions {
        compact_bytes: 2048,
        ..WalOptions::default()
    };
    let w = Wal::open(&dir, opts).unwrap().0;
    for t in 1..=60u64 {
        w.commit(vec![accepted(t), Record::Started { ticket: t }])
            .await
            .unwrap();
        if t % 2 == 0 {
            let receipt = Box::new(receipt_for(&payload(&format!("w{t}"))));
            w.commit(vec![Record::Done { ticket: t, receipt }])
                .await
                .unwrap();
        }
    }
    assert!(
        w.stats()
            .compactions
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    drop(w);
    let rep = wal::replay(&dir.join(wal::WAL_FILE)).unwrap();
    assert_eq!(rep.snapshot.jobs.len(), 60);
    for (t, j) in &rep.snapshot.jobs {
        assert_eq!(j.outcome.is_some(), t % 2 == 0, "ticket {t}");
    }
    assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
}

#[tokio::test]
async fn group_commit_batches_concurrent_writers() {
    let dir = tmpdir("group");
    let w = Wal::open(&dir, WalOptions::default()).unwrap().0;
    let mut hs = Vec::new();
    for t in 1..=200u64 {
        let w = w.clone();
        hs.push(tokio::spawn(
            async move { w.commit(vec![accepted(t)]).await },
        ));
    }
    for h in hs {
        h.await.unwrap().unwrap();
    }
    let s = w.stats();
    let syncs = s.syncs.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(s.records.load(std::sync::atomic::Ordering::Relaxed), 200);
    assert!(syncs < 200, "no batching: {syncs} syncs for 200 records");
}

/// The payload is held as a shared `Arc<[u8]>` in memory; on disk it keeps the
/// `Vec<u8>` encoding earlier logs were written with.
#[test]
fn accepted_records_keep_their_wire_form() {
    #[derive(serde::Serialize)]
    enum Old {
        Accepted { ticket: u64, payload: Vec<u8> },
    }
    let bytes = vec![1u8, 2, 200, 0, 255];
    let new = postcard::to_allocvec(&Record::Accepted {
        ticket: 7,
        payload: bytes.clone().into(),
    })
    .unwrap();
    let old = postcard::to_allocvec(&Old::Accepted {
        ticket: 7,
        payload: bytes,
    })
    .unwrap();
    assert_eq!(new, old);
    assert_eq!(postcard::from_bytes::<Record>(&old).unwrap().ticket(), 7);
}

#[tokio::test]
async fn a_corrupt_record_with_valid_ones_after_it_refuses_replay_and_salvage_keeps_them() {
    let dir = tmpdir("corrupt-middle");
    let path = dir.join(wal::WAL_FILE);
    let w = Wal::open(&dir, WalOptions::default()).unwrap().0;
    w.commit(vec![accepted(1)]).await.unwrap();
    w.commit(vec![accepted(2)]).await.unwrap();
    w.commit(vec![accepted(3)]).await.unwrap();
    drop(w);
    let mut one = Vec::new();
    wal::encode(&accepted(1), &mut one).unwrap();
    let second = one.len() as u64;
    let pristine = std::fs::read(&path).unwrap();
    let flip = |path: &std::path::Path| {
        let data = std::fs::read(path).unwrap();
        write_at(path, second + 9, &[data[second as usize + 9] ^ 0x5a]);
    };
    // Valid records just after a bad one are what a power loss in the middle of the
    // last multi-block commit leaves (never acknowledged): cut as a torn tail.
    flip(&path);
    let rep = wal::replay(&path).unwrap();
    assert_eq!(
        rep.snapshot.jobs.keys().copied().collect::<Vec<_>>(),
        vec![1]
    );
    // Valid records further than any one commit reaches: corruption in the middle.
    std::fs::write(&path, &pristine).unwrap();
    let w = Wal::open(&dir, WalOptions::default()).unwrap().0;
    let mut t = 4;
    let mut written = 0usize;
    while written <= wal::TORN_WINDOW + (1 << 20) {
        let recs: Vec<Record> = (t..t + 2000).map(accepted).collect();
        for r in &recs {
            let mut b = Vec::new();
            wal::encode(r, &mut b).unwrap();
            written += b.len();
        }
        w.commit(recs).await.unwrap();
        t += 2000;
    }
    drop(w);
    let total = t - 1;
    flip(&path);
    let before = std::fs::read(&path).unwrap();
    let err = wal::replay(&path).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, wal::WalError::Corrupt { offset, .. } if offset == second),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("offset {second}")) && msg.contains("havnctl wal salvage"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "a refused replay changes nothing"
    );
    assert!(matches!(
        Wal::open(&dir, WalOptions::default()),
        Err(wal::WalError::Corrupt { .. })
    ));
    // The operator salvages: every ticket but the corrupt one survives, named.
    let s = havn_netd::wal_salvage::salvage(&path).unwrap();
    assert_eq!(
        (s.records as u64, s.jobs as u64),
        (total - 1, total - 1),
        "{:?}",
        s.skipped
    );
    assert_eq!(s.skipped.len(), 1, "{:?}", s.skipped);
    assert_eq!(s.skipped[0].0, second);
    assert!(dir.join("wal.log.corrupt").exists(), "the original is kept");
    let (w, rep) = Wal::open(&dir, WalOptions::default()).unwrap();
    assert!(!rep.snapshot.jobs.contains_key(&2));
    assert_eq!(rep.snapshot.jobs.len() as u64, total - 1);
    w.commit(vec![accepted(t)]).await.unwrap();
    drop(w);
    assert_eq!(
        wal::replay(&path).unwrap().snapshot.jobs.len() as u64,
        total
    );
}
