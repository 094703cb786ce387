//! `havnctl alerts keygen | verify`: the receiving end of a node's SLA alerts. `keygen`
//! makes the X25519 key an endpoint's alerts are sealed to (`[[alerts.endpoints]]
//! public_key`); `verify` checks a received Standard Webhooks request (the node key's
//! `v1a` signature, the `v1` HMAC when a secret is given, the timestamp window) and
//! opens its sealed body.

use anyhow::{bail, Context};
use base64::Engine as _;
use std::path::PathBuf;

/// `havnctl alerts`.
#[derive(Debug, clap::Args)]
pub struct AlertsArgs {
    /// What to do.
    #[command(subcommand)]
    pub cmd: AlertsCmd,
}

/// `havnctl alerts` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AlertsCmd {
    /// Make a receiver key pair: writes the private key (hex, mode 0600) and prints
    /// the public key for `[[alerts.endpoints]] public_key`.
    Keygen {
        /// Where to write the private key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Check a received alert and print it decrypted (exit 1 if anything fails).
    Verify(VerifyArgs),
}

/// `havnctl alerts verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The HTTP body as received.
    #[arg(long, value_name = "FILE")]
    pub body: PathBuf,
    /// The `webhook-id` header.
    #[arg(long)]
    pub id: String,
    /// The `webhook-timestamp` header (Unix seconds).
    #[arg(long)]
    pub timestamp: u64,
    /// The `webhook-signature` header (space-separated `v1a,…` and `v1,…`).
    #[arg(long)]
    pub signature: String,
    /// The node's ed25519 key (hex), as a verified quote binds it.
    #[arg(long, value_name = "HEX")]
    pub node: String,
    /// The receiver's private key (`alerts keygen`).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The endpoint's `whsec_` secret: the `v1` signature must verify too.
    #[arg(long)]
    pub secret: Option<String>,
    /// Oldest (and furthest in the future) an alert may be, in seconds: past it, a
    /// replay. `0` skips the check (old captures).
    #[arg(long, default_value_t = 300)]
    pub tolerance_s: u64,
}

/// Runs `havnctl alerts …`.
pub fn run(a: AlertsArgs) -> anyhow::Result<()> {
    match a.cmd {
        AlertsCmd::Keygen { out } => {
            println!("{}", crate::sealed_cmd::keygen(&out)?);
            Ok(())
        }
        AlertsCmd::Verify(v) => verify(&v),
    }
}

fn verify(v: &VerifyArgs) -> anyhow::Result<()> {
    let body = std::fs::read(&v.body).with_context(|| format!("reading {}", v.body.display()))?;
    let content = havn_proto::ipc::webhook_content(&v.id, v.timestamp, &body);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    if v.tolerance_s > 0 && v.timestamp.abs_diff(now) > v.tolerance_s {
        bail!(
            "webhook-timestamp {} is {} s from now (tolerance {} s): a replay or a wrong clock",
            v.timestamp,
            v.timestamp.abs_diff(now),
            v.tolerance_s
        );
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let sigs: Vec<(&str, &str)> = v
        .signature
        .split(' ')
        .filter_map(|s| s.split_once(','))
        .collect();
    let mut node = [0u8; 32];
    hex::decode_to_slice(&v.node, &mut node).context("--node wants 64 hex characters")?;
    let vk =
        ed25519_dalek::VerifyingKey::from_bytes(&node).context("--node is not an ed25519 key")?;
    let v1a_ok = sigs.iter().filter(|(ver, _)| *ver == "v1a").any(|(_, s)| {
        b64.decode(s)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
            .is_some_and(|b| {
                vk.verify_strict(&content, &ed25519_dalek::Signature::from_bytes(&b))
                    .is_ok()
            })
    });
    if !v1a_ok {
        bail!("no v1a signature by node {} verifies", v.node);
    }
    if let Some(secret) = &v.secret {
        let key = b64
            .decode(secret.trim_start_matches("whsec_"))
            .context("--secret is not whsec_ and base64")?;
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
        let v1_ok = sigs.iter().filter(|(ver, _)| *ver == "v1").any(|(_, s)| {
            b64.decode(s)
                .is_ok_and(|b| ring::hmac::verify(&key, &content, &b).is_ok())
        });
        if !v1_ok {
            bail!("no v1 signature verifies with the given secret");
        }
    }
    let outer: serde_json::Value = serde_json::from_slice(&body).context("the body is not JSON")?;
    if outer["type"] != "havn.alert.sealed" {
        bail!("not a sealed Havn alert (type {})", outer["type"]);
    }
    let env = b64
        .decode(outer["sealed"].as_str().unwrap_or(""))
        .context("sealed is not base64")?;
    let k = crate::sealed_cmd::load(&v.key)?;
    let plain = k.open(&env)?;
    let alert: serde_json::Value =
        serde_json::from_slice(&plain).context("the sealed alert is not JSON")?;
    if alert["id"] != v.id.as_str() {
        bail!(
            "the sealed alert names id {}, not the header's {}",
            alert["id"],
            v.id
        );
    }
    eprintln!(
        "VALID alert {} (v1a by node {}{})",
        v.id,
        v.node,
        if v.secret.is_some() { ", v1" } else { "" }
    );
    println!("{}", serde_json::to_string_pretty(&alert)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer;

    struct Fixture {
        dir: PathBuf,
        args: VerifyArgs,
        node: ed25519_dalek::SigningKey,
    }

    fn fixture(tag: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("havnctl-alerts-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let recv = havn_payload::PayloadKey::generate();
        std::fs::write(dir.join("key"), hex::encode(&*recv.secret_bytes())).unwrap();
        let id = "msg_ab_1".to_string();
        let plain = serde_json::json!({"type": "sla.timeout_rate", "id": id, "data": {}});
        let env = havn_payload::seal(&recv.public(), plain.to_string().as_bytes()).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let body = format!(
            r#"{{"type":"havn.alert.sealed","sealed":"{}"}}"#,
            b64.encode(env)
        );
        std::fs::write(dir.join("body"), &body).unwrap();
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let node = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let content = havn_proto::ipc::webhook_content(&id, ts, body.as_bytes());
        let secret = b"0123456789abcdef0123456789abcdef";
        let mac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
            &content,
        );
        let args = VerifyArgs {
            body: dir.join("body"),
            id,
            timestamp: ts,
            signature: format!(
                "v1a,{} v1,{}",
                b64.encode(node.sign(&content).to_bytes()),
                b64.encode(mac.as_ref())
            ),
            node: hex::encode(node.verifying_key().to_bytes()),
            key: dir.join("key"),
            secret: Some(format!("whsec_{}", b64.encode(secret))),
            tolerance_s: 300,
        };
        Fixture { dir, args, node }
    }

    #[test]
    fn a_good_alert_verifies_and_any_forgery_or_replay_fails() {
        let f = fixture("good");
        verify(&f.args).expect("a good alert verifies");
        let mut a = fixture("ts").args;
        a.timestamp -= 3600;
        assert!(verify(&a).unwrap_err().to_string().contains("replay"));
        let mut a = fixture("node").args;
        a.node = hex::encode([9u8; 32]);
        assert!(verify(&a).is_err(), "another node's key");
        let mut a = fixture("id").args;
        a.id = "msg_ab_2".into();
        assert!(verify(&a).is_err(), "the signature covers the id");
        let a = fixture("secret").args;
        let mut a = VerifyArgs {
            secret: Some("whsec_QUFBQQ==".into()),
            ..a
        };
        assert!(verify(&a).unwrap_err().to_string().contains("v1"));
        a.secret = None;
        verify(&a).expect("v1a alone, without a secret");
        let f2 = fixture("body");
        let mut body = std::fs::read(&f2.args.body).unwrap();
        let n = body.len() - 5;
        body[n] ^= 1;
        std::fs::write(&f2.args.body, body).unwrap();
        assert!(verify(&f2.args).is_err(), "an altered body");
        let _ = f.node;
        for d in [f.dir, f2.dir] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
