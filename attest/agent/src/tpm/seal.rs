//! Sealing: the node key sealed to the measured PCRs, and the salted, encrypted
//! sessions every secret crosses the TPM bus in.

use super::*;

/// A sealed data object bound to this TPM: released only under `policy` (a PCR policy
/// digest) or, with `None`, to an (empty) auth value in a session.
pub(crate) fn sealed_template(policy: Option<&[u8; 32]>) -> Result<Public, tss_esapi::Error> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_no_da(true)
        .with_user_with_auth(policy.is_none())
        .build()?;
    let b = PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs);
    let b = match policy {
        Some(p) => b.with_auth_policy(Digest::try_from(p.to_vec())?),
        None => b,
    };
    b.with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
}

impl Agent {
    /// Generate a fresh node key, seal it to the current values of the seal PCRs, and
    /// write the sealed blob (replacing any previous one).
    pub fn create_node_key(&mut self) -> Result<NodeKey, AgentError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(seed.as_mut()).map_err(|e| AgentError::Random(e.to_string()))?;
        let key = NodeKey::from_seed(&seed);
        let pcrs = self.cfg.seal_pcrs.clone();
        let values = self.read_pcrs(&pcrs)?;
        let sel = [PcrSelection::sha256(&pcrs)];
        let vals: Vec<[u8; 32]> = values.values().copied().collect();
        let policy = havn_attest::policy_pcr_digest(&sel, &vals);
        let (private, public) = self.with(|c| {
            let template = sealed_template(Some(&policy)).map_err(tpm("seal template"))?;
            seal_data(c, template, seed.as_ref(), "seal (create)")
        })?;
        let blob = SealedBlob {
            version: 1,
            private,
            public,
            node_pubkey: key.public(),
            pcrs: values.into_iter().map(|(k, v)| (k, PcrValue(v))).collect(),
        };
        write_json(&self.cfg.state_dir.join(SEALED_FILE), &blob)?;
        self.sealed = Some(blob);
        Ok(key)
    }

    /// The sealed blob's metadata, if a node key exists.
    pub fn sealed_blob(&self) -> Option<&SealedBlob> {
        self.sealed.as_ref()
    }

    /// Replace the sealed blob (e.g. restoring one; tests use it to try another TPM's blob).
    pub fn install_sealed_blob(&mut self, blob: SealedBlob) -> Result<(), AgentError> {
        write_json(&self.cfg.state_dir.join(SEALED_FILE), &blob)?;
        self.sealed = Some(blob);
        Ok(())
    }

    /// Unseal the node key, or create one if none was sealed yet.
    pub fn load_or_create_node_key(&mut self) -> Result<NodeKey, AgentError> {
        if self.sealed.is_some() {
            self.unseal_node_key()
        } else {
            self.create_node_key()
        }
    }

    /// Unseal the node key. If the TPM refuses because PCRs moved, the error names them.
    pub fn unseal_node_key(&mut self) -> Result<NodeKey, AgentError> {
        let blob = self.sealed.clone().ok_or_else(|| {
            AgentError::NoNodeKey(self.cfg.state_dir.join(SEALED_FILE).display().to_string())
        })?;
        let pcrs: Vec<u32> = blob.pcrs.keys().copied().collect();
        let sel = selection_list(&pcrs)?;
        let r = self.with(|c| {
            let obj = load_sealed(c, &blob.private, &blob.public)?;
            let res = unseal_with_policy(&mut c.ctx, c.srk, obj, sel);
            let _ = c.ctx.flush_context(ObjectHandle::from(obj));
            res
        });
        match r {
            Ok(seed) => {
                let key = NodeKey::from_seed(&seed);
                if key.public() != blob.node_pubkey {
                    return Err(AgentError::State {
                        path: SEALED_FILE.into(),
                        msg: "unsealed key does not match recorded public key".into(),
                    });
                }
                Ok(key)
            }
            Err(AgentError::Unseal(e)) => {
                let moved = self.moved_pcrs()?;
                if moved.is_empty() {
                    Err(AgentError::Unseal(e))
                } else {
                    Err(AgentError::PcrsMoved { moved })
                }
            }
            Err(e) => Err(e),
        }
    }

    /// PCRs whose current value differs from the sealing policy.
    pub fn moved_pcrs(&mut self) -> Result<Vec<u32>, AgentError> {
        let Some(blob) = self.sealed.clone() else {
            return Ok(Vec::new());
        };
        let pcrs: Vec<u32> = blob.pcrs.keys().copied().collect();
        let now = self.read_pcrs(&pcrs)?;
        Ok(pcrs
            .into_iter()
            .filter(|p| now.get(p).map(|v| PcrValue(*v)) != blob.pcrs.get(p).copied())
            .collect())
    }
}

/// Unseals `obj` in a policy session that is **salted** (its session key derives from a
/// secret encrypted to the SRK, so someone watching the TPM bus cannot compute it) and
/// **encrypts the response parameter** (AES-128-CFB): the seed never crosses the bus in
/// the clear.
fn unseal_with_policy(
    ctx: &mut Context,
    srk: KeyHandle,
    obj: KeyHandle,
    sel: tss_esapi::structures::PcrSelectionList,
) -> Result<Zeroizing<[u8; 32]>, AgentError> {
    let session = salted_session(ctx, srk, SessionType::Policy, Crypt::Response)?;
    let res = (|| {
        let ps = PolicySession::try_from(session).map_err(tpm("policy session"))?;
        ctx.execute_without_session(|ctx| ctx.policy_pcr(ps, Digest::default(), sel))
            .map_err(AgentError::Unseal)?;
        let data = ctx
            .execute_with_session(Some(session), |ctx| ctx.unseal(ObjectHandle::from(obj)))
            .map_err(AgentError::Unseal)?;
        let mut seed = Zeroizing::new([0u8; 32]);
        if data.value().len() != 32 {
            return Err(AgentError::State {
                path: SEALED_FILE.into(),
                msg: "unsealed seed is not 32 bytes".into(),
            });
        }
        seed.copy_from_slice(data.value());
        Ok(seed)
    })();
    flush_session(ctx, session);
    res
}

/// Which parameter a salted session encrypts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Crypt {
    /// The command's first parameter (a secret sent to the TPM: `TPM2_Create`'s
    /// sensitive data).
    Command,
    /// The response's first parameter (a secret coming back: `TPM2_Unseal`'s data).
    Response,
}

/// A session salted to the SRK (its key derives from a secret encrypted to the SRK, so
/// a bus observer cannot compute it) that encrypts one direction's first parameter
/// (AES-128-CFB). The caller flushes it.
pub(crate) fn salted_session(
    ctx: &mut Context,
    srk: KeyHandle,
    kind: SessionType,
    crypt: Crypt,
) -> Result<AuthSession, AgentError> {
    let session = ctx
        .execute_without_session(|ctx| {
            ctx.start_auth_session(
                Some(srk),
                None,
                None,
                kind,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )
        })
        .map_err(tpm("start salted session"))?
        .ok_or(AgentError::TpmUnavailable("no session".into()))?;
    let (attrs, mask) = tss_esapi::attributes::SessionAttributesBuilder::new()
        .with_continue_session(true)
        .with_encrypt(crypt == Crypt::Response)
        .with_decrypt(crypt == Crypt::Command)
        .build();
    if let Err(e) = ctx.tr_sess_set_attributes(session, attrs, mask) {
        flush_session(ctx, session);
        return Err(tpm("session attributes (response encryption)")(e));
    }
    Ok(session)
}

/// Seals `secret` under the SRK with `template` (`TPM2_Create`, the sensitive data
/// encrypted on the bus: a salted session with command-parameter encryption authorises
/// the SRK). Returns the private blob and the marshalled TPM2B_PUBLIC to store.
pub(crate) fn seal_data(
    c: &mut Conn,
    template: Public,
    secret: &[u8],
    op: &'static str,
) -> Result<(Vec<u8>, Vec<u8>), AgentError> {
    let data = SensitiveData::try_from(secret.to_vec()).map_err(tpm("sensitive data"))?;
    let srk = c.srk;
    let session = salted_session(&mut c.ctx, srk, SessionType::Hmac, Crypt::Command)?;
    let r = c.ctx.execute_with_session(Some(session), |ctx| {
        ctx.create(srk, template, None, Some(data), None, None)
    });
    flush_session(&mut c.ctx, session);
    let r = r.map_err(tpm(op))?;
    Ok((
        r.out_private.value().to_vec(),
        tpm2b(&r.out_public.marshall().map_err(tpm("marshal"))?),
    ))
}

/// Loads a blob [`seal_data`] made under the SRK; a blob from another TPM, or an
/// altered one, is [`AgentError::SealedBlobRejected`]. The caller flushes the handle.
pub(crate) fn load_sealed(
    c: &mut Conn,
    private: &[u8],
    public_tpm2b: &[u8],
) -> Result<KeyHandle, AgentError> {
    let public = Public::unmarshall(public_tpm2b.get(2..).unwrap_or(&[]))
        .map_err(AgentError::SealedBlobRejected)?;
    let private = Private::try_from(private.to_vec()).map_err(AgentError::SealedBlobRejected)?;
    c.ctx
        .load(c.srk, private, public)
        .map_err(AgentError::SealedBlobRejected)
}

/// Flushes a session (best effort).
pub(crate) fn flush_session(ctx: &mut Context, session: AuthSession) {
    let _ = ctx.flush_context(ObjectHandle::from(tss_esapi::handles::SessionHandle::from(
        session,
    )));
}
