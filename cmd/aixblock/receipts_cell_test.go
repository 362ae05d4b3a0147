package main

import (
	"strings"
	"testing"

	"github.com/aixblock/aixblock/market/receipt"
)

// A provider's receipts cell says what was counted, by how many payers,
// how much evidence stands behind it by trust, and what the chain says.
func TestReceiptsCell(t *testing.T) {
	for _, c := range []struct {
		name string
		s    *receipt.Summary
		want string
	}{
		{"none", nil, "-"},
		{"counted", &receipt.Summary{Completed: 3, Verified: 1, Failed: 1, Outvoted: 2, Payers: 2,
			Evidence: receipt.Evidence{Own: 1, Dealt: 4, Beyond: 1, Stranger: 200, ProviderOnly: 5}},
			"3 completed (1 verified), 1 failed, 2 outvoted; 2 payers; evidence 1 own, 4 dealt, 206 untrusted"},
		{"on chain", &receipt.Summary{OnChain: &receipt.OnChain{Payers: 7, Total: "9"}}, "; on chain 7 payers"},
		{"chain down", &receipt.Summary{OnChain: &receipt.OnChain{Error: "dial: refused"}}, "; on chain: unknown"},
	} {
		if got := receiptsCell(c.s); !strings.HasSuffix(got, c.want) {
			t.Errorf("%s: %q, want it to end %q", c.name, got, c.want)
		}
	}
}
