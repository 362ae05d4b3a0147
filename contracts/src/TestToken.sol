// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title TestToken: a 6-decimal stand-in for a stablecoin on dev chains.
/// @notice Anyone can mint: deploy it only on development and test networks.
contract TestToken is ERC20 {
    constructor() ERC20("AIxBlock Test USD", "tUSD") {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}
