//! The TPM side: connection, primaries, seal/unseal, extend, quote, gate.

use crate::error::{io, tpm, AgentError};
use crate::eventlog_file::EventLogFile;
use crate::fsutil::atomic_write;
use crate::nodekey::NodeKey;
use havn_attest::{eventlog, Event, Evidence, PcrSelection, PcrValue};
use sha2::Digest as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use tss_esapi::{
    attributes::ObjectAttributesBuilder,
    constants::SessionType,
    handles::{AuthHandle, KeyHandle, ObjectHandle, PcrHandle},
    interface_types::{
        algorithm::{HashingAlgorithm, PublicAlgorithm},
        ecc::EccCurve,
        key_bits::RsaKeyBits,
        resource_handles::Hierarchy,
        session_handles::{AuthSession, PolicySession},
    },
    structures::{
        Data, Digest, DigestValues, EccPoint, EccScheme, EncryptedSecret, HashScheme, IdObject,
        KeyDerivationFunctionScheme, KeyedHashScheme, PcrSelectionListBuilder, PcrSlot, Private,
        Public, PublicBuilder, PublicEccParametersBuilder, PublicKeyedHashParameters,
        SensitiveData, SignatureScheme, SymmetricDefinition, SymmetricDefinitionObject,
    },
    tcti_ldr::TctiNameConf,
    traits::{Marshall, UnMarshall},
    Context,
};
use zeroize::Zeroizing;

const PCR_HANDLES: [PcrHandle; 24] = [
    PcrHandle::Pcr0,
    PcrHandle::Pcr1,
    PcrHandle::Pcr2,
    PcrHandle::Pcr3,
    PcrHandle::Pcr4,
    PcrHandle::Pcr5,
    PcrHandle::Pcr6,
    PcrHandle::Pcr7,
    PcrHandle::Pcr8,
    PcrHandle::Pcr9,
    PcrHandle::Pcr10,
    PcrHandle::Pcr11,
    PcrHandle::Pcr12,
    PcrHandle::Pcr13,
    PcrHandle::Pcr14,
    PcrHandle::Pcr15,
    PcrHandle::Pcr16,
    PcrHandle::Pcr17,
    PcrHandle::Pcr18,
    PcrHandle::Pcr19,
    PcrHandle::Pcr20,
    PcrHandle::Pcr21,
    PcrHandle::Pcr22,
    PcrHandle::Pcr23,
];

const SEALED_FILE: &str = "node_key.sealed.json";
const EVENTLOG_FILE: &str = "eventlog.jsonl";

/// How to open an [`Agent`].
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// TCTI: `device:/dev/tpmrm0` or `swtpm:host=127.0.0.1,port=P`.
    pub tcti: String,
    /// Directory for the sealed node key and the event log.
    pub state_dir: PathBuf,
    /// PCRs (sha256) the node key is sealed to and the gate checks.
    pub seal_pcrs: Vec<u32>,
    /// PCRs (sha256) quotes cover; userland measurements go into these.
    pub quote_pcrs: Vec<u32>,
    /// The firmware's TCG event log (absent file = no firmware log, e.g. swtpm).
    pub firmware_log: Option<PathBuf>,
}

impl AgentConfig {
    /// Defaults for the appliance: seal to 0–7 (firmware, boot), quote 0–15.
    pub fn new(tcti: &str, state_dir: &Path) -> Self {
        Self {
            tcti: tcti.to_string(),
            state_dir: state_dir.to_path_buf(),
            seal_pcrs: (0..8).collect(),
            quote_pcrs: (0..16).collect(),
            firmware_log: Some(PathBuf::from(
                "/sys/kernel/security/tpm0/binary_bios_measurements",
            )),
        }
    }
}

/// The sealed node key as stored on disk: the TPM's private/public blobs plus the PCR
/// values at seal time (to name the PCRs that moved when unseal is refused).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SealedBlob {
    /// Format version (1).
    pub version: u32,
    /// TPM2B_PRIVATE contents.
    #[serde(with = "hex::serde")]
    pub private: Vec<u8>,
    /// Marshalled TPM2B_PUBLIC.
    #[serde(with = "hex::serde")]
    pub public: Vec<u8>,
    /// The ed25519 public key (not secret; lets callers know the key without unsealing).
    #[serde(with = "hex::serde")]
    pub node_pubkey: [u8; 32],
    /// sha256 PCR values at seal time (the policy).
    pub pcrs: BTreeMap<u32, PcrValue>,
}

/// A quote and everything a verifier needs with it.
#[derive(Debug, Clone)]
pub struct Quote {
    /// Marshalled TPMS_ATTEST (the signed bytes).
    pub attest: Vec<u8>,
    /// Marshalled TPMT_SIGNATURE.
    pub signature: Vec<u8>,
    /// Quoted sha256 PCR values.
    pub pcrs: BTreeMap<u32, [u8; 32]>,
    /// The quoted selection.
    pub selection: Vec<PcrSelection>,
    /// The AK's marshalled TPM2B_PUBLIC.
    pub ak_public: Vec<u8>,
    /// The AK as a PEM SubjectPublicKeyInfo.
    pub ak_pem: String,
    /// The qualifying data (extraData) used.
    pub extra_data: [u8; 32],
    /// The payload key bound beside the node key.
    pub payload_pubkey: [u8; 32],
}

impl Quote {
    /// Bundle as verifier [`Evidence`].
    pub fn to_evidence(
        &self,
        events: &[Event],
        node_pubkey: [u8; 32],
        ek_cert_pem: Option<String>,
    ) -> Evidence {
        Evidence {
            attest: self.attest.clone(),
            signature: self.signature.clone(),
            ak_public: self.ak_public.clone(),
            pcrs: self.pcrs.iter().map(|(k, v)| (*k, PcrValue(*v))).collect(),
            events: events.to_vec(),
            node_pubkey,
            payload_pubkey: self.payload_pubkey,
            ek_cert_pem,
            firmware_log: None,
        }
    }
}

mod seal;
pub(crate) use seal::{
    flush_session, load_sealed, salted_session, seal_data, sealed_template, Crypt,
};

pub(crate) struct Conn {
    pub(crate) ctx: Context,
    ak: KeyHandle,
    ak_public: Vec<u8>,
    pub(crate) srk: KeyHandle,
}

/// The TPM agent (one per process that owns the TPM: attestd, or `havnctl attest`).
pub struct Agent {
    cfg: AgentConfig,
    conn: Option<Conn>,
    events: Vec<Event>,
    log_file: EventLogFile,
    sealed: Option<SealedBlob>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("cfg", &self.cfg)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

fn check_pcr(p: u32) -> Result<(), AgentError> {
    if p < 24 {
        Ok(())
    } else {
        Err(AgentError::BadPcr(p))
    }
}

fn slots(pcrs: &[u32]) -> Result<Vec<PcrSlot>, AgentError> {
    pcrs.iter()
        .map(|p| {
            check_pcr(*p)?;
            PcrSlot::try_from(1u32 << p).map_err(tpm("pcr slot"))
        })
        .collect()
}

fn selection_list(pcrs: &[u32]) -> Result<tss_esapi::structures::PcrSelectionList, AgentError> {
    PcrSelectionListBuilder::new()
        .with_selection(HashingAlgorithm::Sha256, &slots(pcrs)?)
        .build()
        .map_err(tpm("pcr selection"))
}

fn ak_template() -> Result<Public, tss_esapi::Error> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_restricted(true)
        .with_sign_encrypt(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new()
                .with_symmetric(SymmetricDefinitionObject::Null)
                .with_ecc_scheme(EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)))
                .with_curve(EccCurve::NistP256)
                .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
                .with_is_signing_key(true)
                .with_is_decryption_key(false)
                .with_restricted(true)
                .build()?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

fn srk_template() -> Result<Public, tss_esapi::Error> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_restricted(true)
        .with_decrypt(true)
        .with_no_da(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_restricted_decryption_key(
                SymmetricDefinitionObject::AES_128_CFB,
                EccCurve::NistP256,
            )
            .build()?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

fn ak_pem(ak_public: &[u8]) -> Result<String, AgentError> {
    use p256::pkcs8::EncodePublicKey;
    let bad = |m: String| AgentError::State {
        path: "AK public".into(),
        msg: m,
    };
    let parsed = havn_attest::wire::parse_ecc_public(ak_public).map_err(|e| bad(e.to_string()))?;
    let key = havn_attest::verify::check_ak(&parsed).map_err(|e| bad(e.to_string()))?;
    key.to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .map_err(|e| bad(e.to_string()))
}

/// Without a resource manager (swtpm, `/dev/tpm0`) the objects and sessions of an
/// agent that was killed stay loaded until the TPM resets, and after a few restarts
/// the TPM has no room for a new AK ("out of memory for object contexts"). The agent
/// is the only TPM user, so at connect it flushes every transient object and loaded
/// session it finds. With `/dev/tpmrm0` the kernel's resource manager does this.
fn flush_leftovers(ctx: &mut Context) {
    use tss_esapi::constants::{
        tss::TPM2_HMAC_SESSION_FIRST, tss::TPM2_TRANSIENT_FIRST, CapabilityType,
    };
    use tss_esapi::structures::CapabilityData;
    for first in [TPM2_TRANSIENT_FIRST, TPM2_HMAC_SESSION_FIRST] {
        let handles = match ctx.get_capability(CapabilityType::Handles, first, 64) {
            Ok((CapabilityData::Handles(list), _)) => list.into_inner(),
            _ => continue,
        };
        for h in handles {
            // Best effort: a handle that vanished meanwhile is not an error.
            if let Ok(obj) = ctx.tr_from_tpm_public(h) {
                let _ = ctx.flush_context(obj);
            }
        }
    }
}

impl Conn {
    fn open(tcti: &str) -> Result<Self, AgentError> {
        let conf =
            TctiNameConf::from_str(tcti).map_err(|_| AgentError::BadTcti(tcti.to_string()))?;
        let mut ctx = Context::new(conf).map_err(|e| AgentError::TpmUnavailable(e.to_string()))?;
        if !tcti.starts_with("device:/dev/tpmrm") {
            flush_leftovers(&mut ctx);
        }
        ctx.set_sessions((Some(AuthSession::Password), None, None));
        let ak = ctx
            .create_primary(
                Hierarchy::Endorsement,
                ak_template().map_err(tpm("AK template"))?,
                None,
                None,
                None,
                None,
            )
            .map_err(tpm("create AK"))?;
        let ak_public = ak.out_public.marshall().map_err(tpm("marshal AK public"))?;
        // TPM2B_PUBLIC = u16 size ‖ TPMT_PUBLIC; tss-esapi marshals the TPMT only.
        let ak_public = tpm2b(&ak_public);
        let srk = ctx
            .create_primary(
                Hierarchy::Owner,
                srk_template().map_err(tpm("SRK template"))?,
                None,
                None,
                None,
                None,
            )
            .map_err(tpm("create SRK"))?;
        Ok(Self {
            ctx,
            ak: ak.key_handle,
            ak_public,
            srk: srk.key_handle,
        })
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Without a resource manager (swtpm, /dev/tpm0) transient objects outlive us.
        let _ = self.ctx.flush_context(ObjectHandle::from(self.ak));
        let _ = self.ctx.flush_context(ObjectHandle::from(self.srk));
    }
}

pub(crate) fn tpm2b(inner: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(inner.len())
        .unwrap_or(u16::MAX)
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(inner);
    out
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<Option<T>, AgentError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| AgentError::State {
                path: path.display().to_string(),
                msg: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

pub(crate) fn write_json<T: serde::Serialize>(path: &Path, v: &T) -> Result<(), AgentError> {
    let bytes = serde_json::to_vec_pretty(v).map_err(|e| AgentError::State {
        path: path.display().to_string(),
        msg: e.to_string(),
    })?;
    atomic_write(path, &bytes)
}

impl Agent {
    /// Connect to the TPM, derive the AK and storage primary, load the event log and
    /// (if present) the sealed blob's metadata.
    pub fn open(cfg: AgentConfig) -> Result<Self, AgentError> {
        for p in cfg.quote_pcrs.iter() {
            check_pcr(*p)?;
        }
        Self::check_seal_set(&cfg.seal_pcrs)?;
        std::fs::create_dir_all(&cfg.state_dir).map_err(io(&cfg.state_dir))?;
        let conn = Conn::open(&cfg.tcti)?;
        let (log_file, events) = EventLogFile::open(&cfg.state_dir.join(EVENTLOG_FILE))?;
        let sealed = read_json(&cfg.state_dir.join(SEALED_FILE))?;
        let mut agent = Self {
            cfg,
            conn: Some(conn),
            events,
            log_file,
            sealed,
        };
        agent.reconcile_event_log()?;
        Ok(agent)
    }

    /// The configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.cfg
    }

    fn check_seal_set(pcrs: &[u32]) -> Result<(), AgentError> {
        if pcrs.is_empty() {
            return Err(AgentError::BadPcrSet(pcrs.to_vec(), "empty"));
        }
        if pcrs.iter().any(|p| *p >= 24) {
            return Err(AgentError::BadPcrSet(
                pcrs.to_vec(),
                "PCR index out of range",
            ));
        }
        if pcrs.iter().all(|p| *p == 16 || *p == 23) {
            return Err(AgentError::BadPcrSet(
                pcrs.to_vec(),
                "PCRs 16 and 23 are resettable from locality 0",
            ));
        }
        Ok(())
    }

    fn conn(&mut self) -> Result<&mut Conn, AgentError> {
        if self.conn.is_none() {
            self.conn = Some(Conn::open(&self.cfg.tcti)?);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| AgentError::TpmUnavailable("not connected".into()))
    }

    /// Drop the TPM connection and open a new one (after the TPM or resource manager restarted).
    pub fn reconnect(&mut self) -> Result<(), AgentError> {
        self.conn = None;
        self.conn = Some(Conn::open(&self.cfg.tcti)?);
        Ok(())
    }

    /// Run `f` on the connection; on failure drop the connection so the next call reconnects.
    pub(crate) fn with<T>(
        &mut self,
        f: impl FnOnce(&mut Conn) -> Result<T, AgentError>,
    ) -> Result<T, AgentError> {
        let conn = self.conn()?;
        let r = f(conn);
        if r.is_err()
            && conn
                .ctx
                .execute_without_session(|ctx| ctx.get_random(1))
                .is_err()
        {
            // The TPM stopped answering: drop this context so the next call reconnects
            // (its transient handles are gone after a TPM restart anyway).
            self.conn = None;
        }
        r
    }

    /// The AK's marshalled TPM2B_PUBLIC.
    pub fn ak_public(&mut self) -> Result<Vec<u8>, AgentError> {
        Ok(self.conn()?.ak_public.clone())
    }

    /// The AK as PEM (for `tpm2_checkquote -u`).
    pub fn ak_pem(&mut self) -> Result<String, AgentError> {
        let p = self.ak_public()?;
        ak_pem(&p)
    }

    /// The AK's TPM name (`0x000b ‖ sha256(TPMT_PUBLIC)`).
    pub fn ak_name(&mut self) -> Result<Vec<u8>, AgentError> {
        let p = self.ak_public()?;
        havn_attest::wire::parse_ecc_public(&p)
            .ok()
            .and_then(|a| a.name())
            .ok_or_else(|| AgentError::State {
                path: "AK public".into(),
                msg: "unparsable".into(),
            })
    }

    /// The RSA-2048 EK certificate (DER) from NV index 0x01c00002, if provisioned.
    pub fn ek_certificate(&mut self) -> Result<Option<Vec<u8>>, AgentError> {
        self.with(|c| {
            let r = c.ctx.execute_without_session(|ctx| {
                tss_esapi::abstraction::ek::retrieve_ek_pubcert(
                    ctx,
                    tss_esapi::abstraction::AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
                )
            });
            match r {
                Ok(der) => Ok(Some(der)),
                // Absent NV index, unless the TPM itself stopped answering.
                Err(e) => match c.ctx.execute_without_session(|ctx| ctx.get_random(1)) {
                    Ok(_) => Ok(None),
                    Err(_) => Err(AgentError::Tpm {
                        op: "read EK certificate",
                        source: e,
                    }),
                },
            }
        })
    }

    /// The EK certificate as PEM, if provisioned.
    pub fn ek_certificate_pem(&mut self) -> Result<Option<String>, AgentError> {
        Ok(self
            .ek_certificate()?
            .map(|der| pem_encode("CERTIFICATE", &der)))
    }

    /// TPM2_ActivateCredential: recover the credential a verifier wrapped (with
    /// `havn_attest::credential::make_credential`) to this TPM's RSA-2048 EK for our AK.
    /// Only works if the AK's name is the one the verifier used and the EK is ours.
    pub fn activate_credential(
        &mut self,
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, AgentError> {
        let blob = IdObject::try_from(id_object.to_vec()).map_err(tpm("credential blob"))?;
        let secret = EncryptedSecret::try_from(encrypted_secret.to_vec())
            .map_err(tpm("encrypted secret"))?;
        self.with(|c| {
            let template = tss_esapi::abstraction::ek::create_ek_public_from_default_template_2(
                tss_esapi::abstraction::AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
                None,
            )
            .map_err(tpm("EK template"))?;
            let ek = c
                .ctx
                .create_primary(Hierarchy::Endorsement, template, None, None, None, None)
                .map_err(tpm("create EK"))?
                .key_handle;
            let res = (|| {
                let session = c
                    .ctx
                    .execute_without_session(|ctx| {
                        ctx.start_auth_session(
                            None,
                            None,
                            None,
                            SessionType::Policy,
                            SymmetricDefinition::AES_128_CFB,
                            HashingAlgorithm::Sha256,
                        )
                    })
                    .map_err(tpm("start policy session"))?
                    .ok_or(AgentError::TpmUnavailable("no session".into()))?;
                let r = (|| {
                    let ps = PolicySession::try_from(session).map_err(tpm("policy session"))?;
                    // The default EK policy: PolicySecret(TPM_RH_ENDORSEMENT) (empty auth).
                    c.ctx
                        .policy_secret(
                            ps,
                            AuthHandle::Endorsement,
                            Default::default(),
                            Default::default(),
                            Default::default(),
                            None,
                        )
                        .map_err(tpm("policy secret"))?;
                    c.ctx
                        .execute_with_sessions(
                            (Some(AuthSession::Password), Some(session), None),
                            |ctx| ctx.activate_credential(c.ak, ek, blob, secret),
                        )
                        .map_err(tpm("activate credential"))
                })();
                let _ = c.ctx.flush_context(ObjectHandle::from(
                    tss_esapi::handles::SessionHandle::from(session),
                ));
                r
            })();
            let _ = c.ctx.flush_context(ObjectHandle::from(ek));
            Ok(res?.value().to_vec())
        })
    }

    /// Read sha256 PCR values.
    pub fn read_pcrs(&mut self, pcrs: &[u32]) -> Result<BTreeMap<u32, [u8; 32]>, AgentError> {
        let list = selection_list(pcrs)?;
        let slots = slots(pcrs)?;
        self.with(|c| {
            let data = c
                .ctx
                .execute_without_session(|ctx| tss_esapi::abstraction::pcr::read_all(ctx, list))
                .map_err(tpm("PCR read"))?;
            let bank = data
                .pcr_bank(HashingAlgorithm::Sha256)
                .ok_or(AgentError::BadPcr(u32::MAX))?;
            let mut out = BTreeMap::new();
            for (p, s) in pcrs.iter().zip(slots) {
                let d = bank.get_digest(s).ok_or(AgentError::BadPcr(*p))?;
                let v: [u8; 32] = d.value().try_into().map_err(|_| AgentError::BadPcr(*p))?;
                out.insert(*p, v);
            }
            Ok(out)
        })
    }

    fn reconcile_event_log(&mut self) -> Result<(), AgentError> {
        let replayed = eventlog::replay(&self.events);
        if replayed.is_empty() {
            return Ok(());
        }
        let touched: Vec<u32> = replayed.keys().copied().collect();
        let current = self.read_pcrs(&touched)?;
        if current == replayed {
            return Ok(());
        }
        if current.values().all(|v| *v == [0u8; 32]) {
            // The TPM was reset (reboot or swtpm restart): the log starts over.
            self.events.clear();
            return self.log_file.truncate(0);
        }
        let pcr = touched
            .into_iter()
            .find(|p| current.get(p) != replayed.get(p))
            .unwrap_or(0);
        Err(AgentError::EventLogDiverged(pcr))
    }

    /// The firmware event log bytes, if configured and present.
    pub fn firmware_log(&self) -> Result<Option<Vec<u8>>, AgentError> {
        let Some(path) = &self.cfg.firmware_log else {
            return Ok(None);
        };
        match std::fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(path)(e)),
        }
    }

    /// The userland event log (since this TPM reset).
    pub fn event_log(&self) -> &[Event] {
        &self.events
    }

    /// Measure `data`: extend sha256(data) into `pcr` and append it to the persisted log.
    pub fn extend(
        &mut self,
        pcr: u32,
        event_type: &str,
        description: &str,
        data: &[u8],
    ) -> Result<Event, AgentError> {
        let digest: [u8; 32] = sha2::Sha256::digest(data).into();
        self.extend_digest(pcr, event_type, description, digest)
    }

    /// Extend a precomputed sha256 digest into `pcr` and log it. The log is persisted
    /// before the TPM extend so a crash cannot leave an unlogged extend.
    pub fn extend_digest(
        &mut self,
        pcr: u32,
        event_type: &str,
        description: &str,
        digest: [u8; 32],
    ) -> Result<Event, AgentError> {
        check_pcr(pcr)?;
        if !self.cfg.quote_pcrs.contains(&pcr) {
            return Err(AgentError::PcrNotQuoted(pcr));
        }
        let handle = *PCR_HANDLES
            .get(usize::try_from(pcr).unwrap_or(usize::MAX))
            .ok_or(AgentError::BadPcr(pcr))?;
        let ev = Event {
            seq: u64::try_from(self.events.len()).unwrap_or(u64::MAX),
            pcr,
            event_type: event_type.to_string(),
            digest,
            description: description.to_string(),
        };
        let before = self.log_file.append(&ev)?;
        self.events.push(ev.clone());
        let r = self.with(|c| {
            let mut vals = DigestValues::new();
            vals.set(
                HashingAlgorithm::Sha256,
                Digest::try_from(digest.to_vec()).map_err(tpm("digest"))?,
            );
            c.ctx.pcr_extend(handle, vals).map_err(tpm("PCR extend"))
        });
        if let Err(e) = r {
            self.events.pop();
            self.log_file.truncate(before)?;
            return Err(e);
        }
        Ok(ev)
    }

    /// Quote the configured PCRs with extraData binding `nonce`, `node_pubkey` and
    /// `payload_pubkey`.
    pub fn quote(
        &mut self,
        nonce: &[u8],
        node_pubkey: &[u8; 32],
        payload_pubkey: &[u8; 32],
    ) -> Result<Quote, AgentError> {
        let extra = havn_attest::quote_extra_data(nonce, node_pubkey, payload_pubkey);
        let pcrs = self.cfg.quote_pcrs.clone();
        let selection = vec![PcrSelection::sha256(&pcrs)];
        let list = selection_list(&pcrs)?;
        for _ in 0..3 {
            let (attest, signature) = self.with(|c| {
                let (a, s) = c
                    .ctx
                    .quote(
                        c.ak,
                        Data::try_from(extra.to_vec()).map_err(tpm("qualifying data"))?,
                        SignatureScheme::EcDsa {
                            hash_scheme: HashScheme::new(HashingAlgorithm::Sha256),
                        },
                        list.clone(),
                    )
                    .map_err(tpm("quote"))?;
                Ok((
                    a.marshall().map_err(tpm("marshal attest"))?,
                    s.marshall().map_err(tpm("marshal signature"))?,
                ))
            })?;
            let values = self.read_pcrs(&pcrs)?;
            let info =
                havn_attest::wire::parse_quote_attest(&attest).map_err(|e| AgentError::State {
                    path: "quote".into(),
                    msg: e.to_string(),
                })?;
            let mut h = sha2::Sha256::new();
            for v in values.values() {
                h.update(v);
            }
            let digest: [u8; 32] = h.finalize().into();
            if digest.as_slice() != info.pcr_digest.as_slice() {
                continue; // a PCR moved between quote and read: retry
            }
            let ak_public = self.ak_public()?;
            return Ok(Quote {
                attest,
                signature,
                pcrs: values,
                selection,
                ak_pem: ak_pem(&ak_public)?,
                ak_public,
                extra_data: extra,
                payload_pubkey: *payload_pubkey,
            });
        }
        Err(AgentError::QuoteRace(3))
    }

    /// The gate: the TPM answers and the seal PCRs still hold their policy values.
    /// A dead connection is retried once with a fresh context (TPM restarted).
    pub fn gate(&mut self) -> Result<(), AgentError> {
        let ping = |a: &mut Self| {
            a.with(|c| {
                c.ctx
                    .execute_without_session(|ctx| ctx.get_random(8))
                    .map(|_| ())
                    .map_err(tpm("get random"))
            })
        };
        if ping(self).is_err() {
            self.conn = None;
            self.reconnect()
                .map_err(|e| AgentError::TpmUnavailable(e.to_string()))?;
            ping(self).map_err(|e| AgentError::TpmUnavailable(e.to_string()))?;
        }
        let moved = self.moved_pcrs()?;
        if moved.is_empty() {
            Ok(())
        } else {
            Err(AgentError::GateClosed { moved })
        }
    }
}

/// PEM-encode DER bytes.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    const ALPHA: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(ALPHA[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or(""));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
