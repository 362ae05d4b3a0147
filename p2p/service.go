package p2p

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
)

// ServiceName is the resource manager's service of the streams of
// protocol id that this node serves: the protocol ID itself, network
// prefix and version included, e.g. /aixblock/testnet/bid/1.
func ServiceName(id protocol.ID) string { return string(id) }

// serviceMemory holds each served protocol's memory limit, process-wide:
// a protocol's limit is the code's that serves it, the same on every host
// of the process, and the hosts' limiters read it when their resource
// managers first make the service's scope (after the handler is set, so
// before its first stream).
var serviceMemory sync.Map // service name → int64

// setServiceMemory records service's memory limit. Of two handlers of one
// protocol (tests run many hosts in one process) the larger limit holds,
// so that neither shrinks the other's.
func setServiceMemory(service string, memory int64) {
	for {
		old, loaded := serviceMemory.LoadOrStore(service, memory)
		if !loaded || old.(int64) >= memory || serviceMemory.CompareAndSwap(service, old, memory) {
			return
		}
	}
}

// HandleStream sets handler for protocol id on h, with every stream in the
// resource manager's service ServiceName(id), whose streams together hold
// at most memory bytes (what their handlers Reserve); its other limits,
// and every per-peer limit, are libp2p's defaults. A stream the service
// has no room for is reset. Every stream handler of this project is set
// through HandleStream or Handle.
func HandleStream(h host.Host, id protocol.ID, memory int64, log *slog.Logger, handler network.StreamHandler) {
	if log == nil {
		log = slog.Default()
	}
	service := ServiceName(id)
	setServiceMemory(service, memory)
	h.SetStreamHandler(id, func(s network.Stream) {
		if err := s.Scope().SetService(service); err != nil {
			log.Debug("stream refused: service at its limit", "protocol", id, "peer_id", s.Conn().RemotePeer(), "err", err)
			s.Reset()
			return
		}
		handler(s)
	})
}

// Reserve reserves n bytes of memory for stream s, counted in its scope
// and the scopes above it (its service's, its peer's, the system's), until
// release; an error (network.ErrResourceLimitExceeded) means one of them is
// at its limit.
func Reserve(s network.Stream, n int) (release func(), err error) {
	sc := s.Scope()
	if err := sc.ReserveMemory(n, network.ReservationPriorityAlways); err != nil {
		return nil, fmt.Errorf("no memory left for %d more bytes on %s (its service's, its peer's or the system's limit): %w", n, s.Protocol(), err)
	}
	return func() { sc.ReleaseMemory(n) }, nil
}

// limiter is a fixed limiter whose services also have the memory limits
// that HandleStream recorded.
type limiter struct{ rcmgr.Limiter }

func (l limiter) GetServiceLimits(svc string) rcmgr.Limit {
	lim := l.Limiter.GetServiceLimits(svc)
	if mem, ok := serviceMemory.Load(svc); ok {
		return memoryLimit{lim, mem.(int64)}
	}
	return lim
}

// memoryLimit is a limit with another memory limit.
type memoryLimit struct {
	rcmgr.Limit
	memory int64
}

func (m memoryLimit) GetMemoryLimit() int64 { return m.memory }
