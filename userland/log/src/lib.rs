//! One structured log format for havn-init and every daemon: JSON lines on stderr,
//! event fields at the top level next to `timestamp`, `level`, `message` and `target`,
//! plus the current span's fields (e.g. netd's job correlation id). One format means an
//! operator can read `node.log` (all processes interleaved) with one query.

/// Installs the subscriber. `filter` is a `tracing` `EnvFilter` directive
/// (`info`, `havn_netd=debug`, …); `None` or an invalid directive means `info`.
/// Calling it twice is harmless (the second call does nothing).
pub fn init(filter: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter.unwrap_or("info"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
