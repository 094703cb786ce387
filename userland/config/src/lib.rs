//! The node's one config file, `node.toml`, read by havn-init and by each daemon
//! (`havn-<daemon> --config node.toml`), plus the fixed descriptor layout init uses
//! when it execs each daemon. See `userland/config/node.example.toml`.

pub mod alerts;
pub mod chain;
pub mod mesh;

pub use mesh::{Mesh, NodeRole};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Descriptor numbers each daemon finds its channels (and devices) on.
pub mod fds {
    /// havn-attestd: server end of init → attestd.
    pub const ATTESTD_INIT: i32 = 3;
    /// havn-attestd: server end of execd → attestd.
    pub const ATTESTD_EXECD: i32 = 4;
    /// havn-attestd: server end of netd → attestd.
    pub const ATTESTD_NETD: i32 = 5;
    /// havn-attestd: the TPM device (`/dev/tpmrm0`), when the TCTI is `device:`.
    pub const ATTESTD_TPM: i32 = 6;
    /// havn-execd: client end of execd → attestd.
    pub const EXECD_ATTESTD: i32 = 3;
    /// havn-execd: server end of netd → execd.
    pub const EXECD_NETD: i32 = 4;
    /// havn-execd: its view of node.toml (a sealed memfd; see [`crate::execd_view`]).
    pub const EXECD_CONFIG: i32 = 5;
    /// havn-execd: the state directory (`O_PATH`).
    pub const EXECD_STATE: i32 = 6;
    /// havn-execd: the model store (`O_PATH`).
    pub const EXECD_MODELS: i32 = 7;
    /// havn-netd: client end of netd → execd.
    pub const NETD_EXECD: i32 = 3;
    /// havn-netd: client end of netd → attestd.
    pub const NETD_ATTESTD: i32 = 4;
    /// havn-netd: its view of node.toml (a sealed memfd written by havn-init; see
    /// [`crate::netd_view`]).
    pub const NETD_CONFIG: i32 = 5;
    /// havn-netd: the state directory (`O_PATH`), so netd never walks the operator's
    /// directories to reach it.
    pub const NETD_STATE: i32 = 6;
    /// havn-netd: the server certificate chain (memfd copy).
    pub const NETD_TLS_CERT: i32 = 7;
    /// havn-netd: the client CA bundle (memfd copy). (The server key comes from
    /// attestd, which keeps it sealed by the TPM: [`crate::SEALED_TLS_KEY`].)
    pub const NETD_CLIENT_CA: i32 = 8;

    /// The path through which a process reaches its own descriptor `fd`
    /// (`/proc/self/fd/<fd>`: no directory on the way to the file is walked).
    pub fn path(fd: i32) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("/proc/self/fd/{fd}"))
    }
}

/// The exit code of a daemon that stopped on a configuration error (`EX_CONFIG`):
/// havn-init stops with that daemon's message instead of restarting the set.
pub const EXIT_CONFIG: u8 = 78;

/// What netd's view of node.toml names as `netd.tls_key`: the key is not a file netd
/// may read; attestd seals it at first start (destroying the plaintext) and hands it
/// to netd in memory.
pub const SEALED_TLS_KEY: &str = "(sealed by the TPM: netd gets it from attestd)";

/// netd's view of node.toml: the same text with every path netd uses replaced by the
/// descriptor havn-init passes for it ([`fds::NETD_STATE`], [`fds::NETD_TLS_CERT`],
/// [`fds::NETD_CLIENT_CA`]) and `tls_key` by [`SEALED_TLS_KEY`], so the unprivileged
/// netd reads its configuration, certificates and state wherever the operator keeps
/// them, even under directories it cannot enter, and never a private key file.
pub fn netd_view(text: &str, path: &Path) -> Result<String, ConfigError> {
    let fd = |n: i32| fds::path(n).display().to_string();
    rewrite(
        text,
        path,
        &[
            ("node", "state_dir", fd(fds::NETD_STATE)),
            ("netd", "tls_cert", fd(fds::NETD_TLS_CERT)),
            ("netd", "tls_key", SEALED_TLS_KEY.into()),
            ("netd", "client_ca", fd(fds::NETD_CLIENT_CA)),
        ],
    )
}

/// execd's view of node.toml: `node.state_dir` and `execd.model_store` replaced by the
/// descriptors havn-init passes ([`fds::EXECD_STATE`], [`fds::EXECD_MODELS`]), so
/// execd, running as its own unprivileged user, reaches them wherever they are.
pub fn execd_view(text: &str, path: &Path) -> Result<String, ConfigError> {
    let fd = |n: i32| fds::path(n).display().to_string();
    rewrite(
        text,
        path,
        &[
            ("node", "state_dir", fd(fds::EXECD_STATE)),
            ("execd", "model_store", fd(fds::EXECD_MODELS)),
        ],
    )
}

/// Sets `[section] key = value` for each entry (creating an absent optional section),
/// and checks that the result is still a valid config.
fn rewrite(text: &str, path: &Path, set: &[(&str, &str, String)]) -> Result<String, ConfigError> {
    let mut table: toml::Table = text.parse().map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        source: Box::new(e),
    })?;
    for (section, key, value) in set {
        let t = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| ConfigError::Invalid {
                path: path.to_path_buf(),
                what: format!("[{section}] is not a table"),
            })?;
        t.insert(key.to_string(), toml::Value::String(value.clone()));
    }
    let out = toml::to_string(&table).map_err(|e| ConfigError::Invalid {
        path: path.to_path_buf(),
        what: format!("cannot write a daemon's view: {e}"),
    })?;
    NodeConfig::parse(&out, path)?;
    Ok(out)
}

/// Why the config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Not valid TOML or not the schema.
    #[error("invalid config {path}: {source}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Cause (names the key).
        source: Box<toml::de::Error>,
    },
    /// A value out of range.
    #[error("invalid config {path}: {what}")]
    Invalid {
        /// File.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Node-wide settings.
    pub node: Node,
    /// The TPM.
    pub tpm: Tpm,
    /// havn-attestd.
    #[serde(default)]
    pub attestd: Daemon,
    /// havn-execd.
    #[serde(default)]
    pub execd: Execd,
    /// havn-netd.
    pub netd: Netd,
    /// The validator mesh (gossip).
    #[serde(default)]
    pub mesh: Mesh,
    /// The chain (stake, payouts); absent on an unstaked development node.
    #[serde(default)]
    pub chain: Option<chain::Chain>,
    /// SLA alerts (Standard Webhooks).
    #[serde(default)]
    pub alerts: alerts::Alerts,
}

/// `[node]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Root of persistent state; each daemon owns `state_dir/<daemon>/`.
    pub state_dir: PathBuf,
    /// Directory holding the daemon binaries (default: next to havn-init).
    #[serde(default)]
    pub bin_dir: Option<PathBuf>,
    /// Self-audit period in milliseconds: havn-init re-hashes each running daemon's
    /// executable and attestd checks it against this boot's measurement (0 = off).
    /// With auditing on, attestd's gate also requires the last good audit to be
    /// younger than 3 × this.
    #[serde(default = "default_audit_interval")]
    pub audit_interval_ms: u64,
    /// Execution node or validator.
    #[serde(default)]
    pub role: NodeRole,
    /// The class it serves (execution) or validates (validator): `S`, `M`, `L`, `XL`.
    #[serde(default = "mesh::default_compute_class")]
    pub compute_class: String,
}

fn default_audit_interval() -> u64 {
    30_000
}

/// `[tpm]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tpm {
    /// `device:/dev/tpmrm0` or `swtpm:host=127.0.0.1,port=2321`.
    pub tcti: String,
    /// PCRs (sha256 bank) quoted and sealed to.
    #[serde(default = "default_pcrs")]
    pub pcrs: Vec<u8>,
    /// PCR that havn-init's userland measurements extend.
    #[serde(default = "default_userland_pcr")]
    pub userland_pcr: u8,
    /// Vendor CA bundle (PEM) for EK certificates, if checked.
    #[serde(default)]
    pub ek_ca: Option<PathBuf>,
}

fn default_pcrs() -> Vec<u8> {
    vec![0, 1, 2, 3, 4, 5, 6, 7, 14]
}
fn default_userland_pcr() -> u8 {
    14
}

/// Settings every daemon has.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Daemon {
    /// Binary path (default: `bin_dir/havn-<name>`).
    #[serde(default)]
    pub binary: Option<PathBuf>,
    /// `tracing` filter (default `info`).
    #[serde(default)]
    pub log: Option<String>,
}

/// `[execd]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Execd {
    /// Common settings.
    #[serde(flatten)]
    pub daemon: Daemon,
    /// CPU threads (0 = all cores).
    #[serde(default)]
    pub threads: usize,
    /// `auto`, `cpu` or `cuda`.
    #[serde(default = "default_backend")]
    pub backend: String,
    /// Model store: GGUF files by CID, filled by `havnctl models fetch --store DIR`.
    #[serde(default = "default_model_store")]
    pub model_store: PathBuf,
    /// The model the `chat` workflow serves (a store name or CID). The workflow is
    /// offered only when the store holds it; a stored model that fails its CID check or
    /// does not load stops execd at start.
    #[serde(default = "default_chat_model")]
    pub chat_model: String,
    /// Unprivileged user execd runs as: its own, so it cannot open attestd's state
    /// (`scripts/setup` creates `havn-execd`).
    #[serde(default = "default_execd_user")]
    pub user: String,
    /// TEST ONLY: `"perturb-leaf"` makes this node cheat — it changes one DAG node's
    /// output hash after the fact and signs the result — so the validator mesh can be
    /// shown catching it (`scripts/demo-mesh`, the mesh system test). Never set it on
    /// a real node; execd logs a warning at every start while it is set.
    #[serde(default)]
    pub test_only_fault: Option<String>,
}

fn default_execd_user() -> String {
    "havn-execd".into()
}

fn default_backend() -> String {
    "auto".into()
}

fn default_model_store() -> PathBuf {
    PathBuf::from("/var/lib/havn/models")
}

fn default_chat_model() -> String {
    "smollm2-135m-instruct".into()
}

impl Default for Execd {
    fn default() -> Self {
        Self {
            daemon: Daemon::default(),
            threads: 0,
            backend: default_backend(),
            model_store: default_model_store(),
            chat_model: default_chat_model(),
            user: default_execd_user(),
            test_only_fault: None,
        }
    }
}

/// `[netd]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Netd {
    /// Common settings.
    #[serde(flatten)]
    pub daemon: Daemon,
    /// mTLS API address.
    pub listen: SocketAddr,
    /// Server certificate chain (PEM).
    pub tls_cert: PathBuf,
    /// Server key (PEM).
    pub tls_key: PathBuf,
    /// CA that orchestrator/validator client certificates must chain to (PEM).
    pub client_ca: PathBuf,
    /// Bounded queue length; beyond it, 429.
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
    /// Largest request body in bytes; beyond it, 413.
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
    /// Unprivileged user netd runs as.
    #[serde(default = "default_user")]
    pub user: String,
    /// Heartbeat interval in milliseconds (spec: 5 s).
    #[serde(default = "default_heartbeat")]
    pub heartbeat_ms: u64,
    /// Where signed heartbeats are POSTed (mTLS URLs); empty = log only.
    #[serde(default)]
    pub heartbeat_endpoints: Vec<String>,
    /// The grid's carbon intensity where the node runs, in gCO2 per kWh: `/metrics`
    /// then reports the jobs' emissions (`havn_netd_carbon_grams_total`).
    #[serde(default)]
    pub grid_gco2_per_kwh: Option<f64>,
    /// Which client-certificate identities (subject CN) hold which role.
    #[serde(default)]
    pub roles: Roles,
}

/// `[netd.roles]`: client identities (the certificate's subject CN, else its first DNS
/// SAN) by role. A client may hold several roles; one in none can read only public
/// attestation data (`/health`, `/attest/*`, `/capabilities`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    /// Submit jobs and upload inputs; read their own jobs, receipts and outputs.
    #[serde(default = "default_orchestrators")]
    pub orchestrators: Vec<String>,
    /// Read every receipt, output and proof (to sample, re-execute and challenge).
    #[serde(default = "default_validators")]
    pub validators: Vec<String>,
    /// Read metrics and every job's status.
    #[serde(default = "default_operators")]
    pub operators: Vec<String>,
}

fn default_orchestrators() -> Vec<String> {
    vec!["orchestrator".into()]
}
fn default_validators() -> Vec<String> {
    vec!["validator".into()]
}
fn default_operators() -> Vec<String> {
    vec!["operator".into()]
}

impl Default for Roles {
    /// The identities `havnctl pki init` issues.
    fn default() -> Self {
        Self {
            orchestrators: default_orchestrators(),
            validators: default_validators(),
            operators: default_operators(),
        }
    }
}

fn default_queue() -> usize {
    1024
}
fn default_body() -> usize {
    64 * 1024
}
fn default_user() -> String {
    "nobody".into()
}
fn default_heartbeat() -> u64 {
    5_000
}

impl NodeConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates TOML text (`path` is for messages).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: NodeConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        cfg.validate().map_err(|what| ConfigError::Invalid {
            path: path.to_path_buf(),
            what,
        })?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        if !(self.tpm.tcti.starts_with("device:") || self.tpm.tcti.starts_with("swtpm:")) {
            return Err(format!(
                "tpm.tcti must start with device: or swtpm:, got {:?}",
                self.tpm.tcti
            ));
        }
        if self.tpm.pcrs.is_empty() || self.tpm.pcrs.iter().any(|p| *p > 23) {
            return Err("tpm.pcrs must list PCR indices 0..=23".into());
        }
        if self.tpm.pcrs.iter().all(|p| *p == 16 || *p == 23) {
            return Err("tpm.pcrs must not be only PCRs 16/23 (resettable from locality 0)".into());
        }
        if matches!(self.tpm.userland_pcr, 16 | 23) || self.tpm.userland_pcr > 23 {
            return Err("tpm.userland_pcr must be a non-resettable PCR (not 16 or 23)".into());
        }
        if !self.tpm.pcrs.contains(&self.tpm.userland_pcr) {
            return Err("tpm.pcrs must include tpm.userland_pcr".into());
        }
        if !["auto", "cpu", "cuda"].contains(&self.execd.backend.as_str()) {
            return Err(format!(
                "execd.backend must be auto, cpu or cuda, got {:?}",
                self.execd.backend
            ));
        }
        if self.netd.queue_capacity == 0 || self.netd.max_body_bytes == 0 {
            return Err("netd.queue_capacity and netd.max_body_bytes must be > 0".into());
        }
        if self.node.audit_interval_ms != 0 && self.node.audit_interval_ms < 100 {
            return Err("node.audit_interval_ms must be 0 (off) or at least 100".into());
        }
        if self.netd.heartbeat_ms < 100 {
            return Err("netd.heartbeat_ms must be at least 100".into());
        }
        if !["S", "M", "L", "XL"].contains(&self.node.compute_class.as_str()) {
            return Err(format!(
                "node.compute_class must be S, M, L or XL, got {:?}",
                self.node.compute_class
            ));
        }
        self.mesh.validate()?;
        self.alerts.validate()?;
        if let Some(c) = &self.chain {
            c.validate()?;
        }
        if let Some(f) = &self.execd.test_only_fault {
            if f != "perturb-leaf" {
                return Err(format!(
                    "execd.test_only_fault must be \"perturb-leaf\" (or absent), got {f:?}"
                ));
            }
        }
        Ok(())
    }

    /// `state_dir/<daemon>`.
    pub fn daemon_state(&self, daemon: &str) -> PathBuf {
        self.node.state_dir.join(daemon)
    }

    /// Where netd stores uploaded job inputs and execd reads them.
    pub fn uploads_dir(&self) -> PathBuf {
        uploads_dir(&self.node.state_dir)
    }
}

/// `state_dir/uploads`: job inputs by CID, written by netd (`POST /artifact`, which
/// owns the directory), read by execd; created by havn-init, mode 0755.
pub fn uploads_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("uploads")
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../node.example.toml");

    #[test]
    fn example_parses_with_defaults() {
        let c = NodeConfig::parse(EXAMPLE, Path::new("node.example.toml")).unwrap();
        assert_eq!(c.tpm.userland_pcr, 14);
        assert_eq!(c.netd.heartbeat_ms, 5_000);
        assert_eq!(c.execd.backend, "auto");
        assert_eq!(c.node.audit_interval_ms, 30_000);
        let off = NodeConfig::parse(
            &EXAMPLE.replace("[node]\n", "[node]\naudit_interval_ms = 0\n"),
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(off.node.audit_interval_ms, 0);
    }

    #[test]
    fn a_chain_section_is_checked() {
        let chain = |owner: &str, rpc: &str, extra: &str| {
            format!(
                "{EXAMPLE}\n[chain]\nrpc = \"{rpc}\"\ndeployment = \"/etc/havn/chain.json\"\nowner = \"{owner}\"\n{extra}"
            )
        };
        let ok = "0x00000000000000000000000000000000000000aa";
        let c = NodeConfig::parse(&chain(ok, "http://127.0.0.1:8545", ""), Path::new("x")).unwrap();
        let cc = c.chain.expect("[chain] parsed");
        assert_eq!((cc.refresh_ms, cc.max_staleness_ms), (2_000, 30_000));
        assert!(NodeConfig::parse(EXAMPLE, Path::new("x"))
            .unwrap()
            .chain
            .is_none());
        for (text, why) in [
            (chain("0xaa", "http://127.0.0.1:8545", ""), "chain.owner"),
            (chain(ok, "127.0.0.1:8545", ""), "chain.rpc"),
            (
                chain(
                    ok,
                    "http://127.0.0.1:8545",
                    "refresh_ms = 5000\nmax_staleness_ms = 1000\n",
                ),
                "max_staleness_ms",
            ),
            (
                chain(ok, "http://127.0.0.1:8545", "stake = 1\n"),
                "unknown field",
            ),
        ] {
            let e = NodeConfig::parse(&text, Path::new("x"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{why}: {e}");
        }
        let old = EXAMPLE.replace("[node]\n", "[node]\nstake_hai = 5000\n");
        let e = NodeConfig::parse(&old, Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("stake_hai"), "stake lives on chain now: {e}");
    }

    #[test]
    fn omitted_execd_section_gets_serde_defaults() {
        let section = EXAMPLE
            .split("[execd]\n")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").next())
            .expect("the example has an [execd] section");
        let text = EXAMPLE.replace(&format!("[execd]\n{section}\n"), "");
        assert!(
            !text.contains("[execd]"),
            "example changed: update this test"
        );
        let c = NodeConfig::parse(&text, Path::new("x")).unwrap();
        assert_eq!(c.execd.backend, "auto");
        assert_eq!(c.execd.model_store, Path::new("/var/lib/havn/models"));
        assert_eq!(c.execd.chat_model, "smollm2-135m-instruct");
    }

    #[test]
    fn netd_view_points_every_netd_path_at_its_descriptor() {
        let v = netd_view(EXAMPLE, Path::new("node.toml")).unwrap();
        let c = NodeConfig::parse(&v, Path::new("x")).unwrap();
        let orig = NodeConfig::parse(EXAMPLE, Path::new("x")).unwrap();
        assert_eq!(c.node.state_dir, fds::path(fds::NETD_STATE));
        assert_eq!(c.netd.tls_cert, fds::path(fds::NETD_TLS_CERT));
        assert_eq!(c.netd.tls_key, Path::new(SEALED_TLS_KEY));
        assert_eq!(c.netd.client_ca, fds::path(fds::NETD_CLIENT_CA));
        assert_eq!(c.netd.listen, orig.netd.listen);
        assert_eq!(c.netd.heartbeat_ms, orig.netd.heartbeat_ms);
        assert_eq!(
            c.daemon_state("netd"),
            fds::path(fds::NETD_STATE).join("netd")
        );
        let e = NodeConfig::parse(
            &execd_view(EXAMPLE, Path::new("x")).unwrap(),
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(e.node.state_dir, fds::path(fds::EXECD_STATE));
        assert_eq!(e.execd.model_store, fds::path(fds::EXECD_MODELS));
        assert_eq!(e.execd.chat_model, orig.execd.chat_model);
    }

    #[test]
    fn unknown_key_and_bad_values_are_named() {
        let e = NodeConfig::parse(
            &EXAMPLE.replace("[netd]", "[netd]\nlisten_port = 1"),
            Path::new("x"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("listen_port"), "{e}");
        let e = NodeConfig::parse(&EXAMPLE.replace("swtpm:", "mssim:"), Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("tpm.tcti"), "{e}");
        let e = NodeConfig::parse(
            &EXAMPLE.replace("pcrs = [0, 1, 2, 3, 4, 5, 6, 7, 14]", "pcrs = [16, 23]"),
            Path::new("x"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("16/23") || e.contains("userland_pcr"), "{e}");
    }
}
