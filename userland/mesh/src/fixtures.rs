//! Test fixtures (feature `fixtures`): real ed25519 keys and signatures, and manifests
//! whose quotes come from a software AK (byte for byte what a TPM makes), for the
//! mesh's tests, netd's gossip tests and the mesh bench. Not for production use: the
//! keys are derived from one byte.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use crate::{MeshParams, MeshState};
use ed25519_dalek::{Signer, SigningKey};
use havn_attest::synth::{self, SoftAk};
use havn_proto::mesh::{MeshManifest, Role, SignedMeshManifest};
use havn_proto::sign::Signable;
use havn_proto::{
    bounded, Backend, Cid, ComputeClass, Hash32, NodeId, PubKey32, Receipt, Sig64, SignedReceipt,
};

pub const T0: u64 = 1_767_225_600_000;

pub struct Key {
    pub sk: SigningKey,
    pub id: NodeId,
}

pub fn key(seed: u8) -> Key {
    let sk = SigningKey::from_bytes(&[seed; 32]);
    let id = NodeId(PubKey32(sk.verifying_key().to_bytes()));
    Key { sk, id }
}

pub fn sign<T: Signable>(k: &Key, v: &T) -> Sig64 {
    Sig64(k.sk.sign(&v.signing_digest().0).to_bytes())
}

pub fn manifest(
    k: &Key,
    role: Role,
    class: ComputeClass,
    weight: u64,
    unix_ms: u64,
) -> SignedMeshManifest {
    manifest_for_peer(k, &k.id.0 .0[..20], role, class, weight, unix_ms)
}

/// A manifest binding `k` to the libp2p peer id bytes `peer`.
pub fn manifest_for_peer(
    k: &Key,
    peer: &[u8],
    role: Role,
    class: ComputeClass,
    weight: u64,
    unix_ms: u64,
) -> SignedMeshManifest {
    let manifest = MeshManifest {
        node: k.id,
        peer_id: heapless::Vec::from_slice(peer).unwrap(),
        role,
        compute_class: class,
        weight,
        chain_account: [0x5c; 20],
        unix_ms,
    };
    let digest = manifest.signing_digest();
    let ak = SoftAk::from_seed([7; 32]).unwrap();
    let quote = Box::new(
        synth::evidence(&ak, &digest.0, k.id.0 .0, 3)
            .to_wire(digest)
            .unwrap(),
    );
    SignedMeshManifest {
        signature: sign(k, &manifest),
        manifest,
        quote,
    }
}

pub fn bytes<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).unwrap()
}

pub fn receipt(k: &Key, job: &str, class: ComputeClass, unix_ms: u64, rh: u8) -> SignedReceipt {
    receipt_with(k, job, class, unix_ms, Hash32([rh; 32]))
}

pub fn receipt_with(
    k: &Key,
    job: &str,
    class: ComputeClass,
    unix_ms: u64,
    runtime_hash: Hash32,
) -> SignedReceipt {
    let receipt = Receipt {
        workflow_id: bounded("lm"),
        job_id: bounded(job),
        runtime_hash,
        outputs_cid: Cid::of_bytes(job.as_bytes()),
        inputs_cid: Cid::of_bytes(b""),
        latency_ms: 10,
        energy_estimate_mj: 1,
        manifest_checksum: Hash32([2; 32]),
        seed: 1,
        gas: 1,
        backend: Backend::Cpu,
        compute_class: class,
        node: k.id,
        submitter: bounded("orchestrator"),
        signed_unix_ms: unix_ms,
    };
    SignedReceipt {
        signature: sign(k, &receipt),
        receipt,
    }
}

/// A view that knows the given nodes (their manifests verified the normal way).
pub fn state_knowing(manifests: &[SignedMeshManifest]) -> MeshState {
    let mut s = MeshState::new(MeshParams::default(), havn_attest::Policy::default());
    for m in manifests {
        s.on_manifest(&bytes(m), T0).expect("manifest accepted");
    }
    s
}

/// A challenge by `challenger` of a receipt whose 5-node DAG committed `leaves`, naming
/// node 3 (parent: node 1) as divergent.
pub fn challenge(
    challenger: &Key,
    node: &Key,
    class: ComputeClass,
) -> havn_proto::mesh::SignedChallenge {
    use havn_proto::merkle;
    use havn_proto::mesh::{Challenge, Opening};
    let leaves: Vec<[u8; 32]> = (0..5u8).map(|i| [0x40 + i; 32]).collect();
    let root = merkle::merkle_root(&leaves);
    let rh = merkle::runtime_hash(&[2; 32], 1, &root);
    let r = receipt_with(node, "job-challenged", class, T0, Hash32(rh));
    let open = |i: usize| Opening {
        index: i as u32,
        hash: Hash32(leaves[i]),
        path: merkle::merkle_path(&leaves, i)
            .into_iter()
            .map(|(h, l)| (Hash32(h), l))
            .collect(),
    };
    let challenge = Challenge {
        challenger: challenger.id,
        receipt: r,
        merkle_root: Hash32(root),
        leaves: 5,
        divergent: open(3),
        recomputed: Hash32([0x99; 32]),
        parents: [open(1)].into_iter().collect(),
        epoch: T0 / 60_000,
    };
    havn_proto::mesh::SignedChallenge {
        signature: sign(challenger, &challenge),
        challenge,
    }
}

pub use crate::params::now_ms;
