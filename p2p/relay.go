package p2p

import (
	"fmt"

	"github.com/libp2p/go-libp2p/core/host"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
)

// startJobRelay runs the circuit relay of a node with Config.JobRelay,
// until the host closes. It runs from the start, whatever AutoNAT says:
// the operator has said the node is one to relay through.
func startJobRelay(h host.Host, cfg *Config) error {
	opts := []relayv2.Option{relayv2.WithResources(jobRelayResources())}
	if cfg.Metrics != nil {
		opts = append(opts, relayv2.WithMetricsTracer(relayv2.NewMetricsTracer(relayv2.WithRegisterer(cfg.Metrics))))
	}
	r, err := relayv2.New(h, opts...)
	if err != nil {
		return fmt.Errorf("job relay: %w", err)
	}
	if sw, ok := h.Network().(interface{ Done() <-chan struct{} }); ok {
		go func() {
			<-sw.Done()
			r.Close()
		}()
	}
	return nil
}

// jobRelayResources are a job relay's limits: circuits without a time or
// data limit (a job's traffic runs for hours), big buffers (the relay's
// copy is the circuit's ceiling), and fewer of them than libp2p's
// defaults, since each may carry a training run.
func jobRelayResources() relayv2.Resources {
	rc := relayv2.DefaultResources()
	rc.Limit = nil
	rc.MaxCircuits = 32
	rc.BufferSize = 256 << 10
	rc.MaxReservations = 256
	return rc
}
