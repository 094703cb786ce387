//! The terrain UNet against onnxruntime (the independent implementation, PyPI, run as a
//! test oracle only): same inputs, outputs within 1e-3 of the output range.

use havn_exec::rng::Stream;
use havn_exec::tensor::{save_safetensors, Tensor};
use havn_exec::{BackendKind, Executor, RunOptions};
use havn_onnx::diffusion::execute;
use std::process::{Command, Stdio};

fn have_ort() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import onnxruntime, numpy"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    havn_testkit::require(
        ok,
        "python3 with onnxruntime and numpy",
        "the UNet reference test (pip install -r userland/onnx/tests/reference/requirements.txt)",
    )
}

fn f32_file(path: &std::path::Path, v: &[f32]) {
    let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, b).unwrap();
}

#[test]
fn unet_matches_onnxruntime() {
    let Some(model) = crate::common::model() else {
        return;
    };
    if !have_ort() {
        return;
    }
    let dir = tempfile_dir();
    let n = 128 * 128;
    // (seed, sigma, difficulty label): pure noise at σ_max, and a low-noise input.
    let cases = [(7u64, 80.0f32, 0.5f32), (11, 2.5, 0.1)];
    let manifest = model.unet_manifest().unwrap();
    let exec = Executor::with_backend(BackendKind::Cpu, 2).unwrap();
    let mut ours = Vec::new();
    let mut req = Vec::new();
    for (i, &(seed, sigma, label)) in cases.iter().enumerate() {
        let s = Stream { seed, node: 0 };
        let noisy: Vec<f32> = (0..n as u64)
            .map(|j| {
                s.normal(j) * sigma
                    + if sigma < 10.0 {
                        ((j % 128) as f32 / 64.0) - 1.0
                    } else {
                        0.0
                    }
            })
            .collect();
        let inputs = save_safetensors(&[
            (
                "difficulty".into(),
                Tensor::f32(vec![1], vec![label]).unwrap(),
            ),
            (
                "noisy".into(),
                Tensor::f32(vec![1, 1, 128, 128], noisy.clone()).unwrap(),
            ),
            ("sigma".into(), Tensor::f32(vec![1], vec![sigma]).unwrap()),
        ])
        .unwrap();
        let t0 = std::time::Instant::now();
        let (_, res) = execute(
            model,
            &manifest,
            inputs.clone(),
            0,
            &exec,
            &RunOptions::default(),
        )
        .unwrap();
        eprintln!(
            "havn UNet call {i}: {:.2} s (2 threads), {} nodes",
            t0.elapsed().as_secs_f64(),
            res.nodes.len()
        );
        if std::env::var_os("HAVN_PROFILE").is_some() {
            let mut by: std::collections::BTreeMap<String, (u64, usize, u64)> = Default::default();
            for n in &res.nodes {
                let e = by.entry(n.op.clone()).or_default();
                e.0 += n.latency_us;
                e.1 += 1;
                e.2 += n.flops / 1_000_000;
            }
            eprintln!("per op (µs, count, MFLOP): {by:?}");
            let opts = RunOptions {
                keep_node_outputs: true,
                ..Default::default()
            };
            let (_, r2) = execute(model, &manifest, inputs.clone(), 0, &exec, &opts).unwrap();
            let total: usize = r2.node_outputs.values().map(|t| t.len() * 4).sum();
            let t1 = std::time::Instant::now();
            for t in r2.node_outputs.values() {
                std::hint::black_box(t.hash_par(2));
            }
            eprintln!(
                "node outputs: {:.1} MB, hashing them on 2 threads: {:.2} s",
                total as f64 / 1e6,
                t1.elapsed().as_secs_f64()
            );
        }
        ours.push(res.outputs[0].1.as_f32("out").unwrap().to_vec());
        let (inp, out) = (
            dir.join(format!("noisy{i}.f32")),
            dir.join(format!("ref{i}.f32")),
        );
        f32_file(&inp, &noisy);
        req.push(
            serde_json::json!({"noisy": inp, "sigma": sigma, "difficulty": label, "out": out}),
        );
    }
    let onnx_path = dir.join("model.onnx");
    std::fs::write(&onnx_path, crate::common::onnx_bytes().unwrap()).unwrap();
    let mut child = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/reference/unet_ref.py"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let body = serde_json::json!({"model": onnx_path, "threads": 1, "cases": req});
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), body.to_string().as_bytes()).unwrap();
    drop(child.stdin.take());
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "unet_ref.py failed");
    eprintln!("onnxruntime: {}", String::from_utf8_lossy(&o.stdout).trim());
    for (i, ours) in ours.iter().enumerate() {
        let b = std::fs::read(dir.join(format!("ref{i}.f32"))).unwrap();
        let theirs: Vec<f32> = b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(theirs.len(), ours.len());
        let (lo, hi) = theirs
            .iter()
            .fold((f32::MAX, f32::MIN), |(l, h), &x| (l.min(x), h.max(x)));
        let range = (hi - lo).max(1e-6);
        let (worst, at) = ours
            .iter()
            .zip(&theirs)
            .enumerate()
            .map(|(j, (a, b))| ((a - b).abs(), j))
            .fold((0.0f32, 0), |m, x| if x.0 > m.0 { x } else { m });
        eprintln!(
            "case {i}: max |havn − onnxruntime| = {worst:.3e} at {at} (output range {lo:.4}..{hi:.4}, relative {:.3e})",
            worst / range
        );
        assert!(
            worst / range <= 1e-3,
            "case {i}: havn differs from onnxruntime by {worst} at element {at} (range {range}): ours {} vs {}",
            ours[at],
            theirs[at]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("havn-onnx-ref-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
