//! CPU/GPU bit-equality for every operator and every workload (skips without a GPU).

use crate::common::{gpu_or_skip, run_op, run_workload};
use havn_exec::exec::RunOptions;
use havn_exec::manifest::hex;
use havn_exec::{Executor, Tensor};

#[test]
fn gpu_ops_bit_identical_to_cpu() {
    let Some(gpu) = gpu_or_skip() else { return };
    let cpu = Executor::cpu(2);
    let mut failures = Vec::new();
    for (op, ins) in crate::ops::cases() {
        let refs: Vec<&Tensor> = ins.iter().collect();
        let c = run_op(&cpu, &op, &refs);
        let g = run_op(&gpu, &op, &refs);
        let ok = c.hash() == g.hash();
        println!(
            "gpu-eq {:<10} {}",
            op.name(),
            if ok { "identical" } else { "DIFFERS" }
        );
        if !ok {
            failures.push(op.name());
        }
    }
    // Matmuls that use the 64×64-tile kernel (small grid) and the 128×128 one (grid ≥ SM
    // count), both with a K tail that is not a multiple of 8.
    for (tag, m, k, n) in [("64-tile", 300, 261, 200), ("128-tile", 1536, 37, 1536)] {
        let a = crate::common::randn(90, &[m, k], 1.0);
        let b = crate::common::randn(91, &[k, n], 1.0);
        let bias = crate::common::randn(92, &[n], 1.0);
        let op = havn_exec::ops::Op::MatMul;
        let ok = run_op(&cpu, &op, &[&a, &b, &bias]).hash()
            == run_op(&gpu, &op, &[&a, &b, &bias]).hash();
        println!(
            "gpu-eq matmul-{tag}-{m}x{k}x{n} {}",
            if ok { "identical" } else { "DIFFERS" }
        );
        if !ok {
            failures.push("matmul-large");
        }
    }
    assert!(failures.is_empty(), "CPU/GPU differ: {failures:?}");
}

#[test]
fn gpu_workloads_bit_identical_to_cpu() {
    let Some(gpu) = gpu_or_skip() else { return };
    for name in havn_exec::workloads::NAMES {
        let c = run_workload(&Executor::cpu(2), name, 21, &RunOptions::default());
        let g = run_workload(&gpu, name, 21, &RunOptions::default());
        println!(
            "gpu-eq workload {name}: cpu {} gpu {}",
            hex(&c.runtime_hash),
            hex(&g.runtime_hash)
        );
        assert_eq!(g.accounting.backend, "cuda");
        assert_eq!(
            c.runtime_hash, g.runtime_hash,
            "{name}: CPU and GPU runtime hashes differ"
        );
    }
}

#[test]
fn gpu_runs_report_nvml_power_and_measured_energy() {
    let Some(gpu) = gpu_or_skip() else { return };
    let r = run_workload(&gpu, "lm", 5, &RunOptions::default());
    let a = &r.accounting;
    println!(
        "gpu-telemetry energy {:.4} J ({}), sample {:?}, vram {:?}",
        a.energy_j, a.energy_source, a.gpu_telemetry, a.gpu_vram_bytes
    );
    if havn_exec::telemetry::GpuTelemetry::open().is_none() {
        // A GPU without libnvidia-ml: energy falls back to the documented model.
        assert_eq!(a.energy_source, "model");
        return;
    }
    assert_eq!(a.energy_source, "nvml");
    let s = a.gpu_telemetry.expect("NVML sample");
    assert!(s.power_mw > 0, "power draw 0 mW");
    assert!(
        s.mem_used_bytes > 0,
        "no device memory in use during a CUDA run"
    );
    assert!(a.energy_j > 0.0);
}
