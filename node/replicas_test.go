package node

import (
	"testing"

	"github.com/aixblock/aixblock/market/receipt"
	"github.com/aixblock/aixblock/node/replica"
)

// The checker's verdicts reach the lease by name as receipts' outcomes:
// a verdict renamed on one side only would be refused by Settle.
func TestVerdictsAreOutcomes(t *testing.T) {
	for _, v := range replica.Verdicts() {
		if !receipt.ValidOutcome(v) {
			t.Errorf("verdict %q is no receipt outcome (%v)", v, receipt.Outcomes())
		}
	}
}
