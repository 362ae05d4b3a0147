package chain

import (
	"fmt"
	"math/big"
	"strings"
)

// Amount is a token amount in base units. In JSON it is a decimal string,
// since JSON numbers lose precision past 2^53 in most tools (jq, browsers).
type Amount struct{ big.Int }

// NewAmount copies x.
func NewAmount(x *big.Int) *Amount {
	a := new(Amount)
	if x != nil {
		a.Set(x)
	}
	return a
}

// Big is the amount as a *big.Int (shared, not copied).
func (a *Amount) Big() *big.Int { return &a.Int }

func (a Amount) MarshalJSON() ([]byte, error) { return []byte(`"` + a.String() + `"`), nil }

func (a *Amount) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if _, ok := a.SetString(s, 10); !ok {
		return fmt.Errorf("amount %s: want a decimal integer of base units", b)
	}
	return nil
}

// ParseBaseUnits reads an amount written in base units, a plain decimal
// integer ("1500000"): no sign, no exponent, no separators.
func ParseBaseUnits(s string) (*big.Int, error) {
	if !isDigits(s) {
		return nil, fmt.Errorf("amount %q: want a whole number of base units such as 1500000", s)
	}
	v, _ := new(big.Int).SetString(s, 10)
	return v, nil
}

// ParseUnits reads a decimal amount in whole units ("1.5", ".5", "2.")
// as base units for a token with the given decimals (1.5 at 6 decimals is
// 1500000). Surrounding space is ignored; signs and exponents are not
// numbers here.
func ParseUnits(s string, decimals uint8) (*big.Int, error) {
	whole, frac, _ := strings.Cut(strings.TrimSpace(s), ".")
	if whole+frac == "" || whole != "" && !isDigits(whole) || frac != "" && !isDigits(frac) {
		return nil, fmt.Errorf("amount %q: want a decimal number of whole units such as 1.5", s)
	}
	if len(frac) > int(decimals) {
		return nil, fmt.Errorf("amount %q: more than %d decimal places", s, decimals)
	}
	v, _ := new(big.Int).SetString(whole+frac+strings.Repeat("0", int(decimals)-len(frac)), 10)
	return v, nil
}

// isDigits reports whether s is one or more ASCII digits.
func isDigits(s string) bool {
	return s != "" && strings.TrimLeft(s, "0123456789") == ""
}

// FormatUnits writes base units as a decimal in whole units, trimming
// trailing zeros ("1.5", "2").
func FormatUnits(v *big.Int, decimals uint8) string {
	if v == nil {
		return "0"
	}
	s := new(big.Int).Abs(v).String()
	if len(s) <= int(decimals) {
		s = strings.Repeat("0", int(decimals)-len(s)+1) + s
	}
	whole, frac := s[:len(s)-int(decimals)], strings.TrimRight(s[len(s)-int(decimals):], "0")
	if v.Sign() < 0 {
		whole = "-" + whole
	}
	if frac == "" {
		return whole
	}
	return whole + "." + frac
}
