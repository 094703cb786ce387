//! Shared fixtures. The IPC responders here STAND IN for havn-execd and
//! havn-attestd (written elsewhere): each is a real `havn_ipc::Server` on the other
//! end of a real socketpair, answering with plausible values. The system tests
//! (tests/ at the repo root) run netd against the real daemons.

use havn_ipc::{PeerPolicy, Server};
use havn_netd::pki::DevPki;
use havn_proto::cid::Cid;
use havn_proto::ipc::*;
use havn_proto::*;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The checksum the stand-in execd registers for workflow `lm`.
pub const LM_SUM: &str = "1111111111111111111111111111111111111111111111111111111111111111";

pub fn pki() -> &'static (DevPki, PathBuf) {
    static P: OnceLock<(DevPki, PathBuf)> = OnceLock::new();
    P.get_or_init(|| {
        let p = DevPki::generate("node", &[]).unwrap();
        let dir = tmpdir("pki");
        p.write(&dir, true).unwrap();
        (p, dir)
    })
}

pub fn tmpdir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "havn-netd-test-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub struct Cfg {
    /// A `[chain]` section (default: none, an unstaked development node).
    pub chain: Option<String>,
    pub queue: usize,
    pub max_body: usize,
    pub endpoints: Vec<String>,
    /// The state directory (default: a fresh temp directory).
    pub state_dir: Option<PathBuf>,
    /// `[netd.roles]` lines (default: the dev PKI's identities).
    pub roles: Option<String>,
    /// More TOML at the end (e.g. `[alerts]`).
    pub extra: Option<String>,
    /// More keys in `[netd]`.
    pub netd_extra: Option<String>,
    /// While set, the stand-in attestd answers self-audit requests with GateClosed (a
    /// running daemon differs from its measurement).
    pub audit_failing: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Default for Cfg {
    fn default() -> Self {
        Self {
            chain: None,
            queue: 64,
            max_body: 4096,
            endpoints: Vec::new(),
            state_dir: None,
            roles: None,
            extra: None,
            netd_extra: None,
            audit_failing: None,
        }
    }
}

pub fn config_text(state: &Path, c: &Cfg) -> String {
    let d = &pki().1;
    format!(
        r#"
[node]
state_dir = "{state}"
[tpm]
tcti = "swtpm:host=127.0.0.1,port=1"
# havn-config's derived Default leaves execd.backend empty: spell it out.
[execd]
backend = "auto"
# The execd stand-in runs in this (root) test process.
user = "root"
[netd]
listen = "127.0.0.1:0"
tls_cert = "{d}/node.pem"
tls_key = "{d}/node.key"
client_ca = "{d}/ca.pem"
queue_capacity = {queue}
max_body_bytes = {body}
heartbeat_ms = 100
heartbeat_endpoints = {endpoints:?}
{netd_extra}
[netd.roles]
{roles}
{chain}
{extra}
"#,
        state = state.display(),
        chain = c.chain.as_deref().unwrap_or(""),
        extra = c.extra.as_deref().unwrap_or(""),
        netd_extra = c.netd_extra.as_deref().unwrap_or(""),
        d = d.display(),
        queue = c.queue,
        body = c.max_body,
        endpoints = c.endpoints,
        roles = c.roles.as_deref().unwrap_or("")
    )
}

pub fn config(state: &Path, c: &Cfg) -> havn_config::NodeConfig {
    havn_config::NodeConfig::parse(&config_text(state, c), Path::new("test.toml")).unwrap()
}

/// What the stand-in execd saw.
#[derive(Default)]
pub struct ExecLog {
    /// (job id, when the Run arrived).
    pub runs: Vec<(String, Instant)>,
    /// Finished jobs and their receipts' runtime hashes (what `Prove` answers for).
    pub done: std::collections::BTreeMap<String, Hash32>,
    /// (job id, node id, when the Prove arrived).
    pub proves: Vec<(String, String, Instant)>,
    /// The artifact store `Prove` writes to (none: `Prove` knows no job).
    pub artifacts: Option<PathBuf>,
}

/// The DAG nodes the stand-in execd proves.
pub const PROVABLE_NODES: [&str; 2] = ["n1", "s0.l1:k"];

/// What the stand-in serves for a node: (proof bytes, node-input bytes).
pub fn proof_bytes(job: &str, node: &str) -> (Vec<u8>, Vec<u8>) {
    (
        format!("{{\"job\":\"{job}\",\"node\":\"{node}\"}}").into_bytes(),
        format!("inputs of {node} in {job}").into_bytes(),
    )
}

fn prove(log: &Mutex<ExecLog>, job_id: &str, node_id: &str) -> NetdExecResponse {
    let mut l = log.lock().unwrap();
    l.proves
        .push((job_id.to_string(), node_id.to_string(), Instant::now()));
    let refused = |error, reason: &str| NetdExecResponse::Refused {
        error,
        reason: bounded(reason),
    };
    let (Some(rh), Some(dir)) = (l.done.get(job_id), l.artifacts.as_ref()) else {
        return refused(RemoteError::UnknownJob, "no such finished job");
    };
    if !PROVABLE_NODES.contains(&node_id) {
        return refused(RemoteError::UnknownNode, "no such node");
    }
    let (proof, inputs) = proof_bytes(job_id, node_id);
    let store = |b: &[u8]| {
        let cid = Cid::of_bytes(b);
        std::fs::write(dir.join(cid.to_string()), b).unwrap();
        cid
    };
    NetdExecResponse::Proof {
        proof_cid: store(&proof),
        inputs_cid: store(&inputs),
        runtime_hash: *rh,
    }
}

pub struct ExecdStandIn {
    pub class: ComputeClass,
    pub delay: Duration,
    pub log: Arc<Mutex<ExecLog>>,
}

pub fn receipt_for(p: &JobPayload) -> SignedReceipt {
    receipt_by(p, "orchestrator")
}

/// What the stand-in execd answers for `submitter`'s job `p`.
pub fn receipt_by(p: &JobPayload, submitter: &str) -> SignedReceipt {
    let mut h = [0u8; 32];
    for (i, b) in p.job_id.as_bytes().iter().enumerate() {
        h[i % 32] ^= *b;
    }
    SignedReceipt {
        receipt: Receipt {
            workflow_id: p.workflow.id.clone(),
            job_id: p.job_id.clone(),
            runtime_hash: Hash32(h),
            outputs_cid: Cid::of_bytes(p.job_id.as_bytes()),
            inputs_cid: Cid::of_bytes(b""),
            latency_ms: 1,
            energy_estimate_mj: 2,
            manifest_checksum: p.workflow.checksum,
            seed: p.seed,
            gas: 3,
            backend: Backend::Cpu,
            compute_class: p.compute_class,
            node: NodeId(PubKey32([7; 32])),
            submitter: bounded(submitter),
            signed_unix_ms: 1,
        },
        signature: Sig64([9; 64]),
    }
}

impl ExecdStandIn {
    pub fn spawn(self, fd: OwnedFd) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let Ok(mut s) = Server::<NetdExecd>::accept(fd, PeerPolicy::any()) else {
                return;
            };
            loop {
                let r = match s.recv() {
                    Ok(r) => r,
                    Err(e) => {
                        if !e.is_peer_restart() {
                            eprintln!("execd stand-in: recv failed: {e:?}");
                        }
                        return;
                    }
                };
                let resp = match r.msg {
                    NetdExecRequest::Capabilities => {
                        let mut workflows = heapless::Vec::new();
                        let _ = workflows.push(WorkflowRef {
                            id: bounded("lm"),
                            checksum: Hash32::from_hex(LM_SUM).unwrap(),
                        });
                        NetdExecResponse::Capabilities(CapabilityReport {
                            compute_class: self.class,
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
                        let id = payload.job_id.to_string();
                        let first = {
                            let mut l = self.log.lock().unwrap();
                            let first = !l.runs.iter().any(|(j, _)| *j == id);
                            l.runs.push((id.clone(), Instant::now()));
                            first
                        };
                        if first && id.starts_with("die") {
                            // Simulate execd dying mid-job: close the channel.
                            return;
                        }
                        std::thread::sleep(self.delay);
                        if first && id.starts_with("diskfull") {
                            // attestd's disk is full on the first try: nothing signed.
                            NetdExecResponse::Failed {
                                ticket_id,
                                error: RemoteError::StorageFull,
                                reason: bounded("attestd refused to sign"),
                            }
                        } else if payload.job_id.starts_with("spent") {
                            // attestd signed another result under this id before.
                            NetdExecResponse::Failed {
                                ticket_id,
                                error: RemoteError::AlreadySigned,
                                reason: bounded("attestd refused to sign"),
                            }
                        } else if payload.job_id.starts_with("fail") {
                            NetdExecResponse::Failed {
                                ticket_id,
                                error: RemoteError::ExecutionFailed,
                                reason: bounded("boom"),
                            }
                        } else {
                            let receipt = receipt_by(&payload, &submitter);
                            self.log
                                .lock()
                                .unwrap()
                                .done
                                .insert(id, receipt.receipt.runtime_hash);
                            NetdExecResponse::Done { ticket_id, receipt }
                        }
                    }
                    NetdExecRequest::Prove {
                        job_id, node_id, ..
                    } => prove(&self.log, &job_id, &node_id),
                    NetdExecRequest::Reexecute { .. } | NetdExecRequest::Leaves { .. } => {
                        NetdExecResponse::Refused {
                            error: RemoteError::NotPermitted,
                            reason: bounded("the stand-in judges nothing"),
                        }
                    }
                };
                if let Err(e) = s.reply(&resp) {
                    if !e.is_peer_restart() {
                        eprintln!("execd stand-in: reply failed: {e:?}");
                    }
                    return;
                }
            }
        })
    }
}

/// The attestd stand-in's chain key (every instance has the same).
pub fn chain_key() -> havn_chain_client::alloy::signers::local::PrivateKeySigner {
    havn_chain_client::tx::key_from_bytes(&[0x42; 32]).unwrap()
}

/// Heartbeats the attestd stand-ins signed (all instances).
pub static HEARTBEATS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A quote for this nonce makes the attestd stand-in hang for [`HANG_FOR`].
pub const HANG_NONCE: Hash32 = Hash32([0xee; 32]);
/// How long.
pub const HANG_FOR: Duration = Duration::from_millis(1500);

/// The key the stand-in attestd signs alerts with (its "node key").
pub fn webhook_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0x42; 32])
}

/// The stand-in attestd's payload key (what `privacy.enclave` inputs are sealed to).
pub fn payload_key() -> &'static havn_payload::PayloadKey {
    static K: OnceLock<havn_payload::PayloadKey> = OnceLock::new();
    K.get_or_init(havn_payload::PayloadKey::generate)
}

pub fn spawn_attestd(fd: OwnedFd) -> std::thread::JoinHandle<()> {
    spawn_attestd_with(fd, Arc::default())
}

/// [`spawn_attestd`] whose self-audit fails while `audit_failing` is set.
pub fn spawn_attestd_with(
    fd: OwnedFd,
    audit_failing: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(mut s) = Server::<NetdAttestd>::accept(fd, PeerPolicy::any()) else {
            return;
        };
        let node = NodeId(PubKey32([7; 32]));
        while let Ok(r) = s.recv() {
            let resp = match r.msg {
                // Signed as attestd signs it (the stand-in's own ed25519 key).
                NetdAttestRequest::SignWebhook(w) => {
                    use ed25519_dalek::Signer;
                    let unix_s = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    let content = havn_proto::ipc::webhook_content(&w.id, unix_s, &w.body);
                    NetdAttestResponse::Webhook {
                        unix_s,
                        signature: Sig64(webhook_key().sign(&content).to_bytes()),
                    }
                }
                NetdAttestRequest::Identity => NetdAttestResponse::Identity {
                    node: node.0,
                    chain_account: chain_key().address().into_array(),
                    payload_key: PubKey32(payload_key().public()),
                },
                // The stand-in signs any call; attestd's signing policy is tested
                // against the real attestd (attest/attestd/tests/chain.rs).
                NetdAttestRequest::ChainTx(tx) => {
                    let call = havn_chain_client::tx::Call {
                        chain_id: tx.chain_id,
                        nonce: tx.nonce,
                        gas_limit: tx.gas_limit,
                        max_fee_per_gas: tx.max_fee_per_gas,
                        max_priority_fee_per_gas: tx.max_priority_fee_per_gas,
                        to: tx.to.into(),
                        input: tx.input.to_vec().into(),
                    };
                    let sig = call.sign(&chain_key()).unwrap();
                    NetdAttestResponse::Chain(Box::new(havn_proto::chain::ChainSignature {
                        signer: chain_key().address().into_array(),
                        signature: heapless::Vec::from_slice(&sig.as_bytes()).unwrap(),
                    }))
                }
                NetdAttestRequest::Heartbeat(netd_claims) => {
                    let seq = HEARTBEATS.fetch_add(1, Ordering::Relaxed) + 1;
                    NetdAttestResponse::Heartbeat(SignedHeartbeat {
                        heartbeat: Heartbeat {
                            node,
                            seq,
                            unix_ms: 1_790_000_000_000 + seq,
                            netd_claims,
                        },
                        signature: Sig64([1; 64]),
                    })
                }
                NetdAttestRequest::Quote { nonce } => {
                    if nonce == HANG_NONCE {
                        // A TPM that stops answering for a while.
                        std::thread::sleep(HANG_FOR);
                    }
                    NetdAttestResponse::Quote(Box::new(QuoteEvidence {
                        nonce,
                        node,
                        payload_key: PubKey32(payload_key().public()),
                        attest: heapless::Vec::from_slice(&[1, 2, 3]).unwrap(),
                        signature: heapless::Vec::from_slice(&[4, 5]).unwrap(),
                        ak_public: heapless::Vec::new(),
                        pcrs: heapless::Vec::new(),
                        events: heapless::Vec::new(),
                        ek_cert: None,
                    }))
                }
                NetdAttestRequest::SelfAudit if audit_failing.load(Ordering::Relaxed) => {
                    NetdAttestResponse::Error(RemoteError::GateClosed)
                }
                NetdAttestRequest::SelfAudit => NetdAttestResponse::SelfAudit(Box::new(
                    havn_proto::vectors::signed_self_audit(),
                )),
                // No sealed key here: netd reads the dev PKI's key file.
                NetdAttestRequest::TlsKey => {
                    NetdAttestResponse::Error(RemoteError::NotYetAvailable)
                }
                NetdAttestRequest::Capabilities => NetdAttestResponse::Capabilities(Box::new(
                    havn_proto::vectors::signed_capability_manifest(),
                )),
                // The stand-in is an execution node outside any mesh.
                NetdAttestRequest::MeshManifest { .. }
                | NetdAttestRequest::Lottery { .. }
                | NetdAttestRequest::Vote(_)
                | NetdAttestRequest::ChainVote(_) => {
                    NetdAttestResponse::Error(RemoteError::NotPermitted)
                }
            };
            if s.reply(&resp).is_err() {
                return;
            }
        }
    })
}

pub struct Node {
    pub running: havn_netd::Running,
    #[allow(dead_code)]
    pub state_dir: PathBuf,
    pub log: Arc<Mutex<ExecLog>>,
}

impl Node {
    /// `GET /metrics` with the operator's certificate (metrics are for operators).
    pub async fn operator_metrics(&self) -> String {
        operator()
            .connect("127.0.0.1", self.running.local_addr.port())
            .await
            .expect("operator connects over mTLS")
            .get("/metrics")
            .await
            .expect("GET /metrics")
            .text()
    }

    /// A keep-alive mTLS connection to this node with the orchestrator's certificate.
    pub async fn orchestrator(&self) -> havn_netd::client::Conn {
        orchestrator()
            .connect("127.0.0.1", self.running.local_addr.port())
            .await
            .expect("orchestrator connects over mTLS")
    }
}

/// Starts netd in this process on real socketpairs served by the stand-ins.
pub async fn start_node(c: Cfg, class: ComputeClass, delay: Duration) -> Node {
    start_node_with(c, class, delay, havn_netd::StartOptions::default()).await
}

/// [`start_node`] with non-default start options.
pub async fn start_node_with(
    c: Cfg,
    class: ComputeClass,
    delay: Duration,
    opts: havn_netd::StartOptions,
) -> Node {
    let state_dir = c.state_dir.clone().unwrap_or_else(|| tmpdir("state"));
    std::fs::create_dir_all(&state_dir).unwrap();
    let cfg = config(&state_dir, &c);
    let artifacts = state_dir.join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let log = Arc::new(Mutex::new(ExecLog {
        artifacts: Some(artifacts),
        ..ExecLog::default()
    }));
    let (e_netd, e_execd) = havn_ipc::socketpair().unwrap();
    let (a_netd, a_attestd) = havn_ipc::socketpair().unwrap();
    ExecdStandIn {
        class,
        delay,
        log: log.clone(),
    }
    .spawn(e_execd);
    spawn_attestd_with(a_attestd, c.audit_failing.clone().unwrap_or_default());
    let execd = havn_ipc::AsyncClient::connect(e_netd, PeerPolicy::any())
        .await
        .unwrap();
    let attestd = havn_ipc::AsyncClient::connect(a_netd, PeerPolicy::any())
        .await
        .unwrap();
    let running = havn_netd::start(&cfg, execd, attestd, opts).await.unwrap();
    Node {
        running,
        state_dir,
        log,
    }
}

/// A client with one of the dev PKI's identities.
pub fn client_as(pair: &havn_netd::pki::Pair) -> havn_netd::client::MtlsClient {
    let p = &pki().0;
    havn_netd::client::MtlsClient::from_pem(
        p.ca.cert.as_bytes(),
        Some((pair.cert.as_bytes(), pair.key.as_bytes())),
    )
    .unwrap()
}

pub fn operator() -> havn_netd::client::MtlsClient {
    client_as(&pki().0.operator)
}

pub fn validator() -> havn_netd::client::MtlsClient {
    client_as(&pki().0.validator)
}

pub fn orchestrator() -> havn_netd::client::MtlsClient {
    let p = &pki().0;
    havn_netd::client::MtlsClient::from_pem(
        p.ca.cert.as_bytes(),
        Some((
            p.orchestrator.cert.as_bytes(),
            p.orchestrator.key.as_bytes(),
        )),
    )
    .unwrap()
}

pub fn job(id: &str) -> serde_json::Value {
    serde_json::json!({
        "job_id": id,
        "workflow": {"id": "lm", "checksum": LM_SUM},
        "inputs": [],
        "compute_class": "S",
        "timeout_ms": 60000,
        "seed": 7
    })
}

/// Polls GET /job/{t} until done or failed.
pub async fn wait_terminal(c: &mut havn_netd::client::Conn, t: u64) -> serde_json::Value {
    for _ in 0..500 {
        let r = c.get(&format!("/job/{t}")).await.unwrap();
        let v: serde_json::Value = r.json().unwrap();
        let s = &v["state"];
        if s == "done" || s.get("failed").is_some() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("ticket {t} never finished");
}
