package chain

import (
	"fmt"
	"strings"

	"github.com/ethereum/go-ethereum/common"
)

// nativeName is how the market, the API and config name the chain's coin.
const nativeName = "native"

// TokenName is a token as the market names it: "native" or the address.
// ParseTokenName reads it back.
func TokenName(a common.Address) string {
	if a == NativeToken {
		return nativeName
	}
	return a.Hex()
}

// ParseTokenName reads a token as TokenName writes it, and nothing else:
// exactly "native", or 0x and 40 hex digits. It reads the names in
// deals, adverts and records, which the market has already checked.
func ParseTokenName(name string) (common.Address, error) {
	if name == nativeName {
		return NativeToken, nil
	}
	if !strings.HasPrefix(name, "0x") || !common.IsHexAddress(name) {
		return common.Address{}, fmt.Errorf("token %q: want native or an address (0x and 40 hex digits)", name)
	}
	return common.HexToAddress(name), nil
}

// ParseToken reads a token as users write it: an address, or "native"
// (also "eth", in any case) for the chain's coin; "" is def.
func ParseToken(s string, def common.Address) (common.Address, error) {
	switch strings.ToLower(s) {
	case "":
		return def, nil
	case nativeName, "eth":
		return NativeToken, nil
	}
	if !common.IsHexAddress(s) {
		return common.Address{}, fmt.Errorf("token %q: want native or an address (0x and 40 hex digits)", s)
	}
	return common.HexToAddress(s), nil
}

// ParsePriceToken reads the token key of a price table (market.prices):
// "default" is def, the configured token; other keys read as ParseToken
// reads them, except that an empty key is refused.
func ParsePriceToken(key string, def common.Address) (common.Address, error) {
	if strings.EqualFold(key, "default") {
		return def, nil
	}
	t, err := ParseToken(key, def)
	if key == "" || err != nil {
		return common.Address{}, fmt.Errorf("token %q: want default, native or an address (0x and 40 hex digits)", key)
	}
	return t, nil
}
