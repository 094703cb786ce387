//! Agent latency on swtpm: quote, seal, unseal, extend, gate (median, p99), next to a
//! one-PCR read (one TPM2_PCR_Read round trip through the same TSS stack and socket)
//! as the same-run baseline.
//! `cargo bench -p havn-attest-agent --bench tpm_latency`
//! Prints `op,n,median_ms,p99_ms` CSV, then `BENCH name value ms baseline ratio` lines.

use havn_attest_agent::testing::Swtpm;
use havn_attest_agent::{Agent, AgentConfig};
use std::time::Instant;

/// Print the CSV row; return (median, p99) in ms.
fn stats(name: &str, mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    println!("{name},{},{:.3},{:.3}", v.len(), pick(0.5), pick(0.99));
    (pick(0.5), pick(0.99))
}

fn time(n: usize, mut f: impl FnMut()) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

fn main() {
    std::env::set_var("TSS2_LOG", "all+none");
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let tpm = Swtpm::start().expect("swtpm");
    let state = tpm.dir().join("bench-state");
    let mut cfg = AgentConfig::new(&tpm.tcti(), &state);
    cfg.seal_pcrs = (0..8).collect();
    cfg.quote_pcrs = (0..16).collect();
    let mut agent = Agent::open(cfg).expect("agent");
    let key = agent.create_node_key().expect("seal");
    let pk = key.public();
    println!("op,n,median_ms,p99_ms");
    let pcr = stats(
        "pcr_read",
        time(n, || {
            agent.read_pcrs(&[0]).expect("pcr read");
        }),
    );
    let quote = stats(
        "quote",
        time(n, || {
            agent
                .quote(b"nonce-0123456789", &pk, &[0x50; 32])
                .expect("quote");
        }),
    );
    let seal = stats(
        "seal",
        time(n / 4, || {
            agent.create_node_key().expect("seal");
        }),
    );
    let unseal = stats(
        "unseal",
        time(n / 4, || {
            agent.unseal_node_key().expect("unseal");
        }),
    );
    stats(
        "extend",
        time(n, || {
            agent.extend(14, "bench", "bench", b"x").expect("extend");
        }),
    );
    stats(
        "gate",
        time(n, || {
            agent.gate().expect("gate");
        }),
    );
    for (op, (med, p99)) in [("quote", quote), ("seal", seal), ("unseal", unseal)] {
        println!(
            "BENCH tpm_{op}_p50 {med:.3} ms {:.3} {:.2}",
            pcr.0,
            med / pcr.0
        );
        println!(
            "BENCH tpm_{op}_p99 {p99:.3} ms {:.3} {:.2}",
            pcr.1,
            p99 / pcr.1
        );
    }
}
