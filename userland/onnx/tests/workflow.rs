//! The `diffusion` workflow: request validation, determinism across thread counts, the
//! PNG, and the multistep manifest.

use havn_exec::{BackendKind, Executor, RunOptions};
use havn_onnx::diffusion::{execute, inputs, png, DiffusionRequest, MAX_STEPS};

#[test]
fn bad_requests_name_the_field() {
    let cases: [(&str, &str); 8] = [
        (r#"{"steps":0}"#, "steps"),
        (r#"{"steps":10000}"#, "steps"),
        (r#"{"width":64}"#, "width"),
        (r#"{"height":4096}"#, "height"),
        (r#"{"difficulty":0}"#, "difficulty"),
        (r#"{"difficulty":101}"#, "difficulty"),
        (r#"{"steps":1,"seed_of_doom":1}"#, "unknown field"),
        (r#"{"steps":"#, "invalid JSON"),
    ];
    for (body, want) in cases {
        let e = DiffusionRequest::from_json(body.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{body}: {e}");
    }
    let r = DiffusionRequest::from_json(br#"{"steps":2,"difficulty":7}"#).unwrap();
    assert_eq!((r.steps, r.difficulty, r.width, r.height), (2, 7, 128, 128));
    assert!(inputs(&DiffusionRequest {
        steps: MAX_STEPS + 1,
        ..Default::default()
    })
    .is_err());
}

#[test]
fn one_step_is_identical_at_one_and_two_threads() {
    let Some(model) = crate::common::model() else {
        return;
    };
    let req = DiffusionRequest {
        difficulty: 80,
        ..Default::default()
    };
    let m = model.manifest(1).unwrap();
    let mut runs = Vec::new();
    for threads in [1, 2] {
        let exec = Executor::with_backend(BackendKind::Cpu, threads).unwrap();
        let t0 = std::time::Instant::now();
        let (_, r) = execute(
            model,
            &m,
            inputs(&req).unwrap(),
            42,
            &exec,
            &RunOptions::default(),
        )
        .unwrap();
        eprintln!(
            "diffusion 1 step, {threads} thread(s): {:.2} s",
            t0.elapsed().as_secs_f64()
        );
        runs.push(r);
    }
    assert_eq!(
        runs[0].runtime_hash, runs[1].runtime_hash,
        "thread count changed the result"
    );
    assert_eq!(runs[0].outputs_cid, runs[1].outputs_cid);
    let h = &runs[0].outputs[0].1;
    assert_eq!(h.shape, vec![128, 128]);
    let v = h.as_f32("height").unwrap();
    let mean = v.iter().sum::<f32>() / v.len() as f32;
    let sd = (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / v.len() as f32).sqrt();
    assert!(
        v.iter().all(|x| (-1.0..=1.0).contains(x)),
        "outside the model's clip range"
    );
    assert!(sd > 0.02, "a flat field (sd {sd}) is not terrain");
    // The PNG is deterministic and decodes to the same 16-bit field.
    let (p1, p2) = (png(h).unwrap(), png(&runs[1].outputs[0].1).unwrap());
    assert_eq!(p1, p2);
    let dec = png::Decoder::new(std::io::Cursor::new(p1));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!(
        (info.width, info.height, info.bit_depth),
        (128, 128, png::BitDepth::Sixteen)
    );
    let first = u16::from_be_bytes([buf[0], buf[1]]);
    assert_eq!(
        first,
        (((v[0] + 1.0) * 0.5).clamp(0.0, 1.0) * 65535.0).round_ties_even() as u16
    );
    // Another seed gives another field.
    let exec = Executor::with_backend(BackendKind::Cpu, 2).unwrap();
    let (_, other) = execute(
        model,
        &m,
        inputs(&req).unwrap(),
        43,
        &exec,
        &RunOptions::default(),
    )
    .unwrap();
    assert_ne!(other.outputs_cid, runs[0].outputs_cid);
}

#[test]
fn multistep_manifests_unroll_the_sampler() {
    let Some(model) = crate::common::model() else {
        return;
    };
    let one = model.manifest(1).unwrap();
    let three = model.manifest(3).unwrap();
    let unet = model.unet_manifest().unwrap().nodes.len();
    assert_eq!(one.nodes.len(), unet + 3, "randn, scale, the UNet, reshape");
    assert_eq!(
        three.nodes.len(),
        3 * unet + 3 * 2 + 2 + 1,
        "per step randn+scale, 2 adds, reshape"
    );
    assert_ne!(one.checksum(), three.checksum());
    three.plan().expect("the unrolled DAG validates");
    let s = havn_onnx::diffusion::sigmas(3);
    assert_eq!(s[0], 80.0);
    assert!(s.windows(2).all(|w| w[0] > w[1]) && s[2] > 0.002, "{s:?}");
    assert!(model.manifest(0).is_err() && model.manifest(MAX_STEPS + 1).is_err());
}
