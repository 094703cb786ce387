//! `havnctl verify-settlement`: a quorum certificate and its receipts' inclusion
//! proofs, checked offline by the real binary; a removed signature, a bent proof, a
//! foreign receipt or another committee fail with a message that says which.
use crate::harness::havnctl;
use havn_mesh::bundle::{Inclusion, SettlementBundle};
use havn_mesh::fixtures::{key, receipt, sign, Key};
use havn_mesh::settle::{self, Quorum};
use havn_mesh::MeshParams;
use havn_proto::mesh::{committee_root, CommitteeMember};
use havn_proto::sign::Signable;
use havn_proto::ComputeClass::S;
use std::collections::BTreeMap;
use std::path::Path;

fn bundle() -> (SettlementBundle, havn_proto::Hash32) {
    let epoch_ms = MeshParams::default().epoch_ms;
    let epoch = 29_000_000;
    let vals: Vec<Key> = (0..3).map(|i| key(70 + i)).collect();
    let committee: Vec<CommitteeMember> = vals
        .iter()
        .map(|k| CommitteeMember {
            node: k.id,
            weight: 10,
        })
        .collect();
    let node = key(80);
    let receipts: Vec<_> = (0..5)
        .map(|i| receipt(&node, &format!("job-{i}"), S, epoch * epoch_ms + 10 * i, 1))
        .collect();
    let digests: Vec<_> = receipts
        .iter()
        .map(|r| r.receipt.signing_digest())
        .collect();
    let (s, sorted) = settle::build(S, epoch, &digests, &BTreeMap::new(), &committee);
    let mut q = Quorum::new(s.clone(), committee.clone()).unwrap();
    let mut cert = None;
    for v in &vals[..2] {
        cert = q.add(&s, &v.id, &sign(v, &s)).unwrap();
    }
    let inclusions = receipts
        .iter()
        .map(|r| Inclusion {
            receipt: r.clone(),
            proof: settle::inclusion_proof(&sorted, &r.receipt.signing_digest()).unwrap(),
        })
        .collect();
    (
        SettlementBundle {
            certificate: cert.expect("2 of 3 is a quorum"),
            inclusions,
        },
        committee_root(&committee),
    )
}

fn verify(dir: &Path, name: &str, b: &SettlementBundle, extra: &[&str]) -> (bool, String) {
    let f = dir.join(name);
    std::fs::write(&f, serde_json::to_vec_pretty(b).unwrap()).unwrap();
    let mut args = vec!["verify-settlement", f.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = havnctl(&args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

#[test]
fn verify_settlement_accepts_a_certificate_and_refuses_a_removed_signature() {
    let dir = tempfile::tempdir().unwrap();
    let (good, root) = bundle();
    let root_hex = root.to_hex();
    let (ok, out) = verify(dir.path(), "good.json", &good, &["--committee", &root_hex]);
    assert!(ok, "a valid settlement must verify: {out}");
    assert!(
        out.contains("VALID") && out.contains("signed weight 20/30"),
        "{out}"
    );

    let mut removed = good.clone();
    removed.certificate.signatures.pop();
    let (ok, out) = verify(dir.path(), "removed.json", &removed, &[]);
    assert!(!ok && out.contains("under two thirds"), "{out}");

    let mut bent = good.clone();
    bent.inclusions[2].proof.path[0].1 ^= true;
    let (ok, out) = verify(dir.path(), "bent.json", &bent, &[]);
    assert!(
        !ok && out.contains("receipt 2") && out.contains("inclusion proof"),
        "{out}"
    );

    let mut foreign = good.clone();
    foreign.inclusions[0].receipt = receipt(&key(81), "job-x", S, 0, 1);
    let (ok, out) = verify(dir.path(), "foreign.json", &foreign, &[]);
    assert!(!ok && out.contains("receipt 0"), "{out}");

    let other = havn_proto::Hash32([9; 32]).to_hex();
    let (ok, out) = verify(dir.path(), "good.json", &good, &["--committee", &other]);
    assert!(!ok && out.contains("committee root"), "{out}");

    std::fs::write(dir.path().join("junk.json"), b"{\"certificate\": 3}").unwrap();
    let o = havnctl(&[
        "verify-settlement",
        dir.path().join("junk.json").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a settlement file"));
}
