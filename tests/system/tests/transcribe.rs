//! The `transcribe` workflow on a real node: Whisper tiny.en transcribes an uploaded WAV
//! (over gRPC), the receipt's runtime hash and outputs are reproduced by a validator's
//! `havnctl run transcribe`, encoder blocks are challenged one at a time, and a stereo
//! file is refused naming the field.

use crate::chat::{chat_node, store};
use crate::harness::{havnctl_ok, stderr};
use serde_json::Value;

/// 16 kHz mono 16-bit WAV bytes of `samples`.
fn wav(samples: &[i16], channels: u16) -> Vec<u8> {
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&16_000u32.to_le_bytes());
    b.extend_from_slice(&(32_000 * channels as u32).to_le_bytes());
    b.extend_from_slice(&(2 * channels).to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(&data);
    b
}

/// espeak-ng speaking `text`, resampled from its 22,050 Hz to 16 kHz (linear).
fn speech(text: &str, dir: &std::path::Path) -> Option<Vec<i16>> {
    if !havn_testkit::require_tool("espeak-ng", "the transcribe system test's speech clip") {
        return None;
    }
    let p = dir.join("espeak.wav");
    let o = std::process::Command::new("espeak-ng")
        .args(["-s", "150", "-w"])
        .arg(&p)
        .arg(text)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "espeak-ng: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let b = std::fs::read(&p).unwrap();
    let at = b.windows(4).position(|w| w == b"data").unwrap() + 8;
    let x: Vec<f64> = b[at..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]) as f64)
        .collect();
    let n = x.len() * 16_000 / 22_050;
    Some(
        (0..n)
            .map(|i| {
                let t = i as f64 * 22_050.0 / 16_000.0;
                let (k, f) = (t as usize, t.fract());
                let (a, b) = (x[k.min(x.len() - 1)], x[(k + 1).min(x.len() - 1)]);
                (a + (b - a) * f).round() as i16
            })
            .collect(),
    )
}

#[test]
fn a_node_transcribes_a_wav_and_a_validator_reproduces_it() {
    if !crate::harness::need_root() {
        return;
    }
    let Some(store) = store() else { return };
    let node = chat_node(&store);
    let Some(samples) = speech(
        "Please open the window and let the fresh air in.",
        &node.path(""),
    ) else {
        return;
    };
    let clip = node.path("clip.wav");
    std::fs::write(&clip, wav(&samples, 1)).unwrap();
    let clip_s = clip.display().to_string();
    let receipt = node.p("transcribe.receipt.json");
    let o = node.ctl(
        "orchestrator",
        &[
            "submit",
            "--grpc",
            "--workflow",
            "transcribe",
            "--input",
            &clip_s,
            "--job-id",
            "sys-transcribe",
            "--wait",
            "--timeout",
            "300",
            "--receipt-out",
            &receipt,
        ],
    );
    assert!(
        o.status.success(),
        "submit: {}\nlog:\n{}",
        stderr(&o),
        node.log()
    );
    let r: Value = serde_json::from_slice(&std::fs::read(&receipt).unwrap()).unwrap();
    let r = &r["receipt"];
    assert_eq!(r["workflow_id"], "transcribe");

    let v: Value = serde_json::from_str(
        havnctl_ok(&[
            "run",
            "transcribe",
            "--store",
            &store,
            "--audio",
            &clip_s,
            "--threads",
            "1",
            "--out",
            &node.p("reexec"),
            "--json",
        ])
        .trim(),
    )
    .unwrap();
    assert_eq!(v["runtime_hash"], r["runtime_hash"], "re-execution differs");
    assert_eq!(v["outputs_cid"], r["outputs_cid"], "outputs differ");
    let text = v["text"].as_str().unwrap().to_lowercase();
    assert!(text.contains("open the window"), "transcript {text:?}");

    // Encoder blocks, chosen by the validator, re-executed alone against the receipt.
    for n in ["enc0", "enc3", "enc5"] {
        let o = node.ctl(
            "validator",
            &[
                "challenge",
                "--job",
                "sys-transcribe",
                "--node",
                n,
                "--receipt",
                &receipt,
                "--store",
                &store,
                "--out",
                &node.p(&format!("challenge-{n}")),
            ],
        );
        assert!(
            o.status.success() && stderr(&o).contains("challenge passed"),
            "challenge of {n}: {}\nlog:\n{}",
            stderr(&o),
            node.log()
        );
    }
    for n in ["enc9", "s1.b0"] {
        let o = node.ctl(
            "validator",
            &[
                "challenge",
                "--job",
                "sys-transcribe",
                "--node",
                n,
                "--receipt",
                &receipt,
                "--store",
                &store,
                "--out",
                &node.p("challenge-bad"),
            ],
        );
        assert!(
            !o.status.success()
                && stderr(&o).contains(if n == "enc9" {
                    "no block enc9"
                } else {
                    "enc<block>"
                }),
            "{n}: {}",
            stderr(&o)
        );
    }

    // A stereo file is refused with the field named, and nothing is signed for it.
    let stereo: Vec<i16> = samples.iter().flat_map(|&s| [s, s]).collect();
    std::fs::write(&clip, wav(&stereo, 2)).unwrap();
    let o = node.ctl(
        "orchestrator",
        &[
            "submit",
            "--workflow",
            "transcribe",
            "--input",
            &clip_s,
            "--job-id",
            "sys-transcribe-stereo",
            "--wait",
            "--timeout",
            "60",
        ],
    );
    // Refused at intake (400, the field named): nothing was queued.
    assert!(
        !o.status.success()
            && stderr(&o).contains("400")
            && stderr(&o).contains("inputs[0].channels"),
        "{}",
        stderr(&o)
    );
}
