package lease

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/aixblock/aixblock/jobs"
	"github.com/libp2p/go-libp2p/core/peer"
)

// remoteLogs copies a remote job's output; follow keeps asking until it
// ends. For rank 0 of a distributed job it interleaves every rank's lines,
// each prefixed "[rank N] "; for another rank, that rank's, prefixed.
func (rq *Requester) remoteLogs(ctx context.Context, id string, follow bool, w io.Writer) error {
	if err := rq.awaitStart(ctx, id, follow); err != nil || ctx.Err() != nil {
		return err
	}
	srcs, err := rq.logSources(id)
	if err != nil || len(srcs) == 0 {
		return err
	}
	flusher, _ := w.(interface{ Flush() })
	for {
		pending := 0
		for _, s := range srcs {
			if s.done {
				continue
			}
			if err := rq.drainLog(ctx, s, w, follow, len(srcs) == 1); err != nil {
				return err
			}
			if !s.done {
				pending++
			}
		}
		if flusher != nil {
			flusher.Flush()
		}
		if pending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// logSource is one rank's log on its provider, as far as it was read.
type logSource struct {
	id, prefix string
	prov       peer.ID
	off        int64
	read       int64 // bytes read by this call
	partial    []byte
	done       bool
}

// logSources are the logs of job id: its own, or every rank's for rank 0
// of a distributed job, each line prefixed with its rank. None for a job
// that never ran.
func (rq *Requester) logSources(id string) ([]*logSource, error) {
	rq.mu.Lock()
	defer rq.mu.Unlock()
	rj := rq.records[id]
	if rj == nil {
		return nil, fmt.Errorf("%w: %s", jobs.ErrNotFound, id)
	}
	if rj.queued() {
		return nil, nil // it never ran: no output
	}
	ids := []string{id}
	if rj.isHead() {
		ids = rj.Group
	}
	var srcs []*logSource
	for _, gid := range ids {
		g := rq.records[gid]
		if g == nil {
			continue
		}
		p, _ := peer.Decode(g.Provider)
		src := &logSource{id: g.remoteID(), prov: p}
		if g.inGang() {
			src.prefix = fmt.Sprintf("[rank %d] ", g.Rank)
		}
		srcs = append(srcs, src)
	}
	return srcs, nil
}

// drainLog copies what s's provider has now to w. A rank whose provider
// vanished is done (its status says why) unless it is the only source.
func (rq *Requester) drainLog(ctx context.Context, s *logSource, w io.Writer, follow, only bool) error {
	for {
		req, _ := json.Marshal(jobIDRequest{ID: s.id, Offset: s.off})
		resp, err := rq.request(ctx, s.prov, wireLogs, req)
		if err != nil {
			if only {
				return err
			}
			s.done = true
			return nil
		}
		var c logChunk
		if err := json.Unmarshal(resp, &c); err != nil {
			return err
		}
		// A provider's offsets must follow its bytes, and a log read
		// without follow ends: a provider answering full chunks forever
		// would hold the reader for good.
		if want := s.off + int64(len(c.Data)); c.Bytes != want {
			return fmt.Errorf("provider %s: log chunk ends at %d, not %d", s.prov, c.Bytes, want)
		}
		s.off = c.Bytes
		s.read += int64(len(c.Data))
		s.emit(w, c.Data, c.Done || !follow)
		if len(c.Data) == maxLogChunk && (follow || s.read < maxLogRead) {
			continue
		}
		s.done = c.Done || !follow
		return nil
	}
}

// emit writes data to w, whole lines with the rank's prefix when there
// is one (the rest waits for its line's end, or final).
func (s *logSource) emit(w io.Writer, data []byte, final bool) {
	if s.prefix == "" {
		w.Write(data)
		return
	}
	s.partial = append(s.partial, data...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		w.Write([]byte(s.prefix))
		w.Write(s.partial[:i+1])
		s.partial = s.partial[i+1:]
	}
	if final && len(s.partial) > 0 {
		w.Write([]byte(s.prefix))
		w.Write(append(s.partial, '\n'))
		s.partial = nil
	}
}
