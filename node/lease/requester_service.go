package lease

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/node/api"
	"github.com/aixblock/aixblock/p2p/overlay"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Service jobs: a provider publishes nothing on its own interfaces; the
// requester's daemon listens on its own machine and carries each
// connection over a libp2p stream to the provider (p2p/overlay), which
// connects it to the port inside the job's container. Only the requester
// of the job's deal may open its ports, and only the ports its spec
// declares.

type forward struct {
	f     *overlay.Forwarder
	port  int
	since time.Time
}

// Forward publishes port of a job this node runs through the market on
// listen here ([HOST:]PORT; the host defaults to 127.0.0.1, the port 0 to
// a free one), until the job ends or the daemon stops.
func (rq *Requester) Forward(ctx context.Context, id string, port int, listen string) (api.ForwardInfo, error) {
	rq.mu.Lock()
	rj := rq.records[id]
	var spec jobs.Spec
	var state jobs.State
	if rj != nil {
		spec = rj.Spec
		if rj.Last != nil {
			state = rj.Last.State
		}
	}
	rq.mu.Unlock()
	switch {
	case rj == nil:
		if rq.jobs != nil {
			if _, err := rq.jobs.Get(id); err == nil {
				return api.ForwardInfo{}, invalid{fmt.Errorf("job %s runs on this node: its ports are reached through the provider's own forward, not published here", short(id))}
			}
		}
		return api.ForwardInfo{}, fmt.Errorf("%w: %s", jobs.ErrNotFound, id)
	case !spec.IsService():
		return api.ForwardInfo{}, invalid{fmt.Errorf("job %s is not a service (kind: service with ports): it has no ports to forward", short(id))}
	case !spec.HasPort(port):
		return api.ForwardInfo{}, invalid{fmt.Errorf("port %d: job %s declares ports %s", port, short(id), portList(spec))}
	case state.Terminal():
		return api.ForwardInfo{}, fmt.Errorf("%w: %s is %s", jobs.ErrFinished, id, state)
	case rj.queued():
		return api.ForwardInfo{}, invalid{fmt.Errorf("job %s has no provider yet (%s): forward it once it runs", short(id), state)}
	}
	prov, err := peer.Decode(rj.Provider)
	if err != nil {
		return api.ForwardInfo{}, err
	}
	rq.reach(ctx, prov)
	// The forward lives with the daemon, not the request that made it.
	f, err := overlay.Forward(rq.ctx, rq.p2p.Host, prov, rj.remoteID(), port, listen, overlay.ForwardOptions{Network: rq.p2p.Network(), Logger: rq.cfg.Log})
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			return api.ForwardInfo{}, invalid{err}
		}
		return api.ForwardInfo{}, err
	}
	fw := &forward{f: f, port: port, since: time.Now()}
	rq.mu.Lock()
	rq.forwards[id] = append(rq.forwards[id], fw)
	rq.mu.Unlock()
	rq.log.Info("forwarding a service port", "job_id", id, "port", port, "local", f.Addr().String(), "provider", rj.Provider)
	return fw.info(id), nil
}

func (fw *forward) info(id string) api.ForwardInfo {
	st := fw.f.Stats()
	return api.ForwardInfo{JobID: id, Port: fw.port, Local: fw.f.Addr().String(), Accepted: st.Accepted, Open: st.Open,
		Failed: st.Failed, LastError: st.LastError, Since: fw.since}
}

// Forwards are the open forwards of job id (every job's for "").
func (rq *Requester) Forwards(id string) []api.ForwardInfo {
	rq.mu.Lock()
	defer rq.mu.Unlock()
	out := []api.ForwardInfo{}
	for jid, fws := range rq.forwards {
		if id != "" && jid != id {
			continue
		}
		for _, fw := range fws {
			out = append(out, fw.info(jid))
		}
	}
	return out
}

// endForwards closes the forwards of a job that ended: its local ports
// close with it.
func (rq *Requester) endForwards(id string) {
	rq.mu.Lock()
	fws := rq.forwards[id]
	delete(rq.forwards, id)
	rq.mu.Unlock()
	for _, fw := range fws {
		fw.f.Close()
		rq.log.Info("forward closed: the job ended", "job_id", id, "local", fw.f.Addr().String())
	}
}

func portList(s jobs.Spec) string {
	out := ""
	for i, p := range s.Ports {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprint(p.Port)
	}
	if out == "" {
		return "none"
	}
	return out
}
