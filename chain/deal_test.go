package chain

import (
	"math/big"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
)

func TestDealSignatures(t *testing.T) {
	req := &Wallet{addr: crypto.PubkeyToAddress(DevKey(1).PublicKey), key: DevKey(1)}
	prov := &Wallet{addr: crypto.PubkeyToAddress(DevKey(2).PublicKey), key: DevKey(2)}
	escrow, chainID := common.HexToAddress("0xe5"), big.NewInt(1337)
	d := Deal{ID: common.Hash{1}, OfferID: common.Hash{2}, RequesterWallet: req.addr, ProviderWallet: prov.addr,
		Price: big.NewInt(2_500_000), MaxDurationS: 3600, GPUs: 2, SpecHash: common.Hash{3}}
	rs, err := req.SignDeal(chainID, escrow, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyDeal(chainID, escrow, d, rs, req.addr); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		chain *big.Int
		esc   common.Address
		d     func(Deal) Deal
		who   common.Address
	}{
		{"other signer", chainID, escrow, func(d Deal) Deal { return d }, prov.addr},
		{"other price", chainID, escrow, func(d Deal) Deal { d.Price = big.NewInt(1); return d }, req.addr},
		{"other gpus", chainID, escrow, func(d Deal) Deal { d.GPUs = 8; return d }, req.addr},
		{"other chain", big.NewInt(1), escrow, func(d Deal) Deal { return d }, req.addr},
		{"other escrow", chainID, common.HexToAddress("0xbeef"), func(d Deal) Deal { return d }, req.addr},
	} {
		if err := VerifyDeal(tc.chain, tc.esc, tc.d(d), rs, tc.who); err == nil || !strings.Contains(err.Error(), "signed by") {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if err := VerifyDeal(chainID, escrow, d, rs[:64], req.addr); err == nil {
		t.Error("short signature accepted")
	}
}
