//! The payload key (bound into quotes, kept within a boot, handed to execd once) and
//! alert signing (Standard Webhooks `v1a` with the node key, sealed alerts only).

mod common;

use common::*;
use havn_proto::ipc::{
    webhook_content, ExecdRequest, ExecdResponse, NetdAttestRequest, NetdAttestResponse,
    RemoteError, WebhookToSign,
};

fn payload_key(b: &mut Booted) -> [u8; 32] {
    match b.svc.handle_netd(NetdAttestRequest::Identity) {
        NetdAttestResponse::Identity { payload_key, .. } => payload_key.0,
        other => panic!("identity: {other:?}"),
    }
}

#[test]
fn the_payload_key_is_quoted_kept_within_the_boot_and_given_to_execd_once() {
    let mut b = boot(0);
    let pk = payload_key(&mut b);
    assert_ne!(pk, [0; 32]);
    // Every quote binds it beside the node key, and a verifier checks the binding.
    let nonce = havn_proto::Hash32([0x5a; 32]);
    let q = match b.svc.handle_netd(NetdAttestRequest::Quote { nonce }) {
        NetdAttestResponse::Quote(q) => q,
        other => panic!("quote: {other:?}"),
    };
    assert_eq!(q.payload_key.0, pk);
    let ev = havn_attest::Evidence::from_wire(&q);
    let v = havn_attest::verify_quote(&ev, &nonce.0, &havn_attest::Policy::default())
        .expect("the quote verifies");
    assert_eq!(v.payload_pubkey, pk);
    let mut swapped = ev.clone();
    swapped.payload_pubkey[0] ^= 1;
    assert!(
        havn_attest::verify_quote(&swapped, &nonce.0, &havn_attest::Policy::default()).is_err()
    );
    // execd gets the private half once per start; it opens what is sealed to `pk`.
    let sk = match b.svc.handle_execd(ExecdRequest::PayloadKey) {
        ExecdResponse::PayloadKey { secret, public } => {
            assert_eq!(public.0, pk);
            secret
        }
        other => panic!("payload key: {other:?}"),
    };
    let k = havn_payload::PayloadKey::from_secret(&sk.0).unwrap();
    let env = havn_payload::seal(&pk, b"prompt").unwrap();
    assert_eq!(&*k.open(&env).unwrap(), b"prompt");
    assert_eq!(
        b.svc.handle_execd(ExecdRequest::PayloadKey),
        ExecdResponse::Error(RemoteError::NotPermitted)
    );
    // A restart of the set within the boot unseals the same key.
    drop(std::mem::replace(&mut b.svc, start(&b.cfg).0));
    assert_eq!(payload_key(&mut b), pk);
}

#[test]
fn alerts_are_signed_as_standard_webhooks_only_when_sealed() {
    let mut b = boot(0);
    let body = br#"{"type":"havn.alert.sealed","sealed":"SEFWTkVOQzE="}"#;
    let sign = |b: &mut Booted, id: &str, body: &[u8]| {
        b.svc
            .handle_netd(NetdAttestRequest::SignWebhook(Box::new(WebhookToSign {
                id: havn_proto::bounded(id),
                body: heapless::Vec::from_slice(body).unwrap(),
            })))
    };
    let (unix_s, sig) = match sign(&mut b, "msg_ab12_7", body) {
        NetdAttestResponse::Webhook { unix_s, signature } => (unix_s, signature),
        other => panic!("webhook: {other:?}"),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        unix_s.abs_diff(now) <= 5,
        "attestd's own clock: {unix_s} vs {now}"
    );
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&b.node.0 .0).unwrap();
    vk.verify_strict(
        &webhook_content("msg_ab12_7", unix_s, body),
        &ed25519_dalek::Signature::from_bytes(&sig.0),
    )
    .expect("v1a verifies with the node key");
    for (id, body) in [
        (
            "msg_ab12_7",
            &br#"{"type":"sla.timeout_rate","data":{}}"#[..],
        ),
        ("evil", &body[..]),
        ("msg_a.b", &body[..]),
    ] {
        assert_eq!(
            sign(&mut b, id, body),
            NetdAttestResponse::Error(RemoteError::NotPermitted),
            "{id} {}",
            String::from_utf8_lossy(body)
        );
    }
}
