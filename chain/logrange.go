package chain

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/rpc"
)

// DefaultLogRange is how many blocks one eth_getLogs request covers when
// Config.LogRange is zero: what hosted RPCs commonly allow.
const DefaultLogRange = 2000

// rangeErrorTexts are what RPCs answer to an eth_getLogs request over their
// range or result cap: geth's --rpc.rangelimit ("exceed maximum block range
// 10"), and the wordings of hosted providers.
var rangeErrorTexts = []string{
	"exceed maximum block range",
	"block range",
	"range limit",
	"range too large",
	"is limited to",
	"range is too large",
	"response size exceeded",
	"query returned more than",
	"too many blocks",
	"too many results",
	"limit exceeded",
}

// isRangeError tells whether err is an RPC refusing an eth_getLogs request
// for its size, so that a smaller range may pass.
func isRangeError(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var re rpc.Error
	if errors.As(err, &re) && re.ErrorCode() == -32005 { // "limit exceeded" (EIP-1474)
		return true
	}
	msg := strings.ToLower(err.Error())
	for _, s := range rangeErrorTexts {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// logWindow is the state of a scan of event logs in bounded windows: the
// number of blocks one request covers, halved whenever the RPC refuses a
// range for its size, and kept small for the rest of the scan.
type logWindow struct {
	size uint64
}

func (c *Client) newLogWindow() *logWindow {
	n := c.cfg.LogRange
	if n == 0 {
		n = DefaultLogRange
	}
	return &logWindow{size: n}
}

// scan calls fn with the logs matching q in blocks from to to (both
// included), oldest first, one window of blocks at a time; fn returning an
// error stops the scan with it. After a window's logs are handed over, done
// is called with the window's last block (nil: nothing), so that a caller
// that polls can go on from there after an error.
func (w *logWindow) scan(ctx context.Context, b Backend, q ethereum.FilterQuery, from, to uint64, fn func(*types.Log) error, done func(last uint64)) error {
	for from <= to {
		end := to
		if to-from >= w.size {
			end = from + w.size - 1
		}
		q.FromBlock, q.ToBlock = new(big.Int).SetUint64(from), new(big.Int).SetUint64(end)
		logs, err := b.FilterLogs(ctx, q)
		if err != nil {
			if isRangeError(err) && end > from {
				w.size = max(1, (end-from+1)/2)
				continue
			}
			return fmt.Errorf("logs of blocks %d to %d: %w", from, end, err)
		}
		for i := range logs {
			if err := fn(&logs[i]); err != nil {
				return err
			}
		}
		if done != nil {
			done(end)
		}
		if end == to {
			break
		}
		from = end + 1
	}
	return nil
}

// fromBlock is where a scan of the escrow's events starts: the configured
// deployment block, or later.
func (c *Client) fromBlock(from uint64) uint64 {
	return max(from, c.cfg.FromBlock)
}
