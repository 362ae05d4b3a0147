package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/aixblock/aixblock/gpu"
	"github.com/aixblock/aixblock/node/api"
)

func (n *Node) gpuRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/gpus", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.gpus.Inventory())
	})
	mux.HandleFunc("GET /v1/gpus/events", n.handleGPUEvents)
	mux.HandleFunc("POST /v1/gpus/inject", func(w http.ResponseWriter, r *http.Request) {
		var req api.InjectRequest
		if !readJSON(w, r, &req) {
			return
		}
		if err := n.gpus.Inject(req.Index, req.Fault); err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, gpu.ErrNotMock) {
				code = http.StatusForbidden
			}
			writeJSON(w, code, apiError(err.Error()))
			return
		}
		writeJSON(w, http.StatusOK, req)
	})
	mux.HandleFunc("POST /v1/gpus/reset-health", func(w http.ResponseWriter, r *http.Request) {
		var req api.ResetHealthRequest
		if !readJSON(w, r, &req) {
			return
		}
		g, err := n.gpus.ResetHealth(req.UUID)
		if err != nil {
			writeJSON(w, http.StatusNotFound, apiError(err.Error()))
			return
		}
		writeJSON(w, http.StatusOK, g)
	})
}

// handleGPUEvents streams health changes as newline-delimited JSON until
// the client goes away. ?limit=N ends the stream after N changes.
func (n *Node) handleGPUEvents(w http.ResponseWriter, r *http.Request) {
	limit := -1
	if s := r.URL.Query().Get("limit"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			writeJSON(w, http.StatusBadRequest, apiError(fmt.Sprintf("limit: %q is not a positive number", s)))
			return
		}
		limit = v
	}
	rc := http.NewResponseController(w)
	ch, cancel := n.gpus.Subscribe()
	defer cancel()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	enc := json.NewEncoder(w)
	for limit != 0 {
		select {
		case <-r.Context().Done():
			return
		case c := <-ch:
			if enc.Encode(c) != nil || rc.Flush() != nil {
				return
			}
			limit--
		}
	}
}
