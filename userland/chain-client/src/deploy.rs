//! Deploying the contracts (dev chains, tests, the demo).

use alloy::providers::{DynProvider, Provider};

use crate::client::confirm;
use crate::contracts::{Adjudicator, PayoutRouter, StakeGuard, HAI};
use crate::{ChainError, Deployment};

/// Deploys HAI, StakeGuard (with `unbonding_delay_s`), Adjudicator and PayoutRouter
/// from `provider`'s wallet, and wires the Adjudicator into StakeGuard.
pub async fn deploy(
    provider: &DynProvider,
    unbonding_delay_s: u64,
) -> Result<Deployment, ChainError> {
    let chain_id = provider.get_chain_id().await?;
    let hai = HAI::deploy(provider.clone()).await?;
    let guard = StakeGuard::deploy(provider.clone(), *hai.address(), unbonding_delay_s).await?;
    let adjudicator = Adjudicator::deploy(provider.clone(), *guard.address()).await?;
    let router = PayoutRouter::deploy(provider.clone(), *guard.address()).await?;
    confirm(guard.setAdjudicator(*adjudicator.address())).await?;
    Ok(Deployment {
        chain_id,
        hai: *hai.address(),
        stake_guard: *guard.address(),
        adjudicator: *adjudicator.address(),
        payout_router: *router.address(),
    })
}
