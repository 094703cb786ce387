// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {IHAI} from "./IHAI.sol";

/// @title StakeGuard — bonds, the node-key binding, quarantine, slashing, and the
///        validator quorum every other Havn contract trusts.
/// @notice A node bonds HAI for a compute class from its chain account (the key attestd
///         seals), naming its ed25519 node key and the digest of its signed capability
///         manifest. The EVM cannot check ed25519, so the binding is claimed here and
///         attested off chain: the manifest (signed by the node key, quoted by the TPM)
///         names this account, and validators count and pay only the account it names.
///
///         Quorum: validators sign EIP-712 messages with their chain keys; a set of
///         signatures (65 bytes each, signers in ascending address order) counts when the
///         signers are active validators holding at least 2/3 of all active validator
///         stake — the same rule as the mesh's settlement certificates.
contract StakeGuard {
    enum Role {
        Compute,
        Validator
    }

    struct Bond {
        bytes32 nodeKey;
        address owner;
        uint8 computeClass;
        Role role;
        bool quarantined;
        uint64 quarantineEpoch;
        uint64 unbondAt;
        uint256 amount;
        bytes32 manifest;
    }

    bytes32 public constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 public constant QUARANTINE_TYPEHASH = keccak256("Quarantine(bytes32 nodeKey,uint64 epoch)");
    bytes32 public constant RELEASE_TYPEHASH = keccak256("Release(bytes32 nodeKey,uint64 epoch)");
    /// Half the secp256k1 order: signatures with a larger `s` are malleable copies.
    uint256 private constant HALF_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    IHAI public immutable hai;
    uint64 public immutable unbondingDelay;
    address public immutable deployer;
    bytes32 public immutable domainSeparator;
    address public adjudicator;
    uint256 public totalValidatorStake;

    mapping(address => Bond) private bonds;
    mapping(bytes32 => address) public accountOf;

    event Bonded(
        address indexed account,
        bytes32 indexed nodeKey,
        uint8 computeClass,
        Role role,
        uint256 added,
        uint256 total,
        address owner,
        bytes32 manifest
    );
    event UnbondStarted(address indexed account, uint64 withdrawableAt);
    event Withdrawn(address indexed account, address indexed owner, uint256 amount);
    event Quarantined(address indexed account, bytes32 indexed nodeKey, uint64 epoch, uint256 weight);
    event Released(address indexed account, bytes32 indexed nodeKey, uint64 epoch, uint256 weight);
    event Slashed(address indexed account, bytes32 indexed nodeKey, uint256 amount, address to);

    error UnknownClass(uint8 computeClass);
    error BelowFloor(uint256 floor, uint256 amount);
    error KeyTaken(bytes32 nodeKey, address account);
    error BondMismatch(address account);
    error ZeroOwner();
    error NotBonded(address account);
    error NotOwner(address caller, address owner);
    error Unbonding(address account);
    error NotUnbonding(address account);
    error StillBonded(uint64 withdrawableAt);
    error AlreadyQuarantined(address account);
    error NotQuarantined(address account);
    error StaleEvidence(uint64 epoch, uint64 quarantinedAt);
    error NotAdjudicator(address caller);
    error AdjudicatorAlreadySet();
    error NoSignatures();
    error BadSignature(uint256 index);
    error UnsortedSigners(uint256 index);
    error NotValidator(address signer);
    error InsufficientWeight(uint256 signed, uint256 total);
    error TransferFailed();

    constructor(IHAI token, uint64 delaySeconds) {
        hai = token;
        unbondingDelay = delaySeconds;
        deployer = msg.sender;
        domainSeparator = keccak256(
            abi.encode(DOMAIN_TYPEHASH, keccak256("Havn"), keccak256("1"), block.chainid, address(this))
        );
    }

    /// @notice Wires the Adjudicator, the only caller allowed to slash. Once.
    function setAdjudicator(address a) external {
        if (msg.sender != deployer) revert NotOwner(msg.sender, deployer);
        if (adjudicator != address(0)) revert AdjudicatorAlreadySet();
        adjudicator = a;
    }

    /// @notice The collateral floor of a compute class (S, M, L, XL = 0..3), in HAI wei.
    function floorOf(uint8 computeClass) public pure returns (uint256) {
        if (computeClass == 0) return 2_000 ether;
        if (computeClass == 1) return 5_000 ether;
        if (computeClass == 2) return 9_000 ether;
        if (computeClass == 3) return 18_000 ether;
        revert UnknownClass(computeClass);
    }

    /// @notice Bonds (or tops up) `amount` HAI from the caller's account for `nodeKey`.
    /// @dev The first bond binds `nodeKey` to the caller for good; `owner` alone may
    ///      unbond and receives withdrawals and payouts, so a compromised node can earn
    ///      but never move its stake.
    function bond(
        bytes32 nodeKey,
        uint8 computeClass,
        Role role,
        uint256 amount,
        address owner,
        bytes32 manifest
    ) external {
        uint256 floor = floorOf(computeClass);
        Bond storage b = bonds[msg.sender];
        if (b.amount == 0) {
            address bound = accountOf[nodeKey];
            if (bound != address(0) && bound != msg.sender) revert KeyTaken(nodeKey, bound);
            if (owner == address(0)) revert ZeroOwner();
            if (amount < floor) revert BelowFloor(floor, amount);
            b.nodeKey = nodeKey;
            b.owner = owner;
            b.computeClass = computeClass;
            b.role = role;
            accountOf[nodeKey] = msg.sender;
        } else {
            if (b.nodeKey != nodeKey || b.computeClass != computeClass || b.role != role || b.owner != owner) {
                revert BondMismatch(msg.sender);
            }
            if (b.unbondAt != 0) revert Unbonding(msg.sender);
        }
        b.manifest = manifest;
        b.amount += amount;
        if (role == Role.Validator && !b.quarantined) totalValidatorStake += amount;
        if (!hai.transferFrom(msg.sender, address(this), amount)) revert TransferFailed();
        emit Bonded(msg.sender, nodeKey, computeClass, role, amount, b.amount, owner, manifest);
    }

    /// @notice Starts the unbonding delay; the account stops being active at once.
    function unbond(address account) external {
        Bond storage b = _owned(account);
        if (b.unbondAt != 0) revert Unbonding(account);
        _leaveWeight(b);
        b.unbondAt = uint64(block.timestamp) + unbondingDelay;
        emit UnbondStarted(account, b.unbondAt);
    }

    /// @notice Pays the bond back to its owner once the delay has passed.
    function withdraw(address account) external {
        Bond storage b = _owned(account);
        if (b.unbondAt == 0) revert NotUnbonding(account);
        if (block.timestamp < b.unbondAt) revert StillBonded(b.unbondAt);
        uint256 amount = b.amount;
        address owner = b.owner;
        delete accountOf[b.nodeKey];
        delete bonds[account];
        if (!hai.transfer(owner, amount)) revert TransferFailed();
        emit Withdrawn(account, owner, amount);
    }

    /// @notice Whether `account` may take jobs (or vote): bonded at or above its class
    ///         floor, not unbonding, not quarantined.
    function isActive(address account) public view returns (bool) {
        Bond storage b = bonds[account];
        return b.amount != 0 && b.amount >= floorOf(b.computeClass) && b.unbondAt == 0 && !b.quarantined;
    }

    function bondOf(address account) external view returns (Bond memory) {
        return bonds[account];
    }

    /// @notice Quarantines `account` on the committee's quorum over (its node key, epoch).
    function quarantine(address account, uint64 epoch, bytes[] calldata signatures) external {
        Bond storage b = bonds[account];
        if (b.amount == 0) revert NotBonded(account);
        if (b.quarantined) revert AlreadyQuarantined(account);
        uint256 weight = requireQuorum(keccak256(abi.encode(QUARANTINE_TYPEHASH, b.nodeKey, epoch)), signatures);
        if (b.unbondAt == 0) _leaveWeight(b);
        b.quarantined = true;
        b.quarantineEpoch = epoch;
        emit Quarantined(account, b.nodeKey, epoch, weight);
    }

    /// @notice Lifts a quarantine on a quorum over (node key, a later epoch).
    function release(address account, uint64 epoch, bytes[] calldata signatures) external {
        Bond storage b = bonds[account];
        if (!b.quarantined) revert NotQuarantined(account);
        if (epoch <= b.quarantineEpoch) revert StaleEvidence(epoch, b.quarantineEpoch);
        uint256 weight = requireQuorum(keccak256(abi.encode(RELEASE_TYPEHASH, b.nodeKey, epoch)), signatures);
        b.quarantined = false;
        if (b.role == Role.Validator && b.unbondAt == 0) totalValidatorStake += b.amount;
        emit Released(account, b.nodeKey, epoch, weight);
    }

    /// @notice Takes up to `amount` of `account`'s bond and sends it to `to`. Only the
    ///         Adjudicator, on an upheld challenge, may call this.
    function slash(address account, uint256 amount, address to) external returns (uint256 taken) {
        if (msg.sender != adjudicator) revert NotAdjudicator(msg.sender);
        Bond storage b = bonds[account];
        if (b.amount == 0) revert NotBonded(account);
        taken = amount < b.amount ? amount : b.amount;
        b.amount -= taken;
        if (b.role == Role.Validator && b.unbondAt == 0 && !b.quarantined) totalValidatorStake -= taken;
        if (!hai.transfer(to, taken)) revert TransferFailed();
        emit Slashed(account, b.nodeKey, taken, to);
    }

    /// @notice The EIP-712 digest validators sign for `structHash`.
    function digest(bytes32 structHash) public view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator, structHash));
    }

    /// @notice The stake behind `signatures` over `structHash`, and all active validator
    ///         stake. Reverts on a bad, malleable, repeated or non-validator signature.
    function weightOf(bytes32 structHash, bytes[] calldata signatures)
        public
        view
        returns (uint256 signed, uint256 total)
    {
        if (signatures.length == 0) revert NoSignatures();
        bytes32 d = digest(structHash);
        address last = address(0);
        for (uint256 i = 0; i < signatures.length; i++) {
            address signer = _recover(d, signatures[i], i);
            if (signer <= last) revert UnsortedSigners(i);
            last = signer;
            Bond storage b = bonds[signer];
            if (b.role != Role.Validator || !isActive(signer)) revert NotValidator(signer);
            signed += b.amount;
        }
        total = totalValidatorStake;
    }

    /// @notice Reverts with `InsufficientWeight` unless the signers hold ≥ 2/3 of the
    ///         active validator stake; returns the signed weight.
    function requireQuorum(bytes32 structHash, bytes[] calldata signatures) public view returns (uint256) {
        (uint256 signed, uint256 total) = weightOf(structHash, signatures);
        if (total == 0 || signed * 3 < total * 2) revert InsufficientWeight(signed, total);
        return signed;
    }

    function _owned(address account) private view returns (Bond storage b) {
        b = bonds[account];
        if (b.amount == 0) revert NotBonded(account);
        if (msg.sender != b.owner) revert NotOwner(msg.sender, b.owner);
    }

    function _leaveWeight(Bond storage b) private {
        if (b.role == Role.Validator && !b.quarantined) totalValidatorStake -= b.amount;
    }

    function _recover(bytes32 d, bytes calldata sig, uint256 index) private pure returns (address signer) {
        if (sig.length != 65) revert BadSignature(index);
        bytes32 r = bytes32(sig[0:32]);
        bytes32 s = bytes32(sig[32:64]);
        uint8 v = uint8(sig[64]);
        if (uint256(s) > HALF_ORDER || (v != 27 && v != 28)) revert BadSignature(index);
        signer = ecrecover(d, v, r, s);
        if (signer == address(0)) revert BadSignature(index);
    }
}
