//! WAL format, replay, torn tails, compaction.

use crate::common::*;
use havn_netd::wal::{self, Outcome, Record, Snapshot, Wal, WalOptions};
use havn_proto::JobPayload;
use std::io::Write;

fn payload(id: &str) -> JobPayload {
    serde_json::from_value(job(id)).unwrap()
}

fn accepted(t: u64) -> Record {
    Record::Accepted {
        ticket: t,
        payload: wal::encode_payload(&payload(&format!("w{t}"))).unwrap(),
    }
}

#[tokio::test]
async fn replay_restores_jobs_and_keeps_the_first_receipt() {
    let dir = tmpdir("wal");
    let w = Wal::start(&dir, Snapshot::default(), WalOptions::default()).unwrap();
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

#[tokio::test]
async fn torn_last_record_is_truncated() {
    let dir = tmpdir("torn");
    let path = dir.join(wal::WAL_FILE);
    let w = Wal::start(&dir, Snapshot::default(), WalOptions::default()).unwrap();
    w.commit(vec![accepted(1), accepted(2)]).await.unwrap();
    drop(w);
    let good_len = std::fs::metadata(&path).unwrap().len();
    // A torn third record: a full header and half a body.
    let mut rec = Vec::new();
    wal::encode(&accepted(3), &mut rec).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(&rec[..rec.len() / 2]).unwrap();
    drop(f);
    let rep = wal::replay(&path).unwrap();
    assert_eq!(rep.snapshot.jobs.len(), 2);
    assert_eq!(rep.truncated_bytes, (rec.len() / 2) as u64);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
    // A record with a bad CRC at the tail is cut the same way.
    let mut bad = rec.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(&bad).unwrap();
    drop(f);
    let rep = wal::replay(&path).unwrap();
    assert_eq!(rep.snapshot.jobs.len(), 2);
    assert_eq!(rep.truncated_bytes, rec.len() as u64);
    // And an absurd length prefix is refused before allocating.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&[0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0])
        .unwrap();
    assert_eq!(wal::replay(&path).unwrap().truncated_bytes, 8);
}

#[tokio::test]
async fn compaction_keeps_every_live_job_and_drops_started_records() {
    let dir = tmpdir("compact");
    let opts = WalOptions {
        compact_bytes: 2048,
        ..WalOptions::default()
    };
    let w = Wal::start(&dir, Snapshot::default(), opts).unwrap();
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
    let w = Wal::start(&dir, Snapshot::default(), WalOptions::default()).unwrap();
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
