//! Shared helpers.

use havn_exec::cpu::OpCtx;
use havn_exec::exec::{preflight, Job, RunOptions, RunResult};
use havn_exec::ops::Op;
use havn_exec::rng::Stream;
use havn_exec::workloads::{self, Size};
use havn_exec::{Executor, ManifestRegistry, Tensor};
use havn_proto::Cid;

/// Deterministic test data: normal(0, scale).
pub fn randn(tag: u32, shape: &[usize], scale: f32) -> Tensor {
    let s = Stream {
        seed: 0x7e57,
        node: tag,
    };
    let n: usize = shape.iter().product();
    Tensor::f32(
        shape.to_vec(),
        (0..n as u64).map(|i| s.normal(i) * scale).collect(),
    )
    .unwrap()
}

pub fn f32s(t: &Tensor) -> &[f32] {
    t.as_f32("t").unwrap()
}

/// Runs one op on an executor (shape inferred).
pub fn run_op(exec: &Executor, op: &Op, ins: &[&Tensor]) -> Tensor {
    let specs: Vec<_> = ins.iter().map(|t| (t.dtype(), t.shape.clone())).collect();
    let (_, shape) = op.infer("test", &specs).unwrap();
    let ctx = OpCtx {
        node: "test",
        node_index: 7,
        seed: 42,
        threads: exec.threads(),
    };
    exec.run_op(op, ins, &shape, &ctx).unwrap()
}

/// A job for a shipped workload with its default inputs.
pub fn job(name: &str, size: Size, seed: u64) -> (ManifestRegistry, Job) {
    let wl = workloads::build(name, size).unwrap();
    let mut reg = ManifestRegistry::new();
    let checksum = reg.register(&wl.manifest);
    let job = Job {
        checksum,
        manifest: wl.manifest,
        weights: wl.weights,
        inputs_cid: Cid::of_bytes(&wl.default_inputs),
        inputs: wl.default_inputs,
        seed,
    };
    (reg, job)
}

pub fn run_workload(exec: &Executor, name: &str, seed: u64, opts: &RunOptions) -> RunResult {
    let (reg, job) = job(name, Size::Tiny, seed);
    let p = preflight(&reg, &job).unwrap();
    exec.execute(&p, opts).unwrap()
}

/// True when a CUDA backend is usable; prints the skip line otherwise.
pub fn gpu_or_skip() -> Option<Executor> {
    match havn_exec::gpu_backend() {
        Ok(_) => Some(Executor::with_backend(havn_exec::BackendKind::Cuda, 2).unwrap()),
        Err(reason) => {
            havn_testkit::note_skip(&format!("no CUDA driver ({reason})"));
            None
        }
    }
}
