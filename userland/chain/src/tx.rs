//! Building and signing the one transaction type a node sends (EIP-1559), from the
//! fields netd fills in and attestd checks.

use crate::alloy::consensus::{SignableTransaction, TxEip1559};
use crate::alloy::primitives::{Address, Bytes, Signature, TxKind, B256, U256};
use crate::alloy::signers::local::PrivateKeySigner;
use crate::alloy::signers::SignerSync;

/// An unsigned EIP-1559 call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The account's nonce.
    pub nonce: u64,
    /// Gas limit.
    pub gas_limit: u64,
    /// Max fee per gas (wei).
    pub max_fee_per_gas: u128,
    /// Max priority fee per gas (wei).
    pub max_priority_fee_per_gas: u128,
    /// The contract.
    pub to: Address,
    /// Calldata.
    pub input: Bytes,
}

impl Call {
    /// As the consensus type (value 0, no access list).
    pub fn to_tx(&self) -> TxEip1559 {
        TxEip1559 {
            chain_id: self.chain_id,
            nonce: self.nonce,
            gas_limit: self.gas_limit,
            max_fee_per_gas: self.max_fee_per_gas,
            max_priority_fee_per_gas: self.max_priority_fee_per_gas,
            to: TxKind::Call(self.to),
            value: U256::ZERO,
            access_list: Default::default(),
            input: self.input.clone(),
        }
    }

    /// The hash the sender signs.
    pub fn signature_hash(&self) -> B256 {
        self.to_tx().signature_hash()
    }

    /// Signs it with `key`.
    pub fn sign(&self, key: &PrivateKeySigner) -> Result<Signature, String> {
        key.sign_hash_sync(&self.signature_hash())
            .map_err(|e| e.to_string())
    }
}

/// A new random chain key's 32 secret bytes (what attestd seals).
pub fn generate_key() -> (PrivateKeySigner, [u8; 32]) {
    let key = PrivateKeySigner::random();
    let bytes: [u8; 32] = key.to_bytes().0;
    (key, bytes)
}

/// The key from its sealed bytes.
pub fn key_from_bytes(bytes: &[u8]) -> Result<PrivateKeySigner, String> {
    PrivateKeySigner::from_slice(bytes).map_err(|e| e.to_string())
}
