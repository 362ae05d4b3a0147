package chain

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/common/math"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/signer/core/apitypes"
)

// The EIP-712 domain of the escrow; Escrow.sol's constructor names the same.
const (
	DomainName    = "AIxBlock Escrow"
	DomainVersion = "1"
	// MaxVoucherBytes bounds a voucher's JSON before it is parsed.
	MaxVoucherBytes = 2048
)

// MaxAmount is the largest amount a channel holds (the contract's uint96).
var MaxAmount = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 96), big.NewInt(1))

// NativeToken is the token address that stands for the chain's own coin.
var NativeToken = common.Address{}

// ChannelID is the escrow's key for the channel from payer to payee in
// token: keccak256(abi.encode(payer, payee, token)).
func ChannelID(payer, payee, token common.Address) common.Hash {
	var b [96]byte
	copy(b[12:32], payer[:])
	copy(b[44:64], payee[:])
	copy(b[76:96], token[:])
	return crypto.Keccak256Hash(b[:])
}

// Voucher says that Payer owes Payee CumulativeAmount of Token in all,
// through the escrow at Escrow on chain ChainID. Signature is the payer's
// EIP-712 signature (65 bytes, v = 27 or 28, as eth_signTypedData_v4 gives).
type Voucher struct {
	ChainID          *Amount        `json:"chain_id"`
	Escrow           common.Address `json:"escrow"`
	Payer            common.Address `json:"payer"`
	Payee            common.Address `json:"payee"`
	Token            common.Address `json:"token"`
	Channel          common.Hash    `json:"channel"`
	CumulativeAmount *Amount        `json:"cumulative_amount"`
	Signature        hexutil.Bytes  `json:"signature"`
}

// Voucher errors; each wrapped with the detail.
var (
	ErrVoucherInvalid   = errors.New("invalid voucher")
	ErrVoucherSignature = errors.New("voucher not signed by its payer")
)

// NewVoucher is an unsigned voucher for the channel from payer to payee.
func NewVoucher(chainID *big.Int, escrow, payer, payee, token common.Address, cumulative *big.Int) *Voucher {
	return &Voucher{
		ChainID: NewAmount(chainID), Escrow: escrow, Payer: payer, Payee: payee, Token: token,
		Channel: ChannelID(payer, payee, token), CumulativeAmount: NewAmount(cumulative),
	}
}

// TypedData is the voucher as EIP-712 typed data, the JSON that an external
// wallet signs with eth_signTypedData_v4.
func (v *Voucher) TypedData() apitypes.TypedData {
	return apitypes.TypedData{
		Types: apitypes.Types{
			"EIP712Domain": eip712Domain,
			"Voucher": {
				{Name: "channel", Type: "bytes32"},
				{Name: "cumulativeAmount", Type: "uint256"},
			},
		},
		PrimaryType: "Voucher",
		Domain: apitypes.TypedDataDomain{
			Name: DomainName, Version: DomainVersion,
			ChainId:           (*math.HexOrDecimal256)(new(big.Int).Set(v.ChainID.Big())),
			VerifyingContract: v.Escrow.Hex(),
		},
		Message: apitypes.TypedDataMessage{
			"channel":          v.Channel.Hex(),
			"cumulativeAmount": v.CumulativeAmount.String(),
		},
	}
}

// Digest is the EIP-712 hash the payer signs.
func (v *Voucher) Digest() (common.Hash, error) {
	h, _, err := apitypes.TypedDataAndHash(v.TypedData())
	if err != nil {
		return common.Hash{}, fmt.Errorf("%w: %v", ErrVoucherInvalid, err)
	}
	return common.BytesToHash(h), nil
}

// eip712Domain is the domain type of vouchers and deals: name, version,
// chain and the escrow as the verifying contract.
var eip712Domain = []apitypes.Type{
	{Name: "name", Type: "string"},
	{Name: "version", Type: "string"},
	{Name: "chainId", Type: "uint256"},
	{Name: "verifyingContract", Type: "address"},
}

// Sign signs the voucher with the payer's key.
func (v *Voucher) Sign(key *ecdsa.PrivateKey) error {
	if crypto.PubkeyToAddress(key.PublicKey) != v.Payer {
		return fmt.Errorf("%w: signing key is not the payer %s", ErrVoucherInvalid, v.Payer)
	}
	if err := v.checkFields(); err != nil {
		return err
	}
	d, err := v.Digest()
	if err != nil {
		return err
	}
	sig, err := crypto.Sign(d[:], key)
	if err != nil {
		return fmt.Errorf("sign voucher: %w", err)
	}
	sig[64] += 27
	v.Signature = sig
	return nil
}

func (v *Voucher) checkFields() error {
	bad := func(field, why string) error { return fmt.Errorf("%w: %s %s", ErrVoucherInvalid, field, why) }
	switch {
	case v.ChainID == nil || v.ChainID.Sign() <= 0 || v.ChainID.BitLen() > 64:
		return bad("chain_id", "must be positive")
	case v.Escrow == (common.Address{}):
		return bad("escrow", "is the zero address")
	case v.Payer == (common.Address{}):
		return bad("payer", "is the zero address")
	case v.Payee == (common.Address{}):
		return bad("payee", "is the zero address")
	case v.Payer == v.Payee:
		return bad("payee", "is the payer")
	case v.Channel != ChannelID(v.Payer, v.Payee, v.Token):
		return bad("channel", "does not match payer, payee and token")
	case v.CumulativeAmount == nil || v.CumulativeAmount.Sign() <= 0:
		return bad("cumulative_amount", "must be positive")
	case v.CumulativeAmount.Cmp(MaxAmount) > 0:
		return bad("cumulative_amount", "exceeds 2^96-1")
	}
	return nil
}

// Verify checks the fields and that the payer signed them.
func (v *Voucher) Verify() error {
	if err := v.checkFields(); err != nil {
		return err
	}
	if len(v.Signature) != 65 {
		return fmt.Errorf("%w: signature has %d bytes, want 65", ErrVoucherInvalid, len(v.Signature))
	}
	sig := bytes.Clone(v.Signature)
	if sig[64] >= 27 {
		sig[64] -= 27
	}
	if sig[64] > 1 {
		return fmt.Errorf("%w: signature recovery id %d", ErrVoucherInvalid, v.Signature[64])
	}
	// The contract (OpenZeppelin's ECDSA) refuses high-s signatures, so must we.
	if new(big.Int).SetBytes(sig[32:64]).Cmp(secp256k1HalfN) > 0 {
		return fmt.Errorf("%w: signature is malleable (high s)", ErrVoucherInvalid)
	}
	d, err := v.Digest()
	if err != nil {
		return err
	}
	pub, err := crypto.SigToPub(d[:], sig)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrVoucherSignature, err)
	}
	if signer := crypto.PubkeyToAddress(*pub); signer != v.Payer {
		return fmt.Errorf("%w: signed by %s, payer is %s", ErrVoucherSignature, signer, v.Payer)
	}
	return nil
}

var secp256k1HalfN = new(big.Int).Rsh(crypto.S256().Params().N, 1)

// DecodeVoucher parses and verifies a voucher from untrusted bytes: size
// first, then strict JSON (no unknown fields), then fields and signature.
func DecodeVoucher(b []byte) (*Voucher, error) {
	if len(b) > MaxVoucherBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrVoucherInvalid, len(b), MaxVoucherBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var v Voucher
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrVoucherInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data", ErrVoucherInvalid)
	}
	if err := v.Verify(); err != nil {
		return nil, err
	}
	return &v, nil
}
