//! A whole node for system tests: real swtpm, real havn-init with the three real
//! daemons (copied into a temp bin dir so a test can alter one), a dev PKI, a golden
//! manifest, and havnctl as the orchestrator and validator.
use havn_attest_agent::testing::Swtpm;
use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const DAEMONS: [&str; 3] = ["havn-attestd", "havn-execd", "havn-netd"];

/// The workspace's debug binaries (scripts/test builds them before the tests run).
pub fn bin_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("debug");
    for b in ["havn-init", "havnctl"].iter().chain(DAEMONS.iter()) {
        assert!(
            dir.join(b).exists(),
            "{} missing: build the workspace first (cargo build --workspace)",
            dir.join(b).display()
        );
    }
    dir
}

/// Skip (with the reason printed) when not root: havn-init needs root to sandbox.
pub fn need_root() -> bool {
    // Under CI a missing root fails the test instead of passing vacuously.
    havn_testkit::require_root("havn-init must run as root to drop the daemons' privileges")
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

pub fn havnctl(args: &[&str]) -> Output {
    Command::new(bin_dir().join("havnctl"))
        .args(args)
        .output()
        .expect("run havnctl")
}

pub fn havnctl_ok(args: &[&str]) -> String {
    let o = havnctl(args);
    assert!(
        o.status.success(),
        "havnctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub struct Node {
    pub dir: tempfile::TempDir,
    #[allow(dead_code)] // held for its Drop: stops swtpm with the node
    pub swtpm: Swtpm,
    pub init: Option<Child>,
    pub port: u16,
}

impl Node {
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn p(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    /// Orchestrator or validator TLS flags.
    pub fn tls(&self, who: &str) -> Vec<String> {
        vec![
            "--url".into(),
            format!("https://127.0.0.1:{}", self.port),
            "--ca".into(),
            self.p("pki/ca.pem"),
            "--cert".into(),
            self.p(&format!("pki/{who}.pem")),
            "--key".into(),
            self.p(&format!("pki/{who}.key")),
        ]
    }

    pub fn ctl(&self, who: &str, args: &[&str]) -> Output {
        let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        a.extend(self.tls(who));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        havnctl(&refs)
    }

    /// Prepares a node (binaries copied, swtpm, PKI, golden manifest over the copied
    /// binaries) without starting it.
    pub fn prepare() -> Node {
        let src = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("havn-system-")
            .tempdir()
            .unwrap();
        // The node's files stay under this mode-0700 directory (as in a clone in
        // root's home): netd is handed what it needs by havn-init, never by path.
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for b in ["havn-init"].iter().chain(DAEMONS.iter()) {
            std::fs::copy(src.join(b), bin.join(b)).unwrap();
        }
        let swtpm = Swtpm::start().expect("start swtpm");
        std::fs::write(
            dir.path().join("vendor-ca.pem"),
            swtpm.ca_bundle_pem().unwrap(),
        )
        .unwrap();
        let pki = dir.path().join("pki");
        havnctl_ok(&["pki", "init", "--out", &pki.display().to_string()]);
        let mut golden = vec![
            "golden".to_string(),
            "--pcr".into(),
            "14".into(),
            "--out".into(),
        ];
        golden.push(dir.path().join("golden.json").display().to_string());
        for d in DAEMONS {
            golden.push("--binary".into());
            golden.push(format!("{d}={}", bin.join(d).display()));
        }
        let refs: Vec<&str> = golden.iter().map(String::as_str).collect();
        havnctl_ok(&refs);
        let port = free_port();
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        chmod(&state, 0o700);
        let toml = format!(
            "[node]\nstate_dir = \"{state}\"\nbin_dir = \"{bin}\"\n\n\
             [tpm]\ntcti = \"{tcti}\"\npcrs = [0, 1, 2, 3, 4, 5, 6, 7, 14]\nuserland_pcr = 14\n\n\
             [execd]\nbackend = \"auto\"\n\n\
             [netd]\nlisten = \"127.0.0.1:{port}\"\ntls_cert = \"{pki}/node.pem\"\ntls_key = \"{pki}/node.key\"\n\
             client_ca = \"{pki}/ca.pem\"\nheartbeat_ms = 5000\n",
            state = state.display(),
            bin = bin.display(),
            tcti = swtpm.tcti(),
            pki = pki.display(),
        );
        std::fs::write(dir.path().join("node.toml"), toml).unwrap();
        Node {
            dir,
            swtpm,
            init: None,
            port,
        }
    }

    /// Starts havn-init and waits for /health.
    pub fn start(&mut self) {
        let log = std::fs::File::create(self.path("node.log")).unwrap();
        let child = Command::new(self.path("bin/havn-init"))
            .arg("--config")
            .arg(self.path("node.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start havn-init");
        self.init = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self
                .ctl("orchestrator", &["get", "/health"])
                .status
                .success()
            {
                return;
            }
            if let Some(Ok(Some(st))) = self.init.as_mut().map(|c| c.try_wait()) {
                panic!("havn-init exited ({st}); log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "node not healthy in 30 s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET /health` as the orchestrator; `None` while the API does not answer.
    pub fn health(&self) -> Option<Value> {
        let o = self.ctl("orchestrator", &["get", "/health"]);
        o.status
            .success()
            .then(|| serde_json::from_slice(&o.stdout).ok())
            .flatten()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("node.log")).unwrap_or_default()
    }

    pub fn init_pid(&self) -> i32 {
        self.init.as_ref().map(|c| c.id() as i32).unwrap()
    }

    /// Pid of a daemon: a child of havn-init whose argv[0] names it (init execs the
    /// measured file through /proc/self/fd, so comm is not the name).
    pub fn daemon_pid(&self, name: &str) -> i32 {
        self.try_daemon_pid(name).unwrap_or_else(|| {
            panic!(
                "no {name} under havn-init {}; log:\n{}",
                self.init_pid(),
                self.log()
            )
        })
    }

    /// Like [`Node::daemon_pid`], `None` while the daemon is not running.
    pub fn try_daemon_pid(&self, name: &str) -> Option<i32> {
        let parent = self.init_pid();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some(close) = stat.rfind(')') else {
                continue;
            };
            let ppid: i32 = stat[close + 2..]
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let argv0 = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv0 = argv0.split(|b| *b == 0).next().unwrap_or_default();
            if ppid == parent && argv0.ends_with(name.as_bytes()) {
                return Some(pid);
            }
        }
        None
    }

    /// Submits an `lm` job without waiting: (accepted, havnctl's stdout and stderr).
    pub fn try_submit(&self, job: &str) -> (bool, String) {
        let ck = workflow_checksum("lm");
        let o = self.ctl(
            "orchestrator",
            &[
                "submit",
                "--workflow",
                "lm",
                "--checksum",
                &ck,
                "--seed",
                "7",
                "--job-id",
                job,
            ],
        );
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }

    /// Submits one job and waits for its receipt; returns (receipt JSON path, receipt).
    pub fn submit(&self, wf: &str, seed: u64, job: &str) -> (PathBuf, Value) {
        self.submit_with(wf, seed, job, &[])
    }

    /// [`Node::submit`] with extra `havnctl submit` flags (`--grpc`).
    pub fn submit_with(&self, wf: &str, seed: u64, job: &str, extra: &[&str]) -> (PathBuf, Value) {
        let ck = workflow_checksum(wf);
        let out = self.path(&format!("receipt-{job}.json"));
        let seed = seed.to_string();
        let out_s = out.display().to_string();
        let mut args = vec!["submit"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "--workflow",
            wf,
            "--checksum",
            &ck,
            "--seed",
            &seed,
            "--job-id",
            job,
            "--wait",
            "--timeout",
            "120",
            "--receipt-out",
            &out_s,
        ]);
        let o = self.ctl("orchestrator", &args);
        assert!(
            o.status.success(),
            "submit {wf}: {}{}\nlog:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        (out, v)
    }

    /// `havnctl <cmd> <file> --evidence <node>/evidence [extra...]`: a signed record
    /// checked against the quote in the node's `evidence` directory.
    pub fn verify(&self, cmd: &str, file: &str, extra: &[&str]) -> Output {
        let evidence = self.p("evidence");
        let mut args = vec![cmd, file, "--evidence", &evidence];
        args.extend_from_slice(extra);
        havnctl(&args)
    }

    /// Fetches a quote for `nonce` into `dir` (relative to the node dir).
    pub fn fetch_quote(&self, nonce: &str, dir: &str) {
        let o = self.ctl(
            "validator",
            &["fetch-quote", "--nonce", nonce, "--out", &self.p(dir)],
        );
        assert!(
            o.status.success(),
            "fetch-quote: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.init.take() {
            // SAFETY: kill(2) on our own, not yet reaped, child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn workflow_checksum(wf: &str) -> String {
    let v: Value = serde_json::from_str(&havnctl_ok(&["workflows", "--json"])).unwrap();
    v[wf].as_str().unwrap().to_string()
}

pub fn stderr(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
