package chain

import (
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
)

func TestTokens(t *testing.T) {
	const addr = "0x33AB224A224Cd09bBA4761260478F8C20C1582e1"
	tok, def := common.HexToAddress(addr), common.HexToAddress("0x00000000000000000000000000000000000000d1")
	parsers := map[string]func(string) (common.Address, error){
		"ParseTokenName":  ParseTokenName,
		"ParseToken":      func(s string) (common.Address, error) { return ParseToken(s, def) },
		"ParsePriceToken": func(s string) (common.Address, error) { return ParsePriceToken(s, def) },
	}
	for _, tc := range []struct {
		parser, in string
		want       common.Address
		err        string // a piece of the error, which names the value
	}{
		{"ParseTokenName", "native", NativeToken, ""},
		{"ParseTokenName", addr, tok, ""},
		{"ParseTokenName", strings.ToLower(addr), tok, ""},
		{"ParseTokenName", "NATIVE", common.Address{}, `token "NATIVE": want native or an address`},
		{"ParseTokenName", "eth", common.Address{}, `token "eth"`},
		{"ParseTokenName", "", common.Address{}, `token ""`},
		{"ParseTokenName", addr[2:], common.Address{}, `token "` + addr[2:] + `"`},
		{"ParseTokenName", addr[:41], common.Address{}, `token "` + addr[:41] + `"`},

		{"ParseToken", "", def, ""},
		{"ParseToken", "native", NativeToken, ""},
		{"ParseToken", "Native", NativeToken, ""},
		{"ParseToken", "ETH", NativeToken, ""},
		{"ParseToken", addr, tok, ""},
		{"ParseToken", "default", common.Address{}, `token "default": want native or an address`},
		{"ParseToken", "tUSD", common.Address{}, `token "tUSD"`},
		{"ParseToken", "0x12", common.Address{}, `token "0x12"`},

		{"ParsePriceToken", "default", def, ""},
		{"ParsePriceToken", "Default", def, ""},
		{"ParsePriceToken", "native", NativeToken, ""},
		{"ParsePriceToken", addr, tok, ""},
		{"ParsePriceToken", "", common.Address{}, `token "": want default, native or an address`},
		{"ParsePriceToken", "defaultx", common.Address{}, `token "defaultx": want default, native or an address`},
		{"ParsePriceToken", "0xdefault", common.Address{}, `token "0xdefault"`},
	} {
		got, err := parsers[tc.parser](tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%s(%q) = %s, %v; want %s", tc.parser, tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s(%q) = %s, %v; want an error with %s", tc.parser, tc.in, got, err, tc.err)
		}
	}
}

// What TokenName writes, ParseTokenName reads back.
func TestTokenNameRoundTrip(t *testing.T) {
	for _, a := range []common.Address{NativeToken, common.HexToAddress("0x33AB224A224Cd09bBA4761260478F8C20C1582e1")} {
		if got, err := ParseTokenName(TokenName(a)); err != nil || got != a {
			t.Errorf("ParseTokenName(TokenName(%s)) = %s, %v", a, got, err)
		}
	}
	if TokenName(NativeToken) != "native" {
		t.Errorf("TokenName(NativeToken) = %q, want native", TokenName(NativeToken))
	}
}
