//! A local dev chain for tests and demos: anvil (the npm package's binary in
//! `chain/node_modules`, `$HAVN_ANVIL`, or `anvil` on `PATH`) on a free loopback port,
//! with the contracts deployed by account 0 (HAI's minter).

use std::path::PathBuf;

use alloy::network::EthereumWallet;
use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;

use crate::client::confirm;
use crate::{Chain, ChainError, Deployment};

/// Where anvil is, if anywhere.
pub fn anvil_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HAVN_ANVIL") {
        return Some(PathBuf::from(p));
    }
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../chain/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    if shipped.is_file() {
        return Some(shipped);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("anvil"))
            .find(|p| p.is_file())
    })
}

/// A provider for `url` whose wallet is `key`.
pub fn provider(url: &str, key: &PrivateKeySigner) -> Result<DynProvider, ChainError> {
    let url = url
        .parse()
        .map_err(|e| ChainError::Transport(format!("bad chain url {url}: {e}")))?;
    Ok(ProviderBuilder::new()
        .wallet(EthereumWallet::from(key.clone()))
        .connect_http(url)
        .erased())
}

/// A running anvil with Havn's contracts deployed.
#[derive(Debug)]
pub struct Devnet {
    anvil: AnvilInstance,
    deployment: Deployment,
    keys: Vec<PrivateKeySigner>,
}

impl Devnet {
    /// Starts anvil with `accounts` funded accounts (at least 2), deploys the contracts
    /// with an unbonding delay of `unbonding_delay_s`, and mints `mint_hai` HAI to every
    /// account but the deployer.
    pub async fn start(
        accounts: usize,
        unbonding_delay_s: u64,
        mint_hai: u64,
    ) -> Result<Self, ChainError> {
        let path = anvil_path().ok_or_else(|| {
            ChainError::Transport(
                "anvil not found: run scripts/setup (npm ci in chain/) or set HAVN_ANVIL".into(),
            )
        })?;
        let anvil = Anvil::at(path)
            .arg("--accounts")
            .arg(accounts.max(2).to_string())
            .try_spawn()
            .map_err(|e| ChainError::Transport(format!("anvil did not start: {e}")))?;
        let keys: Vec<PrivateKeySigner> = anvil
            .keys()
            .iter()
            .map(|k| PrivateKeySigner::from(k.clone()))
            .collect();
        let deployer = provider(&anvil.endpoint(), &keys[0])?;
        let deployment = crate::deploy::deploy(&deployer, unbonding_delay_s).await?;
        let net = Self {
            anvil,
            deployment,
            keys,
        };
        let admin = net.chain(0)?;
        for k in &net.keys[1..] {
            confirm(admin.hai().mint(k.address(), crate::hai(mint_hai))).await?;
        }
        Ok(net)
    }

    /// The JSON-RPC endpoint.
    pub fn endpoint(&self) -> String {
        self.anvil.endpoint()
    }

    /// The deployment.
    pub fn deployment(&self) -> Deployment {
        self.deployment
    }

    /// Account `i`'s key (0 is the deployer and minter).
    pub fn key(&self, i: usize) -> PrivateKeySigner {
        self.keys[i % self.keys.len()].clone()
    }

    /// Account `i`'s address.
    pub fn address(&self, i: usize) -> Address {
        self.key(i).address()
    }

    /// How many funded accounts there are.
    pub fn accounts(&self) -> usize {
        self.keys.len()
    }

    /// A client signing as account `i`.
    pub fn chain(&self, i: usize) -> Result<Chain, ChainError> {
        Ok(Chain::new(
            provider(&self.endpoint(), &self.key(i))?,
            self.deployment,
        ))
    }

    /// A client signing with `key` (which needs ether for gas: see [`Devnet::fund_eth`]).
    pub fn chain_for(&self, key: &PrivateKeySigner) -> Result<Chain, ChainError> {
        Ok(Chain::new(
            provider(&self.endpoint(), key)?,
            self.deployment,
        ))
    }

    /// Gives `who` ether for gas and `hai` HAI (anvil's cheat code, then a mint).
    pub async fn fund(&self, who: Address, hai: u64) -> Result<(), ChainError> {
        let admin = self.chain(0)?;
        admin
            .provider()
            .raw_request::<_, ()>(
                "anvil_setBalance".into(),
                (who, U256::from(10u64).pow(U256::from(21u64))),
            )
            .await?;
        if hai > 0 {
            confirm(admin.hai().mint(who, crate::hai(hai))).await?;
        }
        Ok(())
    }

    /// Moves the chain's clock forward by `seconds` and mines a block.
    pub async fn advance(&self, seconds: u64) -> Result<(), ChainError> {
        let p = self.chain(0)?.provider().clone();
        p.raw_request::<_, serde_json::Value>("evm_increaseTime".into(), (seconds,))
            .await?;
        p.raw_request::<_, serde_json::Value>("evm_mine".into(), ())
            .await?;
        Ok(())
    }
}
