package chain

import (
	"context"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/accounts/abi/bind/v2"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/signer/core/apitypes"
)

// The digest we sign is the one the contract checks, and the typed data we
// publish is what eth_signTypedData_v4 signs: an external wallet that signs
// the JSON makes a voucher the escrow pays.
func TestVoucherDigestMatchesContract(t *testing.T) {
	e := newSim(t)
	ctx := context.Background()
	v := e.voucher(e.token, 7)
	d, err := v.Digest()
	if err != nil {
		t.Fatal(err)
	}
	onChain, err := bind.Call(e.payer.escrow, &bind.CallOpts{Context: ctx},
		e.esc.PackVoucherDigest(v.Channel, v.CumulativeAmount.Big()), e.esc.UnpackVoucherDigest)
	if err != nil {
		t.Fatal(err)
	}
	if common.Hash(onChain) != d {
		t.Fatalf("digest %s, contract says %x", d, onChain)
	}
	id, _ := bind.Call(e.payer.escrow, &bind.CallOpts{Context: ctx},
		e.esc.PackChannelId(v.Payer, v.Payee, v.Token), e.esc.UnpackChannelId)
	if common.Hash(id) != v.Channel {
		t.Fatalf("channel id %s, contract says %x", v.Channel, id)
	}

	// What an external wallet does with the JSON: parse, hash, sign.
	raw, err := json.Marshal(v.TypedData())
	if err != nil {
		t.Fatal(err)
	}
	var td apitypes.TypedData
	if err := json.Unmarshal(raw, &td); err != nil {
		t.Fatal(err)
	}
	h, _, err := apitypes.TypedDataAndHash(td)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := crypto.Sign(h, e.payerK)
	sig[64] += 27
	ext := NewVoucher(e.payer.ChainID(), e.escrow, e.payer.Address(), e.payee.Address(), e.token, big.NewInt(7))
	ext.Signature = sig
	if _, err := e.payer.Deposit(ctx, e.payee.Address(), e.token, big.NewInt(7)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.payee.Redeem(ctx, ext); err != nil {
		t.Fatalf("externally signed voucher: %v", err)
	}
}

func TestDecodeVoucher(t *testing.T) {
	k := DevKey(1)
	payer := crypto.PubkeyToAddress(k.PublicKey)
	payee := common.HexToAddress("0x00000000000000000000000000000000000000b0")
	good := NewVoucher(big.NewInt(1337), common.HexToAddress("0xe5"), payer, payee, common.HexToAddress("0x70"), big.NewInt(42))
	if err := good.Sign(k); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(good)
	if !strings.Contains(string(raw), `"cumulative_amount":"42"`) {
		t.Fatalf("amounts are not decimal strings: %s", raw)
	}
	v, err := DecodeVoucher(raw)
	if err != nil {
		t.Fatal(err)
	}
	if v.CumulativeAmount.Cmp(big.NewInt(42)) != 0 || v.Payer != payer {
		t.Fatalf("decoded %+v", v)
	}
	mutate := func(f func(m map[string]any)) []byte {
		var m map[string]any
		json.Unmarshal(raw, &m)
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"oversized", append(raw, make([]byte, MaxVoucherBytes)...), "limit"},
		{"not json", []byte("voucher"), "invalid voucher"},
		{"unknown field", mutate(func(m map[string]any) { m["extra"] = 1 }), "unknown field"},
		{"trailing data", append(append([]byte{}, raw...), []byte(" {}")...), "trailing"},
		{"amount changed", mutate(func(m map[string]any) { m["cumulative_amount"] = "43" }), "not signed by its payer"},
		{"zero amount", mutate(func(m map[string]any) { m["cumulative_amount"] = "0" }), "cumulative_amount must be positive"},
		{"huge amount", mutate(func(m map[string]any) { m["cumulative_amount"] = new(big.Int).Lsh(big.NewInt(1), 96).String() }), "exceeds"},
		{"channel mismatch", mutate(func(m map[string]any) { m["channel"] = common.Hash{1}.Hex() }), "channel does not match"},
		{"payee is payer", mutate(func(m map[string]any) { m["payee"] = payer.Hex() }), "payee is the payer"},
		{"short signature", mutate(func(m map[string]any) { m["signature"] = "0x1234" }), "signature has 2 bytes"},
		{"zero chain", mutate(func(m map[string]any) { m["chain_id"] = "0" }), "chain_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeVoucher(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if !errors.Is(err, ErrVoucherInvalid) && !errors.Is(err, ErrVoucherSignature) {
				t.Fatalf("error %v is neither ErrVoucherInvalid nor ErrVoucherSignature", err)
			}
		})
	}
}

// FuzzDecodeVoucher: whatever the bytes, decoding never panics, and a
// voucher it accepts was signed by its payer and survives a round trip.
func FuzzDecodeVoucher(f *testing.F) {
	k := DevKey(1)
	payer := crypto.PubkeyToAddress(k.PublicKey)
	v := NewVoucher(big.NewInt(1337), common.HexToAddress("0xe5"), payer, common.HexToAddress("0xb0"), common.Address{}, big.NewInt(42))
	if err := v.Sign(k); err != nil {
		f.Fatal(err)
	}
	raw, _ := json.Marshal(v)
	f.Add(raw)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"chain_id":"1","cumulative_amount":"-1"}`))
	f.Add([]byte(strings.Replace(string(raw), `"42"`, `"43"`, 1)))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeVoucher(b)
		if err != nil {
			return
		}
		d, err := v.Digest()
		if err != nil {
			t.Fatalf("accepted voucher has no digest: %v", err)
		}
		sig := append([]byte{}, v.Signature...)
		sig[64] -= 27
		pub, err := crypto.SigToPub(d[:], sig)
		if err != nil || crypto.PubkeyToAddress(*pub) != v.Payer {
			t.Fatalf("accepted a voucher its payer did not sign: %s", b)
		}
		again, _ := json.Marshal(v)
		if _, err := DecodeVoucher(again); err != nil {
			t.Fatalf("round trip: %v", err)
		}
	})
}
