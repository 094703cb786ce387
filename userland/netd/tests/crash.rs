//! Durability under SIGKILL: the real havn-netd binary runs as a child process with
//! socketpairs on fds 3/4 served by the in-test stand-ins; jobs are submitted while
//! the child is killed at random points and restarted on the same state dir.
//!
//! Proves: every ticket ever returned survives (same job id) and finishes; and no
//! job is sent to execd after its `Done` record was in the WAL.

use crate::common::*;
use havn_netd::wal;
use havn_proto::ComputeClass;
use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;

/// What init sets up for netd: a state dir and TLS files owned by netd's uid.
/// `None` (with the reason printed) when not root: the sandbox needs root.
fn sandboxed_config(name: &str, cfg: &Cfg) -> Option<(PathBuf, PathBuf)> {
    if !havn_testkit::require_root(
        "netd's sandbox (uid 65534, no capabilities) needs root to set up",
    ) {
        return None;
    }
    let state = tmpdir(name);
    let tls = state.join("tls");
    std::fs::create_dir(&tls).unwrap();
    for f in ["node.pem", "node.key", "ca.pem"] {
        std::fs::copy(pki().1.join(f), tls.join(f)).unwrap();
    }
    let text = config_text(&state, cfg)
        .replace(&pki().1.display().to_string(), &tls.display().to_string());
    let cfg_path = state.join("node.toml");
    std::fs::write(&cfg_path, text).unwrap();
    for p in [
        state.clone(),
        tls.clone(),
        tls.join("node.pem"),
        tls.join("node.key"),
        tls.join("ca.pem"),
        cfg_path.clone(),
    ] {
        std::os::unix::fs::chown(&p, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    Some((state, cfg_path))
}

struct Netd {
    child: Child,
    port: u16,
}

fn spawn_netd(config: &Path, log: Arc<Mutex<ExecLog>>, delay: Duration) -> Netd {
    let (e_netd, e_execd) = havn_ipc::socketpair().unwrap();
    let (a_netd, a_attestd) = havn_ipc::socketpair().unwrap();
    ExecdStandIn {
        class: ComputeClass::S,
        delay,
        log,
    }
    .spawn(e_execd);
    spawn_attestd(a_attestd);
    // Through a descriptor, as havn-init does: netd (uid nobody) may not be able to
    // walk to the build directory (a clone under a mode-0700 home).
    let mut cmd = Command::new(havn_testkit::exec_path(env!("CARGO_BIN_EXE_havn-netd")));
    cmd.arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // Exactly what havn-init does: netd's sandbox profile (uid nobody, every
    // capability set empty, no_new_privs, new mount/IPC/UTS namespaces) with the
    // channels at fds 3 and 4; netd itself then installs its seccomp filter.
    havn_sandbox::Profile::for_daemon(havn_sandbox::DaemonKind::Netd, "nobody")
        .unwrap()
        .fd(e_netd.as_fd(), 3)
        .fd(a_netd.as_fd(), 4)
        .install(&mut cmd)
        .unwrap();
    let mut child = cmd.spawn().unwrap();
    drop::<(OwnedFd, OwnedFd)>((e_netd, a_netd));
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !line.starts_with('{') {
                // Not a log record (a panic message): show it.
                eprintln!("netd stderr: {line}");
            }
            if let Some(t) = tx.as_ref() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if let Some(addr) = v["addr"].as_str() {
                        let _ = t.send(addr.to_string());
                        tx = None;
                    }
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("netd did not report its address");
    let port = addr.rsplit(':').next().unwrap().parse().unwrap();
    Netd { child, port }
}

impl Drop for Netd {
    fn drop(&mut self) {
        // SIGKILL: no cleanup at all (also reaps the child if a test panics).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kill(n: Netd) {
    drop(n);
}

/// Tiny deterministic PRNG (xorshift) so failures replay.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn sigkill_at_random_points_loses_no_ticket_and_reruns_no_done_job() {
    let Some((state, cfg_path)) = sandboxed_config(
        "crash",
        &Cfg {
            queue: 100_000,
            ..Cfg::default()
        },
    ) else {
        return;
    };
    let wal_path = state.join("netd").join(wal::WAL_FILE);
    let log = Arc::new(Mutex::new(ExecLog::default()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rng = Rng(0x5eed_1234_abcd);
    // job id -> ticket, for every 200 ever returned.
    let returned: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    // job id -> when its Done was found in the WAL (after a kill).
    let mut done_at: HashMap<String, Instant> = HashMap::new();
    let mut next_job = 0u64;
    const ROUNDS: usize = 6;
    for round in 0..ROUNDS {
        let last = round + 1 == ROUNDS;
        let delay = if last { 0 } else { rng.next(3) };
        let n = spawn_netd(&cfg_path, log.clone(), Duration::from_millis(delay));
        let port = n.port;
        let run_for = Duration::from_millis(150 + rng.next(400));
        let base = next_job;
        next_job += 10_000;
        let returned2 = returned.clone();
        // Four concurrent submitters over keep-alive connections; also re-submit
        // some earlier ids to exercise idempotence across restarts.
        rt.block_on(async move {
            let mut hs = Vec::new();
            for w in 0..4u64 {
                let returned = returned2.clone();
                hs.push(tokio::spawn(async move {
                    let Ok(mut c) = orchestrator().connect("127.0.0.1", port).await else {
                        return;
                    };
                    let deadline = Instant::now() + run_for;
                    let mut i = 0u64;
                    while Instant::now() < deadline && i < 80 {
                        let id = if i % 7 == 3 && base > 0 {
                            format!("c{}", (base - 10_000) + w * 1000 + i / 7)
                        } else {
                            format!("c{}", base + w * 1000 + i)
                        };
                        i += 1;
                        let body = serde_json::to_vec(&job(&id)).unwrap();
                        let Ok(r) = c.post("/job/accept", body).await else {
                            return;
                        };
                        assert_eq!(r.status, 200, "{}", r.text());
                        let t = r.json::<serde_json::Value>().unwrap()["ticket_id"]
                            .as_u64()
                            .unwrap();
                        let mut m = returned.lock().unwrap();
                        if let Some(prev) = m.insert(id.clone(), t) {
                            assert_eq!(prev, t, "job {id} got two tickets");
                        }
                    }
                }));
            }
            for h in hs {
                h.await.unwrap();
            }
        });
        if last {
            // Last round: let everything finish, then check.
            rt.block_on(async {
                let mut c = orchestrator().connect("127.0.0.1", port).await.unwrap();
                let all = returned.lock().unwrap().clone();
                let t0 = Instant::now();
                loop {
                    let h: serde_json::Value = c.get("/health").await.unwrap().json().unwrap();
                    if h["queued"] == 0 && h["running"] == 0 {
                        break;
                    }
                    assert!(
                        t0.elapsed() < Duration::from_secs(30),
                        "queue never drained: {h}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                for (id, t) in &all {
                    let st = wait_terminal(&mut c, *t).await;
                    assert_eq!(st["job_id"], id.as_str(), "ticket {t}");
                    assert_eq!(st["state"], "done", "ticket {t}: {st}");
                    let r = c.get(&format!("/receipt/{id}")).await.unwrap();
                    assert_eq!(r.status, 200);
                }
                assert!(all.len() > 50, "too few jobs: {}", all.len());
            });
            kill(n);
            break;
        }
        kill(n);
        let killed = Instant::now();
        // What is Done in the WAL now must never be run again.
        let rep = wal::replay(&wal_path).unwrap();
        for j in rep.snapshot.jobs.values() {
            if matches!(j.outcome, Some(wal::Outcome::Done(_))) {
                done_at.entry(j.job_id.clone()).or_insert(killed);
            }
        }
        // Every ticket returned so far is in the WAL with its job id.
        for (id, t) in returned.lock().unwrap().iter() {
            let j = rep
                .snapshot
                .jobs
                .get(t)
                .unwrap_or_else(|| panic!("ticket {t} lost"));
            assert_eq!(&j.job_id, id);
        }
    }
    let runs = log.lock().unwrap();
    for (id, at) in &runs.runs {
        if let Some(d) = done_at.get(id) {
            assert!(
                at < d,
                "job {id} was sent to execd after its Done was durable"
            );
        }
    }
    let distinct: std::collections::HashSet<&String> = runs.runs.iter().map(|(j, _)| j).collect();
    let reruns = runs.runs.len() - distinct.len();
    eprintln!(
        "crash test: {} tickets, {} runs, {} re-runs of unfinished jobs",
        returned.lock().unwrap().len(),
        runs.runs.len(),
        reruns
    );
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn execd_loss_exits_75_and_the_job_runs_after_restart() {
    let Some((_state, cfg_path)) = sandboxed_config("execd-lost", &Cfg::default()) else {
        return;
    };
    let log = Arc::new(Mutex::new(ExecLog::default()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut n = spawn_netd(&cfg_path, log.clone(), Duration::ZERO);
    let port = n.port;
    let t = rt.block_on(async {
        let mut c = orchestrator().connect("127.0.0.1", port).await.unwrap();
        let r = c
            .post("/job/accept", serde_json::to_vec(&job("die-1")).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        r.json::<serde_json::Value>().unwrap()["ticket_id"]
            .as_u64()
            .unwrap()
    });
    // The stand-in closes the channel mid-job: netd exits for a restart.
    let st = n.child.wait().unwrap();
    assert_eq!(st.code(), Some(i32::from(havn_netd::EXIT_EXECD_LOST)));
    let n = spawn_netd(&cfg_path, log.clone(), Duration::ZERO);
    let port = n.port;
    rt.block_on(async {
        let mut c = orchestrator().connect("127.0.0.1", port).await.unwrap();
        let v = wait_terminal(&mut c, t).await;
        assert_eq!(v["state"], "done", "{v}");
    });
    kill(n);
    assert_eq!(log.lock().unwrap().runs.len(), 2);
}

#[test]
fn help_and_missing_fds() {
    let bin = env!("CARGO_BIN_EXE_havn-netd");
    let out = Command::new(bin).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for needle in ["--config", "fd 3", "fd 4", "75"] {
        assert!(help.contains(needle), "--help lacks {needle}: {help}");
    }
    // Without the inherited channels it refuses to start, saying why.
    let out = Command::new(bin)
        .args(["--config", "/nonexistent.toml"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(i32::from(havn_netd::EXIT_STARTUP)));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fds 3"));
}

#[test]
fn runs_as_uid_65534_with_no_capabilities() {
    let Some((state, cfg_path)) = sandboxed_config("nobody", &Cfg::default()) else {
        return;
    };
    let log = Arc::new(Mutex::new(ExecLog::default()));
    let n = spawn_netd(&cfg_path, log, Duration::ZERO);
    let status = std::fs::read_to_string(format!("/proc/{}/status", n.child.id())).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
            .unwrap_or_default()
    };
    assert_eq!(field("Uid:"), "65534");
    assert_eq!(field("CapEff:"), "0000000000000000");
    assert_eq!(field("CapPrm:"), "0000000000000000");
    assert_eq!(field("CapBnd:"), "0000000000000000");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Seccomp:"), "2");
    let port = n.port;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = orchestrator().connect("127.0.0.1", port).await.unwrap();
        let r = c
            .post("/job/accept", serde_json::to_vec(&job("nb1")).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let t = r.json::<serde_json::Value>().unwrap()["ticket_id"]
            .as_u64()
            .unwrap();
        assert_eq!(wait_terminal(&mut c, t).await["state"], "done");
    });
    drop(n);
    let _ = std::fs::remove_dir_all(&state);
}
