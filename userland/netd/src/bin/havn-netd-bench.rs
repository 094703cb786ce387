//! Intake benchmark: (a) a bare hyper + rustls mTLS echo server, (b) the real netd
//! intake (POST /job/accept, durable WAL commits, dispatcher draining into an
//! in-process execd stand-in that takes `--exec-delay-ms` per job), (c) the same
//! with the WAL's durability off, (d) the same intake as (b) over gRPC (AcceptJob,
//! ALPN h2, same node and port), all in one process with the same load client:
//! keep-alive mTLS connections, bounded concurrency. The servers share one tokio
//! runtime and the client has its own. Runs many short interleaved rounds
//! (a, b, c, a, b, c, ...) and prints each round, the median and spread of the
//! per-round ratios, then the median round's table: requests/s, p50 and p99, the
//! ratio to (a), and CPU time per request.
//!
//! Run: `scripts/bench-intake` (release); `--help` for the options. After the
//! table, `BENCH name value unit baseline ratio` lines (vs the echo server).

use ::bytes::Bytes;
use clap::Parser;
use havn_grpc::v1::intake_client::IntakeClient;
use havn_ipc::{PeerPolicy, Server};
use havn_netd::client::MtlsClient;
use havn_netd::grpc_client::GrpcClient;
use havn_netd::pki::DevPki;
use havn_proto::cid::Cid;
use havn_proto::ipc::*;
use havn_proto::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Benchmark the mTLS job intake against a bare mTLS echo server.
#[derive(Debug, Parser)]
struct Args {
    /// Measured seconds per server and round (after a 1 s warm-up).
    #[arg(long, default_value_t = 2)]
    seconds: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    conns: usize,
    /// Directory for the PKI and the WAL (a disk filesystem: on tmpfs the WAL cannot
    /// use O_DIRECT and nothing is durable).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// WAL writes through the page cache (`pwrite` + `fdatasync`) instead of
    /// `O_DIRECT | O_DSYNC`.
    #[arg(long)]
    wal_buffered: bool,
    /// Interleaved rounds (echo, fsync on, fsync off); the median round is reported,
    /// with the spread of the per-round ratios. The machine's speed drifts by tens
    /// of percent over minutes, so many short rounds pin the ratio down better than
    /// a few long ones.
    #[arg(long, default_value_t = 9)]
    rounds: usize,
    /// Time the execd stand-in takes per job, in ms. The default is about the
    /// shortest real workload (audio, ~9 ms in execd), so the dispatcher runs at a
    /// rate a real executor allows; 0 answers at once and makes the dispatcher
    /// compete with intake at ~20k jobs/s, which no real execd produces.
    #[arg(long, default_value_t = 10)]
    exec_delay_ms: u64,
    /// Install the daemons' JSON log subscriber, so netd logs every accepted job
    /// as it does in production (one line, ~370 bytes, per job, on stderr: send it
    /// to a file). Off by default: the table then measures intake alone.
    #[arg(long)]
    log: bool,
}

const SUM: &str = "1111111111111111111111111111111111111111111111111111111111111111";

fn job_body(id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "job_id": id,
        "workflow": {"id": "lm", "checksum": SUM},
        "inputs": [],
        "compute_class": "S",
        "timeout_ms": 60000,
        "seed": 7
    }))
    .unwrap_or_default()
}

/// Process CPU time (user + system), for CPU cost per request.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we own; RUSAGE_SELF is valid.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Group-commit figures of one fsync-on run.
#[derive(Clone, Copy)]
struct WalFigures {
    records_per_sync: f64,
    sync_us: f64,
    dispatched: u64,
    /// Mean time inside netd from request to ticket (parse, admission, commit).
    admission_us: f64,
}

#[derive(Clone)]
struct Result_ {
    wal: Option<WalFigures>,
    cpu_us_per_req: f64,
    name: &'static str,
    rps: f64,
    p50_us: u64,
    p99_us: u64,
    errors: u64,
}

/// How the load client talks: REST (`POST path`, HTTP/1.1) or gRPC (`AcceptJob`
/// over h2), each with one request in flight per connection.
#[derive(Clone)]
enum Client {
    Rest(MtlsClient, &'static str),
    Grpc(GrpcClient),
}

/// One open connection of a [`Client`].
enum Conn {
    Rest(havn_netd::client::Conn, &'static str),
    Grpc(IntakeClient<havn_netd::grpc_client::Channel>),
}

impl Client {
    async fn connect(&self, port: u16) -> Option<Conn> {
        match self {
            Client::Rest(c, path) => c
                .connect("127.0.0.1", port)
                .await
                .ok()
                .map(|c| Conn::Rest(c, path)),
            Client::Grpc(c) => c.intake("127.0.0.1", port).await.ok().map(Conn::Grpc),
        }
    }
}

impl Conn {
    /// Submits job `id`; true when it was accepted.
    async fn submit(&mut self, id: &str) -> bool {
        match self {
            Conn::Rest(c, path) => {
                matches!(c.post(path, job_body(id)).await, Ok(r) if r.status == 200)
            }
            Conn::Grpc(c) => c.accept_job(grpc_job(id)).await.is_ok(),
        }
    }
}

fn grpc_job(id: &str) -> havn_grpc::v1::AcceptJobRequest {
    use havn_grpc::v1 as pb;
    pb::AcceptJobRequest {
        job_id: id.into(),
        workflow: Some(pb::WorkflowRef {
            id: "lm".into(),
            checksum: SUM.into(),
        }),
        inputs: vec![],
        compute_class: pb::ComputeClass::S as i32,
        timeout_ms: 60_000,
        seed: 7,
        privacy: None,
    }
}

async fn load(
    client: &Client,
    addr: SocketAddr,
    conns: usize,
    secs: u64,
    tag: &'static str,
    name: &'static str,
) -> Result_ {
    let seq = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let warm_until = Instant::now() + Duration::from_secs(1);
    let end = warm_until + Duration::from_secs(secs);
    let mut hs = Vec::new();
    for _ in 0..conns {
        let client = client.clone();
        let seq = seq.clone();
        let errors = errors.clone();
        hs.push(tokio::spawn(async move {
            let mut lat: Vec<u32> = Vec::with_capacity(100_000);
            let Some(mut c) = client.connect(addr.port()).await else {
                errors.fetch_add(1, Ordering::Relaxed);
                return lat;
            };
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let id = format!("{tag}-{n}");
                let t0 = Instant::now();
                if c.submit(&id).await {
                    if t0 >= warm_until {
                        lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    tokio::time::sleep_until((warm_until).into()).await;
    let cpu0 = cpu_time();
    tokio::time::sleep_until(end.into()).await;
    let cpu = cpu_time().saturating_sub(cpu0);
    let mut all = Vec::new();
    for h in hs {
        if let Ok(v) = h.await {
            all.extend(v);
        }
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as u64
    };
    Result_ {
        wal: None,
        cpu_us_per_req: cpu.as_micros() as f64 / all.len().max(1) as f64,
        name,
        rps: all.len() as f64 / secs as f64,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        errors: errors.load(Ordering::Relaxed),
    }
}

async fn echo_server(pki: &DevPki) -> SocketAddr {
    let cfg = havn_netd::tls::server_config(
        pki.node.cert.as_bytes(),
        pki.node.key.as_bytes(),
        pki.ca.cert.as_bytes(),
    )
    .expect("tls");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let body = req.into_body().collect().await.map(|c| c.to_bytes());
                    Ok::<_, hyper::Error>(hyper::Response::new(Full::new(
                        body.unwrap_or_else(|_| Bytes::new()),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

fn receipt(p: &JobPayload, submitter: havn_proto::Name) -> SignedReceipt {
    SignedReceipt {
        receipt: Receipt {
            workflow_id: p.workflow.id.clone(),
            job_id: p.job_id.clone(),
            runtime_hash: Hash32([1; 32]),
            outputs_cid: Cid::of_bytes(p.job_id.as_bytes()),
            inputs_cid: Cid::of_bytes(b""),
            latency_ms: 0,
            energy_estimate_mj: 0,
            manifest_checksum: p.workflow.checksum,
            seed: p.seed,
            gas: 0,
            backend: Backend::Cpu,
            compute_class: p.compute_class,
            node: NodeId(PubKey32([7; 32])),
            submitter,
            signed_unix_ms: 1,
        },
        signature: Sig64([0; 64]),
    }
}

/// In-process execd stand-in: answers Run at once.
fn execd(fd: std::os::fd::OwnedFd, delay: Duration) {
    std::thread::spawn(move || {
        let Ok(mut s) = Server::<NetdExecd>::accept(fd, PeerPolicy::any()) else {
            return;
        };
        while let Ok(r) = s.recv() {
            let resp = match r.msg {
                NetdExecRequest::Capabilities => {
                    let mut workflows = heapless::Vec::new();
                    if let Ok(checksum) = Hash32::from_hex(SUM) {
                        let _ = workflows.push(WorkflowRef {
                            id: bounded("lm"),
                            checksum,
                        });
                    }
                    NetdExecResponse::Capabilities(CapabilityReport {
                        compute_class: ComputeClass::S,
                        cpu_cores: 2,
                        ram_mib: 1024,
                        gpu_model: None,
                        vram_mib: 0,
                        workflows,
                    })
                }
                NetdExecRequest::Run {
                    ticket_id,
                    payload,
                    submitter,
                } => {
                    std::thread::sleep(delay);
                    NetdExecResponse::Done {
                        ticket_id,
                        receipt: receipt(&payload, submitter),
                    }
                }
                NetdExecRequest::Prove { .. }
                | NetdExecRequest::Reexecute { .. }
                | NetdExecRequest::Leaves { .. } => NetdExecResponse::Refused {
                    error: RemoteError::UnknownJob,
                    reason: bounded("the bench stand-in keeps no jobs"),
                },
            };
            if s.reply(&resp).is_err() {
                return;
            }
        }
    });
}

/// In-process attestd stand-in.
fn attestd(fd: std::os::fd::OwnedFd) {
    std::thread::spawn(move || {
        let Ok(mut s) = Server::<NetdAttestd>::accept(fd, PeerPolicy::any()) else {
            return;
        };
        while let Ok(r) = s.recv() {
            let resp = match r.msg {
                NetdAttestRequest::Identity => NetdAttestResponse::Identity {
                    node: PubKey32([7; 32]),
                    chain_account: [0; 20],
                    payload_key: PubKey32([0; 32]),
                },
                // No sealed key: netd reads the bench PKI's key file.
                NetdAttestRequest::TlsKey => {
                    NetdAttestResponse::Error(RemoteError::NotYetAvailable)
                }
                _ => NetdAttestResponse::Error(RemoteError::NotPermitted),
            };
            if s.reply(&resp).is_err() {
                return;
            }
        }
    });
}

async fn netd(dir: &Path, fsync: bool, delay: Duration, direct: bool) -> havn_netd::Running {
    let state = dir.join(if fsync {
        "state-fsync"
    } else {
        "state-nofsync"
    });
    let _ = std::fs::remove_dir_all(&state);
    let pki = dir.join("pki");
    let text = format!(
        "[node]\nstate_dir = \"{}\"\n[tpm]\ntcti = \"swtpm:host=127.0.0.1,port=1\"\n\
         [execd]\nbackend = \"auto\"\n[netd]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{p}/node.pem\"\n\
         tls_key = \"{p}/node.key\"\nclient_ca = \"{p}/ca.pem\"\nqueue_capacity = 10000000\n",
        state.display(),
        p = pki.display()
    );
    let cfg = havn_config::NodeConfig::parse(&text, Path::new("bench.toml")).expect("config");
    let (e1, e2) = havn_ipc::socketpair().expect("socketpair");
    let (a1, a2) = havn_ipc::socketpair().expect("socketpair");
    execd(e2, delay);
    attestd(a2);
    let e = havn_ipc::AsyncClient::connect(e1, PeerPolicy::any())
        .await
        .expect("execd");
    let a = havn_ipc::AsyncClient::connect(a1, PeerPolicy::any())
        .await
        .expect("attestd");
    let opts = havn_netd::StartOptions {
        wal: havn_netd::wal::WalOptions {
            fsync,
            direct,
            ..Default::default()
        },
        heartbeats: false,
        ..Default::default()
    };
    havn_netd::start(&cfg, e, a, opts).await.expect("start")
}

/// Starts netd on the servers' runtime.
async fn start_netd(
    rt: &tokio::runtime::Handle,
    dir: &Path,
    fsync: bool,
    delay: Duration,
    direct: bool,
) -> havn_netd::Running {
    let dir = dir.to_path_buf();
    rt.spawn(async move { netd(&dir, fsync, delay, direct).await })
        .await
        .expect("netd start")
}

fn main() {
    let args = Args::parse();
    if args.log {
        havn_log::init(None);
    }
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("havn-netd-bench-{}", std::process::id()))
    });
    let pki = DevPki::generate("node", &[]).expect("pki");
    pki.write(&dir.join("pki"), false).expect("write pki");
    // The servers run on their own runtime, as netd does in the daemon; the load
    // client on a second one, so that client tasks do not sit in the servers' run
    // queues (on one shared runtime the netd figures fell by about a tenth).
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };
    let (rt, servers) = (runtime(), runtime());
    let sh = servers.handle().clone();
    let delay = Duration::from_millis(args.exec_delay_ms);
    let (c, secs) = (args.conns, args.seconds);
    // Interleaved rounds (echo, netd fsync on, netd fsync off, repeat): the machine is
    // shared and noisy, so each round's ratio compares runs seconds apart, and the
    // table reports the median round.
    let rounds = rt.block_on(async {
        let identity = Some((
            pki.orchestrator.cert.as_bytes(),
            pki.orchestrator.key.as_bytes(),
        ));
        let mtls = MtlsClient::from_pem(pki.ca.cert.as_bytes(), identity).expect("client");
        let echo_client = Client::Rest(mtls.clone(), "/echo");
        let rest = Client::Rest(mtls, "/job/accept");
        let grpc = Client::Grpc(
            GrpcClient::from_pem(pki.ca.cert.as_bytes(), identity).expect("gRPC client"),
        );
        let p = pki.clone();
        let echo = sh
            .spawn(async move { echo_server(&p).await })
            .await
            .expect("echo server");
        let mut rounds = Vec::new();
        for _ in 0..args.rounds.max(1) {
            let a = load(&echo_client, echo, c, secs, "echo", "mTLS echo (baseline)").await;
            let n1 = start_netd(&sh, &dir, true, delay, !args.wal_buffered).await;
            let mut b = load(&rest, n1.local_addr, c, secs, "f", "netd intake, fsync on").await;
            let st = n1.state.wal().stats();
            let syncs = st.syncs.load(Ordering::Relaxed).max(1) as f64;
            b.wal = Some(WalFigures {
                records_per_sync: st.records.load(Ordering::Relaxed) as f64 / syncs,
                sync_us: st.sync_ns.load(Ordering::Relaxed) as f64 / 1e3 / syncs,
                dispatched: n1.state.counts().completed,
                admission_us: n1
                    .state
                    .metrics
                    .admission
                    .mean()
                    .map_or(0.0, |d| d.as_secs_f64() * 1e6),
            });
            // The same node, the same port, over gRPC (ALPN h2).
            let g = load(
                &grpc,
                n1.local_addr,
                c,
                secs,
                "g",
                "netd intake gRPC, fsync on",
            )
            .await;
            drop(n1);
            let n2 = start_netd(&sh, &dir, false, delay, !args.wal_buffered).await;
            let d = load(&rest, n2.local_addr, c, secs, "n", "netd intake, fsync off").await;
            drop(n2);
            rounds.push([a, b, d, g]);
        }
        rounds
    });
    report(&args, &rounds);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Prints every round, then the median round (by the fsync-on ratio) as the table
/// and the `BENCH` lines.
fn report(args: &Args, rounds: &[[Result_; 4]]) {
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    println!(
        "\n{} keep-alive mTLS connections, {} s measured per server, {} rounds, execd stand-in {} ms/job, {} cores\n",
        args.conns,
        args.seconds,
        rounds.len(),
        args.exec_delay_ms,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for (i, [e, on, off, g]) in rounds.iter().enumerate() {
        let w = on.wal.unwrap_or(WalFigures {
            records_per_sync: 0.0,
            sync_us: 0.0,
            dispatched: 0,
            admission_us: 0.0,
        });
        println!(
            "round {}: echo {:.0} req/s, fsync on {:.0} ({:.2}x), fsync off {:.0} ({:.2}x), \
             gRPC fsync on {:.0} ({:.2}x REST); {:.1} records per fsync, {:.0} us per \
             write+fdatasync, {:.0} us mean in netd per job, {} jobs dispatched",
            i + 1,
            e.rps,
            on.rps,
            ratio(on.rps, e.rps),
            off.rps,
            ratio(off.rps, e.rps),
            g.rps,
            ratio(g.rps, on.rps),
            w.records_per_sync,
            w.sync_us,
            w.admission_us,
            w.dispatched
        );
    }
    for (name, k) in [("fsync on", 1), ("fsync off", 2), ("gRPC fsync on", 3)] {
        let mut rs: Vec<f64> = rounds.iter().map(|r| ratio(r[k].rps, r[0].rps)).collect();
        rs.sort_by(f64::total_cmp);
        let q = |p: f64| {
            rs.get((rs.len().saturating_sub(1) as f64 * p).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        println!(
            "{name} / echo over {} rounds: median {:.2}, quartiles {:.2}-{:.2}, range {:.2}-{:.2}",
            rs.len(),
            q(0.5),
            q(0.25),
            q(0.75),
            q(0.0),
            q(1.0)
        );
    }
    let mut order: Vec<usize> = (0..rounds.len()).collect();
    order.sort_by(|&a, &b| {
        let ra = |i: usize| rounds.get(i).map_or(0.0, |r| ratio(r[1].rps, r[0].rps));
        ra(a).total_cmp(&ra(b))
    });
    let Some(rs) = order.get(order.len() / 2).and_then(|&i| rounds.get(i)) else {
        return;
    };
    let base = rs[0].rps.max(1.0);
    println!("\nmedian round:\n");
    println!(
        "| {:<26} | {:>10} | {:>9} | {:>9} | {:>8} | {:>13} | {:>6} |",
        "server", "req/s", "p50 ms", "p99 ms", "x echo", "CPU us/req", "errors"
    );
    println!(
        "|{:-<28}|{:->12}|{:->11}|{:->11}|{:->10}|{:->15}|{:->8}|",
        "", "", "", "", "", "", ""
    );
    for r in rs {
        println!(
            "| {:<26} | {:>10.0} | {:>9.3} | {:>9.3} | {:>8.2} | {:>13.0} | {:>6} |",
            r.name,
            r.rps,
            r.p50_us as f64 / 1000.0,
            r.p99_us as f64 / 1000.0,
            r.rps / base,
            r.cpu_us_per_req,
            r.errors
        );
    }
    let [echo, on, off, g] = rs;
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "\ngRPC / REST on the same node (fsync on): {:.2}x jobs/s, p50 {:.2}x, p99 {:.2}x",
        ratio(g.rps, on.rps),
        ratio(g.p50_us as f64, on.p50_us as f64),
        ratio(g.p99_us as f64, on.p99_us as f64)
    );
    // gRPC's baseline is REST on the same node (the same admission, WAL and port).
    for (name, r, base) in [
        ("intake", on, echo),
        ("intake_nofsync", off, echo),
        ("intake_grpc", g, on),
    ] {
        let echo = base;
        println!(
            "BENCH {name}_p50 {:.3} ms {:.3} {:.2}",
            ms(r.p50_us),
            ms(echo.p50_us),
            ratio(r.p50_us as f64, echo.p50_us as f64)
        );
        println!(
            "BENCH {name}_p99 {:.3} ms {:.3} {:.2}",
            ms(r.p99_us),
            ms(echo.p99_us),
            ratio(r.p99_us as f64, echo.p99_us as f64)
        );
        println!(
            "BENCH {name}_rate {:.0} jobs/s {:.0} {:.3}",
            r.rps,
            echo.rps,
            ratio(r.rps, echo.rps)
        );
    }
}
