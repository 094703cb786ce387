//! The request handlers, independent of transport (so tests can drive them).

use havn_attest_agent::{Agent, AgentConfig, AgentError, NodeKey, RecordStore};
use havn_config::NodeConfig;
use havn_proto::ipc::{
    ExecdRequest, ExecdResponse, InitRequest, InitResponse, JobResult, NetdAttestRequest,
    NetdAttestResponse, RemoteError,
};
use havn_proto::sign::{Domain, Signable};
use havn_proto::{
    bounded, Hash32, Heartbeat, MeasurementEvent, NodeId, PcrValue, PubKey32, QuoteEvidence, Sig64,
    SignedHeartbeat, SignedReceipt,
};
use std::path::{Path, PathBuf};

/// Why the service could not start or persist.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The TPM agent failed.
    #[error("TPM agent: {0}")]
    Agent(#[from] AgentError),
    /// State directory trouble.
    #[error("state {path}: {source}")]
    State {
        /// Where.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// attestd's state.
pub struct Service {
    agent: Agent,
    key: Option<NodeKey>,
    key_error: Option<String>,
    records: RecordStore,
    receipts_dir: PathBuf,
    userland_pcr: u32,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("key", &self.key)
            .field("receipts_dir", &self.receipts_dir)
            .finish()
    }
}

fn state_err(path: &Path) -> impl FnOnce(std::io::Error) -> ServiceError + '_ {
    move |source| ServiceError::State {
        path: path.to_path_buf(),
        source,
    }
}

impl Service {
    /// Opens the TPM and the state under `state_dir/attestd`.
    pub fn open(cfg: &NodeConfig) -> Result<Self, ServiceError> {
        let dir = cfg.daemon_state("attestd");
        let receipts_dir = dir.join("receipts");
        std::fs::create_dir_all(&receipts_dir).map_err(state_err(&receipts_dir))?;
        let pcrs: Vec<u32> = cfg.tpm.pcrs.iter().map(|p| u32::from(*p)).collect();
        let mut acfg = AgentConfig::new(&cfg.tpm.tcti, &dir);
        acfg.seal_pcrs = pcrs.clone();
        acfg.quote_pcrs = pcrs;
        let agent = Agent::open(acfg)?;
        let records = RecordStore::open(&dir.join("signed-receipts.log"))?;
        Ok(Self {
            agent,
            key: None,
            key_error: None,
            records,
            receipts_dir,
            userland_pcr: u32::from(cfg.tpm.userland_pcr),
        })
    }

    /// Whether the node key is unsealed.
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// The node identity, if the key is unsealed.
    pub fn node(&self) -> Option<NodeId> {
        self.key.as_ref().map(|k| NodeId(PubKey32(k.public())))
    }

    /// init → attestd.
    pub fn handle_init(&mut self, req: InitRequest) -> InitResponse {
        match req {
            InitRequest::Measure { name, digest } => {
                match self
                    .agent
                    .extend_digest(self.userland_pcr, "binary", &name, digest.0)
                {
                    Ok(ev) => {
                        tracing::info!(binary = %name, digest = %digest, pcr = self.userland_pcr, "measured");
                        InitResponse::Measured {
                            pcr: u8::try_from(ev.pcr).unwrap_or(u8::MAX),
                            index: u32::try_from(ev.seq).unwrap_or(u32::MAX),
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, binary = %name, "measurement failed");
                        InitResponse::Error(RemoteError::TpmUnavailable)
                    }
                }
            }
            InitRequest::Status => {
                if self.key.is_none() {
                    match self.agent.load_or_create_node_key() {
                        Ok(k) => {
                            tracing::info!(node = %Hash32(k.public()), "node key unsealed");
                            self.key = Some(k);
                            self.key_error = None;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "node key refused: gate closed");
                            self.key_error = Some(e.to_string());
                        }
                    }
                }
                let gate_open = self.gate().is_ok();
                match self.node() {
                    Some(node) => InitResponse::Status {
                        node,
                        gate_open,
                        events: u32::try_from(self.agent.event_log().len()).unwrap_or(u32::MAX),
                    },
                    None => InitResponse::Error(RemoteError::GateClosed),
                }
            }
            InitRequest::Shutdown => InitResponse::ShuttingDown,
        }
    }

    /// The gate: key unsealed, TPM answering, sealed PCRs unchanged.
    fn gate(&mut self) -> Result<(), String> {
        if self.key.is_none() {
            return Err(self
                .key_error
                .clone()
                .unwrap_or_else(|| "node key not unsealed".into()));
        }
        self.agent.gate().map_err(|e| e.to_string())
    }

    /// execd → attestd.
    pub fn handle_execd(&mut self, req: ExecdRequest) -> ExecdResponse {
        match req {
            ExecdRequest::Gate { job_id } => match self.gate() {
                Ok(()) => ExecdResponse::GateOpen,
                Err(reason) => {
                    tracing::warn!(job = %job_id, %reason, "gate closed");
                    ExecdResponse::GateClosed {
                        reason: bounded(&reason),
                    }
                }
            },
            ExecdRequest::Report(result) => self.sign_result(result),
        }
    }

    fn receipt_path(&self, job_id: &str) -> PathBuf {
        self.receipts_dir.join(format!(
            "{}.receipt",
            Hash32(Domain::Receipt.digest(job_id.as_bytes()).0)
        ))
    }

    /// Assembles the receipt from execd's result and our identity, then signs it once:
    /// a job already signed gets the first receipt back, never a second signature.
    fn sign_result(&mut self, r: JobResult) -> ExecdResponse {
        let path = self.receipt_path(&r.job_id);
        if let Ok(bytes) = std::fs::read(&path) {
            return match postcard::from_bytes::<SignedReceipt>(&bytes) {
                Ok(first) => {
                    tracing::info!(job = %r.job_id, "job already signed: returning the first receipt");
                    ExecdResponse::Receipt(first)
                }
                Err(e) => {
                    tracing::error!(error = %e, path = %path.display(), "stored receipt unreadable");
                    ExecdResponse::Error(RemoteError::Internal)
                }
            };
        }
        if let Err(reason) = self.gate() {
            tracing::warn!(job = %r.job_id, %reason, "refusing to sign: gate closed");
            return ExecdResponse::Error(RemoteError::GateClosed);
        }
        let Some(key) = self.key.as_ref() else {
            return ExecdResponse::Error(RemoteError::GateClosed);
        };
        let receipt = r.into_receipt(NodeId(PubKey32(key.public())));
        let Ok(bytes) = postcard::to_stdvec(&receipt) else {
            return ExecdResponse::Error(RemoteError::Internal);
        };
        let signature = Sig64(key.sign(Domain::Receipt.tag(), &bytes));
        debug_assert!(havn_attest_agent::verify_node_signature(
            &key.public(),
            Domain::Receipt.tag(),
            &bytes,
            &signature.0
        ));
        let signed = SignedReceipt { receipt, signature };
        // Durable before it leaves: the signed receipt file, then the record.
        let Ok(encoded) = postcard::to_stdvec(&signed) else {
            return ExecdResponse::Error(RemoteError::Internal);
        };
        if let Err(e) = havn_attest_agent::fsutil::atomic_write(&path, &encoded) {
            tracing::error!(error = %e, "cannot persist receipt");
            return ExecdResponse::Error(RemoteError::Internal);
        }
        match self.records.check_and_record(
            signed.receipt.job_id.as_bytes(),
            &signed.receipt.signing_digest().0,
        ) {
            Ok(_) => {
                tracing::info!(job = %signed.receipt.job_id, runtime_hash = %signed.receipt.runtime_hash, "receipt signed");
                ExecdResponse::Receipt(signed)
            }
            Err(e) => {
                tracing::error!(error = %e, "slashing protection refused a second receipt");
                ExecdResponse::Error(RemoteError::AlreadySigned)
            }
        }
    }

    /// netd → attestd.
    pub fn handle_netd(&mut self, req: NetdAttestRequest) -> NetdAttestResponse {
        let Some(node) = self.node() else {
            return NetdAttestResponse::Error(RemoteError::GateClosed);
        };
        match req {
            NetdAttestRequest::Identity => NetdAttestResponse::Identity { node: node.0 },
            NetdAttestRequest::Heartbeat {
                seq,
                unix_ms,
                queue_depth,
                running,
                completed,
            } => {
                let heartbeat = Heartbeat {
                    node,
                    seq,
                    unix_ms,
                    queue_depth,
                    running,
                    completed,
                };
                let Some(key) = self.key.as_ref() else {
                    return NetdAttestResponse::Error(RemoteError::GateClosed);
                };
                let Ok(bytes) = postcard::to_stdvec(&heartbeat) else {
                    return NetdAttestResponse::Error(RemoteError::Internal);
                };
                let signature = Sig64(key.sign(Domain::Heartbeat.tag(), &bytes));
                NetdAttestResponse::Heartbeat(SignedHeartbeat {
                    heartbeat,
                    signature,
                })
            }
            NetdAttestRequest::Quote { nonce } => match self.quote(&nonce, node) {
                Ok(ev) => NetdAttestResponse::Quote(Box::new(ev)),
                Err(e) => {
                    tracing::error!(error = %e, "quote failed");
                    NetdAttestResponse::Error(RemoteError::TpmUnavailable)
                }
            },
        }
    }

    fn quote(&mut self, nonce: &Hash32, node: NodeId) -> Result<QuoteEvidence, AgentError> {
        let q = match self.agent.quote(&nonce.0, &node.0 .0) {
            Ok(q) => q,
            Err(_) => {
                self.agent.reconnect()?;
                self.agent.quote(&nonce.0, &node.0 .0)?
            }
        };
        let ek = self.agent.ek_certificate().ok().flatten();
        Ok(QuoteEvidence {
            nonce: *nonce,
            node,
            attest: q
                .attest
                .iter()
                .copied()
                .take(havn_proto::MAX_TPM_BLOB)
                .collect(),
            signature: q
                .signature
                .iter()
                .copied()
                .take(havn_proto::MAX_TPM_BLOB)
                .collect(),
            ak_public: q
                .ak_public
                .iter()
                .copied()
                .take(havn_proto::MAX_TPM_BLOB)
                .collect(),
            pcrs: q
                .pcrs
                .iter()
                .map(|(i, v)| PcrValue {
                    index: u8::try_from(*i).unwrap_or(u8::MAX),
                    value: Hash32(*v),
                })
                .take(havn_proto::MAX_PCRS)
                .collect(),
            events: self
                .agent
                .event_log()
                .iter()
                .map(|e| MeasurementEvent {
                    seq: e.seq,
                    pcr: u8::try_from(e.pcr).unwrap_or(u8::MAX),
                    event_type: bounded(&e.event_type),
                    digest: Hash32(e.digest),
                    description: bounded(&e.description),
                })
                .take(havn_proto::MAX_EVENTS)
                .collect(),
            ek_cert: ek
                .filter(|c| c.len() <= havn_proto::MAX_CERT)
                .map(|c| c.into_iter().collect()),
        })
    }
}
