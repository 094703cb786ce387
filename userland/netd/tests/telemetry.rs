//! `/metrics` telemetry: energy from the signed receipts, carbon at the configured grid
//! intensity, the timeout rate, and GPU gauges from execd's NVML sample (written here by
//! the test as execd writes it: no GPU on this machine).

use crate::common::*;
use havn_proto::telemetry::{GpuSample, GpuTelemetry, GPU_TELEMETRY_FILE};
use havn_proto::ComputeClass;
use std::time::Duration;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_carry_energy_carbon_timeouts_and_fresh_gpu_gauges() {
    let state = tmpdir("telemetry");
    // An absurd grid (9e8 gCO2/kWh) so that the stand-in's 4 mJ make a round 1 g.
    let node = start_node(
        Cfg {
            state_dir: Some(state.clone()),
            netd_extra: Some("grid_gco2_per_kwh = 900000000.0".into()),
            ..Cfg::default()
        },
        ComputeClass::M,
        Duration::ZERO,
    )
    .await;
    let mut c = node.orchestrator().await;
    for id in ["e1", "e2"] {
        let r = c
            .post("/job/accept", serde_json::to_vec(&job(id)).unwrap())
            .await
            .unwrap();
        let t = r.json::<serde_json::Value>().unwrap()["ticket_id"]
            .as_u64()
            .unwrap();
        wait_terminal(&mut c, t).await;
    }
    let m = node.operator_metrics().await;
    // The stand-in execd's receipts estimate 2 mJ each.
    assert!(m.contains("havn_netd_energy_joules_total 0.004"), "{m}");
    assert!(m.contains("havn_netd_jobs_timed_out_total 0"), "{m}");
    assert!(m.contains("havn_netd_job_timeout_ratio 0.000000"), "{m}");
    assert!(m.contains("havn_netd_carbon_grams_total 1.000000"), "{m}");
    assert!(
        m.contains("havn_netd_grid_intensity_gco2_per_kwh 900000000"),
        "{m}"
    );
    assert!(
        !m.contains("havn_gpu_"),
        "no GPU gauges without a sample: {m}"
    );

    // A fresh sample: gauges per GPU; a stale one: none; a torn one: none, no error.
    let file = node.state_dir.join("artifacts").join(GPU_TELEMETRY_FILE);
    let mut t = GpuTelemetry {
        unix_ms: now_ms(),
        gpus: vec![GpuSample {
            index: 0,
            name: "NVIDIA H100 80GB HBM3".into(),
            utilization_percent: 42,
            power_milliwatts: 312_500,
            energy_millijoules: 9_000_000,
            memory_used_bytes: 1 << 30,
        }],
    };
    std::fs::write(&file, serde_json::to_vec(&t).unwrap()).unwrap();
    let m = node.operator_metrics().await;
    for line in [
        r#"havn_gpu_utilization_ratio{gpu="0",model="NVIDIA H100 80GB HBM3"} 0.42"#,
        r#"havn_gpu_power_watts{gpu="0",model="NVIDIA H100 80GB HBM3"} 312.500"#,
        r#"havn_gpu_energy_joules_total{gpu="0",model="NVIDIA H100 80GB HBM3"} 9000.000"#,
        r#"havn_gpu_memory_used_bytes{gpu="0",model="NVIDIA H100 80GB HBM3"} 1073741824"#,
        "# TYPE havn_gpu_energy_joules_total counter",
    ] {
        assert!(m.contains(line), "{line} missing:\n{m}");
    }
    t.unix_ms -= 120_000;
    std::fs::write(&file, serde_json::to_vec(&t).unwrap()).unwrap();
    assert!(
        !node.operator_metrics().await.contains("havn_gpu_"),
        "a stale sample is not served"
    );
    std::fs::write(&file, b"{\"unix_ms\": 1, \"gpus\": [").unwrap();
    assert!(!node.operator_metrics().await.contains("havn_gpu_"));
    // The file is not an artifact anyone can fetch (not even an operator: not a CID).
    let mut op = operator()
        .connect("127.0.0.1", node.running.local_addr.port())
        .await
        .unwrap();
    let r = op
        .get(&format!("/artifact/{GPU_TELEMETRY_FILE}"))
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    drop(node);

    // Totals survive a restart: rebuilt from the WAL.
    let node = start_node(
        Cfg {
            state_dir: Some(state),
            ..Cfg::default()
        },
        ComputeClass::M,
        Duration::ZERO,
    )
    .await;
    let m = node.operator_metrics().await;
    assert!(m.contains("havn_netd_energy_joules_total 0.004"), "{m}");
}
