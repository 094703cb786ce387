//! A real swtpm per test (feature `testing`): free loopback port, temp state dir,
//! killed on drop.
//!
//! Manufacturing (`swtpm_setup` with EK/platform certificates from a local CA) takes
//! about a second, so [`Swtpm::start`] manufactures one template state per machine
//! (under the temp dir, reused across runs) and copies it; tests that need a *different*
//! TPM identity call [`Swtpm::start_fresh`].

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU64 = AtomicU64::new(0);
const TEMPLATE_VERSION: &str = "havn-swtpm-template-v1";

/// A running swtpm (TCP on loopback) with its own state directory.
#[derive(Debug)]
pub struct Swtpm {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    ca_dir: PathBuf,
}

fn unique_dir(prefix: &str) -> std::io::Result<PathBuf> {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let d = std::env::temp_dir().join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn other(msg: String) -> std::io::Error {
    std::io::Error::other(msg)
}

/// Manufacture a TPM state in `dir/state` with a local CA in `dir/ca`.
pub fn manufacture(dir: &Path) -> std::io::Result<()> {
    let state = dir.join("state");
    let ca = dir.join("ca");
    std::fs::create_dir_all(&state)?;
    std::fs::create_dir_all(&ca)?;
    let localca = dir.join("swtpm-localca.conf");
    std::fs::write(
        &localca,
        format!(
            "statedir = {c}\nsigningkey = {c}/signkey.pem\nissuercert = {c}/issuercert.pem\ncertserial = {c}/certserial\n",
            c = ca.display()
        ),
    )?;
    let opts = dir.join("swtpm-localca.options");
    std::fs::write(
        &opts,
        "--platform-manufacturer Havn\n--platform-version 2.1\n--platform-model test\n",
    )?;
    let setup = dir.join("swtpm_setup.conf");
    std::fs::write(
        &setup,
        format!(
            "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = {}\ncreate_certs_tool_options = {}\nactive_pcr_banks = sha256\n",
            localca.display(),
            opts.display()
        ),
    )?;
    let out = Command::new("swtpm_setup")
        .args(["--tpm2", "--tpmstate"])
        .arg(&state)
        .args([
            "--create-ek-cert",
            "--create-platform-cert",
            "--ecc",
            "--pcr-banks",
            "sha256",
            "--overwrite",
            "--config",
        ])
        .arg(&setup)
        .output()?;
    if !out.status.success() {
        return Err(other(format!(
            "swtpm_setup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let name = e.file_name();
        if name.to_string_lossy().starts_with(".lock") {
            continue;
        }
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to.join(&name))?;
        } else {
            std::fs::copy(e.path(), to.join(&name))?;
        }
    }
    Ok(())
}

fn template() -> std::io::Result<PathBuf> {
    let stable = std::env::temp_dir().join(TEMPLATE_VERSION);
    if stable.join("ready").exists() {
        return Ok(stable);
    }
    let tmp = unique_dir("havn-swtpm-template-build")?;
    manufacture(&tmp)?;
    std::fs::write(tmp.join("ready"), b"")?;
    // Atomic publish; if another process won the race, use theirs.
    if std::fs::rename(&tmp, &stable).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    if stable.join("ready").exists() {
        Ok(stable)
    } else {
        Err(other("swtpm template missing after manufacture".into()))
    }
}

fn free_port_pair() -> std::io::Result<u16> {
    for _ in 0..50 {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let p = l.local_addr()?.port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return Ok(p);
        }
    }
    Err(other("no free port pair".into()))
}

impl Swtpm {
    /// Start a swtpm on a copy of the shared manufactured template state.
    pub fn start() -> std::io::Result<Self> {
        let dir = unique_dir("havn-swtpm")?;
        copy_dir(&template()?, &dir)?;
        Self::launch(dir)
    }

    /// Start a swtpm with its own freshly manufactured identity (EK, seeds, CA).
    pub fn start_fresh() -> std::io::Result<Self> {
        let dir = unique_dir("havn-swtpm")?;
        manufacture(&dir)?;
        Self::launch(dir)
    }

    fn launch(dir: PathBuf) -> std::io::Result<Self> {
        let ca_dir = dir.join("ca");
        let mut s = Self {
            child: None,
            port: 0,
            dir,
            ca_dir,
        };
        let mut last = None;
        for _ in 0..5 {
            s.port = free_port_pair()?;
            match s.spawn() {
                Ok(()) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| other("swtpm did not start".into())))
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let port = self.port;
        let mut child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--server"])
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
            .arg("--tpmstate")
            .arg(format!("dir={}", self.dir.join("state").display()))
            .args(["--flags", "not-need-init,startup-clear"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok()
                && TcpStream::connect(("127.0.0.1", port + 1)).is_ok()
            {
                self.child = Some(child);
                return Ok(());
            }
            if let Some(st) = child.try_wait()? {
                return Err(other(format!("swtpm exited: {st}")));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(other("swtpm did not listen within 5 s".into()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// TCTI string for tss-esapi / tpm2-tools.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// Server port (control port is `port + 1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding `state/` and `ca/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The local CA that signed this TPM's EK certificate: issuer + root, PEM.
    pub fn ca_bundle_pem(&self) -> std::io::Result<Vec<u8>> {
        let mut out = std::fs::read(self.ca_dir.join("issuercert.pem"))?;
        out.extend(std::fs::read(
            self.ca_dir.join("swtpm-localca-rootca-cert.pem"),
        )?);
        Ok(out)
    }

    /// Kill the swtpm process (SIGKILL) and reap it; the state directory stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kill (if running) and start again on the same state and port: like a reboot.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
