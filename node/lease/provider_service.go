package lease

import (
	"context"
	"fmt"

	"github.com/aixblock/aixblock/p2p/overlay"
	"github.com/libp2p/go-libp2p/core/peer"
)

// openPorts starts the provider's side: the port streams of its service
// jobs, each checked against the job's deal.
func (pv *Provider) openPorts() error {
	if pv.p2p == nil {
		return nil
	}
	srv, err := overlay.NewServer(pv.p2p.Host, overlay.ServerConfig{Network: pv.p2p.Network(), Authorize: pv.authorizePort, Logger: pv.cfg.Log})
	if err != nil {
		return fmt.Errorf("service ports: %w", err)
	}
	pv.portServer = srv
	pv.jobNet = overlay.NewJobNet(pv.p2p.Host, pv.p2p.Network(), pv.cfg.Log)
	return nil
}

// authorizePort lets the requester of a job's deal reach a port the job's
// spec declares, while the job serves; anyone else learns only that there
// is no such job of theirs (the same answer as for a job that does not
// exist).
func (pv *Provider) authorizePort(ctx context.Context, from peer.ID, jobID string, port int) (overlay.Dialer, error) {
	pv.mu.Lock()
	deal, ok := pv.provided[jobID]
	pv.mu.Unlock()
	if !ok || deal.Requester != from.String() || pv.jobs == nil {
		return nil, fmt.Errorf("no job %s of yours here", jobID)
	}
	d, err := pv.jobs.PortDialer(jobID, port)
	if err != nil {
		return nil, err
	}
	return overlay.Dialer(d), nil
}
