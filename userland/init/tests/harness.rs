//! A temporary node: bin_dir with three distinct copies of the test daemon, a
//! config, a state dir the daemons report into, and a running havn-init.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const ROLES: [&str; 3] = ["attestd", "execd", "netd"];

/// Root to sandbox the daemons; outside CI a skip is printed, under `CI=true` it fails.
pub fn root() -> bool {
    havn_testkit::require_root("havn-init drops the daemons' privileges")
}

pub struct Node {
    pub dir: PathBuf,
    pub state: PathBuf,
    pub config: PathBuf,
    pub init: Option<Child>,
}

impl Node {
    /// A node whose `tcti` is `device:<dir>/faketpm` (a plain file standing in for
    /// /dev/tpmrm0).
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("havn-init-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let state = dir.join("state");
        let bin = dir.join("bin");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        // Private, like a clone in root's home: netd is handed its config, TLS files
        // and state directory as descriptors and never walks this directory.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        // netd runs as nobody and must write its reports.
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
        let events = state.join("events.log");
        std::fs::write(&events, b"").unwrap();
        std::fs::set_permissions(&events, std::fs::Permissions::from_mode(0o666)).unwrap();
        let testd = std::fs::read(env!("CARGO_BIN_EXE_havn-init-testd")).unwrap();
        for role in ROLES {
            // A trailer after the ELF image: same program, distinct digest.
            let mut bytes = testd.clone();
            bytes.extend_from_slice(format!("\0trailer havn-{role}").as_bytes());
            let p = bin.join(format!("havn-{role}"));
            std::fs::write(&p, bytes).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(dir.join("faketpm"), b"").unwrap();
        // netd's TLS files: havn-init reads them and hands netd sealed copies.
        for f in ["cert.pem", "key.pem", "ca.pem"] {
            std::fs::write(dir.join(f), format!("test {f}")).unwrap();
        }
        let config = dir.join("node.toml");
        std::fs::write(
            &config,
            format!(
                "[node]\nstate_dir = {state:?}\nbin_dir = {bin:?}\n\
                 [tpm]\ntcti = \"device:{}\"\n\
                 [execd]\nbackend = \"cpu\"\n\
                 [netd]\nlisten = \"127.0.0.1:8443\"\ntls_cert = {cert:?}\ntls_key = {key:?}\nclient_ca = {ca:?}\n",
                dir.join("faketpm").display(),
                cert = dir.join("cert.pem"),
                key = dir.join("key.pem"),
                ca = dir.join("ca.pem"),
            ),
        )
        .unwrap();
        Self {
            dir,
            state,
            config,
            init: None,
        }
    }

    pub fn binary(&self, role: &str) -> PathBuf {
        self.dir.join("bin").join(format!("havn-{role}"))
    }

    pub fn init_cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_havn-init"));
        cmd.arg("--config").arg(&self.config);
        cmd
    }

    /// Starts havn-init with fast backoff; `env` is added to a cleared environment.
    pub fn start(&mut self, env: &[(&str, &str)]) {
        self.start_wrapped(&[], env)
    }

    /// Like [`start`](Self::start), under `wrapper` (e.g. `unshare --pid --fork`).
    pub fn start_wrapped(&mut self, wrapper: &[&str], env: &[(&str, &str)]) {
        let log = std::fs::File::create(self.dir.join("init.log")).unwrap();
        let init = self.init_cmd();
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(init.get_program()).args(init.get_args());
                c
            }
            None => init,
        };
        cmd.args([
            "--backoff-initial-ms",
            "50",
            "--backoff-max-ms",
            "1000",
            "--stable-after-ms",
            "20000",
            "--stop-timeout-ms",
            "2000",
        ])
        .env_clear()
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stderr(log);
        self.init = Some(cmd.spawn().unwrap());
    }

    pub fn events(&self) -> Vec<String> {
        std::fs::read_to_string(self.state.join("events.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits until `done(events)` or panics after 10 s.
    pub fn wait_events(&self, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let t = Instant::now();
        loop {
            let ev = self.events();
            if done(&ev) {
                return ev;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "timed out waiting for {what}; events:\n{}\ninit log:\n{}",
                ev.join("\n"),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for `n` complete, connected sets (every client channel answered).
    pub fn wait_sets(&self, n: usize) -> Vec<String> {
        self.wait_events("connected sets", |ev| {
            [
                ("netd", "ready netd-execd"),
                ("netd", "ready netd-attestd"),
                ("execd", "ready execd-attestd"),
            ]
            .iter()
            .all(|(role, what)| count(ev, |l| role_event(l, role, what)) >= n)
        })
    }

    /// The report files of `role`, by pid.
    pub fn report(&self, role: &str, pid: u32) -> String {
        std::fs::read_to_string(self.state.join(format!("{role}.{pid}.report"))).unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("init.log")).unwrap_or_default()
    }

    /// havn-init's JSON log lines.
    pub fn log(&self) -> Vec<serde_json::Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn crash(&self, role: &str) {
        let p = self.state.join(format!("{role}.crash"));
        std::fs::write(&p, b"").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
    }

    /// Waits for havn-init to exit by itself; its exit status (panics after `limit`).
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let child = self.init.as_mut().expect("running");
        let t = Instant::now();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.init = None;
                return st;
            }
            assert!(
                t.elapsed() < limit,
                "havn-init still running after {limit:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM to havn-init; its exit status (panics after 10 s).
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.init.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let t = Instant::now();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "havn-init did not exit"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.init.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `"<role> <pid> <event...>"` has this role and event.
pub fn role_event(line: &str, role: &str, event: &str) -> bool {
    let mut it = line.splitn(3, ' ');
    it.next() == Some(role) && it.nth(1).is_some_and(|e| e.starts_with(event))
}

pub fn count(ev: &[String], f: impl Fn(&str) -> bool) -> usize {
    ev.iter().filter(|l| f(l)).count()
}

/// Pids of `role` in start order.
pub fn pids(ev: &[String], role: &str) -> Vec<u32> {
    ev.iter()
        .filter(|l| role_event(l, role, "start"))
        .filter_map(|l| l.split(' ').nth(1)?.parse().ok())
        .collect()
}

/// Index of the first line matching.
pub fn pos(ev: &[String], f: impl Fn(&str) -> bool) -> usize {
    ev.iter()
        .position(|l| f(l))
        .unwrap_or_else(|| panic!("not found in {ev:#?}"))
}

pub fn sha256_hex(p: &Path) -> String {
    havn_init::plan::hash_file(p).unwrap().to_hex()
}

pub fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {text}"))
        .trim()
}
