package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/aixblock/aixblock/node/api"
	"github.com/aixblock/aixblock/p2p/content"
	"github.com/ipfs/go-cid"
	"golang.org/x/sys/unix"
)

func (n *Node) dataRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/data/add", n.handleAdd)
	mux.HandleFunc("POST /v1/data/get", n.handleGet)
	mux.HandleFunc("GET /v1/data/cat", n.fetchThenStream("application/octet-stream", n.content.Cat))
	mux.HandleFunc("GET /v1/data/ls", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("cid") == "" {
			n.handlePinLs(w, r)
			return
		}
		c, ok := cidParam(w, r.URL.Query().Get("cid"))
		if !ok {
			return
		}
		entries, err := n.content.Ls(r.Context(), c)
		if err != nil {
			writeJSON(w, http.StatusBadGateway, apiError(err.Error()))
			return
		}
		writeJSON(w, http.StatusOK, entries)
	})
	mux.HandleFunc("POST /v1/data/pin/add", n.withCID(func(ctx context.Context, c cid.Cid) (any, error) {
		if _, err := n.content.Fetch(ctx, c, nil); err != nil {
			return nil, err
		}
		return api.CIDRequest{CID: c.String()}, n.content.Pin(ctx, c)
	}))
	mux.HandleFunc("POST /v1/data/pin/rm", n.withCID(func(ctx context.Context, c cid.Cid) (any, error) {
		return api.CIDRequest{CID: c.String()}, n.content.Unpin(ctx, c)
	}))
	mux.HandleFunc("GET /v1/data/pin/ls", n.handlePinLs)
	mux.HandleFunc("GET /v1/data/export", n.fetchThenStream("application/vnd.ipld.car; version=1", n.content.ExportCAR))
	mux.HandleFunc("POST /v1/data/import", func(w http.ResponseWriter, r *http.Request) {
		res, err := n.content.ImportCAR(r.Context(), r.Body)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, apiError(err.Error()))
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("POST /v1/data/gc", func(w http.ResponseWriter, r *http.Request) {
		res, err := n.content.GC(r.Context())
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, apiError(err.Error()))
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
}

// fetchThenStream serves ?cid= with write, which fetches the DAG before its
// first byte: a failure before then is still a JSON error response.
func (n *Node) fetchThenStream(contentType string, write func(context.Context, cid.Cid, io.Writer) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, ok := cidParam(w, r.URL.Query().Get("cid"))
		if !ok {
			return
		}
		lw := &lazyHeader{w: w, contentType: contentType}
		if err := write(r.Context(), c, lw); err != nil {
			if !lw.started {
				writeJSON(w, http.StatusBadGateway, apiError(err.Error()))
				return
			}
			n.log.Warn("stream cut short", "path", r.URL.Path, "cid", c, "err", err)
		}
	}
}

// lazyHeader sets the success header at the first byte, so that an error
// before any byte can still choose its own status.
type lazyHeader struct {
	w           http.ResponseWriter
	contentType string
	started     bool
}

func (l *lazyHeader) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		l.w.Header().Set("Content-Type", l.contentType)
		l.w.WriteHeader(http.StatusOK)
	}
	return l.w.Write(p)
}

func (n *Node) handlePinLs(w http.ResponseWriter, r *http.Request) {
	pins, err := n.content.Pins(r.Context())
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError(err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, cidStrings(pins))
}

func cidStrings(cs []cid.Cid) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.String())
	}
	return out
}

func cidParam(w http.ResponseWriter, s string) (cid.Cid, bool) {
	c, err := cid.Parse(s)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError(fmt.Sprintf("cid: %q is not a CID: %v", s, err)))
		return cid.Undef, false
	}
	return c, true
}

func (n *Node) withCID(fn func(context.Context, cid.Cid) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req api.CIDRequest
		if !readJSON(w, r, &req) {
			return
		}
		c, ok := cidParam(w, req.CID)
		if !ok {
			return
		}
		out, err := fn(r.Context(), c)
		if err != nil {
			writeJSON(w, http.StatusBadGateway, apiError(err.Error()))
			return
		}
		writeJSON(w, http.StatusOK, out)
	}
}

// eventStream writes NDJSON events, progress ones at most every 100 ms.
type eventStream struct {
	mu   sync.Mutex
	w    http.ResponseWriter
	rc   *http.ResponseController
	enc  *json.Encoder
	last time.Time
}

func newEventStream(w http.ResponseWriter) *eventStream {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	return &eventStream{w: w, rc: http.NewResponseController(w), enc: json.NewEncoder(w)}
}

func (e *eventStream) send(ev api.DataEvent, progress bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if progress && time.Since(e.last) < 100*time.Millisecond {
		return
	}
	e.last = time.Now()
	_ = e.enc.Encode(ev)
	_ = e.rc.Flush()
}

func (n *Node) handleAdd(w http.ResponseWriter, r *http.Request) {
	var req api.AddRequest
	if !readJSON(w, r, &req) {
		return
	}
	if !filepath.IsAbs(req.Path) {
		writeJSON(w, http.StatusBadRequest, apiError(fmt.Sprintf("path: %q is not absolute", req.Path)))
		return
	}
	ev := newEventStream(w)
	c, err := n.content.Add(r.Context(), req.Path, content.AddOptions{
		CIDVersion: req.CIDVersion, RawLeaves: req.RawLeaves, Chunker: req.Chunker,
		Hidden: req.Hidden, Pin: req.Pin,
		Progress: func(b int64) { ev.send(api.DataEvent{Bytes: b}, true) },
	})
	if err != nil {
		ev.send(api.DataEvent{Error: err.Error()}, false)
		return
	}
	ev.send(api.DataEvent{CID: c.String(), Done: true}, false)
}

// daemonCanWrite checks that this process can create out: its directory
// exists and is writable by the daemon's user, which need not be the
// CLI's.
func daemonCanWrite(out string) error {
	dir := filepath.Dir(out)
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("output: %s: %w (the daemon writes the file itself; create the directory first)", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("output: %s is not a directory", dir)
	}
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return fmt.Errorf("output: the daemon (uid %d) cannot write in %s: %w; choose a directory it can write, or give it access", os.Getuid(), dir, err)
	}
	return nil
}

func (n *Node) handleGet(w http.ResponseWriter, r *http.Request) {
	var req api.GetRequest
	if !readJSON(w, r, &req) {
		return
	}
	c, ok := cidParam(w, req.CID)
	if !ok {
		return
	}
	if !filepath.IsAbs(req.Output) {
		writeJSON(w, http.StatusBadRequest, apiError(fmt.Sprintf("output: %q is not absolute", req.Output)))
		return
	}
	// The daemon writes the file itself (no bytes back over the API), so
	// it must be able to write there: say so before fetching anything.
	if err := daemonCanWrite(req.Output); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError(err.Error()))
		return
	}
	ev := newEventStream(w)
	st, err := n.content.Get(r.Context(), c, req.Output, func(s content.FetchStats) {
		ev.send(getEvent(s), true)
	})
	if err != nil {
		ev.send(api.DataEvent{Error: err.Error()}, false)
		return
	}
	done := getEvent(st)
	done.CID, done.Done = c.String(), true
	ev.send(done, false)
}

func getEvent(s content.FetchStats) api.DataEvent {
	e := api.DataEvent{Bytes: s.Bytes, Blocks: s.Blocks, Fetched: s.Fetched, Total: s.Total, Peers: s.Peers}
	for _, p := range s.From {
		e.From = append(e.From, p.String())
	}
	if s.Elapsed > 0 {
		e.MiBs = float64(s.Bytes) / (1 << 20) / s.Elapsed.Seconds()
	}
	return e
}
