//! Parsers for the TPM 2.0 structures a quote carries (big-endian, TPM2B-sized).
//!
//! Every parser takes attacker bytes: it bounds every length against the TPM
//! specification maximum before slicing and never panics.

use crate::error::ParseError;

/// `TPM_GENERATED_VALUE`: every TPM-generated attestation starts with it.
pub const TPM_GENERATED: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_QUOTE`.
pub const ST_ATTEST_QUOTE: u16 = 0x8018;
/// `TPM_ALG_SHA256`.
pub const ALG_SHA256: u16 = 0x000b;
/// `TPM_ALG_ECDSA`.
pub const ALG_ECDSA: u16 = 0x0018;
/// `TPM_ALG_ECC`.
pub const ALG_ECC: u16 = 0x0023;
/// `TPM_ALG_NULL`.
pub const ALG_NULL: u16 = 0x0010;
/// `TPM_ALG_ECDAA` (its scheme carries an extra `count`).
pub const ALG_ECDAA: u16 = 0x001a;
/// `TPM_ECC_NIST_P256`.
pub const ECC_NIST_P256: u16 = 0x0003;

/// Maximum PCR banks in a `TPML_PCR_SELECTION` (`HASH_COUNT` is far lower in practice).
pub const MAX_PCR_BANKS: u32 = 16;
/// Maximum `sizeofSelect` we accept (`PCR_SELECT_MAX` = 4 bytes, 32 PCRs).
pub const MAX_SIZEOF_SELECT: u8 = 4;

/// Object attribute bits (TPMA_OBJECT).
pub mod attr {
    /// fixedTPM
    pub const FIXED_TPM: u32 = 1 << 1;
    /// fixedParent
    pub const FIXED_PARENT: u32 = 1 << 4;
    /// sensitiveDataOrigin
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    /// restricted
    pub const RESTRICTED: u32 = 1 << 16;
    /// decrypt
    pub const DECRYPT: u32 = 1 << 17;
    /// sign / encrypt
    pub const SIGN: u32 = 1 << 18;
}

/// A bounds-checked big-endian cursor.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ParseError> {
        let end = self.pos.checked_add(n).ok_or(ParseError::Truncated {
            what,
            offset: self.pos,
        })?;
        let out = self.buf.get(self.pos..end).ok_or(ParseError::Truncated {
            what,
            offset: self.pos,
        })?;
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ParseError> {
        let s = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, ParseError> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, ParseError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, ParseError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, ParseError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// A `TPM2B_*`: u16 size then that many bytes, at most `max`.
    pub(crate) fn tpm2b(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], ParseError> {
        let len = usize::from(self.u16(what)?);
        if len > max {
            return Err(ParseError::TooLong { what, len, max });
        }
        self.take(len, what)
    }

    pub(crate) fn finish(self, what: &'static str) -> Result<(), ParseError> {
        let rest = self.buf.len().saturating_sub(self.pos);
        if rest == 0 {
            Ok(())
        } else {
            Err(ParseError::TrailingBytes { what, count: rest })
        }
    }
}

/// One bank of a `TPML_PCR_SELECTION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrSelection {
    /// Hash algorithm of the bank (`TPM_ALG_*`).
    pub hash: u16,
    /// Selected PCR indices, ascending.
    pub pcrs: Vec<u32>,
    /// `sizeofSelect` as sent (kept so re-marshalling is exact).
    pub size_of_select: u8,
}

impl PcrSelection {
    /// A sha256 selection of `pcrs` with a 3-byte bitmap (24 PCRs) or 4 if needed.
    pub fn sha256(pcrs: &[u32]) -> Self {
        let mut v: Vec<u32> = pcrs.to_vec();
        v.sort_unstable();
        v.dedup();
        let size = if v.iter().any(|p| *p >= 24) { 4 } else { 3 };
        Self {
            hash: ALG_SHA256,
            pcrs: v,
            size_of_select: size,
        }
    }

    /// The selection a `pcrSelect` bitmap describes (the inverse of [`Self::bitmap`];
    /// the caller has checked `size_of_select` against [`MAX_SIZEOF_SELECT`]).
    pub fn from_bitmap(hash: u16, size_of_select: u8, bitmap: &[u8]) -> Self {
        let mut pcrs = Vec::new();
        for (byte_idx, byte) in (0u32..).zip(bitmap.iter().take(usize::from(size_of_select))) {
            for bit in 0u32..8 {
                if byte & (1u8 << bit) != 0 {
                    pcrs.push(byte_idx * 8 + bit);
                }
            }
        }
        Self {
            hash,
            pcrs,
            size_of_select,
        }
    }

    /// The `pcrSelect` bitmap.
    pub fn bitmap(&self) -> Vec<u8> {
        let mut bits = vec![0u8; usize::from(self.size_of_select)];
        for p in &self.pcrs {
            let idx = usize::try_from(p / 8).unwrap_or(usize::MAX);
            if let Some(b) = bits.get_mut(idx) {
                *b |= 1u8 << (p % 8);
            }
        }
        bits
    }
}

pub(crate) fn parse_pcr_selection_list(
    r: &mut Reader<'_>,
) -> Result<Vec<PcrSelection>, ParseError> {
    let count = r.u32("TPML_PCR_SELECTION.count")?;
    if count > MAX_PCR_BANKS {
        return Err(ParseError::TooMany {
            what: "TPML_PCR_SELECTION.count",
            count,
            max: MAX_PCR_BANKS,
        });
    }
    let mut out = Vec::new();
    for _ in 0..count {
        let hash = r.u16("TPMS_PCR_SELECTION.hash")?;
        let size_of_select = r.u8("TPMS_PCR_SELECTION.sizeofSelect")?;
        if size_of_select > MAX_SIZEOF_SELECT {
            return Err(ParseError::TooLong {
                what: "TPMS_PCR_SELECTION.sizeofSelect",
                len: usize::from(size_of_select),
                max: usize::from(MAX_SIZEOF_SELECT),
            });
        }
        let bitmap = r.take(usize::from(size_of_select), "TPMS_PCR_SELECTION.pcrSelect")?;
        out.push(PcrSelection::from_bitmap(hash, size_of_select, bitmap));
    }
    Ok(out)
}

/// Marshal a `TPML_PCR_SELECTION`.
pub fn marshal_pcr_selection_list(sel: &[PcrSelection]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&u32::try_from(sel.len()).unwrap_or(u32::MAX).to_be_bytes());
    for s in sel {
        out.extend_from_slice(&s.hash.to_be_bytes());
        out.push(s.size_of_select);
        out.extend_from_slice(&s.bitmap());
    }
    out
}

/// `TPMS_CLOCK_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered since manufacture (roughly).
    pub clock: u64,
    /// TPM Reset count (reboots).
    pub reset_count: u32,
    /// TPM Restart count (resume from hibernate).
    pub restart_count: u32,
    /// Whether `clock` is known not to have gone backwards.
    pub safe: bool,
}

/// A parsed `TPMS_ATTEST` of type `TPM_ST_ATTEST_QUOTE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteInfo {
    /// `qualifiedSigner` (TPM2B_NAME contents).
    pub qualified_signer: Vec<u8>,
    /// `extraData` (the verifier's qualifying data).
    pub extra_data: Vec<u8>,
    /// `clockInfo`.
    pub clock_info: ClockInfo,
    /// `firmwareVersion`.
    pub firmware_version: u64,
    /// The quoted PCR selection.
    pub pcr_select: Vec<PcrSelection>,
    /// `pcrDigest`: hash of the selected PCR values, in selection order.
    pub pcr_digest: Vec<u8>,
}

/// Parse a `TPMS_ATTEST`, requiring the TPM magic and the quote type, with no trailing bytes.
pub fn parse_quote_attest(bytes: &[u8]) -> Result<QuoteInfo, ParseError> {
    let mut r = Reader::new(bytes);
    let magic = r.u32("TPMS_ATTEST.magic")?;
    if magic != TPM_GENERATED {
        return Err(ParseError::BadMagic(magic));
    }
    let ty = r.u16("TPMS_ATTEST.type")?;
    if ty != ST_ATTEST_QUOTE {
        return Err(ParseError::NotAQuote(ty));
    }
    let qualified_signer = r.tpm2b("TPMS_ATTEST.qualifiedSigner", 2 + 64)?.to_vec();
    let extra_data = r.tpm2b("TPMS_ATTEST.extraData", 64)?.to_vec();
    let clock = r.u64("TPMS_CLOCK_INFO.clock")?;
    let reset_count = r.u32("TPMS_CLOCK_INFO.resetCount")?;
    let restart_count = r.u32("TPMS_CLOCK_INFO.restartCount")?;
    let safe = match r.u8("TPMS_CLOCK_INFO.safe")? {
        0 => false,
        1 => true,
        v => {
            return Err(ParseError::BadValue {
                what: "TPMS_CLOCK_INFO.safe",
                value: u32::from(v),
            })
        }
    };
    let firmware_version = r.u64("TPMS_ATTEST.firmwareVersion")?;
    let pcr_select = parse_pcr_selection_list(&mut r)?;
    let pcr_digest = r.tpm2b("TPMS_QUOTE_INFO.pcrDigest", 64)?.to_vec();
    r.finish("TPMS_ATTEST")?;
    Ok(QuoteInfo {
        qualified_signer,
        extra_data,
        clock_info: ClockInfo {
            clock,
            reset_count,
            restart_count,
            safe,
        },
        firmware_version,
        pcr_select,
        pcr_digest,
    })
}

/// A parsed ECDSA `TPMT_SIGNATURE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcdsaSignature {
    /// Hash algorithm named in the signature.
    pub hash: u16,
    /// `signatureR`, as sent (not padded).
    pub r: Vec<u8>,
    /// `signatureS`, as sent (not padded).
    pub s: Vec<u8>,
}

/// Parse a `TPMT_SIGNATURE`, accepting only ECDSA.
pub fn parse_ecdsa_signature(bytes: &[u8]) -> Result<EcdsaSignature, ParseError> {
    let mut r = Reader::new(bytes);
    let alg = r.u16("TPMT_SIGNATURE.sigAlg")?;
    if alg != ALG_ECDSA {
        return Err(ParseError::Unsupported {
            what: "TPMT_SIGNATURE.sigAlg",
            value: u32::from(alg),
        });
    }
    let hash = r.u16("TPMS_SIGNATURE_ECDSA.hash")?;
    let sr = r.tpm2b("TPMS_SIGNATURE_ECDSA.signatureR", 66)?.to_vec();
    let ss = r.tpm2b("TPMS_SIGNATURE_ECDSA.signatureS", 66)?.to_vec();
    r.finish("TPMT_SIGNATURE")?;
    Ok(EcdsaSignature { hash, r: sr, s: ss })
}

/// Marshal an ECDSA `TPMT_SIGNATURE`.
pub fn marshal_ecdsa_signature(sig: &EcdsaSignature) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&ALG_ECDSA.to_be_bytes());
    out.extend_from_slice(&sig.hash.to_be_bytes());
    for part in [&sig.r, &sig.s] {
        out.extend_from_slice(&u16::try_from(part.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// A parsed ECC `TPMT_PUBLIC` (from a `TPM2B_PUBLIC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EccPublic {
    /// `nameAlg`.
    pub name_alg: u16,
    /// `objectAttributes`.
    pub attributes: u32,
    /// `authPolicy`.
    pub auth_policy: Vec<u8>,
    /// Symmetric algorithm (`TPM_ALG_NULL` for signing keys).
    pub symmetric: u16,
    /// Signing scheme and its hash (`TPM_ALG_NULL`, 0 when unset).
    pub scheme: (u16, u16),
    /// `curveID`.
    pub curve: u16,
    /// KDF scheme.
    pub kdf: u16,
    /// Public point x.
    pub x: Vec<u8>,
    /// Public point y.
    pub y: Vec<u8>,
    /// The marshalled `TPMT_PUBLIC` (what the object's name hashes).
    pub tpmt_bytes: Vec<u8>,
}

impl EccPublic {
    /// The object's TPM name: `nameAlg ‖ H_nameAlg(TPMT_PUBLIC)` (sha256 only).
    pub fn name(&self) -> Option<Vec<u8>> {
        use sha2::Digest;
        if self.name_alg != ALG_SHA256 {
            return None;
        }
        let mut out = ALG_SHA256.to_be_bytes().to_vec();
        out.extend_from_slice(&sha2::Sha256::digest(&self.tpmt_bytes));
        Some(out)
    }
}

/// Parse a `TPM2B_PUBLIC` holding an ECC key.
pub fn parse_ecc_public(bytes: &[u8]) -> Result<EccPublic, ParseError> {
    let mut outer = Reader::new(bytes);
    let tpmt = outer.tpm2b("TPM2B_PUBLIC", 1024)?;
    outer.finish("TPM2B_PUBLIC")?;
    let mut r = Reader::new(tpmt);
    let ty = r.u16("TPMT_PUBLIC.type")?;
    if ty != ALG_ECC {
        return Err(ParseError::Unsupported {
            what: "TPMT_PUBLIC.type",
            value: u32::from(ty),
        });
    }
    let name_alg = r.u16("TPMT_PUBLIC.nameAlg")?;
    let attributes = r.u32("TPMT_PUBLIC.objectAttributes")?;
    let auth_policy = r.tpm2b("TPMT_PUBLIC.authPolicy", 64)?.to_vec();
    let symmetric = r.u16("TPMT_SYM_DEF_OBJECT.algorithm")?;
    if symmetric != ALG_NULL {
        r.u16("TPMT_SYM_DEF_OBJECT.keyBits")?;
        r.u16("TPMT_SYM_DEF_OBJECT.mode")?;
    }
    let scheme_alg = r.u16("TPMT_ECC_SCHEME.scheme")?;
    let scheme_hash = if scheme_alg == ALG_NULL {
        0
    } else {
        let h = r.u16("TPMT_ECC_SCHEME.hashAlg")?;
        if scheme_alg == ALG_ECDAA {
            r.u16("TPMS_SCHEME_ECDAA.count")?;
        }
        h
    };
    let curve = r.u16("TPMS_ECC_PARMS.curveID")?;
    let kdf = r.u16("TPMT_KDF_SCHEME.scheme")?;
    if kdf != ALG_NULL {
        r.u16("TPMT_KDF_SCHEME.hashAlg")?;
    }
    let x = r.tpm2b("TPMS_ECC_POINT.x", 128)?.to_vec();
    let y = r.tpm2b("TPMS_ECC_POINT.y", 128)?.to_vec();
    r.finish("TPMT_PUBLIC")?;
    Ok(EccPublic {
        name_alg,
        attributes,
        auth_policy,
        symmetric,
        scheme: (scheme_alg, scheme_hash),
        curve,
        kdf,
        x,
        y,
        tpmt_bytes: tpmt.to_vec(),
    })
}

/// Left-pad a big-endian integer to 32 bytes; `None` if it is longer (after leading zeros).
pub fn pad32(v: &[u8]) -> Option<[u8; 32]> {
    let start = v.iter().position(|b| *b != 0).unwrap_or(v.len());
    let trimmed = v.get(start..)?;
    if trimmed.len() > 32 {
        return None;
    }
    let mut out = [0u8; 32];
    out.get_mut(32 - trimmed.len()..)?.copy_from_slice(trimmed);
    Some(out)
}
