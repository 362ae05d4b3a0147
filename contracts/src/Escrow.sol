// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

/// @title Escrow: one-way payment channels from requesters to GPU providers.
/// @notice A channel is keyed by (payer, payee, token); token address(0) is
/// the native coin. The payer deposits; the payee redeems EIP-712 vouchers
/// that the payer signed off chain, each carrying the cumulative amount owed
/// so far, so a voucher can never pay twice and a newer one supersedes all
/// older ones. The payer can start closing the channel; during the challenge
/// period the payee can still redeem, after it the payer withdraws the rest.
/// @dev Fee-on-transfer tokens are accounted by balance difference: a channel
/// is credited with what the escrow actually received. Rebasing tokens are
/// not supported. A channel's state fits one storage slot.
contract Escrow is EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    struct Channel {
        uint96 deposited; // all credited deposits, less what was withdrawn
        uint96 redeemed; // all paid to the payee; never decreases
        uint64 closesAt; // 0 while open; else when the payer may withdraw
    }

    /// @notice A voucher: the payer owes the payee cumulativeAmount in all.
    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channel,uint256 cumulativeAmount)");

    /// @notice How long a closing channel stays redeemable, in seconds.
    uint64 public immutable challengePeriod;

    mapping(bytes32 => Channel) private _channels;

    /// @notice One voucher for a batched redeem.
    struct Redemption {
        address payer;
        address token;
        uint256 cumulativeAmount;
        bytes signature;
    }

    event Deposited(
        bytes32 indexed channel, address indexed payer, address indexed payee, address token, uint256 amount, uint256 deposited
    );
    event Redeemed(bytes32 indexed channel, address indexed payee, uint256 amount, uint256 redeemed);
    event CloseStarted(bytes32 indexed channel, address indexed payer, uint256 closesAt);
    event Withdrawn(bytes32 indexed channel, address indexed payer, uint256 amount);

    error ZeroAddress();
    error ZeroAmount();
    error SelfChannel();
    error WrongValue(uint256 sent, uint256 expected);
    error AmountTooLarge(uint256 amount);
    error BadSignature(address signer, address payer);
    error NothingToRedeem(uint256 cumulativeAmount, uint256 redeemed);
    error ExceedsDeposit(uint256 cumulativeAmount, uint256 deposited);
    error NotClosing();
    error ChallengePeriod(uint256 closesAt);
    error NativeTransferFailed();

    constructor(uint64 challengePeriod_) EIP712("AIxBlock Escrow", "1") {
        if (challengePeriod_ == 0) revert ZeroAmount();
        challengePeriod = challengePeriod_;
    }

    /// @notice The key of the channel from payer to payee in token.
    function channelId(address payer, address payee, address token) public pure returns (bytes32) {
        return keccak256(abi.encode(payer, payee, token));
    }

    /// @notice A channel's state; all zero if it was never opened.
    function channel(address payer, address payee, address token)
        external
        view
        returns (uint256 deposited, uint256 redeemed, uint256 closesAt)
    {
        Channel memory c = _channels[channelId(payer, payee, token)];
        return (c.deposited, c.redeemed, c.closesAt);
    }

    /// @notice The EIP-712 digest the payer signs for a voucher.
    function voucherDigest(bytes32 channel_, uint256 cumulativeAmount) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(VOUCHER_TYPEHASH, channel_, cumulativeAmount)));
    }

    /// @notice Opens or tops up the channel from msg.sender to payee. For the
    /// native coin (token 0) send amount as value; for a token, approve the
    /// escrow first. A top-up cancels a close in progress.
    function deposit(address payee, address token, uint256 amount) external payable nonReentrant {
        if (payee == address(0)) revert ZeroAddress();
        if (payee == msg.sender) revert SelfChannel();
        if (amount == 0) revert ZeroAmount();
        uint256 credited = amount;
        if (token == address(0)) {
            if (msg.value != amount) revert WrongValue(msg.value, amount);
        } else {
            if (msg.value != 0) revert WrongValue(msg.value, 0);
            uint256 before = IERC20(token).balanceOf(address(this));
            IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
            credited = IERC20(token).balanceOf(address(this)) - before;
            if (credited == 0) revert ZeroAmount();
        }
        bytes32 id = channelId(msg.sender, payee, token);
        Channel storage c = _channels[id];
        uint256 total = uint256(c.deposited) + credited;
        if (total > type(uint96).max) revert AmountTooLarge(total);
        c.deposited = uint96(total);
        if (c.closesAt != 0) c.closesAt = 0;
        emit Deposited(id, msg.sender, payee, token, credited, total);
    }

    /// @notice Pays msg.sender (the payee) what the payer's voucher owes
    /// beyond what was already redeemed.
    function redeem(address payer, address token, uint256 cumulativeAmount, bytes calldata signature)
        external
        nonReentrant
        returns (uint256 paid)
    {
        paid = _redeem(payer, token, cumulativeAmount, signature);
        _pay(token, msg.sender, paid);
    }

    /// @notice Redeems many vouchers, from any payers, in one transaction.
    /// Any bad voucher reverts the whole batch. Payments in the same token
    /// are paid out together.
    function redeemBatch(Redemption[] calldata rs) external nonReentrant returns (uint256 total) {
        address token;
        uint256 owed;
        for (uint256 i = 0; i < rs.length; i++) {
            Redemption calldata r = rs[i];
            uint256 paid = _redeem(r.payer, r.token, r.cumulativeAmount, r.signature);
            if (i > 0 && r.token != token) {
                _pay(token, msg.sender, owed);
                owed = 0;
            }
            token = r.token;
            owed += paid;
            total += paid;
        }
        if (owed > 0) _pay(token, msg.sender, owed);
    }

    /// @notice Begins the challenge period of the channel from msg.sender to
    /// payee; the payee can still redeem until it ends.
    function startClose(address payee, address token) external {
        bytes32 id = channelId(msg.sender, payee, token);
        Channel storage c = _channels[id];
        if (c.deposited == 0) revert ZeroAmount();
        uint256 closesAt = block.timestamp + challengePeriod;
        c.closesAt = uint64(closesAt);
        emit CloseStarted(id, msg.sender, closesAt);
    }

    /// @notice After the challenge period, returns to msg.sender (the payer)
    /// what was deposited and not redeemed. The channel keeps its redeemed
    /// total, so vouchers signed before can never pay again after a new
    /// deposit.
    function withdraw(address payee, address token) external nonReentrant returns (uint256 amount) {
        bytes32 id = channelId(msg.sender, payee, token);
        Channel storage c = _channels[id];
        if (c.closesAt == 0) revert NotClosing();
        if (block.timestamp < c.closesAt) revert ChallengePeriod(c.closesAt);
        amount = uint256(c.deposited) - c.redeemed;
        c.deposited = c.redeemed;
        c.closesAt = 0;
        emit Withdrawn(id, msg.sender, amount);
        _pay(token, msg.sender, amount);
    }

    function _redeem(address payer, address token, uint256 cumulativeAmount, bytes calldata signature)
        private
        returns (uint256 paid)
    {
        if (payer == address(0)) revert ZeroAddress();
        bytes32 id = channelId(payer, msg.sender, token);
        (address signer,,) = ECDSA.tryRecover(voucherDigest(id, cumulativeAmount), signature);
        if (signer != payer) revert BadSignature(signer, payer);
        Channel storage c = _channels[id];
        uint256 redeemed = c.redeemed;
        if (cumulativeAmount <= redeemed) revert NothingToRedeem(cumulativeAmount, redeemed);
        if (cumulativeAmount > c.deposited) revert ExceedsDeposit(cumulativeAmount, c.deposited);
        paid = cumulativeAmount - redeemed;
        c.redeemed = uint96(cumulativeAmount); // <= deposited, which fits
        emit Redeemed(id, msg.sender, paid, cumulativeAmount);
    }

    function _pay(address token, address to, uint256 amount) private {
        if (amount == 0) return;
        if (token == address(0)) {
            (bool ok,) = to.call{value: amount}("");
            if (!ok) revert NativeTransferFailed();
        } else {
            IERC20(token).safeTransfer(to, amount);
        }
    }
}
