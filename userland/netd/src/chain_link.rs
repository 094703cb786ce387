//! netd's link to the chain: reads StakeGuard for the intake's stake view, and sends
//! the node's transactions, which attestd signs with the sealed chain key (netd never
//! holds it) after checking them against its signing policy.

use std::sync::Arc;
use std::time::Duration;

use havn_chain_client::alloy::consensus::SignableTransaction;
use havn_chain_client::alloy::network::{EthereumWallet, TxSigner};
use havn_chain_client::alloy::primitives::{Address, Signature, B256, U256};
use havn_chain_client::alloy::providers::{Provider, ProviderBuilder};
use havn_chain_client::{Chain, ChainError, Deployment, Role};
use havn_ipc::AsyncClient;
use havn_proto::chain::ChainTx;
use havn_proto::ipc::{NetdAttestRequest, NetdAttestResponse, NetdAttestd};
use tokio::sync::Mutex;

use crate::stake::{Bond, StakeView};

/// Signs through attestd: the provider fills nonce, gas and fees; attestd checks the
/// call and signs it with the sealed key; we check the signature recovers to us.
#[derive(Clone)]
pub struct AttestdSigner {
    attestd: Arc<Mutex<AsyncClient<NetdAttestd>>>,
    account: Address,
}

impl std::fmt::Debug for AttestdSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AttestdSigner({})", self.account)
    }
}

fn signer_err(why: impl std::fmt::Display) -> havn_chain_client::alloy::signers::Error {
    havn_chain_client::alloy::signers::Error::other(why.to_string())
}

#[async_trait::async_trait]
impl TxSigner<Signature> for AttestdSigner {
    fn address(&self) -> Address {
        self.account
    }

    async fn sign_transaction(
        &self,
        tx: &mut dyn SignableTransaction<Signature>,
    ) -> havn_chain_client::alloy::signers::Result<Signature> {
        if tx.ty() != 2 || tx.access_list().is_some_and(|l| !l.0.is_empty()) {
            return Err(signer_err(
                "attestd signs EIP-1559 calls with no access list only",
            ));
        }
        let (Some(to), Some(chain_id)) = (tx.to(), tx.chain_id()) else {
            return Err(signer_err("a call needs a target and a chain id"));
        };
        if !tx.value().is_zero() {
            return Err(signer_err("node transactions carry no ether"));
        }
        let req = ChainTx {
            chain_id,
            nonce: tx.nonce(),
            gas_limit: tx.gas_limit(),
            max_fee_per_gas: tx.max_fee_per_gas(),
            max_priority_fee_per_gas: tx.max_priority_fee_per_gas().unwrap_or_default(),
            to: to.into_array(),
            input: heapless::Vec::from_slice(tx.input())
                .map_err(|_| signer_err("calldata too long"))?,
        };
        let answer = self
            .attestd
            .lock()
            .await
            .call(&NetdAttestRequest::ChainTx(Box::new(req)))
            .await
            .map_err(signer_err)?;
        let sig = match answer {
            NetdAttestResponse::Chain(s) => {
                Signature::from_raw(&s.signature).map_err(signer_err)?
            }
            NetdAttestResponse::Error(e) => {
                return Err(signer_err(format!("attestd refused: {e}")))
            }
            other => return Err(signer_err(format!("attestd answered {other:?}"))),
        };
        let signer = sig
            .recover_address_from_prehash(&tx.signature_hash())
            .map_err(signer_err)?;
        if signer != self.account {
            return Err(signer_err(format!(
                "attestd's signature recovers to {signer}, not {}",
                self.account
            )));
        }
        Ok(sig)
    }
}

/// The node's chain link.
#[derive(Debug, Clone)]
pub struct ChainLink {
    chain: Chain,
    account: Address,
    owner: Address,
    node_key: B256,
    class: u8,
    role: Role,
    view: Arc<StakeView>,
}

/// Why the link could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// `[chain]` names something unusable.
    #[error("chain config: {0}")]
    Config(String),
    /// The chain said no.
    #[error(transparent)]
    Chain(#[from] ChainError),
}

impl ChainLink {
    /// Connects to `cfg.rpc` for `deployment`, signing as `account` through attestd.
    pub fn new(
        cfg: &havn_config::chain::Chain,
        node: &havn_config::NodeConfig,
        attestd: Arc<Mutex<AsyncClient<NetdAttestd>>>,
        account: Address,
        node_key: B256,
        view: Arc<StakeView>,
    ) -> Result<Self, LinkError> {
        let deployment = Deployment::load(&cfg.deployment).map_err(ChainError::from)?;
        let owner: Address = cfg
            .owner
            .parse()
            .map_err(|e| LinkError::Config(format!("chain.owner: {e}")))?;
        let url = cfg
            .rpc
            .parse()
            .map_err(|e| LinkError::Config(format!("chain.rpc {}: {e}", cfg.rpc)))?;
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::new(AttestdSigner { attestd, account }))
            .connect_http(url)
            .erased();
        let class = havn_proto::ComputeClass::parse(&node.node.compute_class)
            .unwrap_or(havn_proto::ComputeClass::S)
            .index();
        let role = match node.node.role {
            havn_config::NodeRole::Validator => Role::Validator,
            havn_config::NodeRole::Execution => Role::Compute,
        };
        Ok(Self {
            chain: Chain::new(provider, deployment),
            account,
            owner,
            node_key,
            class,
            role,
            view,
        })
    }

    /// The client.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// The node's mesh identity (its node key).
    pub fn node_id(&self) -> havn_proto::NodeId {
        havn_proto::NodeId(havn_proto::PubKey32(self.node_key.0))
    }

    /// The node's chain account.
    pub fn account(&self) -> Address {
        self.account
    }

    /// Reads the bond once into the view.
    pub async fn refresh(&self) {
        let r = self.read().await;
        self.view.record(r);
    }

    async fn read(&self) -> Result<Bond, String> {
        let g = self.chain.stake_guard();
        let call_bond = g.bondOf(self.account);
        let call_active = g.isActive(self.account);
        let (b, active) = tokio::try_join!(call_bond.call(), call_active.call())
            .map_err(|e| ChainError::from(e).to_string())?;
        let whole = b.amount / U256::from(havn_chain_client::HAI_WEI);
        Ok(Bond {
            amount_hai: u64::try_from(whole).unwrap_or(u64::MAX),
            compute_class: crate::stake::class_name(b.computeClass),
            active,
            quarantined: b.quarantined,
            unbonding: b.unbondAt != 0,
            owner: format!("{}", b.owner),
        })
    }

    /// Re-reads the bond every `every` until the process ends.
    pub fn spawn_refresher(self, every: Duration) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // A hung endpoint must not stall the loop past the staleness bound.
                match tokio::time::timeout(every.max(Duration::from_secs(1)), self.read()).await {
                    Ok(r) => self.view.record(r),
                    Err(_) => self.view.record(Err("StakeGuard read timed out".into())),
                }
            }
        });
    }

    /// Bonds `amount_hai` whole HAI for this node's key, class and role, naming the
    /// configured owner, and the digest of the signed capability manifest.
    pub async fn bond(&self, amount_hai: u64, manifest: B256) -> Result<String, ChainError> {
        let tx = self
            .chain
            .bond(
                self.node_key,
                self.class,
                self.role,
                havn_chain_client::hai(amount_hai),
                self.owner,
                manifest,
            )
            .await?;
        self.refresh().await;
        Ok(tx.to_string())
    }

    /// The account's HAI and ether balances (whole units, rounded down).
    pub async fn balances(&self) -> Result<(u64, u64), ChainError> {
        let hai = self.chain.balance(self.account).await? / U256::from(havn_chain_client::HAI_WEI);
        let eth = self.chain.provider().get_balance(self.account).await?
            / U256::from(havn_chain_client::HAI_WEI);
        Ok((
            u64::try_from(hai).unwrap_or(u64::MAX),
            u64::try_from(eth).unwrap_or(u64::MAX),
        ))
    }
}
