//! Typed errors: each failed check is its own variant naming what failed.

/// A structure could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Input ended early.
    #[error("{what}: truncated at offset {offset}")]
    Truncated {
        /// Field being read.
        what: &'static str,
        /// Where the input ended.
        offset: usize,
    },
    /// A length field exceeds the specification maximum.
    #[error("{what}: length {len} exceeds maximum {max}")]
    TooLong {
        /// Field.
        what: &'static str,
        /// Length sent.
        len: usize,
        /// Allowed maximum.
        max: usize,
    },
    /// A count exceeds the specification maximum.
    #[error("{what}: count {count} exceeds maximum {max}")]
    TooMany {
        /// Field.
        what: &'static str,
        /// Count sent.
        count: u32,
        /// Allowed maximum.
        max: u32,
    },
    /// Bytes left over after the structure.
    #[error("{what}: {count} trailing bytes")]
    TrailingBytes {
        /// Structure.
        what: &'static str,
        /// How many.
        count: usize,
    },
    /// `TPMS_ATTEST.magic` is not `TPM_GENERATED_VALUE`.
    #[error("TPMS_ATTEST.magic is {0:#010x}, not TPM_GENERATED_VALUE 0xff544347")]
    BadMagic(u32),
    /// `TPMS_ATTEST.type` is not `TPM_ST_ATTEST_QUOTE`.
    #[error("TPMS_ATTEST.type is {0:#06x}, not TPM_ST_ATTEST_QUOTE 0x8018")]
    NotAQuote(u16),
    /// An algorithm or type we do not accept.
    #[error("{what}: unsupported value {value:#x}")]
    Unsupported {
        /// Field.
        what: &'static str,
        /// Value sent.
        value: u32,
    },
    /// A value outside its allowed set.
    #[error("{what}: invalid value {value:#x}")]
    BadValue {
        /// Field.
        what: &'static str,
        /// Value sent.
        value: u32,
    },
    /// JSON evidence, event log or manifest is malformed.
    #[error("{what}: malformed JSON: {msg}")]
    Json {
        /// Document.
        what: &'static str,
        /// Parser message.
        msg: String,
    },
    /// Hex string malformed or of the wrong length.
    #[error("{what}: bad hex or wrong length")]
    Hex {
        /// Field.
        what: &'static str,
    },
    /// Certificate (PEM/DER) malformed.
    #[error("{what}: malformed certificate: {msg}")]
    Certificate {
        /// Which certificate.
        what: &'static str,
        /// Parser message.
        msg: String,
    },
}

/// A quote (or its evidence) failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A structure did not parse (includes bad magic / not a quote).
    #[error("parse: {0}")]
    Parse(#[from] ParseError),
    /// The verifier nonce is empty or longer than 64 bytes.
    #[error("nonce length {0} outside 8..=64")]
    BadNonce(usize),
    /// extraData is not sha3-256("havn/quote/v1" ‖ 0 ‖ nonce ‖ node key): wrong nonce,
    /// wrong node key or a replayed quote.
    #[error("extraData does not bind this nonce and node key (replay or wrong nonce)")]
    ExtraDataMismatch,
    /// The AK public is not an ECC key on NIST P-256.
    #[error("AK is not an ECC NIST P-256 key (curve {0:#06x})")]
    AkNotP256(u16),
    /// The AK lacks a required attribute or has a forbidden one.
    #[error("AK objectAttributes {attributes:#010x}: {problem}")]
    AkAttributes {
        /// The attributes sent.
        attributes: u32,
        /// Which attribute is wrong.
        problem: &'static str,
    },
    /// The AK's scheme is not ECDSA-SHA256.
    #[error("AK signing scheme {0:#06x}/{1:#06x} is not ECDSA-SHA256")]
    AkScheme(u16, u16),
    /// The AK public point is not on the curve.
    #[error("AK public point is invalid")]
    AkPoint,
    /// The AK is not the one this node is enrolled with.
    #[error("AK name does not match the enrolled AK")]
    AkNotEnrolled,
    /// The signature names a hash other than SHA-256.
    #[error("signature hash {0:#06x} is not SHA-256")]
    SignatureHash(u16),
    /// r or s is not a valid P-256 scalar.
    #[error("signature r/s malformed")]
    SignatureMalformed,
    /// ECDSA verification of sha256(TPMS_ATTEST) under the AK failed.
    #[error("AK signature over TPMS_ATTEST does not verify")]
    BadSignature,
    /// The quote selects a bank other than sha256 or more than one bank.
    #[error("quote PCR selection is not a single sha256 bank")]
    PcrBank,
    /// The quoted selection differs from the PCR values supplied with it.
    #[error("quoted PCR selection {quoted:?} differs from supplied PCRs {supplied:?}")]
    PcrSelectionMismatch {
        /// PCRs in the quote.
        quoted: Vec<u32>,
        /// PCRs supplied.
        supplied: Vec<u32>,
    },
    /// A supplied PCR value is not 32 bytes.
    #[error("supplied value for PCR {0} is not 32 bytes")]
    PcrValueLength(u32),
    /// sha256 of the supplied PCR values is not the quote's pcrDigest.
    #[error("supplied PCR values do not hash to the quoted pcrDigest")]
    PcrDigestMismatch,
    /// Event log sequence numbers are not 0, 1, 2, … (truncated head, reordered, or spliced).
    #[error("event log entry {index} has seq {seq}, expected {index} (reordered or truncated)")]
    EventLogSequence {
        /// Position in the log.
        index: usize,
        /// Sequence number found.
        seq: u64,
    },
    /// The event log extends a PCR that is not in the quote.
    #[error("event log extends PCR {0}, which the quote does not cover")]
    EventLogPcrNotQuoted(u32),
    /// Replaying the event log does not reproduce a quoted PCR value.
    #[error("event log replay for PCR {pcr} gives {replayed}, quote has {quoted}")]
    EventLogReplay {
        /// PCR.
        pcr: u32,
        /// Replayed value (hex).
        replayed: String,
        /// Quoted value (hex).
        quoted: String,
    },
    /// A quoted PCR differs from the golden manifest (enforced).
    #[error("PCR {pcr} is {actual}, golden manifest requires {expected}")]
    GoldenPcr {
        /// PCR.
        pcr: u32,
        /// Value in the quote (hex).
        actual: String,
        /// Expected value (hex).
        expected: String,
    },
    /// The golden manifest names a PCR the quote does not cover (enforced).
    #[error("golden manifest requires PCR {0}, which the quote does not cover")]
    GoldenPcrNotQuoted(u32),
    /// An enforced golden event is missing from the event log.
    #[error("golden event {description:?} ({digest}) missing from PCR {pcr}'s event log")]
    GoldenEventMissing {
        /// PCR.
        pcr: u32,
        /// Expected digest (hex).
        digest: String,
        /// Manifest description.
        description: String,
    },
    /// A CA was configured but the evidence carries no EK certificate.
    #[error("no EK certificate in the evidence")]
    EkCertMissing,
    /// The EK certificate was not issued by any configured CA.
    #[error("EK certificate issuer {0:?} is not a configured CA")]
    EkCertUnknownIssuer(String),
    /// The EK certificate signature does not verify under its issuer.
    #[error("EK certificate signature does not verify under {0:?}")]
    EkCertSignature(String),
    /// The certificate chain uses an algorithm we do not verify.
    #[error("certificate signature algorithm {0} unsupported")]
    EkCertAlgorithm(String),
    /// MakeCredential could not be computed (bad EK key, bad input).
    #[error("credential: {0}")]
    Credential(&'static str),
    /// The node's ActivateCredential answer is wrong: its AK is not in the EK's TPM.
    #[error("credential activation answer is wrong: AK not bound to this EK")]
    CredentialMismatch,
    /// The chain is longer than we walk.
    #[error("EK certificate chain longer than {0}")]
    EkCertChainTooLong(usize),
}
