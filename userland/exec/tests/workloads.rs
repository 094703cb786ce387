//! Every workload: same runtime hash across runs, thread counts and processes.

use crate::common::{job, run_workload};
use havn_exec::exec::RunOptions;
use havn_exec::manifest::hex;
use havn_exec::workloads::{self, Size};
use havn_exec::Executor;

const CHILD_ENV: &str = "HAVN_EXEC_TEST_CHILD_HASH";

#[test]
fn workloads_deterministic_across_runs_and_threads() {
    for name in workloads::NAMES {
        let base = run_workload(&Executor::cpu(1), name, 7, &RunOptions::default());
        let again = run_workload(&Executor::cpu(1), name, 7, &RunOptions::default());
        assert_eq!(
            base.runtime_hash, again.runtime_hash,
            "{name}: two runs differ"
        );
        for th in [2, 3, 7] {
            let r = run_workload(&Executor::cpu(th), name, 7, &RunOptions::default());
            assert_eq!(
                r.runtime_hash, base.runtime_hash,
                "{name}: {th} threads differ"
            );
            assert_eq!(
                r.outputs_cid, base.outputs_cid,
                "{name}: {th} threads outputs differ"
            );
        }
        // The seed is committed: another seed gives another hash.
        let other = run_workload(&Executor::cpu(1), name, 8, &RunOptions::default());
        assert_ne!(
            other.runtime_hash, base.runtime_hash,
            "{name}: seed not committed"
        );
    }
}

#[test]
fn lm_generates_tokens_and_seed_changes_text() {
    let a = run_workload(&Executor::cpu(2), "lm", 1, &RunOptions::default());
    let toks = a.outputs[0].1.as_i32("tokens").unwrap().to_vec();
    let p = workloads::LmParams::for_size(Size::Tiny);
    assert_eq!(toks.len(), p.prompt_len + p.gen);
    assert!(toks.iter().all(|&t| (0..256).contains(&t)));
    let outs: Vec<Vec<i32>> = (1..6)
        .map(|s| {
            run_workload(&Executor::cpu(2), "lm", s, &RunOptions::default()).outputs[0]
                .1
                .as_i32("t")
                .unwrap()
                .to_vec()
        })
        .collect();
    assert!(outs.iter().any(|o| o != &toks), "sampling ignores the seed");
}

#[test]
fn diffusion_and_audio_outputs_have_expected_shapes() {
    let d = run_workload(&Executor::cpu(2), "diffusion", 3, &RunOptions::default());
    assert_eq!(d.outputs[0].0, "image");
    assert_eq!(d.outputs[0].1.shape, vec![3, 8, 8]);
    let a = run_workload(&Executor::cpu(2), "audio", 3, &RunOptions::default());
    let names: Vec<&str> = a.outputs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["mel", "features", "attention_map"]);
    assert!(
        a.accounting.flops > 0 && a.accounting.energy_j > 0.0 && a.nodes.len() == a.node_ids.len()
    );
}

/// Child side of the cross-process test: prints the hashes when asked to. Without the
/// variable it checks the manifest checksum is stable within the process.
#[test]
fn child_print_hashes() {
    if std::env::var_os(CHILD_ENV).is_none() {
        let (_, a) = job("lm", Size::Tiny, 0);
        let (_, b) = job("lm", Size::Tiny, 0);
        assert_eq!(a.checksum, b.checksum);
        assert_eq!(a.weights, b.weights);
        return;
    }
    for name in workloads::NAMES {
        let r = run_workload(&Executor::cpu(3), name, 11, &RunOptions::default());
        println!("HASH {name} {}", hex(&r.runtime_hash));
    }
}

#[test]
fn same_hash_in_another_process() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "workloads::child_print_hashes",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {text}");
    for name in workloads::NAMES {
        let mine =
            hex(&run_workload(&Executor::cpu(1), name, 11, &RunOptions::default()).runtime_hash);
        let line = format!("HASH {name} {mine}");
        assert!(
            text.contains(&line),
            "{name}: child printed\n{text}\nexpected {line}"
        );
    }
}
