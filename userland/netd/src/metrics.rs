//! Prometheus text exposition, hand-formatted from atomics (no registry needed).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Histogram bucket upper bounds in seconds.
const ADMISSION_BUCKETS: [f64; 12] = [
    0.0002, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];
const JOB_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 1800.0];

/// A fixed-bucket histogram.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| s <= *b) {
            if let Some(c) = self.counts.get(i) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Mean of the observations so far (None before the first).
    pub fn mean(&self) -> Option<Duration> {
        let n = self.count.load(Ordering::Relaxed);
        (n > 0).then(|| Duration::from_micros(self.sum_micros.load(Ordering::Relaxed) / n))
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0u64;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cum = cum.saturating_add(c.load(Ordering::Relaxed));
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// All of netd's metrics.
#[derive(Debug)]
pub struct Metrics {
    /// Jobs accepted (new tickets).
    pub accepted: AtomicU64,
    /// Jobs done with a receipt.
    pub completed: AtomicU64,
    /// Jobs failed.
    pub failed: AtomicU64,
    /// Requests refused by admission, by status.
    pub rejected: [(u16, AtomicU64); 10],
    /// TLS handshakes refused.
    pub tls_refused: AtomicU64,
    /// Jobs that failed because they ran past their `timeout_ms`.
    pub timed_out: AtomicU64,
    /// Energy of the jobs done, as their receipts estimate it, in millijoules.
    pub energy_mj: AtomicU64,
    /// SLA alerts raised, delivered, and dropped (retries exhausted, queue full, or the
    /// endpoint gone).
    pub alerts_raised: AtomicU64,
    /// Alert deliveries a receiver acknowledged (2xx).
    pub alerts_delivered: AtomicU64,
    /// Alerts given up on.
    pub alerts_dropped: AtomicU64,
    /// Time from request to ticket (includes the durable WAL write).
    pub admission: Histogram,
    /// Time from dispatch to durable receipt.
    pub job: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            accepted: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            rejected: [400, 403, 404, 408, 409, 413, 415, 429, 503, 507]
                .map(|s| (s, AtomicU64::new(0))),
            tls_refused: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            energy_mj: AtomicU64::new(0),
            alerts_raised: AtomicU64::new(0),
            alerts_delivered: AtomicU64::new(0),
            alerts_dropped: AtomicU64::new(0),
            admission: Histogram::new(&ADMISSION_BUCKETS),
            job: Histogram::new(&JOB_BUCKETS),
        }
    }
}

/// Gauges sampled at scrape time.
#[derive(Debug, Clone, Copy)]
pub struct Gauges {
    /// Queued jobs.
    pub queue_depth: u64,
    /// Running jobs.
    pub running: u64,
    /// WAL group commits.
    pub wal_syncs: u64,
    /// WAL records.
    pub wal_records: u64,
    /// Nanoseconds spent in durable WAL writes.
    pub wal_sync_ns: u64,
    /// The grid's carbon intensity (gCO2/kWh), when configured.
    pub grid_gco2_per_kwh: Option<f64>,
}

/// One Prometheus counter, with its HELP and TYPE lines.
pub fn counter(o: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
}

/// GPU gauges from execd's NVML sample, when it is fresh (at most
/// [`havn_proto::telemetry::GPU_TELEMETRY_MAX_AGE_MS`] old); nothing otherwise.
pub fn render_gpu(t: &havn_proto::telemetry::GpuTelemetry, now_ms: u64) -> String {
    let mut o = String::new();
    let age = now_ms.saturating_sub(t.unix_ms);
    if age > havn_proto::telemetry::GPU_TELEMETRY_MAX_AGE_MS || t.gpus.is_empty() {
        return o;
    }
    type Field = fn(&havn_proto::telemetry::GpuSample) -> String;
    let families: [(&str, &str, &str, Field); 4] = [
        (
            "havn_gpu_utilization_ratio",
            "gauge",
            "GPU busy share over NVML's last sample period.",
            |g| format!("{:.2}", f64::from(g.utilization_percent) / 100.0),
        ),
        (
            "havn_gpu_power_watts",
            "gauge",
            "GPU board power draw.",
            |g| format!("{:.3}", f64::from(g.power_milliwatts) / 1000.0),
        ),
        (
            "havn_gpu_energy_joules_total",
            "counter",
            "GPU energy since the driver loaded (NVML).",
            |g| format!("{:.3}", g.energy_millijoules as f64 / 1000.0),
        ),
        (
            "havn_gpu_memory_used_bytes",
            "gauge",
            "GPU memory in use.",
            |g| g.memory_used_bytes.to_string(),
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for g in &t.gpus {
            let model = g.name.replace(['"', '\\', '\n'], "_");
            let _ = writeln!(
                o,
                "{name}{{gpu=\"{}\",model=\"{model}\"}} {}",
                g.index,
                value(g)
            );
        }
    }
    let _ = writeln!(
        o,
        "# HELP havn_gpu_sample_age_seconds Age of the GPU sample above.\n# TYPE havn_gpu_sample_age_seconds gauge\nhavn_gpu_sample_age_seconds {:.3}",
        age as f64 / 1000.0
    );
    o
}

/// One Prometheus gauge, with its HELP and TYPE lines.
pub fn gauge(o: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

impl Metrics {
    /// Counts a refusal.
    pub fn reject(&self, status: u16) {
        if let Some((_, c)) = self.rejected.iter().find(|(s, _)| *s == status) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Prometheus text format 0.0.4.
    pub fn render(&self, g: Gauges) -> String {
        let mut o = String::with_capacity(4096);
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut o,
            "havn_netd_jobs_accepted_total",
            "Jobs accepted with a new durable ticket (the jobs in the WAL at start included).",
            ld(&self.accepted),
        );
        counter(
            &mut o,
            "havn_netd_jobs_completed_total",
            "Jobs finished with a signed receipt (rebuilt from the WAL at start).",
            ld(&self.completed),
        );
        counter(
            &mut o,
            "havn_netd_jobs_failed_total",
            "Jobs that failed (rebuilt from the WAL at start).",
            ld(&self.failed),
        );
        let _ = writeln!(
            o,
            "# HELP havn_netd_jobs_rejected_total Job submissions refused, by HTTP status.\n# TYPE havn_netd_jobs_rejected_total counter"
        );
        for (s, c) in &self.rejected {
            let _ = writeln!(
                o,
                "havn_netd_jobs_rejected_total{{status=\"{s}\"}} {}",
                ld(c)
            );
        }
        counter(
            &mut o,
            "havn_netd_jobs_timed_out_total",
            "Jobs that ran past their timeout_ms (rebuilt from the WAL at start).",
            ld(&self.timed_out),
        );
        let finished = ld(&self.completed) + ld(&self.failed);
        let _ = writeln!(
            o,
            "# HELP havn_netd_job_timeout_ratio Share of finished jobs that ran past their timeout.\n# TYPE havn_netd_job_timeout_ratio gauge\nhavn_netd_job_timeout_ratio {:.6}",
            if finished == 0 { 0.0 } else { ld(&self.timed_out) as f64 / finished as f64 }
        );
        let joules = ld(&self.energy_mj) as f64 / 1000.0;
        let _ = writeln!(
            o,
            "# HELP havn_netd_energy_joules_total Energy of the jobs done, as their signed receipts estimate it (rebuilt from the WAL at start).\n# TYPE havn_netd_energy_joules_total counter\nhavn_netd_energy_joules_total {joules:.3}"
        );
        if let Some(g) = g.grid_gco2_per_kwh {
            let _ = writeln!(
                o,
                "# HELP havn_netd_carbon_grams_total Emissions of that energy at the configured grid intensity (netd.grid_gco2_per_kwh).\n# TYPE havn_netd_carbon_grams_total counter\nhavn_netd_carbon_grams_total {:.6}\n# HELP havn_netd_grid_intensity_gco2_per_kwh The configured grid carbon intensity.\n# TYPE havn_netd_grid_intensity_gco2_per_kwh gauge\nhavn_netd_grid_intensity_gco2_per_kwh {g}",
                joules / 3.6e6 * g
            );
        }
        counter(
            &mut o,
            "havn_netd_alerts_raised_total",
            "SLA alerts raised.",
            ld(&self.alerts_raised),
        );
        counter(
            &mut o,
            "havn_netd_alerts_delivered_total",
            "Alert deliveries a receiver acknowledged.",
            ld(&self.alerts_delivered),
        );
        counter(
            &mut o,
            "havn_netd_alerts_dropped_total",
            "Alerts given up on (retries exhausted, queue full, endpoint gone).",
            ld(&self.alerts_dropped),
        );
        counter(
            &mut o,
            "havn_netd_tls_refused_total",
            "TLS handshakes refused (no, expired or untrusted client certificate).",
            ld(&self.tls_refused),
        );
        counter(
            &mut o,
            "havn_netd_wal_syncs_total",
            "WAL group commits (durable writes).",
            g.wal_syncs,
        );
        let _ = writeln!(
            o,
            "# HELP havn_netd_wal_sync_seconds_total Time spent in durable WAL writes.\n# TYPE havn_netd_wal_sync_seconds_total counter\nhavn_netd_wal_sync_seconds_total {:.6}",
            g.wal_sync_ns as f64 / 1e9
        );
        counter(
            &mut o,
            "havn_netd_wal_records_total",
            "WAL records written.",
            g.wal_records,
        );
        gauge(
            &mut o,
            "havn_netd_queue_depth",
            "Jobs queued, not yet running.",
            g.queue_depth,
        );
        gauge(
            &mut o,
            "havn_netd_jobs_running",
            "Jobs handed to execd.",
            g.running,
        );
        self.admission.render(
            &mut o,
            "havn_netd_admission_latency_seconds",
            "POST /job/accept latency, request to durable ticket.",
        );
        self.job.render(
            &mut o,
            "havn_netd_job_latency_seconds",
            "Job latency, dispatch to durable receipt.",
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_mean_is_none_when_empty_then_the_mean_of_what_was_observed() {
        let h = Histogram::new(&ADMISSION_BUCKETS);
        assert_eq!(h.mean(), None, "no observation yet");
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_micros(300));
        assert_eq!(h.mean(), Some(Duration::from_micros(200)));
        let mut text = String::new();
        h.render(&mut text, "t", "test");
        assert!(text.contains("t_count 2"), "{text}");
        assert!(text.contains("t_sum 0.0004"), "{text}");
    }
}
