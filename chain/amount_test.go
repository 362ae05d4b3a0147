package chain

import (
	"math/big"
	"strings"
	"testing"
)

func TestParseUnits(t *testing.T) {
	for _, tc := range []struct {
		in   string
		dec  uint8
		want string // base units, or a piece of the error, which names the value
	}{
		{"1.5", 6, "1500000"},
		{"2", 6, "2000000"},
		{"2.", 6, "2000000"},
		{".5", 6, "500000"},
		{" 1.5 ", 6, "1500000"},
		{"0.000001", 6, "1"},
		{"0", 6, "0"},
		{"1", 18, "1000000000000000000"},
		{"1", 0, "1"},
		{"123456789012345678901234567890", 18, "123456789012345678901234567890000000000000000000"},
		{"1.0000001", 6, `amount "1.0000001": more than 6 decimal places`},
		{"1.5", 0, `amount "1.5": more than 0 decimal places`},
		{"-1", 6, `amount "-1": want a decimal number`},
		{"+1", 6, `amount "+1": want a decimal number`},
		{".-5", 6, `amount ".-5": want a decimal number`},
		{".+5", 6, `amount ".+5": want a decimal number`},
		{"1.-5", 6, `amount "1.-5": want a decimal number`},
		{"1e6", 6, `amount "1e6": want a decimal number`},
		{"1_000", 6, `amount "1_000": want a decimal number`},
		{"0x10", 6, `amount "0x10": want a decimal number`},
		{"1.2.3", 6, `amount "1.2.3": want a decimal number`},
		{"1 AIX", 6, `amount "1 AIX": want a decimal number`},
		{"abc", 6, `amount "abc": want a decimal number`},
		{".", 6, `amount ".": want a decimal number`},
		{"", 6, `amount "": want a decimal number`},
		{" ", 6, `amount " ": want a decimal number`},
	} {
		got, err := ParseUnits(tc.in, tc.dec)
		s := ""
		if err != nil {
			s = err.Error()
		} else {
			s = got.String()
		}
		if !strings.Contains(s, tc.want) {
			t.Errorf("ParseUnits(%q, %d) = %s, want %s", tc.in, tc.dec, s, tc.want)
		}
		if err == nil {
			if back, err := ParseUnits(FormatUnits(got, tc.dec), tc.dec); err != nil || back.Cmp(got) != 0 {
				t.Errorf("FormatUnits round trip of %s: %s", got, FormatUnits(got, tc.dec))
			}
		}
	}
}

func TestParseBaseUnits(t *testing.T) {
	for _, tc := range []struct {
		in, want string // base units, or a piece of the error, which names the value
	}{
		{"0", "0"},
		{"1500000", "1500000"},
		{"007", "7"},
		{"1000000000000000000000000000000000000000", "1000000000000000000000000000000000000000"},
		{"", `amount "": want a whole number of base units`},
		{"-1", `amount "-1": want a whole number`},
		{"+1", `amount "+1": want a whole number`},
		{"1.5", `amount "1.5": want a whole number`},
		{"1e6", `amount "1e6": want a whole number`},
		{" 1", `amount " 1": want a whole number`},
		{"0x10", `amount "0x10": want a whole number`},
	} {
		got, err := ParseBaseUnits(tc.in)
		s := ""
		if err != nil {
			s = err.Error()
		} else {
			s = got.String()
		}
		if !strings.Contains(s, tc.want) {
			t.Errorf("ParseBaseUnits(%q) = %s, want %s", tc.in, s, tc.want)
		}
	}
}

func TestFormatUnits(t *testing.T) {
	for _, tc := range []struct {
		v    *big.Int
		dec  uint8
		want string
	}{
		{big.NewInt(1500000), 6, "1.5"},
		{big.NewInt(2000000), 6, "2"},
		{big.NewInt(1), 6, "0.000001"},
		{big.NewInt(0), 6, "0"},
		{big.NewInt(-1500000), 6, "-1.5"},
		{big.NewInt(7), 0, "7"},
		{nil, 6, "0"},
	} {
		if got := FormatUnits(tc.v, tc.dec); got != tc.want {
			t.Errorf("FormatUnits(%v, %d) = %q, want %q", tc.v, tc.dec, got, tc.want)
		}
	}
}
