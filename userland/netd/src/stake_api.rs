//! `/stake` and `/payout`: the node's bond as StakeGuard says it, bonding (operators),
//! and payout claims. Every transaction is signed by attestd with the sealed chain key,
//! under its signing policy; netd only fills in nonce and gas and sends it.

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;

use crate::api::{error, json, Ctx, Resp};
use havn_chain_client::alloy::primitives::B256;
use havn_chain_client::ChainError;

/// Largest body these routes read.
const MAX_BODY: usize = 64 * 1024;

fn no_chain() -> Resp {
    error(
        StatusCode::NOT_FOUND,
        "this node has no chain link ([chain] is not in node.toml, or the node key is sealed)",
        None,
    )
}

/// A chain error as an HTTP answer: a revert is the caller's (409, by name), the
/// signing policy's refusal is 403, an unreachable chain 503.
pub fn chain_error(e: &ChainError) -> Resp {
    match e {
        ChainError::Reverted(r) => {
            error(StatusCode::CONFLICT, &format!("chain reverted: {r}"), None)
        }
        ChainError::Transport(t) if t.contains("attestd refused") => {
            error(StatusCode::FORBIDDEN, &format!("not signed: {t}"), None)
        }
        e => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("chain: {e}"),
            None,
        ),
    }
}

async fn body<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, Box<Resp>> {
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    let bytes = limited
        .collect()
        .await
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, &format!("body: {e}"), None)))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("malformed JSON: {e}"),
            None,
        ))
    })
}

/// `GET /stake`.
pub async fn status(ctx: &Ctx) -> Resp {
    let mut v = serde_json::json!({ "stake": ctx.state.node.stake.json() });
    if let Some(link) = &ctx.chain {
        link.refresh().await;
        v["stake"] = ctx.state.node.stake.json();
        v["account"] = serde_json::json!(link.account().to_string());
        v["deployment"] = serde_json::json!(link.chain().deployment());
        match link.balances().await {
            Ok((hai, eth)) => v["balances"] = serde_json::json!({"hai": hai, "eth": eth}),
            Err(e) => v["balances_error"] = serde_json::json!(e.to_string()),
        }
    }
    json(StatusCode::OK, &v)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BondBody {
    amount_hai: u64,
}

/// `POST /stake/bond {"amount_hai": N}`.
pub async fn bond(ctx: &Ctx, req: Request<Incoming>) -> Resp {
    let Some(link) = &ctx.chain else {
        return no_chain();
    };
    let b: BondBody = match body(req).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if b.amount_hai == 0 {
        return error(
            StatusCode::BAD_REQUEST,
            "amount_hai must be over 0",
            Some("amount_hai"),
        );
    }
    // The bond names the signed capability manifest, which names this account.
    let manifest = ctx
        .signed
        .capabilities()
        .and_then(|m| {
            havn_proto::sign::Domain::Capabilities
                .digest_value(&m.manifest)
                .ok()
        })
        .map(|d| B256::from(d.0))
        .unwrap_or_default();
    match link.bond(b.amount_hai, manifest).await {
        Ok(tx) => {
            tracing::info!(amount_hai = b.amount_hai, "bonded");
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "account": link.account().to_string(),
                    "amount_hai": b.amount_hai,
                    "tx": tx,
                    "stake": ctx.state.node.stake.json(),
                }),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "bond failed");
            chain_error(&e)
        }
    }
}
