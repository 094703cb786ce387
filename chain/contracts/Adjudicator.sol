// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {IHAI} from "./IHAI.sol";
import {StakeGuard} from "./StakeGuard.sol";

/// @title Adjudicator — challenges of receipts and their outcomes, with stake at risk.
/// @notice An active validator challenges a receipt by posting CHALLENGE_BOND HAI (once per
///         receipt: a second challenge of it, open or resolved, reverts). The
///         committee's quorum (EIP-712 `Adjudication`, checked by StakeGuard) resolves it:
///         upheld, the accused loses SLASH_BPS of its bond to the challenger, who gets its
///         bond back; rejected, the challenger's bond goes to the accused's owner.
contract Adjudicator {
    enum Status {
        None,
        Open,
        Upheld,
        Rejected
    }

    struct Challenge {
        address challenger;
        address accused;
        bytes32 receipt;
        uint64 epoch;
        Status status;
        uint256 slashed;
    }

    bytes32 public constant ADJUDICATION_TYPEHASH =
        keccak256("Adjudication(uint256 challengeId,bytes32 receipt,bool upheld)");
    uint256 public constant CHALLENGE_BOND = 100 ether;
    uint256 public constant SLASH_BPS = 1_000;

    StakeGuard public immutable guard;
    IHAI public immutable hai;
    uint256 public challengeCount;
    mapping(uint256 => Challenge) private challenges;
    /// The challenge of each receipt: a receipt is adjudicated once.
    mapping(bytes32 => uint256) public challengeOfReceipt;

    event ChallengeOpened(
        uint256 indexed id, address indexed challenger, address indexed accused, bytes32 receipt, uint64 epoch
    );
    event ChallengeResolved(uint256 indexed id, bool upheld, uint256 slashed, uint256 weight);

    error NotValidator(address caller);
    error NotBonded(address account);
    error DuplicateChallenge(bytes32 receipt, uint256 id);
    error UnknownChallenge(uint256 id);
    error AlreadyResolved(uint256 id);
    error TransferFailed();

    constructor(StakeGuard stakeGuard) {
        guard = stakeGuard;
        hai = stakeGuard.hai();
    }

    /// @notice Opens a challenge of `receipt` (signed by `accused` in `epoch`).
    function challenge(address accused, bytes32 receipt, uint64 epoch) external returns (uint256 id) {
        if (!guard.isActive(msg.sender) || guard.bondOf(msg.sender).role != StakeGuard.Role.Validator) {
            revert NotValidator(msg.sender);
        }
        if (guard.bondOf(accused).amount == 0) revert NotBonded(accused);
        uint256 earlier = challengeOfReceipt[receipt];
        if (earlier != 0) revert DuplicateChallenge(receipt, earlier);
        id = ++challengeCount;
        challenges[id] = Challenge(msg.sender, accused, receipt, epoch, Status.Open, 0);
        challengeOfReceipt[receipt] = id;
        if (!hai.transferFrom(msg.sender, address(this), CHALLENGE_BOND)) revert TransferFailed();
        emit ChallengeOpened(id, msg.sender, accused, receipt, epoch);
    }

    /// @notice Resolves challenge `id` on the committee's quorum over its outcome.
    function resolve(uint256 id, bool upheld, bytes[] calldata signatures) external {
        Challenge storage c = challenges[id];
        if (c.status == Status.None) revert UnknownChallenge(id);
        if (c.status != Status.Open) revert AlreadyResolved(id);
        uint256 weight =
            guard.requireQuorum(keccak256(abi.encode(ADJUDICATION_TYPEHASH, id, c.receipt, upheld)), signatures);
        if (upheld) {
            c.status = Status.Upheld;
            uint256 bonded = guard.bondOf(c.accused).amount;
            c.slashed = guard.slash(c.accused, (bonded * SLASH_BPS) / 10_000, c.challenger);
            if (!hai.transfer(c.challenger, CHALLENGE_BOND)) revert TransferFailed();
        } else {
            c.status = Status.Rejected;
            if (!hai.transfer(guard.bondOf(c.accused).owner, CHALLENGE_BOND)) revert TransferFailed();
        }
        emit ChallengeResolved(id, upheld, c.slashed, weight);
    }

    function challengeOf(uint256 id) external view returns (Challenge memory) {
        return challenges[id];
    }
}
