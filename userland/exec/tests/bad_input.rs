//! Every kind of bad input is refused with its specific error, before any work.

use crate::common::job;
use havn_exec::caps::{Capabilities, GpuInfo};
use havn_exec::exec::{preflight, Job, RunOptions};
use havn_exec::manifest::{Manifest, Node, TensorSpec};
use havn_exec::ops::Op;
use havn_exec::tensor::save_safetensors;
use havn_exec::workloads::Size;
use havn_exec::{DType, ExecError, Executor, ManifestRegistry, Tensor};
use havn_proto::{Cid, ComputeClass};

fn custom(nodes: Vec<Node>, input: Tensor) -> (ManifestRegistry, Job) {
    let m = Manifest {
        name: "custom".into(),
        class: ComputeClass::S,
        inputs: vec![TensorSpec {
            name: "x".into(),
            dtype: input.dtype(),
            shape: input.shape.clone(),
        }],
        weights_cid: None,
        weights: vec![],
        outputs: nodes.last().map(|n| vec![n.id.clone()]).unwrap_or_default(),
        nodes,
    };
    let mut reg = ManifestRegistry::new();
    let checksum = reg.register(&m);
    let inputs = save_safetensors(&[("x".into(), input)]).unwrap();
    (
        reg,
        Job {
            checksum,
            manifest: m,
            weights: vec![],
            inputs_cid: Cid::of_bytes(&inputs),
            inputs,
            seed: 0,
        },
    )
}

fn node(id: &str, op: Op, ins: &[&str]) -> Node {
    Node {
        id: id.into(),
        op,
        inputs: ins.iter().map(|s| s.to_string()).collect(),
    }
}

fn with_inputs(mut j: Job, ts: Vec<(String, Tensor)>) -> Job {
    j.inputs = save_safetensors(&ts).unwrap();
    j.inputs_cid = Cid::of_bytes(&j.inputs);
    j
}

fn x4() -> Tensor {
    Tensor::f32(vec![4], vec![1.0, 2.0, 3.0, 4.0]).unwrap()
}

#[test]
fn manifest_json_round_trip_keeps_checksum() {
    for name in havn_exec::workloads::NAMES {
        let (_, j) = job(name, Size::Tiny, 0);
        let bytes = serde_json::to_vec_pretty(&j.manifest).unwrap();
        let back = Manifest::from_json(&bytes).unwrap();
        assert_eq!(back.checksum(), j.checksum, "{name}");
        assert_eq!(back.canonical_bytes(), j.manifest.canonical_bytes());
    }
    assert!(Manifest::from_json(b"{not json").is_err());
}

#[test]
fn wrong_shape_dtype_missing() {
    let (reg, j) = job("lm", Size::Tiny, 0);
    let e = preflight(
        &reg,
        &with_inputs(
            j.clone(),
            vec![(
                "prompt".into(),
                Tensor::i32(vec![3], vec![1, 2, 3]).unwrap(),
            )],
        ),
    );
    assert!(
        matches!(e, Err(ExecError::ShapeMismatch { ref name, .. }) if name == "prompt"),
        "{e:?}"
    );
    let e = preflight(
        &reg,
        &with_inputs(
            j.clone(),
            vec![("prompt".into(), Tensor::f32(vec![8], vec![0.0; 8]).unwrap())],
        ),
    );
    assert!(
        matches!(
            e,
            Err(ExecError::DTypeMismatch {
                expected: DType::I32,
                got: DType::F32,
                ..
            })
        ),
        "{e:?}"
    );
    let e = preflight(&reg, &with_inputs(j.clone(), vec![("other".into(), x4())]));
    assert!(
        matches!(e, Err(ExecError::MissingTensor { ref name }) if name == "prompt"),
        "{e:?}"
    );
    let mut g = j;
    g.inputs = b"not a safetensors file".to_vec();
    g.inputs_cid = Cid::of_bytes(&g.inputs);
    assert!(matches!(
        preflight(&reg, &g),
        Err(ExecError::Safetensors { .. })
    ));
}

#[test]
fn checksum_and_cid_mismatches() {
    let (reg, j) = job("diffusion", Size::Tiny, 0);
    // Manifest altered after registration.
    let mut m = j.clone();
    if let Op::Scale { factor } = &mut m.manifest.nodes.last_mut().unwrap().op {
        *factor = 0.5;
    }
    assert!(matches!(
        preflight(&reg, &m),
        Err(ExecError::ManifestChecksumMismatch { .. })
    ));
    // Unregistered checksum.
    let mut u = j.clone();
    u.checksum = [7; 32];
    assert!(matches!(
        preflight(&reg, &u),
        Err(ExecError::UnknownWorkflow { .. })
    ));
    // Input bytes do not match the job's CID.
    let mut c = j.clone();
    c.inputs_cid = Cid::of_bytes(b"something else");
    assert!(
        matches!(preflight(&reg, &c), Err(ExecError::CidMismatch { ref what, .. }) if what == "inputs")
    );
    // Weights altered.
    let mut w = j;
    let last = w.weights.len() - 1;
    w.weights[last] ^= 1;
    assert!(
        matches!(preflight(&reg, &w), Err(ExecError::CidMismatch { ref what, .. }) if what == "weights")
    );
}

#[test]
fn dag_errors() {
    let (reg, j) = custom(
        vec![node("a", Op::Add, &["x", "b"]), node("b", Op::Silu, &["a"])],
        x4(),
    );
    assert!(matches!(preflight(&reg, &j), Err(ExecError::Cycle { .. })));
    let (reg, j) = custom(vec![node("a", Op::Add, &["x", "nope"])], x4());
    assert!(
        matches!(preflight(&reg, &j), Err(ExecError::UnknownReference { ref name, .. }) if name == "nope")
    );
    let (reg, j) = custom(
        vec![node("a", Op::Silu, &["x"]), node("a", Op::Silu, &["x"])],
        x4(),
    );
    assert!(matches!(
        preflight(&reg, &j),
        Err(ExecError::DuplicateName { .. })
    ));
    let (reg, j) = custom(vec![node("a", Op::MatMul, &["x", "x"])], x4());
    assert!(matches!(
        preflight(&reg, &j),
        Err(ExecError::InvalidNode { .. })
    ));
    let (reg, j) = custom(
        vec![
            node("a", Op::Add, &["x", "x"]),
            node("b", Op::Conv2d { stride: 1, pad: 0 }, &["a", "a", "a"]),
        ],
        x4(),
    );
    assert!(matches!(
        preflight(&reg, &j),
        Err(ExecError::InvalidNode { .. })
    ));
}

#[test]
fn non_finite_inputs_and_outputs() {
    let (reg, j) = custom(
        vec![node("a", Op::Silu, &["x"])],
        Tensor::f32(vec![4], vec![1.0, f32::NAN, 0.0, 0.0]).unwrap(),
    );
    assert!(matches!(
        preflight(&reg, &j),
        Err(ExecError::NonFinite { index: 1, .. })
    ));
    let (reg, j) = custom(
        vec![node("a", Op::Silu, &["x"])],
        Tensor::f32(vec![4], vec![1.0, 0.0, f32::INFINITY, 0.0]).unwrap(),
    );
    assert!(matches!(
        preflight(&reg, &j),
        Err(ExecError::NonFinite { index: 2, .. })
    ));
    // Finite inputs that overflow in a node: refused at that node, no hash produced.
    let (reg, j) = custom(vec![node("a", Op::Scale { factor: 3e38 }, &["x"])], x4());
    let p = preflight(&reg, &j).unwrap();
    let r = Executor::cpu(1).execute(&p, &RunOptions::default());
    assert!(
        matches!(r, Err(ExecError::NonFiniteOutput { ref node, .. }) if node == "a"),
        "{r:?}"
    );
}

#[test]
fn token_out_of_range_is_an_error_not_a_panic() {
    let (reg, j) = job("lm", Size::Tiny, 0);
    let j = with_inputs(
        j,
        vec![(
            "prompt".into(),
            Tensor::i32(vec![8], vec![1, 2, 300, 4, 5, 6, 7, 8]).unwrap(),
        )],
    );
    let p = preflight(&reg, &j).unwrap();
    let r = Executor::cpu(1).execute(&p, &RunOptions::default());
    assert!(
        matches!(r, Err(ExecError::IndexOutOfRange { index: 300, .. })),
        "{r:?}"
    );
}

#[test]
fn gpu_class_job_refused_on_cpu_node_and_huge_shapes_refused() {
    use havn_exec::preflight_for_node;
    let (_, j) = custom(vec![node("a", Op::Silu, &["x"])], x4());
    let mut m = j.manifest.clone();
    m.class = ComputeClass::M;
    let mut reg = ManifestRegistry::new();
    let checksum = reg.register(&m);
    let j = Job {
        checksum,
        manifest: m,
        ..j
    };
    let cpu_only = Capabilities {
        cpu_cores: 8,
        ram_bytes: 32 << 30,
        gpus: vec![],
        nvlink: None,
        gpu_absent_reason: None,
    };
    assert!(matches!(
        preflight_for_node(&reg, &j, &cpu_only),
        Err(ExecError::ClassUnavailable {
            required: ComputeClass::M,
            ..
        })
    ));
    let gpu = Capabilities {
        gpus: vec![GpuInfo {
            name: "L4".into(),
            vram_bytes: 24_000_000_000,
        }],
        ..cpu_only
    };
    preflight_for_node(&reg, &j, &gpu).unwrap();
    // A node whose output would be absurdly large is refused before allocation.
    let (reg, j) = custom(
        vec![node(
            "a",
            Op::RandN {
                shape: vec![1 << 20, 1 << 20],
            },
            &[],
        )],
        x4(),
    );
    assert!(matches!(
        preflight(&reg, &j),
        Err(ExecError::InvalidNode { .. })
    ));
}

#[test]
fn direct_op_call_with_bad_shapes_is_an_error() {
    use havn_exec::cpu::OpCtx;
    let ctx = OpCtx {
        node: "n",
        node_index: 0,
        seed: 0,
        threads: 1,
    };
    let a = Tensor::f32(vec![2, 3], vec![0.0; 6]).unwrap();
    let b = Tensor::f32(vec![4, 2], vec![0.0; 8]).unwrap();
    let e = Executor::cpu(1).run_op(&Op::MatMul, &[&a, &b], &[2, 2], &ctx);
    assert!(matches!(e, Err(ExecError::InvalidNode { .. })), "{e:?}");
    let e = Executor::cpu(1).run_op(&Op::Silu, &[&a], &[3, 2], &ctx);
    assert!(matches!(e, Err(ExecError::InvalidNode { .. })), "{e:?}");
    assert!(Tensor::f32(vec![2, 2], vec![0.0; 3]).is_err());
}

#[test]
fn gpu_classes_refused_without_gpu() {
    let cpu_only = Capabilities {
        cpu_cores: 16,
        ram_bytes: 64 << 30,
        gpus: vec![],
        nvlink: None,
        gpu_absent_reason: Some("test".into()),
    };
    assert_eq!(cpu_only.class(), Some(ComputeClass::S));
    assert!(cpu_only.can_run(ComputeClass::S));
    for c in [ComputeClass::M, ComputeClass::L, ComputeClass::XL] {
        assert!(matches!(
            cpu_only.require(c),
            Err(ExecError::ClassUnavailable { .. })
        ));
    }
    let h100 = Capabilities {
        gpus: vec![GpuInfo {
            name: "NVIDIA H100 80GB HBM3".into(),
            vram_bytes: 85_000_000_000,
        }],
        ..cpu_only.clone()
    };
    assert_eq!(h100.class(), Some(ComputeClass::L));
    let dual = Capabilities {
        gpus: vec![h100.gpus[0].clone(), h100.gpus[0].clone()],
        nvlink: Some(true),
        ..h100.clone()
    };
    assert_eq!(dual.class(), Some(ComputeClass::XL));
    let dual_unknown = Capabilities {
        nvlink: None,
        ..dual
    };
    assert_eq!(
        dual_unknown.class(),
        Some(ComputeClass::L),
        "XL needs NVLink known"
    );
    let m = Capabilities {
        ram_bytes: 32 << 30,
        gpus: vec![GpuInfo {
            name: "RTX 4090".into(),
            vram_bytes: 25_000_000_000,
        }],
        ..cpu_only
    };
    assert_eq!(m.class(), Some(ComputeClass::M));
    assert!(!m.can_run(ComputeClass::L));
    let here = Capabilities::detect();
    assert!(here.cpu_cores >= 1 && here.ram_bytes > 0);
    if here.gpus.is_empty() {
        assert!(!here.can_run(ComputeClass::M));
    }
}
