// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {IHAI} from "./IHAI.sol";
import {StakeGuard} from "./StakeGuard.sol";

/// @title PayoutRouter — pays each settled receipt once.
/// @notice The committee settles an epoch of a compute class by signing (EIP-712
///         `Settlement`) a Merkle root over payout leaves
///         `keccak256(keccak256(abi.encode(receipt, nodeKey, payee, fee)))`, inner nodes
///         `keccak256(min ‖ max)` of their children. Anyone may then claim a leaf with its
///         proof: the router pays `fee × the class multiplier` (S 1.0×, M 1.5×, L 2.5×,
///         XL 4.0×) from its pool to the payee's bond owner, once per receipt.
contract PayoutRouter {
    struct Settlement {
        uint64 epoch;
        uint8 computeClass;
        bytes32 payoutRoot;
        uint32 receipts;
    }

    struct Payout {
        bytes32 receipt;
        bytes32 nodeKey;
        address payee;
        uint256 fee;
    }

    bytes32 public constant SETTLEMENT_TYPEHASH =
        keccak256("Settlement(uint64 epoch,uint8 computeClass,bytes32 payoutRoot,uint32 receipts)");

    StakeGuard public immutable guard;
    IHAI public immutable hai;
    /// keccak256(epoch, class) → the settled payout root.
    mapping(bytes32 => bytes32) public settledRoot;
    mapping(bytes32 => bool) public paid;

    event Funded(address indexed from, uint256 amount);
    event Settled(uint64 indexed epoch, uint8 indexed computeClass, bytes32 payoutRoot, uint32 receipts, uint256 weight);
    event Paid(bytes32 indexed receipt, address indexed payee, address to, uint256 amount, uint64 epoch);

    error UnknownClass(uint8 computeClass);
    error SettlementConflict(uint64 epoch, uint8 computeClass, bytes32 settled);
    error AlreadyPaid(bytes32 receipt);
    error NotIncluded(bytes32 receipt);
    error UnboundNode(bytes32 nodeKey, address payee);
    error PoolTooSmall(uint256 balance, uint256 needed);
    error TransferFailed();

    constructor(StakeGuard stakeGuard) {
        guard = stakeGuard;
        hai = stakeGuard.hai();
    }

    /// @notice Fee multiplier in tenths: S 10, M 15, L 25, XL 40.
    function multiplierOf(uint8 computeClass) public pure returns (uint256) {
        if (computeClass == 0) return 10;
        if (computeClass == 1) return 15;
        if (computeClass == 2) return 25;
        if (computeClass == 3) return 40;
        revert UnknownClass(computeClass);
    }

    /// @notice Adds `amount` HAI to the fee pool (orchestrators' prepaid fees).
    function fund(uint256 amount) external {
        if (!hai.transferFrom(msg.sender, address(this), amount)) revert TransferFailed();
        emit Funded(msg.sender, amount);
    }

    /// @notice Records a settlement on its quorum certificate; a second, different root
    ///         for the same epoch and class reverts. Idempotent for the same root.
    function settle(Settlement calldata s, bytes[] calldata signatures) public {
        multiplierOf(s.computeClass);
        bytes32 key = keccak256(abi.encode(s.epoch, s.computeClass));
        bytes32 settled = settledRoot[key];
        if (settled == s.payoutRoot) return;
        if (settled != bytes32(0)) revert SettlementConflict(s.epoch, s.computeClass, settled);
        uint256 weight = guard.requireQuorum(
            keccak256(abi.encode(SETTLEMENT_TYPEHASH, s.epoch, s.computeClass, s.payoutRoot, s.receipts)), signatures
        );
        settledRoot[key] = s.payoutRoot;
        emit Settled(s.epoch, s.computeClass, s.payoutRoot, s.receipts, weight);
    }

    /// @notice Pays `p` once, given the settlement (with its certificate, unless already
    ///         recorded) and the leaf's inclusion proof.
    function claim(Settlement calldata s, bytes[] calldata signatures, Payout calldata p, bytes32[] calldata proof)
        external
        returns (uint256 amount)
    {
        if (settledRoot[keccak256(abi.encode(s.epoch, s.computeClass))] != s.payoutRoot) settle(s, signatures);
        if (paid[p.receipt]) revert AlreadyPaid(p.receipt);
        if (!verify(s.payoutRoot, leafOf(p), proof)) revert NotIncluded(p.receipt);
        if (guard.accountOf(p.nodeKey) != p.payee) revert UnboundNode(p.nodeKey, p.payee);
        amount = (p.fee * multiplierOf(s.computeClass)) / 10;
        uint256 pool = hai.balanceOf(address(this));
        if (pool < amount) revert PoolTooSmall(pool, amount);
        paid[p.receipt] = true;
        address to = guard.bondOf(p.payee).owner;
        if (!hai.transfer(to, amount)) revert TransferFailed();
        emit Paid(p.receipt, p.payee, to, amount, s.epoch);
    }

    function leafOf(Payout calldata p) public pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(p.receipt, p.nodeKey, p.payee, p.fee))));
    }

    function verify(bytes32 root, bytes32 leaf, bytes32[] calldata proof) public pure returns (bool) {
        bytes32 h = leaf;
        for (uint256 i = 0; i < proof.length; i++) {
            bytes32 o = proof[i];
            h = h < o ? keccak256(abi.encodePacked(h, o)) : keccak256(abi.encodePacked(o, h));
        }
        return h == root;
    }
}
