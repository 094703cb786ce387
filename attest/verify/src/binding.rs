//! The quote's extraData binding and node-key signing digests. Both follow the one
//! rule defined in `havn_proto::sign`, so signer and verifier cannot drift apart.

/// Domain tag of the quote binding.
pub const QUOTE_TAG: &[u8] = havn_proto::sign::Domain::QuoteBinding.tag();

/// `sha3-256(tag ‖ 0x00 ‖ bytes)`: the digest every node-key signature covers
/// (`havn_proto::sign::Domain::digest`, for a tag given as bytes).
pub fn domain_digest(tag: &[u8], bytes: &[u8]) -> [u8; 32] {
    havn_proto::sign::tagged_digest(tag, bytes).0
}

/// The quote's extraData: `sha3-256("havn/quote/v1" ‖ 0x00 ‖ nonce ‖ node ed25519 public key)`
/// (`havn_proto::sign::quote_binding`).
pub fn quote_extra_data(
    nonce: &[u8],
    node_pubkey: &[u8; 32],
    payload_pubkey: &[u8; 32],
) -> [u8; 32] {
    havn_proto::sign::quote_binding(nonce, node_pubkey, payload_pubkey).0
}

/// The PolicyPCR policy digest a sealed object carries:
/// `SHA256(0^32 ‖ TPM_CC_PolicyPCR ‖ TPML_PCR_SELECTION ‖ SHA256(values))`.
pub fn policy_pcr_digest(sel: &[crate::wire::PcrSelection], values: &[[u8; 32]]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut vh = Sha256::new();
    for v in values {
        vh.update(v);
    }
    let mut h = Sha256::new();
    h.update([0u8; 32]);
    h.update(0x0000_017fu32.to_be_bytes());
    h.update(crate::wire::marshal_pcr_selection_list(sel));
    h.update(vh.finalize());
    h.finalize().into()
}
