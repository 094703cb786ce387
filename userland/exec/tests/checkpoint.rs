//! Crash (abort in a child process after node k) and resume gives the same runtime hash.

use crate::common::{job, run_workload};
use havn_exec::exec::{preflight, RunOptions};
use havn_exec::workloads::Size;
use havn_exec::{ExecError, Executor};
use std::path::PathBuf;

const CHILD_DIR: &str = "HAVN_EXEC_TEST_CKPT_DIR";
const ABORT_AT: usize = 9;

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("havn-exec-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Child side: runs the LM with checkpoints and aborts after node ABORT_AT. Without the
/// variable, checks that a checkpointed run without a crash gives the normal hash.
#[test]
fn child_crash_after_node() {
    match std::env::var_os(CHILD_DIR) {
        Some(dir) => {
            let opts = RunOptions {
                checkpoint_dir: Some(dir.into()),
                abort_after: Some(ABORT_AT),
                ..Default::default()
            };
            run_workload(&Executor::cpu(2), "lm", 4, &opts);
            unreachable!("abort hook did not fire");
        }
        None => {
            let d = tmpdir("nocrash");
            let opts = RunOptions {
                checkpoint_dir: Some(d.clone()),
                ..Default::default()
            };
            let a = run_workload(&Executor::cpu(2), "audio", 4, &opts);
            let b = run_workload(&Executor::cpu(2), "audio", 4, &RunOptions::default());
            assert_eq!(a.runtime_hash, b.runtime_hash);
            // Running again resumes every node from disk and still gives the same hash.
            let c = run_workload(&Executor::cpu(1), "audio", 4, &opts);
            assert!(c.nodes.iter().all(|n| n.resumed));
            assert_eq!(c.runtime_hash, b.runtime_hash);
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

#[test]
fn resume_after_abort_gives_same_hash() {
    let dir = tmpdir("crash");
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "checkpoint::child_crash_after_node",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, &dir)
        .output()
        .unwrap();
    assert!(!out.status.success(), "child should have aborted");
    let nodes = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("node-")
        })
        .count();
    assert_eq!(nodes, ABORT_AT + 1, "checkpoints written before the crash");
    let resumed = run_workload(
        &Executor::cpu(3),
        "lm",
        4,
        &RunOptions {
            checkpoint_dir: Some(dir.clone()),
            ..Default::default()
        },
    );
    let fresh = run_workload(&Executor::cpu(1), "lm", 4, &RunOptions::default());
    assert_eq!(resumed.runtime_hash, fresh.runtime_hash);
    assert_eq!(
        resumed.nodes.iter().filter(|n| n.resumed).count(),
        ABORT_AT + 1
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn checkpoint_of_another_job_is_refused() {
    let dir = tmpdir("other");
    run_workload(
        &Executor::cpu(1),
        "audio",
        1,
        &RunOptions {
            checkpoint_dir: Some(dir.clone()),
            ..Default::default()
        },
    );
    let (reg, j) = job("audio", Size::Tiny, 2);
    let p = preflight(&reg, &j).unwrap();
    let r = Executor::cpu(1).execute(
        &p,
        &RunOptions {
            checkpoint_dir: Some(dir.clone()),
            ..Default::default()
        },
    );
    assert!(matches!(r, Err(ExecError::Checkpoint(_))), "{r:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn progress_and_cancel() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let (tx, rx) = std::sync::mpsc::channel();
    let r = run_workload(
        &Executor::cpu(1),
        "diffusion",
        1,
        &RunOptions {
            progress: Some(tx),
            ..Default::default()
        },
    );
    let got: Vec<_> = rx.try_iter().collect();
    assert_eq!(got.len(), r.node_ids.len());
    assert_eq!(
        got.last().map(|p| (p.done, p.total)),
        Some((r.node_ids.len(), r.node_ids.len()))
    );
    let cancel = Arc::new(AtomicBool::new(true));
    let (reg, j) = job("diffusion", Size::Tiny, 1);
    let p = preflight(&reg, &j).unwrap();
    let e = Executor::cpu(1).execute(
        &p,
        &RunOptions {
            cancel: Some(cancel.clone()),
            ..Default::default()
        },
    );
    assert!(matches!(e, Err(ExecError::Cancelled { .. })), "{e:?}");
    cancel.store(false, Ordering::Relaxed);
    assert!(Executor::cpu(1)
        .execute(
            &p,
            &RunOptions {
                cancel: Some(cancel),
                ..Default::default()
            }
        )
        .is_ok());
}
