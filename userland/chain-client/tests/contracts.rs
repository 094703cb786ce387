//! The contracts against a real anvil: every function, every named revert.

mod common;

use common::*;
use havn_chain_client::alloy::primitives::{Bytes, B256, U256};
use havn_chain_client::alloy::sol_types::SolStruct;
use havn_chain_client::eip712::{self, Adjudication, Quarantine, Release, Settlement};
use havn_chain_client::payout::{self, PayoutLeaf, PayoutTree};
use havn_chain_client::{client::confirm, hai, Role};

#[tokio::test(flavor = "multi_thread")]
async fn the_token_mints_moves_and_refuses_overdrafts() {
    if !anvil_or_skip() {
        return;
    }
    let w = World::empty().await;
    let (a, b) = (w.chain(6), w.chain(7));
    reverts(confirm(a.hai().mint(w.addr(6), hai(1))).await, "NotMinter");
    reverts(
        confirm(
            w.chain(0)
                .hai()
                .mint(havn_chain_client::alloy::primitives::Address::ZERO, hai(1)),
        )
        .await,
        "ZeroAddress",
    );
    let before = w.balance(7).await;
    confirm(a.hai().transfer(w.addr(7), hai(10))).await.unwrap();
    assert_eq!(w.balance(7).await, before + hai(10));
    reverts(
        confirm(a.hai().transfer(w.addr(7), hai(1_000_000))).await,
        "InsufficientBalance",
    );
    reverts(
        confirm(b.hai().transferFrom(w.addr(6), w.addr(7), hai(1))).await,
        "InsufficientAllowance",
    );
    a.approve(w.addr(7), hai(5)).await.unwrap();
    confirm(b.hai().transferFrom(w.addr(6), w.addr(7), hai(5)))
        .await
        .unwrap();
    assert_eq!(w.balance(7).await, before + hai(15));
    assert_eq!(
        a.hai()
            .allowance(w.addr(6), w.addr(7))
            .call()
            .await
            .unwrap(),
        U256::ZERO,
        "the allowance is spent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bonds_respect_floors_keys_and_owners() {
    if !anvil_or_skip() {
        return;
    }
    let w = World::bonded().await;
    let guard = w.chain(0).stake_guard();
    for (class, floor) in [(0u8, 2_000u64), (1, 5_000), (2, 9_000), (3, 18_000)] {
        assert_eq!(guard.floorOf(class).call().await.unwrap(), hai(floor));
        assert_eq!(havn_chain_client::floor_hai(class), Some(floor));
    }
    reverts(
        guard.floorOf(4).call().await.map_err(Into::into),
        "UnknownClass",
    );
    let n = w.chain(6);
    // Under the class floor: named, with the floor.
    match n
        .bond(
            node_key(6),
            2,
            Role::Compute,
            hai(8_999),
            w.addr(6),
            B256::ZERO,
        )
        .await
    {
        Err(havn_chain_client::ChainError::Reverted(r)) => {
            assert_eq!(r.name, "BelowFloor");
            assert!(r.detail.contains("9000000000000000000000"), "{r}");
        }
        other => panic!("expected BelowFloor, got {other:?}"),
    }
    reverts(
        n.bond(
            node_key(6),
            0,
            Role::Compute,
            hai(2_000),
            havn_chain_client::alloy::primitives::Address::ZERO,
            B256::ZERO,
        )
        .await,
        "ZeroOwner",
    );
    reverts(
        n.bond(
            node_key(NODE_S),
            0,
            Role::Compute,
            hai(2_000),
            w.addr(6),
            B256::ZERO,
        )
        .await,
        "KeyTaken",
    );
    reverts(
        n.bond(
            node_key(6),
            7,
            Role::Compute,
            hai(2_000),
            w.addr(6),
            B256::ZERO,
        )
        .await,
        "UnknownClass",
    );
    assert!(!n.is_active(w.addr(6)).await.unwrap());
    n.bond(
        node_key(6),
        2,
        Role::Compute,
        hai(9_000),
        w.addr(8),
        B256::repeat_byte(9),
    )
    .await
    .unwrap();
    assert!(n.is_active(w.addr(6)).await.unwrap());
    // A top-up must match the bond; it adds to it.
    reverts(
        n.bond(node_key(6), 1, Role::Compute, hai(1), w.addr(8), B256::ZERO)
            .await,
        "BondMismatch",
    );
    n.bond(node_key(6), 2, Role::Compute, hai(1), w.addr(8), B256::ZERO)
        .await
        .unwrap();
    let b = n.bond_of(w.addr(6)).await.unwrap();
    assert_eq!(b.amount, hai(9_001));
    assert_eq!(b.owner, w.addr(8));
    assert_eq!(b.nodeKey, node_key(6));
    assert_eq!(b.computeClass, 2);
    assert_eq!(
        guard.accountOf(node_key(6)).call().await.unwrap(),
        w.addr(6)
    );
    // Validators' stake is the quorum's weight.
    assert_eq!(
        guard.totalValidatorStake().call().await.unwrap(),
        hai(15_000)
    );
    // Only the deployer wires the Adjudicator, and only once.
    reverts(
        confirm(w.chain(6).stake_guard().setAdjudicator(w.addr(6))).await,
        "NotOwner",
    );
    reverts(
        confirm(w.chain(0).stake_guard().setAdjudicator(w.addr(6))).await,
        "AdjudicatorAlreadySet",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_owner_unbonds_and_only_after_the_delay() {
    if !anvil_or_skip() {
        return;
    }
    let w = World::bonded().await;
    let node = w.chain(NODE_S);
    // The node's own key (what attestd holds) cannot move its stake.
    reverts(node.unbond(w.addr(NODE_S)).await, "NotOwner");
    reverts(node.withdraw(w.addr(NODE_S)).await, "NotOwner");
    reverts(w.chain(OWNER_S).unbond(w.addr(7)).await, "NotBonded");
    let owner = w.chain(OWNER_S);
    reverts(owner.withdraw(w.addr(NODE_S)).await, "NotUnbonding");
    owner.unbond(w.addr(NODE_S)).await.unwrap();
    assert!(
        !owner.is_active(w.addr(NODE_S)).await.unwrap(),
        "unbonding is inactive"
    );
    reverts(owner.unbond(w.addr(NODE_S)).await, "Unbonding");
    reverts(
        node.bond(
            node_key(NODE_S),
            0,
            Role::Compute,
            hai(1),
            w.addr(OWNER_S),
            B256::ZERO,
        )
        .await,
        "Unbonding",
    );
    reverts(owner.withdraw(w.addr(NODE_S)).await, "StillBonded");
    w.net.advance(UNBONDING_DELAY_S + 1).await.unwrap();
    let before = w.balance(OWNER_S).await;
    owner.withdraw(w.addr(NODE_S)).await.unwrap();
    assert_eq!(
        w.balance(OWNER_S).await,
        before + hai(2_000),
        "paid to the owner"
    );
    reverts(owner.withdraw(w.addr(NODE_S)).await, "NotBonded");
    // A validator that unbonds leaves the quorum's weight at once.
    w.chain(1).unbond(w.addr(1)).await.unwrap();
    assert_eq!(
        w.chain(0)
            .stake_guard()
            .totalValidatorStake()
            .call()
            .await
            .unwrap(),
        hai(10_000)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quorum_is_two_thirds_of_active_validator_stake_in_sorted_signatures() {
    if !anvil_or_skip() {
        return;
    }
    let w = World::bonded().await;
    let guard = w.chain(0).stake_guard();
    // The contract's type hashes and digest are the Rust side's.
    assert_eq!(
        guard.QUARANTINE_TYPEHASH().call().await.unwrap(),
        Quarantine {
            nodeKey: B256::ZERO,
            epoch: 0
        }
        .eip712_type_hash()
    );
    assert_eq!(
        guard.RELEASE_TYPEHASH().call().await.unwrap(),
        Release {
            nodeKey: B256::ZERO,
            epoch: 0
        }
        .eip712_type_hash()
    );
    let msg = Quarantine {
        nodeKey: node_key(NODE_S),
        epoch: 7,
    };
    let domain = w.chain(0).domain();
    assert_eq!(
        guard.digest(msg.eip712_hash_struct()).call().await.unwrap(),
        eip712::signing_hash(&msg, &domain)
    );
    let h = msg.eip712_hash_struct();
    let two = w.certify(&msg, &[1, 2]);
    let r = guard.weightOf(h, two.clone()).call().await.unwrap();
    assert_eq!((r.signed, r.total), (hai(10_000), hai(15_000)));
    assert_eq!(
        guard.requireQuorum(h, two.clone()).call().await.unwrap(),
        hai(10_000)
    );
    let one = w.certify(&msg, &[3]);
    reverts(
        guard.requireQuorum(h, one).call().await.map_err(Into::into),
        "InsufficientWeight",
    );
    reverts(
        guard
            .requireQuorum(h, vec![])
            .call()
            .await
            .map_err(Into::into),
        "NoSignatures",
    );
    let mut reversed = two.clone();
    reversed.reverse();
    reverts(
        guard
            .requireQuorum(h, reversed)
            .call()
            .await
            .map_err(Into::into),
        "UnsortedSigners",
    );
    let twice = vec![two[0].clone(), two[0].clone()];
    reverts(
        guard
            .requireQuorum(h, twice)
            .call()
            .await
            .map_err(Into::into),
        "UnsortedSigners",
    );
    reverts(
        guard
            .requireQuorum(h, vec![Bytes::from(vec![1u8; 64])])
            .call()
            .await
            .map_err(Into::into),
        "BadSignature",
    );
    // The malleable twin (n − s, flipped v) of a valid signature is refused.
    let mut high_s = two[0].to_vec();
    let n = U256::from_str_radix(
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
        16,
    )
    .unwrap();
    let s = U256::from_be_slice(&high_s[32..64]);
    high_s[32..64].copy_from_slice(&(n - s).to_be_bytes::<32>());
    high_s[64] = if high_s[64] == 27 { 28 } else { 27 };
    reverts(
        guard
            .requireQuorum(h, vec![Bytes::from(high_s)])
            .call()
            .await
            .map_err(Into::into),
        "BadSignature",
    );
    // A compute node's signature carries no weight: refused by name.
    let forged = w.certify(&msg, &[1, NODE_S]);
    reverts(
        guard
            .requireQuorum(h, forged)
            .call()
            .await
            .map_err(Into::into),
        "NotValidator",
    );
    // A signature over another message recovers some other address.
    let other = w.certify(
        &Quarantine {
            nodeKey: node_key(NODE_S),
            epoch: 8,
        },
        &[1, 2],
    );
    reverts(
        guard
            .requireQuorum(h, other)
            .call()
            .await
            .map_err(Into::into),
        "NotValidator",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn quarantine_and_release_need_committee_weight() {
    if !anvil_or_skip() {
        return;
    }
    let w = World::bonded().await;
    let anyone = w.chain(7);
    let node = w.addr(NODE_S);
    let q = Quarantine {
        nodeKey: node_key(NODE_S),
        epoch: 12,
    };
    reverts(
        anyone.quarantine(node, 12, w.certify(&q, &[1])).await,
        "InsufficientWeight",
    );
    reverts(
        anyone
            .quarantine(w.addr(7), 12, w.certify(&q, &[1, 2]))
            .await,
        "NotBonded",
    );
    reverts(
        anyone
            .release(
                node,
                13,
                w.certify(
                    &Release {
                        nodeKey: node_key(NODE_S),
                        epoch: 13,
                    },
                    &[1, 2],
                ),
            )
            .await,
        "NotQuarantined",
    );
    anyone
        .quarantine(node, 12, w.certify(&q, &[1, 2]))
        .await
        .unwrap();
    assert!(
        !anyone.is_active(node).await.unwrap(),
        "quarantined is inactive"
    );
    let b = anyone.bond_of(node).await.unwrap();
    assert!(b.quarantined);
    assert_eq!(b.quarantineEpoch, 12);
    reverts(
        anyone
            .quarantine(
                node,
                13,
                w.certify(
                    &Quarantine {
                        nodeKey: node_key(NODE_S),
                        epoch: 13,
                    },
                    &[1, 2, 3],
                ),
            )
            .await,
        "AlreadyQuarantined",
    );
    let stale = Release {
        nodeKey: node_key(NODE_S),
        epoch: 12,
    };
    reverts(
        anyone
            .release(node, 12, w.certify(&stale, &[1, 2, 3]))
            .await,
        "StaleEvidence",
    );
    let rel = Release {
        nodeKey: node_key(NODE_S),
        epoch: 15,
    };
    reverts(
        anyone.release(node, 15, w.certify(&rel, &[3])).await,
        "InsufficientWeight",
    );
    anyone
        .release(node, 15, w.certify(&rel, &[2, 3]))
        .await
        .unwrap();
    assert!(
        anyone.is_active(node).await.unwrap(),
        "released is active again"
    );
    // A quarantined validator's stake leaves the quorum's weight, and comes back.
    let guard = w.chain(0).stake_guard();
    let qv = Quarantine {
        nodeKey: node_key(3),
        epoch: 20,
    };
    anyone
        .quarantine(w.addr(3), 20, w.certify(&qv, &[1, 2]))
        .await
        .unwrap();
    assert_eq!(
        guard.totalValidatorStake().call().await.unwrap(),
        hai(10_000)
    );
    reverts(
        anyone
            .quarantine(
                node,
                21,
                w.certify(
                    &Quarantine {
                        nodeKey: node_key(NODE_S),
                        epoch: 21,
                    },
                    &[1, 3],
                ),
            )
            .await,
        "NotValidator",
    );
    let rv = Release {
        nodeKey: node_key(3),
        epoch: 21,
    };
    anyone
        .release(w.addr(3), 21, w.certify(&rv, &[1, 2]))
        .await
        .unwrap();
    assert_eq!(
        guard.totalValidatorStake().call().await.unwrap(),
        hai(15_000)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stake_is_slashed_only_through_an_upheld_challenge() {
    if !anvil_or_skip() {
        return;
    }
    let w = World::bonded().await;
    // No one but the Adjudicator slashes: not the deployer, not a validator.
    for who in [0, 1] {
        reverts(
            confirm(
                w.chain(who)
                    .stake_guard()
                    .slash(w.addr(NODE_M), hai(1), w.addr(who)),
            )
            .await,
            "NotAdjudicator",
        );
    }
    let receipt = B256::repeat_byte(0xaa);
    reverts(
        w.chain(NODE_S).challenge(w.addr(NODE_M), receipt, 3).await,
        "NotValidator",
    );
    reverts(
        w.chain(1).challenge(w.addr(7), receipt, 3).await,
        "NotBonded",
    );
    let challenger_before = w.balance(1).await;
    let (id, _) = w
        .chain(1)
        .challenge(w.addr(NODE_M), receipt, 3)
        .await
        .unwrap();
    assert_eq!(
        w.balance(1).await,
        challenger_before - hai(100),
        "the challenge bond is posted"
    );
    reverts(
        w.chain(2).challenge(w.addr(NODE_M), receipt, 3).await,
        "DuplicateChallenge",
    );
    let adj = w.chain(0).adjudicator();
    assert_eq!(
        adj.ADJUDICATION_TYPEHASH().call().await.unwrap(),
        Adjudication {
            challengeId: U256::ZERO,
            receipt: B256::ZERO,
            upheld: false
        }
        .eip712_type_hash()
    );
    let c = adj.challengeOf(id).call().await.unwrap();
    assert_eq!(
        (c.challenger, c.accused, c.receipt, c.epoch, c.status),
        (w.addr(1), w.addr(NODE_M), receipt, 3, 1)
    );
    let upheld = Adjudication {
        challengeId: id,
        receipt,
        upheld: true,
    };
    reverts(
        w.chain(7)
            .resolve(
                id + U256::from(1),
                true,
                w.certify(
                    &Adjudication {
                        challengeId: id + U256::from(1),
                        receipt,
                        upheld: true,
                    },
                    &[1, 2],
                ),
            )
            .await,
        "UnknownChallenge",
    );
    reverts(
        w.chain(7).resolve(id, true, w.certify(&upheld, &[1])).await,
        "InsufficientWeight",
    );
    // Signatures for "rejected" do not resolve it as upheld.
    let rejected_sigs = w.certify(
        &Adjudication {
            challengeId: id,
            receipt,
            upheld: false,
        },
        &[1, 2],
    );
    reverts(
        w.chain(7).resolve(id, true, rejected_sigs).await,
        "NotValidator",
    );
    w.chain(7)
        .resolve(id, true, w.certify(&upheld, &[2, 3]))
        .await
        .unwrap();
    let bond = w.chain(0).bond_of(w.addr(NODE_M)).await.unwrap();
    assert_eq!(bond.amount, hai(4_500), "10% of 5,000 slashed");
    assert!(
        !w.chain(0).is_active(w.addr(NODE_M)).await.unwrap(),
        "under the M floor now"
    );
    assert_eq!(
        w.balance(1).await,
        challenger_before + hai(500),
        "bond back plus the slash"
    );
    assert_eq!(adj.challengeOf(id).call().await.unwrap().slashed, hai(500));
    reverts(
        w.chain(7)
            .resolve(id, true, w.certify(&upheld, &[1, 2, 3]))
            .await,
        "AlreadyResolved",
    );
    // A receipt is adjudicated once: no second challenge of it after the outcome.
    reverts(
        w.chain(2).challenge(w.addr(NODE_M), receipt, 3).await,
        "DuplicateChallenge",
    );
    assert_eq!(adj.challengeOfReceipt(receipt).call().await.unwrap(), id);
    // A rejected challenge forfeits the challenger's bond to the accused's owner.
    let receipt2 = B256::repeat_byte(0xbb);
    let owner_before = w.balance(OWNER_S).await;
    let (id2, _) = w
        .chain(2)
        .challenge(w.addr(NODE_S), receipt2, 4)
        .await
        .unwrap();
    let no = Adjudication {
        challengeId: id2,
        receipt: receipt2,
        upheld: false,
    };
    w.chain(7)
        .resolve(id2, false, w.certify(&no, &[1, 2, 3]))
        .await
        .unwrap();
    assert_eq!(w.balance(OWNER_S).await, owner_before + hai(100));
    assert_eq!(
        w.chain(0).bond_of(w.addr(NODE_S)).await.unwrap().amount,
        hai(2_000),
        "not slashed"
    );
    assert_eq!(adj.challengeOf(id2).call().await.unwrap().status, 3);
}

fn leaf(w: &World, receipt: u8, node: usize, fee: u64) -> PayoutLeaf {
    PayoutLeaf {
        receipt: B256::repeat_byte(receipt),
        node_key: node_key(node),
        payee: w.addr(node),
        fee: hai(fee),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receipt_is_paid_once_against_a_quorum_settlement() {
    if !anvil_or_skip() {
        return;
    }
    let w = World::bonded().await;
    let orchestrator = w.chain(7);
    orchestrator.fund(hai(100)).await.unwrap();
    let router = w.chain(0).payout_router();
    for (class, tenths) in [(0u8, 10u64), (1, 15), (2, 25), (3, 40)] {
        assert_eq!(
            router.multiplierOf(class).call().await.unwrap(),
            U256::from(tenths)
        );
        assert_eq!(havn_chain_client::multiplier_tenths(class), Some(tenths));
    }
    let leaves = vec![
        leaf(&w, 1, NODE_M, 10),
        leaf(&w, 2, NODE_M, 4),
        leaf(&w, 3, NODE_M, 6),
    ];
    let tree = PayoutTree::new(leaves.clone());
    for l in &leaves {
        assert_eq!(
            router
                .leafOf(havn_chain_client::client::to_payout(l))
                .call()
                .await
                .unwrap(),
            l.hash()
        );
        let (_, proof) = tree.proof(&l.receipt).unwrap();
        assert!(router
            .verify(tree.root(), l.hash(), proof.clone())
            .call()
            .await
            .unwrap());
        assert!(payout::verify(&tree.root(), l, &proof));
    }
    let s = Settlement {
        epoch: 5,
        computeClass: 1,
        payoutRoot: tree.root(),
        receipts: 3,
    };
    assert_eq!(
        router.SETTLEMENT_TYPEHASH().call().await.unwrap(),
        s.eip712_type_hash()
    );
    let cert = w.certify(&s, &[1, 2]);
    let (l1, p1) = tree.proof(&leaves[0].receipt).unwrap();
    // Forged (a non-validator signs) and sub-quorum certificates pay nothing.
    reverts(
        orchestrator
            .claim(&s, w.certify(&s, &[1, 6]), &l1, p1.clone())
            .await,
        "NotValidator",
    );
    reverts(
        orchestrator
            .claim(&s, w.certify(&s, &[3]), &l1, p1.clone())
            .await,
        "InsufficientWeight",
    );
    let owner_before = w.balance(OWNER_M).await;
    // Anyone may claim; the payee's owner is paid fee × 1.5 (class M).
    orchestrator
        .claim(&s, cert.clone(), &l1, p1.clone())
        .await
        .unwrap();
    assert_eq!(w.balance(OWNER_M).await, owner_before + hai(15));
    assert!(orchestrator.is_paid(l1.receipt).await.unwrap());
    assert_eq!(orchestrator.settled_root(5, 1).await.unwrap(), tree.root());
    assert_eq!(orchestrator.settled_root(5, 0).await.unwrap(), B256::ZERO);
    reverts(
        orchestrator.claim(&s, cert.clone(), &l1, p1.clone()).await,
        "AlreadyPaid",
    );
    // The recorded settlement serves later claims without repeating the certificate.
    let (l2, p2) = tree.proof(&leaves[1].receipt).unwrap();
    orchestrator.claim(&s, vec![], &l2, p2).await.unwrap();
    assert_eq!(w.balance(OWNER_M).await, owner_before + hai(21));
    // A leaf that is not in the tree, or whose payee is not the key's account.
    let (l3, p3) = tree.proof(&leaves[2].receipt).unwrap();
    let mut richer = l3.clone();
    richer.fee = hai(60);
    reverts(
        orchestrator.claim(&s, vec![], &richer, p3.clone()).await,
        "NotIncluded",
    );
    // A different root for a settled epoch and class is a conflict.
    let other = PayoutTree::new(vec![leaf(&w, 9, NODE_S, 1)]);
    let s2 = Settlement {
        epoch: 5,
        computeClass: 1,
        payoutRoot: other.root(),
        receipts: 1,
    };
    reverts(
        orchestrator.settle(&s2, w.certify(&s2, &[1, 2, 3])).await,
        "SettlementConflict",
    );
    // The pool pays only what it holds.
    let big = PayoutTree::new(vec![leaf(&w, 7, NODE_S, 1_000), leaf(&w, 8, 6, 1)]);
    let s3 = Settlement {
        epoch: 6,
        computeClass: 0,
        payoutRoot: big.root(),
        receipts: 2,
    };
    orchestrator
        .settle(&s3, w.certify(&s3, &[1, 2, 3]))
        .await
        .unwrap();
    let (l7, p7) = big.proof(&B256::repeat_byte(7)).unwrap();
    reverts(
        orchestrator.claim(&s3, vec![], &l7, p7).await,
        "PoolTooSmall",
    );
    // Account 6 never bonded its key: no payout to it.
    let (l8, p8) = big.proof(&B256::repeat_byte(8)).unwrap();
    reverts(
        orchestrator.claim(&s3, vec![], &l8, p8).await,
        "UnboundNode",
    );
    let bad_class = Settlement {
        epoch: 6,
        computeClass: 9,
        payoutRoot: big.root(),
        receipts: 2,
    };
    reverts(
        orchestrator
            .settle(&bad_class, w.certify(&bad_class, &[1, 2, 3]))
            .await,
        "UnknownClass",
    );
    // The rest of the first tree pays.
    orchestrator.claim(&s, vec![], &l3, p3).await.unwrap();
    assert_eq!(w.balance(OWNER_M).await, owner_before + hai(30));
    assert_eq!(
        w.chain(0).balance(w.deployment_router()).await.unwrap(),
        hai(70)
    );
}
