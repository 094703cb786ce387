//! Node-key signatures: ed25519 over a domain-separated digest
//! ([`havn_proto::sign::Signable::signing_digest`]), checked strictly, one at a time or
//! in a batch.

use ed25519_dalek::{Signature, VerifyingKey};
use havn_proto::sign::Signable;
use havn_proto::{Hash32, NodeId, Sig64};

/// Whether `sig` is `node`'s signature over `digest` (strict: no malleable encodings,
/// no small-order keys).
pub fn verify_digest(node: &NodeId, digest: &Hash32, sig: &Sig64) -> bool {
    let Ok(vk) = VerifyingKey::from_bytes(&node.0 .0) else {
        return false;
    };
    if vk.is_weak() {
        return false;
    }
    vk.verify_strict(&digest.0, &Signature::from_bytes(&sig.0))
        .is_ok()
}

/// Whether `sig` is `node`'s signature over `value`.
pub fn verify<T: Signable>(node: &NodeId, value: &T, sig: &Sig64) -> bool {
    verify_digest(node, &value.signing_digest(), sig)
}

/// One signature to check in a batch.
#[derive(Debug, Clone, Copy)]
pub struct Item {
    /// Claimed signer.
    pub node: NodeId,
    /// Digest signed.
    pub digest: Hash32,
    /// Signature.
    pub sig: Sig64,
}

/// Checks many signatures at once: one batched multiscalar check when all are good
/// (the common case), and each on its own only when the batch fails, to name the bad
/// ones. Returns one verdict per item, in order.
pub fn verify_batch(items: &[Item]) -> Vec<bool> {
    let mut keys = Vec::with_capacity(items.len());
    for it in items {
        match VerifyingKey::from_bytes(&it.node.0 .0) {
            Ok(k) if !k.is_weak() => keys.push(k),
            _ => {
                return items
                    .iter()
                    .map(|i| verify_digest(&i.node, &i.digest, &i.sig))
                    .collect()
            }
        }
    }
    let msgs: Vec<&[u8]> = items.iter().map(|i| i.digest.0.as_slice()).collect();
    let sigs: Vec<Signature> = items
        .iter()
        .map(|i| Signature::from_bytes(&i.sig.0))
        .collect();
    if items.len() > 1 && ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok() {
        // The batch equation is checked with random coefficients; weak (small-order)
        // keys were refused above and non-canonical scalars are refused by the decoding.
        return vec![true; items.len()];
    }
    items
        .iter()
        .map(|i| verify_digest(&i.node, &i.digest, &i.sig))
        .collect()
}
