package chain

import (
	"fmt"

	"github.com/ethereum/go-ethereum/common"
)

// Address is an account or contract address: go-ethereum's, named here so
// that the CLI speaks chain's vocabulary without importing go-ethereum.
type Address = common.Address

// IsAddress reports whether s is an address: 0x and 40 hex digits.
func IsAddress(s string) bool { return common.IsHexAddress(s) }

// HexAddress is the address s spells; see IsAddress.
func HexAddress(s string) Address { return common.HexToAddress(s) }

// ParseAddress reads field's value s as an address, or says what is wrong.
func ParseAddress(field, s string) (Address, error) {
	if !common.IsHexAddress(s) {
		return Address{}, fmt.Errorf("%s %q: not an address (0x and 40 hex digits)", field, s)
	}
	return common.HexToAddress(s), nil
}
