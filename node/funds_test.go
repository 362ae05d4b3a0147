package node

import (
	"errors"
	"math/big"
	"testing"

	"github.com/aixblock/aixblock/chain"
)

// TestBalanceThenChannel checks the funds check before a bid: the
// balance and the channel together must cover the amount, a closing
// channel pays nothing, a read that fails is an error, and a balance
// that covers the amount alone spares the channel's read.
func TestBalanceThenChannel(t *testing.T) {
	errRead := errors.New("chain down")
	open := func(avail int64) chain.Channel { return chain.Channel{Available: chain.NewAmount(big.NewInt(avail))} }
	for _, tc := range []struct {
		name        string
		balance     int64
		balanceErr  error
		ch          chain.Channel
		chErr       error
		want        bool
		wantErr     error
		readChannel bool
	}{
		{"balance covers", 100, nil, open(0), nil, true, nil, false},
		{"balance covers, channel down", 100, nil, chain.Channel{}, errRead, true, nil, false},
		{"channel covers", 0, nil, open(100), nil, true, nil, true},
		{"both together", 60, nil, open(40), nil, true, nil, true},
		{"short", 60, nil, open(39), nil, false, nil, true},
		{"closing channel", 60, nil, chain.Channel{Available: chain.NewAmount(big.NewInt(100)), ClosesAt: 1}, nil, false, nil, true},
		{"balance read fails", 0, errRead, open(100), nil, false, errRead, false},
		{"channel read fails", 0, nil, chain.Channel{}, errRead, false, errRead, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			read := false
			got, err := balanceThenChannel(big.NewInt(100),
				func() (*big.Int, error) { return big.NewInt(tc.balance), tc.balanceErr },
				func() (chain.Channel, error) { read = true; return tc.ch, tc.chErr })
			if got != tc.want || !errors.Is(err, tc.wantErr) {
				t.Errorf("= %v, %v; want %v, %v", got, err, tc.want, tc.wantErr)
			}
			if read != tc.readChannel {
				t.Errorf("channel read: %v, want %v", read, tc.readChannel)
			}
		})
	}
}
