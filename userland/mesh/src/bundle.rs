//! The settlement file validators write and `havnctl verify-settlement` checks offline:
//! a quorum certificate and, for some receipts, the receipt and its inclusion proof.

use crate::settle::{self, SettleError};
use crate::sig;
use havn_proto::mesh::{InclusionProof, SettlementCertificate};
use havn_proto::sign::Signable;
use havn_proto::{Hash32, SignedReceipt};
use serde::{Deserialize, Serialize};

/// A certificate with receipts it settles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementBundle {
    /// The quorum certificate.
    pub certificate: SettlementCertificate,
    /// Receipts and their places in the certificate's receipts tree.
    #[serde(default)]
    pub inclusions: Vec<Inclusion>,
}

/// One settled receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inclusion {
    /// The receipt as its node signed it.
    pub receipt: SignedReceipt,
    /// Its inclusion proof.
    pub proof: InclusionProof,
}

/// Why a bundle does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The certificate.
    #[error("certificate: {0}")]
    Certificate(#[from] SettleError),
    /// A receipt's node signature.
    #[error("receipt {index} ({job}): its node signature does not verify")]
    ReceiptSignature {
        /// Position in `inclusions`.
        index: usize,
        /// Its job id.
        job: String,
    },
    /// A receipt of another class or epoch.
    #[error("receipt {index} ({job}): class or epoch differs from the settlement's")]
    WrongSettlement {
        /// Position.
        index: usize,
        /// Job id.
        job: String,
    },
    /// An inclusion proof that does not open the receipt's digest.
    #[error("receipt {index} ({job}): the inclusion proof does not lead to receipts_root")]
    NotIncluded {
        /// Position.
        index: usize,
        /// Job id.
        job: String,
    },
}

/// What a valid bundle establishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleReport {
    /// Signed weight.
    pub signed_weight: u128,
    /// Committee weight.
    pub total_weight: u128,
    /// Receipts proved included.
    pub receipts_proved: usize,
    /// Receipts the settlement holds.
    pub receipt_count: u32,
}

/// Checks the certificate, then each receipt: its signature, its class and epoch, and
/// its inclusion proof.
pub fn verify_bundle(
    b: &SettlementBundle,
    epoch_ms: u64,
    expected_committee: Option<&Hash32>,
) -> Result<BundleReport, BundleError> {
    let signed_weight = settle::verify_certificate(&b.certificate, expected_committee)?;
    let s = &b.certificate.settlement;
    for (index, inc) in b.inclusions.iter().enumerate() {
        let r = &inc.receipt.receipt;
        let job = r.job_id.to_string();
        if !sig::verify(&r.node, r, &inc.receipt.signature) {
            return Err(BundleError::ReceiptSignature { index, job });
        }
        let epoch = r.signed_unix_ms.checked_div(epoch_ms).unwrap_or(0);
        if r.compute_class != s.compute_class || epoch != s.epoch {
            return Err(BundleError::WrongSettlement { index, job });
        }
        if !settle::verify_inclusion(s, &r.signing_digest(), &inc.proof) {
            return Err(BundleError::NotIncluded { index, job });
        }
    }
    Ok(BundleReport {
        signed_weight,
        total_weight: b
            .certificate
            .committee
            .iter()
            .map(|m| u128::from(m.weight))
            .sum(),
        receipts_proved: b.inclusions.len(),
        receipt_count: s.receipt_count,
    })
}
