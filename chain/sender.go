package chain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/rpc"
)

// sender assigns nonces, prices, signs, sends and waits for transactions
// from one wallet. Nonces are counted locally (so several transactions can
// be in flight) and reloaded from the chain after a send fails. A
// transaction not mined within bumpAfter is sent again with the same nonce
// and fees raised by 12.5% (nodes replace a pending transaction only for at
// least 10% more).
type sender struct {
	b         Backend
	w         *Wallet
	chainID   *big.Int
	bumpAfter time.Duration
	poll      time.Duration
	confirm   uint64
	errABIs   []*abi.ABI
	log       *slog.Logger

	mu     sync.Mutex
	next   uint64
	loaded bool
}

// send runs one call as a transaction and waits until it has the
// configured confirmations. A revert, in estimation or on chain, comes back
// as an error naming the contract's error.
func (s *sender) send(ctx context.Context, what string, to common.Address, value *big.Int, data []byte) (*types.Receipt, error) {
	return s.sendWith(ctx, what, to, value, data, s.confirm)
}

// sendWith is send, waiting for confirm confirmations (1: inclusion).
func (s *sender) sendWith(ctx context.Context, what string, to common.Address, value *big.Int, data []byte, confirm uint64) (*types.Receipt, error) {
	if value == nil {
		value = new(big.Int)
	}
	msg := ethereum.CallMsg{From: s.w.Address(), To: &to, Value: value, Data: data}
	gas, err := s.b.EstimateGas(ctx, msg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, s.decode(err))
	}
	gas += gas / 5 // estimates are exact for this state; leave room for a changed one
	tip, feeCap, err := s.fees(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: fees: %w", what, err)
	}

	s.mu.Lock()
	if !s.loaded {
		n, err := s.b.PendingNonceAt(ctx, s.w.Address())
		if err != nil {
			s.mu.Unlock()
			return nil, fmt.Errorf("%s: nonce: %w", what, err)
		}
		s.next, s.loaded = n, true
	}
	nonce := s.next
	tx, err := s.sign(nonce, to, value, data, gas, tip, feeCap)
	if err == nil {
		err = s.b.SendTransaction(ctx, tx)
	}
	if err != nil {
		s.loaded = false // the chain knows best what comes next
		s.mu.Unlock()
		return nil, fmt.Errorf("%s: send: %w", what, err)
	}
	s.next++
	s.mu.Unlock()
	s.log.Debug("transaction sent", "what", what, "tx", tx.Hash(), "nonce", nonce, "gas", gas)

	hashes := []common.Hash{tx.Hash()}
	sentAt := time.Now()
	t := time.NewTicker(s.poll)
	defer t.Stop()
	for {
		for _, h := range hashes {
			r, err := s.b.TransactionReceipt(ctx, h)
			if err != nil || r == nil {
				continue
			}
			if r.Status != types.ReceiptStatusSuccessful {
				return r, fmt.Errorf("%s: transaction %s reverted%s", what, h, s.reason(ctx, msg, r))
			}
			return r, s.confirmations(ctx, r, confirm)
		}
		if time.Since(sentAt) > s.bumpAfter {
			tip2, cap2, err := s.fees(ctx)
			if err == nil {
				tip = maxBig(bump(tip), tip2)
				feeCap = maxBig(bump(feeCap), cap2)
				if feeCap.Cmp(tip) < 0 {
					feeCap = new(big.Int).Set(tip)
				}
				if tx2, err := s.sign(nonce, to, value, data, gas, tip, feeCap); err == nil {
					if err := s.b.SendTransaction(ctx, tx2); err == nil {
						s.log.Info("transaction not mined; sent again with higher fees",
							"what", what, "old", hashes[len(hashes)-1], "tx", tx2.Hash(), "tip", tip, "fee_cap", feeCap)
						hashes = append(hashes, tx2.Hash())
					} else if !isAlreadyKnown(err) {
						s.log.Warn("fee bump refused", "what", what, "err", err)
					}
				}
			}
			sentAt = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: waiting for %s: %w", what, hashes[len(hashes)-1], ctx.Err())
		case <-t.C:
		}
	}
}

func (s *sender) sign(nonce uint64, to common.Address, value *big.Int, data []byte, gas uint64, tip, feeCap *big.Int) (*types.Transaction, error) {
	tx := types.NewTx(&types.DynamicFeeTx{
		ChainID: s.chainID, Nonce: nonce, GasTipCap: tip, GasFeeCap: feeCap,
		Gas: gas, To: &to, Value: value, Data: data,
	})
	return types.SignTx(tx, types.LatestSignerForChainID(s.chainID), s.w.Key())
}

// fees: the node's suggested tip, and a fee cap that survives the base fee
// doubling (it can rise 12.5% a block).
func (s *sender) fees(ctx context.Context) (tip, feeCap *big.Int, err error) {
	tip, err = s.b.SuggestGasTipCap(ctx)
	if err != nil {
		return nil, nil, err
	}
	head, err := s.b.HeaderByNumber(ctx, nil)
	if err != nil {
		return nil, nil, err
	}
	base := head.BaseFee
	if base == nil {
		base = new(big.Int)
	}
	feeCap = new(big.Int).Add(new(big.Int).Mul(base, big.NewInt(2)), tip)
	return tip, feeCap, nil
}

func (s *sender) confirmations(ctx context.Context, r *types.Receipt, confirm uint64) error {
	if confirm <= 1 {
		return nil
	}
	want := r.BlockNumber.Uint64() + confirm - 1
	t := time.NewTicker(s.poll)
	defer t.Stop()
	missing := 0
	for {
		n, err := s.b.BlockNumber(ctx)
		if err == nil && n >= want {
			// The transaction must still be in the block it was mined in.
			// A node may fail a receipt lookup for a moment (its index
			// catching up); only a receipt in another block, or one gone
			// for many polls, means a reorg.
			r2, err := s.b.TransactionReceipt(ctx, r.TxHash)
			switch {
			case err == nil && r2 != nil && r2.BlockHash == r.BlockHash:
				return nil
			case err == nil && r2 != nil:
				return fmt.Errorf("transaction %s moved to block %s (reorg); check it again", r.TxHash, r2.BlockNumber)
			default:
				if missing++; missing > 50 {
					return fmt.Errorf("transaction %s left the chain (reorg); send it again", r.TxHash)
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d confirmations of %s: %w", confirm, r.TxHash, ctx.Err())
		case <-t.C:
		}
	}
}

// reason replays a reverted transaction at its block to learn why.
func (s *sender) reason(ctx context.Context, msg ethereum.CallMsg, r *types.Receipt) string {
	_, err := s.b.CallContract(ctx, msg, r.BlockNumber)
	if err == nil {
		return ""
	}
	return ": " + s.decode(err).Error()
}

// decode turns a revert's data into the contract's error name and
// arguments, e.g. "ExceedsDeposit(cumulativeAmount=5, deposited=3)".
func (s *sender) decode(err error) error {
	var de rpc.DataError
	if !errors.As(err, &de) {
		return err
	}
	hexData, ok := de.ErrorData().(string)
	if !ok {
		return err
	}
	data := common.FromHex(hexData)
	if len(data) < 4 {
		return err
	}
	for _, a := range s.errABIs {
		for _, e := range a.Errors {
			if string(e.ID[:4]) != string(data[:4]) {
				continue
			}
			vals, uerr := e.Inputs.Unpack(data[4:])
			if uerr != nil {
				return fmt.Errorf("reverted: %s", e.Name)
			}
			parts := make([]string, len(vals))
			for i, v := range vals {
				parts[i] = fmt.Sprintf("%s=%v", e.Inputs[i].Name, v)
			}
			return &RevertError{Name: e.Name, Args: vals, msg: fmt.Sprintf("reverted: %s(%s)", e.Name, strings.Join(parts, ", "))}
		}
	}
	return err
}

// RevertError is a contract's custom error, decoded.
type RevertError struct {
	Name string
	Args []any
	msg  string
}

func (e *RevertError) Error() string { return e.msg }

// IsRevert reports whether err is the contract's error called name.
func IsRevert(err error, name string) bool {
	var re *RevertError
	return errors.As(err, &re) && re.Name == name
}

func bump(x *big.Int) *big.Int {
	y := new(big.Int).Mul(x, big.NewInt(9))
	y.Div(y, big.NewInt(8))
	if y.Cmp(x) == 0 {
		y.Add(y, big.NewInt(1))
	}
	return y
}

func maxBig(a, b *big.Int) *big.Int {
	if a.Cmp(b) >= 0 {
		return a
	}
	return new(big.Int).Set(b)
}

func isAlreadyKnown(err error) bool {
	s := err.Error()
	return strings.Contains(s, "already known") || strings.Contains(s, "nonce too low")
}
