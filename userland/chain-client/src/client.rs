//! One account's view of the contracts: reads, and transactions that wait for their
//! receipt and turn a revert into its name.

use alloy::contract::{CallBuilder, CallDecoder};
use alloy::network::Ethereum;
use alloy::primitives::{Address, Bytes, TxHash, B256, U256};
use alloy::providers::{DynProvider, Provider};

use crate::contracts::{Adjudicator, PayoutRouter, StakeGuard, HAI};
use crate::eip712;
use crate::payout::PayoutLeaf;
use crate::{ChainError, Deployment};

/// A payout leaf as the contract's `Payout` struct.
pub fn to_payout(l: &PayoutLeaf) -> PayoutRouter::Payout {
    PayoutRouter::Payout {
        receipt: l.receipt,
        nodeKey: l.node_key,
        payee: l.payee,
        fee: l.fee,
    }
}

/// Sends `call`, waits for its receipt, and fails on a revert (by name) or a failed
/// transaction. Returns the transaction hash.
pub async fn confirm<P: Provider<Ethereum>, D: CallDecoder>(
    call: CallBuilder<P, D, Ethereum>,
) -> Result<TxHash, ChainError> {
    // Simulate first: a revert comes back with its data (and its name) instead of
    // as a mined failure.
    call.call_raw().await?;
    let receipt = call.send().await?.get_receipt().await?;
    if !receipt.status() {
        return Err(ChainError::Failed(receipt.transaction_hash));
    }
    Ok(receipt.transaction_hash)
}

/// The role an account bonds for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Runs jobs.
    Compute,
    /// Validates, votes and challenges.
    Validator,
}

/// A chain client for one account.
#[derive(Debug, Clone)]
pub struct Chain {
    provider: DynProvider,
    deployment: Deployment,
}

impl Chain {
    /// A client over `provider` (whose wallet signs) for `deployment`.
    pub fn new(provider: DynProvider, deployment: Deployment) -> Self {
        Self {
            provider,
            deployment,
        }
    }

    /// The deployment.
    pub fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    /// The provider.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The token.
    pub fn hai(&self) -> HAI::HAIInstance<DynProvider> {
        HAI::new(self.deployment.hai, self.provider.clone())
    }

    /// StakeGuard.
    pub fn stake_guard(&self) -> StakeGuard::StakeGuardInstance<DynProvider> {
        StakeGuard::new(self.deployment.stake_guard, self.provider.clone())
    }

    /// Adjudicator.
    pub fn adjudicator(&self) -> Adjudicator::AdjudicatorInstance<DynProvider> {
        Adjudicator::new(self.deployment.adjudicator, self.provider.clone())
    }

    /// PayoutRouter.
    pub fn payout_router(&self) -> PayoutRouter::PayoutRouterInstance<DynProvider> {
        PayoutRouter::new(self.deployment.payout_router, self.provider.clone())
    }

    /// The EIP-712 domain of this deployment's quorum messages.
    pub fn domain(&self) -> alloy::sol_types::Eip712Domain {
        eip712::domain(self.deployment.chain_id, self.deployment.stake_guard)
    }

    /// HAI balance of `who`.
    pub async fn balance(&self, who: Address) -> Result<U256, ChainError> {
        Ok(self.hai().balanceOf(who).call().await?)
    }

    /// Whether `account` is active in StakeGuard.
    pub async fn is_active(&self, account: Address) -> Result<bool, ChainError> {
        Ok(self.stake_guard().isActive(account).call().await?)
    }

    /// `account`'s bond.
    pub async fn bond_of(&self, account: Address) -> Result<StakeGuard::Bond, ChainError> {
        Ok(self.stake_guard().bondOf(account).call().await?)
    }

    /// Approves `spender` for `amount` HAI from this account.
    pub async fn approve(&self, spender: Address, amount: U256) -> Result<TxHash, ChainError> {
        confirm(self.hai().approve(spender, amount)).await
    }

    /// Bonds `amount` from this account (approving StakeGuard first).
    #[allow(clippy::too_many_arguments)]
    pub async fn bond(
        &self,
        node_key: B256,
        class: u8,
        role: Role,
        amount: U256,
        owner: Address,
        manifest: B256,
    ) -> Result<TxHash, ChainError> {
        self.approve(self.deployment.stake_guard, amount).await?;
        let role = match role {
            Role::Compute => 0u8,
            Role::Validator => 1u8,
        };
        confirm(
            self.stake_guard()
                .bond(node_key, class, role, amount, owner, manifest),
        )
        .await
    }

    /// Starts unbonding `account` (this account must be its owner).
    pub async fn unbond(&self, account: Address) -> Result<TxHash, ChainError> {
        confirm(self.stake_guard().unbond(account)).await
    }

    /// Withdraws `account`'s bond to its owner once the delay has passed.
    pub async fn withdraw(&self, account: Address) -> Result<TxHash, ChainError> {
        confirm(self.stake_guard().withdraw(account)).await
    }

    /// Quarantines `account` on a quorum certificate.
    pub async fn quarantine(
        &self,
        account: Address,
        epoch: u64,
        certificate: Vec<Bytes>,
    ) -> Result<TxHash, ChainError> {
        confirm(self.stake_guard().quarantine(account, epoch, certificate)).await
    }

    /// Releases `account` on a quorum certificate.
    pub async fn release(
        &self,
        account: Address,
        epoch: u64,
        certificate: Vec<Bytes>,
    ) -> Result<TxHash, ChainError> {
        confirm(self.stake_guard().release(account, epoch, certificate)).await
    }

    /// Adds `amount` HAI to the payout pool.
    pub async fn fund(&self, amount: U256) -> Result<TxHash, ChainError> {
        self.approve(self.deployment.payout_router, amount).await?;
        confirm(self.payout_router().fund(amount)).await
    }

    /// Records a settlement on its certificate.
    pub async fn settle(
        &self,
        settlement: &eip712::Settlement,
        certificate: Vec<Bytes>,
    ) -> Result<TxHash, ChainError> {
        confirm(
            self.payout_router()
                .settle(to_router(settlement), certificate),
        )
        .await
    }

    /// Claims the payout of one leaf.
    pub async fn claim(
        &self,
        settlement: &eip712::Settlement,
        certificate: Vec<Bytes>,
        leaf: &PayoutLeaf,
        proof: Vec<B256>,
    ) -> Result<TxHash, ChainError> {
        confirm(self.payout_router().claim(
            to_router(settlement),
            certificate,
            to_payout(leaf),
            proof,
        ))
        .await
    }

    /// The payout root settled for `epoch` and `class` (zero if none).
    pub async fn settled_root(&self, epoch: u64, class: u8) -> Result<B256, ChainError> {
        use alloy::sol_types::SolValue;
        let key = alloy::primitives::keccak256((epoch, U256::from(class)).abi_encode());
        Ok(self.payout_router().settledRoot(key).call().await?)
    }

    /// Whether `receipt` was paid.
    pub async fn is_paid(&self, receipt: B256) -> Result<bool, ChainError> {
        Ok(self.payout_router().paid(receipt).call().await?)
    }

    /// Opens a challenge (approving the challenge bond first); returns its id.
    pub async fn challenge(
        &self,
        accused: Address,
        receipt: B256,
        epoch: u64,
    ) -> Result<(U256, TxHash), ChainError> {
        let bond = self.adjudicator().CHALLENGE_BOND().call().await?;
        self.approve(self.deployment.adjudicator, bond).await?;
        let adjudicator = self.adjudicator();
        let call = adjudicator.challenge(accused, receipt, epoch);
        let id = call.call().await?;
        Ok((id, confirm(call).await?))
    }

    /// Resolves a challenge on a quorum certificate.
    pub async fn resolve(
        &self,
        id: U256,
        upheld: bool,
        certificate: Vec<Bytes>,
    ) -> Result<TxHash, ChainError> {
        confirm(self.adjudicator().resolve(id, upheld, certificate)).await
    }
}

/// The contract's copy of a settlement.
pub fn to_router(s: &eip712::Settlement) -> PayoutRouter::Settlement {
    PayoutRouter::Settlement {
        epoch: s.epoch,
        computeClass: s.computeClass,
        payoutRoot: s.payoutRoot,
        receipts: s.receipts,
    }
}
