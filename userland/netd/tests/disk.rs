//! A full disk under netd's state: new jobs are refused with 507 and a reason, netd
//! stays up, nothing acknowledged is lost, and it recovers by itself once space is
//! freed.

use crate::common::*;
use havn_proto::ComputeClass;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_new_jobs_with_507_and_netd_recovers_when_space_is_freed() {
    if !havn_testkit::require_root("mounts a small tmpfs under netd's state") {
        return;
    }
    let disk = havn_testkit::SmallDisk::mount(1 << 20);
    let cfg = Cfg {
        queue: 1024,
        state_dir: Some(disk.path().join("state")),
        ..Cfg::default()
    };
    let mut opts = havn_netd::StartOptions {
        heartbeats: false,
        ..havn_netd::StartOptions::default()
    };
    opts.wal.prealloc_bytes = 16 << 10;
    let node = start_node_with(cfg, ComputeClass::M, Duration::from_millis(5), opts).await;
    let mut c = node.orchestrator().await;
    let mut accepted = Vec::new();
    for i in 0..3 {
        let id = format!("before-{i}");
        let r = c
            .post("/job/accept", serde_json::to_vec(&job(&id)).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        accepted.push(id);
    }
    disk.fill();
    let mut refused = None;
    for i in 0..400 {
        let id = format!("full-{i}");
        let r = c
            .post("/job/accept", serde_json::to_vec(&job(&id)).unwrap())
            .await
            .unwrap();
        match r.status {
            200 => accepted.push(id),
            507 => {
                refused = Some(r.text());
                break;
            }
            s => panic!("job {id}: {s} {}", r.text()),
        }
    }
    let why = refused.expect("a full disk must refuse new jobs with 507");
    assert!(
        accepted.len() > 3,
        "the preallocated log takes jobs until it must grow"
    );
    assert!(why.contains("storage full"), "{why}");
    assert!(
        !why.contains(&disk.path().display().to_string()),
        "no server paths: {why}"
    );
    // netd is up and answers.
    assert_eq!(c.get("/health").await.unwrap().status, 200);
    disk.free();
    let r = c
        .post("/job/accept", serde_json::to_vec(&job("after")).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    accepted.push("after".into());
    // Every acknowledged job finishes (outcomes held while the disk was full are
    // recorded once it is not).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for id in &accepted {
        loop {
            let r = c.get(&format!("/receipt/{id}")).await.unwrap();
            if r.status == 200 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{id} never finished: {}",
                r.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    drop(c);
    drop(node);
    let rep = havn_netd::wal::replay(
        &disk
            .path()
            .join("state/netd")
            .join(havn_netd::wal::WAL_FILE),
    )
    .unwrap();
    let done = rep
        .snapshot
        .jobs
        .values()
        .filter(|j| j.outcome.is_some())
        .count();
    assert_eq!(
        done,
        accepted.len(),
        "every acknowledged job is in the log, finished"
    );
}
