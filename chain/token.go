package chain

import (
	"fmt"
	"strings"

	"github.com/ethereum/go-ethereum/common"
)

// ParseToken reads a token as users and the market write it: an address,
// or "native" (also "eth") for the chain's coin; "" is def.
func ParseToken(s string, def common.Address) (common.Address, error) {
	switch strings.ToLower(s) {
	case "":
		return def, nil
	case "native", "eth":
		return NativeToken, nil
	}
	if !common.IsHexAddress(s) {
		return common.Address{}, fmt.Errorf("%q is not an address (0x and 40 hex digits) or native", s)
	}
	return common.HexToAddress(s), nil
}

// TokenName is a token as the market names it: "native" or the address.
func TokenName(a common.Address) string {
	if a == NativeToken {
		return "native"
	}
	return a.Hex()
}
