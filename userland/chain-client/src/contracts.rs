//! Callable bindings (`#[sol(rpc)]`) generated from the committed artifacts in
//! `chain/artifacts`, the same ABI `havn_chain::contracts` describes.

#![allow(missing_docs, clippy::too_many_arguments)]

use alloy::sol;

macro_rules! bindings {
    ($($name:ident => $path:literal),* $(,)?) => {
        $( sol!(#[sol(rpc)] #[derive(Debug)] $name, $path); )*
    };
}

bindings! {
    HAI => "../../chain/artifacts/HAI.json",
    StakeGuard => "../../chain/artifacts/StakeGuard.json",
    Adjudicator => "../../chain/artifacts/Adjudicator.json",
    PayoutRouter => "../../chain/artifacts/PayoutRouter.json",
}
