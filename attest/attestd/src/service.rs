//! The request handlers, independent of transport (so tests can drive them).

use havn_attest_agent::{Agent, AgentConfig, AgentError, NodeKey, NotSafe, RecordStore};
use havn_config::NodeConfig;
use havn_proto::ipc::{
    ExecdRequest, ExecdResponse, InitRequest, InitResponse, JobResult, NetdAttestRequest,
    NetdAttestResponse, RemoteError,
};
use havn_proto::sign::Domain;
use havn_proto::{
    bounded, AuditEntry, Hash32, Heartbeat, MeasurementEvent, NodeId, PcrValue, PubKey32,
    QuoteEvidence, Receipt, SelfAudit, Sig64, SignedCapabilityManifest, SignedHeartbeat,
    SignedReceipt, SignedSelfAudit,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod chain;
mod mesh;
mod payload;
mod webhook;

/// What attestd knows of its place in the mesh, and the record that keeps its verdicts
/// and votes single.
struct MeshSigning {
    role: havn_config::NodeRole,
    class: havn_proto::ComputeClass,
    epoch_ms: u64,
    records: RecordStore,
}

/// A good self-audit stays fresh for this many audit intervals.
pub const AUDIT_FRESH_INTERVALS: u32 = 3;

/// The self-audit book: what was measured at this boot, the last verdict, the latest
/// signed record.
#[derive(Debug, Default)]
struct Audit {
    /// `None` = auditing off.
    interval: Option<Duration>,
    /// The digest each binary was measured with at this boot (Measure events of this
    /// process, i.e. of this start of the set).
    measured: BTreeMap<String, Hash32>,
    /// When boot ended (the freshness baseline until the first audit).
    booted_at: Option<Instant>,
    /// When the last audit matched.
    last_good: Option<Instant>,
    /// Why the last audit failed (the gate is closed while set).
    failure: Option<String>,
    /// The latest signed record.
    latest: Option<SignedSelfAudit>,
}

impl Audit {
    /// Every entry must match this boot's measurement of its name, and every measured
    /// binary must be audited.
    fn judge(&self, entries: &[AuditEntry]) -> Result<(), String> {
        if self.measured.is_empty() {
            return Err("self-audit: nothing was measured at this boot".into());
        }
        for e in entries {
            match self.measured.get(e.name.as_str()) {
                None => {
                    return Err(format!(
                        "self-audit: {} (pid {}) was not measured at this boot",
                        e.name, e.pid
                    ))
                }
                Some(want) if *want != e.digest => {
                    return Err(format!(
                        "self-audit: {} (pid {}) runs sha256 {}, but {} was measured at boot",
                        e.name, e.pid, e.digest, want
                    ))
                }
                Some(_) => {}
            }
        }
        for name in self.measured.keys() {
            if !entries.iter().any(|e| e.name.as_str() == name) {
                return Err(format!(
                    "self-audit: {name} is not running or was not audited"
                ));
            }
        }
        Ok(())
    }

    /// The gate's audit condition: no failed audit, and (auditing on) a good audit, or
    /// boot, younger than [`AUDIT_FRESH_INTERVALS`] intervals.
    fn gate(&self, now: Instant) -> Result<(), String> {
        if let Some(f) = &self.failure {
            return Err(f.clone());
        }
        let Some(interval) = self.interval else {
            return Ok(());
        };
        let limit = interval.saturating_mul(AUDIT_FRESH_INTERVALS);
        match self.last_good.or(self.booted_at) {
            Some(t) if now.saturating_duration_since(t) <= limit => Ok(()),
            Some(t) => Err(format!(
                "self-audit stale: no good audit for {} ms (limit {} ms)",
                now.saturating_duration_since(t).as_millis(),
                limit.as_millis()
            )),
            None => Err("self-audit: boot has not ended".into()),
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Why the service could not start or persist.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The TPM agent failed.
    #[error("TPM agent: {0}")]
    Agent(#[from] AgentError),
    /// `[chain]` names a deployment or owner that cannot be used.
    #[error("chain: {0}")]
    Chain(String),
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
    userland_pcr: u32,
    chain: chain::ChainSigning,
    audit: Audit,
    capabilities: Option<SignedCapabilityManifest>,
    heartbeat_seq: crate::counter::Counter,
    /// Whether netd already got its TLS key in this start.
    tls_key_served: bool,
    mesh: MeshSigning,
    payload: payload::PayloadKeys,
}

/// The sealed secret that holds netd's TLS private key.
pub const TLS_KEY_SECRET: &str = "netd-tls-key";

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("key", &self.key)
            .field("receipts", &self.records.len())
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
        std::fs::create_dir_all(&dir).map_err(state_err(&dir))?;
        let pcrs: Vec<u32> = cfg.tpm.pcrs.iter().map(|p| u32::from(*p)).collect();
        let mut acfg = AgentConfig::new(&cfg.tpm.tcti, &dir);
        acfg.seal_pcrs = pcrs.clone();
        acfg.quote_pcrs = pcrs;
        let mut agent = Agent::open(acfg)?;
        seal_tls_key(&mut agent, &cfg.netd.tls_key)?;
        let records = RecordStore::open(&dir.join("signed-receipts.log"))?;
        let mesh = MeshSigning {
            role: cfg.node.role,
            class: havn_proto::ComputeClass::parse(&cfg.node.compute_class)
                .unwrap_or(havn_proto::ComputeClass::S),
            epoch_ms: cfg.mesh.epoch_ms,
            records: RecordStore::open(&dir.join("mesh-records.log"))?,
        };
        let heartbeat_seq = crate::counter::Counter::open(&dir.join("heartbeat.seq"))?;
        let userland_pcr = u32::from(cfg.tpm.userland_pcr);
        // Binaries already measured since the TPM was reset (a supervised restart of
        // the daemon set): the audit compares against these too.
        let mut measured = std::collections::BTreeMap::new();
        for e in agent.event_log() {
            if e.pcr == userland_pcr && e.event_type == "binary" {
                measured.insert(e.description.clone(), Hash32(e.digest));
            }
        }
        Ok(Self {
            agent,
            key: None,
            key_error: None,
            records,
            userland_pcr,
            chain: chain::ChainSigning {
                policy: chain::policy(cfg).map_err(ServiceError::Chain)?,
                key: None,
            },
            audit: Audit {
                interval: (cfg.node.audit_interval_ms > 0)
                    .then(|| Duration::from_millis(cfg.node.audit_interval_ms)),
                measured,
                ..Audit::default()
            },
            capabilities: None,
            heartbeat_seq,
            tls_key_served: false,
            mesh,
            payload: payload::PayloadKeys::default(),
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
                // IMA semantics: a binary is measured once per TPM boot. When the daemon
                // set is restarted with the same file, the PCR already attests it (and
                // must not move, or the sealed node key would stay sealed until reboot);
                // a changed file is extended, moving the PCR: the gate closes.
                let already = self
                    .agent
                    .event_log()
                    .iter()
                    .rev()
                    .find(|e| {
                        e.pcr == self.userland_pcr
                            && e.event_type == "binary"
                            && e.description == name.as_str()
                    })
                    .filter(|e| e.digest == digest.0)
                    .map(|e| (e.pcr, e.seq));
                if let Some((pcr, seq)) = already {
                    tracing::info!(binary = %name, digest = %digest, "already measured since the TPM reset");
                    self.audit.measured.insert(name.to_string(), digest);
                    return InitResponse::Measured {
                        pcr: u8::try_from(pcr).unwrap_or(u8::MAX),
                        index: u32::try_from(seq).unwrap_or(u32::MAX),
                    };
                }
                match self
                    .agent
                    .extend_digest(self.userland_pcr, "binary", &name, digest.0)
                {
                    Ok(ev) => {
                        tracing::info!(binary = %name, digest = %digest, pcr = self.userland_pcr, "measured");
                        self.audit.measured.insert(name.to_string(), digest);
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
                if self.audit.booted_at.is_none() {
                    self.audit.booted_at = Some(Instant::now());
                }
                if self.key.is_none() {
                    match self.agent.load_or_create_node_key() {
                        Ok(k) => {
                            tracing::info!(node = %Hash32(k.public()), "node key unsealed");
                            self.key = Some(k);
                            self.key_error = None;
                            self.load_or_create_chain_key();
                            self.load_or_create_payload_key();
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
            InitRequest::Audit { entries } => self.self_audit(*entries),
        }
    }

    /// Judges one self-audit from init: a mismatch closes the gate (naming the
    /// binary) until an audit matches again; a match is signed with the userland PCR
    /// read from the TPM and kept as the latest record.
    fn self_audit(
        &mut self,
        entries: heapless::Vec<AuditEntry, { havn_proto::MAX_AUDIT_ENTRIES }>,
    ) -> InitResponse {
        if let Err(reason) = self.audit.judge(&entries) {
            tracing::error!(%reason, "self-audit mismatch: gate closed");
            self.audit.failure = Some(reason);
            return InitResponse::Audited {
                matched: false,
                gate_open: false,
            };
        }
        let Some(node) = self.node() else {
            return InitResponse::Error(RemoteError::GateClosed);
        };
        let pcr = self.userland_pcr;
        let read = match self.agent.read_pcrs(&[pcr]) {
            Ok(v) => Ok(v),
            Err(_) => self
                .agent
                .reconnect()
                .and_then(|()| self.agent.read_pcrs(&[pcr])),
        };
        let value = match read.map(|m| m.get(&pcr).copied()) {
            Ok(Some(v)) => v,
            Ok(None) => {
                tracing::error!(pcr, "self-audit: TPM did not return the userland PCR");
                return InitResponse::Error(RemoteError::TpmUnavailable);
            }
            Err(e) => {
                tracing::error!(error = %e, "self-audit: cannot read the userland PCR");
                return InitResponse::Error(RemoteError::TpmUnavailable);
            }
        };
        let audit = SelfAudit {
            node,
            unix_ms: unix_ms(),
            entries,
            userland_pcr: PcrValue {
                index: u8::try_from(pcr).unwrap_or(u8::MAX),
                value: Hash32(value),
            },
        };
        let Some(key) = self.key.as_ref() else {
            return InitResponse::Error(RemoteError::GateClosed);
        };
        let Ok(bytes) = postcard::to_stdvec(&audit) else {
            return InitResponse::Error(RemoteError::Internal);
        };
        let signature = Sig64(key.sign(Domain::SelfAudit.tag(), &bytes));
        if self.audit.failure.take().is_some() {
            tracing::info!("self-audit matches again: audit condition cleared");
        }
        tracing::debug!(
            entries = audit.entries.len(),
            "self-audit matched and signed"
        );
        self.audit.last_good = Some(Instant::now());
        self.audit.latest = Some(SignedSelfAudit { audit, signature });
        InitResponse::Audited {
            matched: true,
            gate_open: self.gate().is_ok(),
        }
    }

    /// The latest signed self-audit, if any.
    pub fn latest_audit(&self) -> Option<&SignedSelfAudit> {
        self.audit.latest.as_ref()
    }

    /// The signed capability manifest, once execd has reported.
    pub fn capability_manifest(&self) -> Option<&SignedCapabilityManifest> {
        self.capabilities.as_ref()
    }

    /// Why the gate is closed, or `Ok` if execd may run a job now.
    pub fn gate_state(&mut self) -> Result<(), String> {
        self.gate()
    }

    /// The gate: key unsealed, no failed or stale self-audit, TPM answering, sealed
    /// PCRs unchanged.
    fn gate(&mut self) -> Result<(), String> {
        if self.key.is_none() {
            return Err(self
                .key_error
                .clone()
                .unwrap_or_else(|| "node key not unsealed".into()));
        }
        self.audit.gate(Instant::now())?;
        self.agent.gate().map_err(|e| e.to_string())
    }

    /// Assembles the capability manifest from execd's report, our identity and the
    /// configured stake, and signs it. Once per start of the set.
    fn sign_capabilities(&mut self, report: havn_proto::ipc::CapabilityReport) -> ExecdResponse {
        if self.capabilities.is_some() {
            tracing::warn!("execd reported its capabilities twice: refused");
            return ExecdResponse::Error(RemoteError::NotPermitted);
        }
        if report.compute_class.requires_gpu()
            && (report.gpu_model.is_none() || report.vram_mib == 0)
        {
            tracing::error!(class = ?report.compute_class, "capability report claims a GPU class without a GPU");
            return ExecdResponse::Error(RemoteError::BadRequest);
        }
        let (Some(node), Some(key)) = (self.node(), self.key.as_ref()) else {
            return ExecdResponse::Error(RemoteError::GateClosed);
        };
        let manifest = report.into_manifest(node, self.chain_account());
        let Ok(bytes) = postcard::to_stdvec(&manifest) else {
            return ExecdResponse::Error(RemoteError::Internal);
        };
        let signature = Sig64(key.sign(Domain::Capabilities.tag(), &bytes));
        tracing::info!(class = ?manifest.compute_class, workflows = manifest.workflows.len(), chain_account = %havn_chain::alloy::primitives::Address::from(manifest.chain_account), "capability manifest signed");
        self.capabilities = Some(SignedCapabilityManifest {
            manifest,
            signature,
        });
        ExecdResponse::Ack
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
            ExecdRequest::Capabilities(report) => self.sign_capabilities(*report),
            ExecdRequest::Reexecuted(r) => self.verdict(*r),
            ExecdRequest::PayloadKey => self.payload_key_for_execd(),
        }
    }

    /// Assembles the receipt from execd's result and our identity, records it durably,
    /// then signs it — one path, [`NodeKey::sign_receipt`], record before signature.
    /// A job id already signed gets its first receipt back (signed again, identically)
    /// when execd's result implies it, and [`RemoteError::AlreadySigned`] otherwise.
    fn sign_result(&mut self, r: JobResult) -> ExecdResponse {
        if let Err(reason) = self.gate() {
            tracing::warn!(job = %r.job_id, %reason, "refusing to sign: gate closed");
            return ExecdResponse::GateClosed {
                reason: bounded(&reason),
            };
        }
        let Some(key) = self.key.as_ref() else {
            return ExecdResponse::Error(RemoteError::GateClosed);
        };
        let job_id = r.job_id.clone();
        // Job ids are scoped per submitter: the record is keyed by both.
        let record_key = [r.submitter.as_bytes(), b"\0", r.job_id.as_bytes()].concat();
        let mut receipt = r.into_receipt(NodeId(PubKey32(key.public())), unix_ms());
        match self.records.receipt(&record_key) {
            Ok(None) => {}
            Ok(Some(bytes)) => match postcard::from_bytes::<Receipt>(&bytes) {
                Ok(first) if first.same_result(&receipt) => {
                    tracing::info!(job = %job_id, "job already signed: the same result, so the first receipt");
                    receipt = first;
                }
                Ok(first) => {
                    tracing::error!(job = %job_id, first = %first.runtime_hash, now = %receipt.runtime_hash,
                        "job id already signed for a different result: refused");
                    return ExecdResponse::Error(RemoteError::AlreadySigned);
                }
                Err(e) => {
                    tracing::error!(job = %job_id, error = %e, "recorded receipt undecodable");
                    return ExecdResponse::Error(RemoteError::Internal);
                }
            },
            Err(e) => {
                tracing::error!(job = %job_id, error = %e, "cannot read the recorded receipt");
                return ExecdResponse::Error(RemoteError::Internal);
            }
        }
        let Ok(bytes) = postcard::to_stdvec(&receipt) else {
            return ExecdResponse::Error(RemoteError::Internal);
        };
        match key.sign_receipt(
            &mut self.records,
            Domain::Receipt.tag(),
            &record_key,
            &bytes,
        ) {
            Ok((signature, recorded)) => {
                tracing::info!(job = %job_id, runtime_hash = %receipt.runtime_hash, ?recorded, "receipt signed");
                ExecdResponse::Receipt(SignedReceipt {
                    receipt,
                    signature: Sig64(signature),
                })
            }
            Err(NotSafe::ConflictingReceipt { .. }) => {
                tracing::error!(job = %job_id, "slashing protection refused a second receipt");
                ExecdResponse::Error(RemoteError::AlreadySigned)
            }
            Err(e) if e.is_disk_full() => {
                tracing::error!(job = %job_id, error = %e, "cannot record the receipt: disk full; nothing signed");
                ExecdResponse::Error(RemoteError::StorageFull)
            }
            Err(e) => {
                tracing::error!(job = %job_id, error = %e, "cannot record the receipt; nothing signed");
                ExecdResponse::Error(RemoteError::Internal)
            }
        }
    }

    /// netd → attestd.
    pub fn handle_netd(&mut self, req: NetdAttestRequest) -> NetdAttestResponse {
        if req == NetdAttestRequest::TlsKey {
            // Needs no node key: a node whose gate is closed still serves TLS (read-only).
            return self.tls_key();
        }
        let Some(node) = self.node() else {
            return NetdAttestResponse::Error(RemoteError::GateClosed);
        };
        match req {
            NetdAttestRequest::Identity => NetdAttestResponse::Identity {
                node: node.0,
                chain_account: self.chain_account(),
                payload_key: PubKey32(self.payload_public()),
            },
            NetdAttestRequest::Heartbeat(netd_claims) => {
                // Time and sequence are ours: a compromised netd cannot pre-sign
                // future-dated heartbeats or replay a sequence number.
                let seq = match self.heartbeat_seq.next() {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "heartbeat counter not persisted: refused");
                        return NetdAttestResponse::Error(if e.is_disk_full() {
                            RemoteError::StorageFull
                        } else {
                            RemoteError::Internal
                        });
                    }
                };
                let heartbeat = Heartbeat {
                    node,
                    seq,
                    unix_ms: unix_ms(),
                    netd_claims,
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
            NetdAttestRequest::SelfAudit => {
                if self.audit.interval.is_none() {
                    return NetdAttestResponse::Error(RemoteError::NotPermitted);
                }
                if self.audit.failure.is_some() {
                    // The last good record no longer describes what runs.
                    return NetdAttestResponse::Error(RemoteError::GateClosed);
                }
                match &self.audit.latest {
                    Some(a) => NetdAttestResponse::SelfAudit(Box::new(a.clone())),
                    None => NetdAttestResponse::Error(RemoteError::NotYetAvailable),
                }
            }
            NetdAttestRequest::Capabilities => match &self.capabilities {
                Some(m) => NetdAttestResponse::Capabilities(Box::new(m.clone())),
                None => NetdAttestResponse::Error(RemoteError::NotYetAvailable),
            },
            NetdAttestRequest::TlsKey => self.tls_key(),
            NetdAttestRequest::MeshManifest { peer_id } => self.mesh_manifest(node, peer_id),
            NetdAttestRequest::Lottery { receipt_digest } => self.lottery(&receipt_digest),
            NetdAttestRequest::Vote(s) => self.vote(node, *s),
            NetdAttestRequest::ChainTx(tx) => self.chain_tx(*tx),
            NetdAttestRequest::ChainVote(v) => self.chain_vote(*v),
            NetdAttestRequest::SignWebhook(w) => self.sign_webhook(*w),
            NetdAttestRequest::Quote { nonce } => match self.quote(&nonce, node) {
                Ok(ev) => NetdAttestResponse::Quote(Box::new(ev)),
                Err(e) => {
                    tracing::error!(error = %e, "quote failed");
                    NetdAttestResponse::Error(RemoteError::TpmUnavailable)
                }
            },
        }
    }

    /// netd's TLS key, unsealed, once per start of attestd (netd asks once at start).
    fn tls_key(&mut self) -> NetdAttestResponse {
        if self.tls_key_served {
            tracing::warn!("netd asked for its TLS key twice: refused");
            return NetdAttestResponse::Error(RemoteError::NotPermitted);
        }
        match self.agent.unseal_secret(TLS_KEY_SECRET) {
            Ok(Some(pem)) => match heapless::Vec::from_slice(&pem) {
                Ok(v) => {
                    self.tls_key_served = true;
                    tracing::info!("netd's TLS key unsealed and handed over in memory");
                    NetdAttestResponse::TlsKey(Box::new(v))
                }
                Err(()) => {
                    tracing::error!(
                        len = pem.len(),
                        "sealed TLS key longer than a message carries"
                    );
                    NetdAttestResponse::Error(RemoteError::Internal)
                }
            },
            Ok(None) => NetdAttestResponse::Error(RemoteError::NotYetAvailable),
            Err(e) => {
                tracing::error!(error = %e, "cannot unseal netd's TLS key");
                NetdAttestResponse::Error(RemoteError::TpmUnavailable)
            }
        }
    }

    fn quote(&mut self, nonce: &Hash32, node: NodeId) -> Result<QuoteEvidence, AgentError> {
        let payload = self.payload_public();
        let q = match self.agent.quote(&nonce.0, &node.0 .0, &payload) {
            Ok(q) => q,
            Err(_) => {
                self.agent.reconnect()?;
                self.agent.quote(&nonce.0, &node.0 .0, &payload)?
            }
        };
        let ek = self.agent.ek_certificate().ok().flatten();
        Ok(QuoteEvidence {
            nonce: *nonce,
            node,
            payload_key: PubKey32(payload),
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

/// Takes netd's TLS key into the TPM's keeping: a plaintext key at `path` is sealed
/// (replacing any sealed one: placing a new key file is how an operator rotates it)
/// and the file destroyed, so the key exists on disk only sealed.
fn seal_tls_key(agent: &mut Agent, path: &Path) -> Result<(), ServiceError> {
    let pem = match havn_attest_agent::read_plaintext(path, havn_proto::ipc::MAX_TLS_KEY) {
        Ok(b) => b,
        Err(AgentError::Io { source: e, .. }) if e.kind() == std::io::ErrorKind::NotFound => {
            if !agent.has_secret(TLS_KEY_SECRET) {
                tracing::warn!(path = %path.display(), "no TLS key sealed and none at netd.tls_key: netd cannot start");
            }
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    if !pem.windows(16).any(|w| w == b"PRIVATE KEY-----") {
        return Err(ServiceError::Agent(AgentError::State {
            path: path.display().to_string(),
            msg: "netd.tls_key is not a PEM private key: not sealed, not destroyed".into(),
        }));
    }
    agent.seal_secret(TLS_KEY_SECRET, &pem)?;
    tracing::info!(path = %path.display(), "netd's TLS key sealed by the TPM; the plaintext file is destroyed");
    havn_attest_agent::destroy_plaintext(path)?;
    Ok(())
}
