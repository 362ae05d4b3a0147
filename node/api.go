package node

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"time"

	"github.com/aixblock/aixblock/node/api"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// apiError is the body of an error response.
func apiError(msg string) api.ErrorBody { return api.ErrorBody{Error: msg} }

// maxRequestBody bounds every request body the API reads.
const maxRequestBody = 1 << 20

func (n *Node) apiHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		// The daemon serves while the chain is down (providers run jobs
		// through an outage): it is alive, and says what is degraded.
		out := map[string]string{"status": "ok"}
		if chainState, _ := n.chainHealth(); chainState != "ok" {
			out["status"], out["chain"] = "degraded", chainState
		}
		writeJSON(w, http.StatusOK, out)
	})
	auth := http.NewServeMux()
	auth.Handle("GET /metrics", promhttp.HandlerFor(n.metrics, promhttp.HandlerOpts{}))
	auth.HandleFunc("GET /v1/id", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.id())
	})
	auth.HandleFunc("GET /v1/peers", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.peers())
	})
	auth.HandleFunc("POST /v1/peers/connect", n.handleConnect)
	auth.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.status())
	})
	auth.HandleFunc("POST /v1/shutdown", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.ShutdownResult{PeerID: n.p2p.Host.ID().String()})
		n.requestStop()
	})
	// Go's profiler, as Kubo serves it on its API: behind the token like
	// every route, since a profile shows what the daemon is doing.
	auth.HandleFunc("GET /debug/pprof/", pprof.Index)
	auth.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	auth.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	auth.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	auth.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	n.gpuRoutes(auth)
	n.dataRoutes(auth)
	n.walletRoutes(auth)
	n.marketRoutes(auth)
	n.receiptRoutes(auth)
	n.jobRoutes(auth)
	dash := n.dashboardRoutes(mux, auth)
	auth.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, apiError(fmt.Sprintf("no route %s %s", r.Method, r.URL.Path)))
	})
	mux.Handle("/", n.requireToken(auth, dash))
	return n.countRequests(n.checkHost(mux))
}

// requireToken checks the bearer token in constant time, or else the
// dashboard's session (its cookie, and its key on every API request: see
// dashSessions).
func (n *Node) requireToken(next http.Handler, dash *dashSessions) http.Handler {
	want := []byte("Bearer " + n.repo.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) == 1 {
			next.ServeHTTP(w, r)
			return
		}
		if ok, answered := dash.authenticate(w, r); answered {
			if ok {
				next.ServeHTTP(w, r)
			}
			return
		}
		if strings.HasPrefix(r.URL.Path, "/ui/") {
			loginPage(w, http.StatusUnauthorized, "You are not signed in.")
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="aixblock"`)
		writeJSON(w, http.StatusUnauthorized, apiError("missing or wrong API token (see "+TokenFile+" in the repo)"))
	})
}

func (n *Node) id() api.IDInfo {
	h := n.p2p.Host
	info := api.IDInfo{PeerID: h.ID().String(), Network: n.p2p.Network(), Version: Version, Addrs: []string{},
		Wallet: n.wallet.Address().Hex()}
	if n.gatewayLn != nil {
		info.Gateway = "http://" + n.gatewayLn.Addr().String()
	}
	for _, a := range h.Addrs() {
		info.Addrs = append(info.Addrs, a.String()+"/p2p/"+h.ID().String())
	}
	return info
}

func (n *Node) peers() []api.PeerInfo {
	h := n.p2p.Host
	out := []api.PeerInfo{}
	for _, c := range h.Network().Conns() {
		p := c.RemotePeer()
		// A peer of another network (or not yet identified) is not ours
		// to list: it is disconnected once identify shows what it is.
		if !n.p2p.IsMember(p) {
			continue
		}
		dir := "inbound"
		if c.Stat().Direction == network.DirOutbound {
			dir = "outbound"
		}
		out = append(out, api.PeerInfo{
			PeerID:    p.String(),
			Addr:      c.RemoteMultiaddr().String(),
			Direction: dir,
			LatencyMS: h.Peerstore().LatencyEWMA(p).Milliseconds(),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PeerID < out[j].PeerID })
	return out
}

func (n *Node) status() api.StatusInfo {
	inv := n.gpus.Inventory()
	counts := map[string]int{}
	for _, g := range inv.GPUs {
		counts[string(g.Health)]++
	}
	st := api.StatusInfo{
		GPUs:      counts,
		GPUSource: inv.Source,
		GPUReason: inv.Reason,
		PeerID:    n.p2p.Host.ID().String(),
		Network:   n.p2p.Network(),
		Version:   Version,
		Peers:     len(n.peers()),
		DHTPeers:  n.p2p.DHT.RoutingTable().Size(),
		UptimeS:   time.Since(n.started).Round(time.Millisecond).Seconds(),
	}
	st.Chain, st.ChainDownS = n.chainHealth()
	st.Proof = n.proofProvider.Standing(time.Now())
	return st
}

// chainHealth is "ok" while the chain answers, else why not and for how
// long (seconds): from the RPC endpoints, or the provider's own failed
// reads of channels.
func (n *Node) chainHealth() (string, float64) {
	if n.rpc != nil {
		if ok, since, _, err := n.rpc.Health(); !ok {
			return fmt.Sprintf("unreachable: %v", err), time.Since(since).Seconds()
		}
	}
	if n.lease != nil {
		if since := n.lease.Provider().ChainDownSince(); !since.IsZero() {
			return "unreachable: channel reads fail", time.Since(since).Seconds()
		}
	}
	return "ok", 0
}

func (n *Node) handleConnect(w http.ResponseWriter, r *http.Request) {
	var req api.ConnectRequest
	if !readJSON(w, r, &req) {
		return
	}
	ai, err := peer.AddrInfoFromString(req.Addr)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError(fmt.Sprintf("addr: %q is not a multiaddr ending in /p2p/<peer-id>: %v", req.Addr, err)))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	if err := n.p2p.Host.Connect(ctx, *ai); err != nil {
		writeJSON(w, http.StatusBadGateway, apiError(fmt.Sprintf("connect %s: %v", ai.ID, err)))
		return
	}
	if !n.p2p.IsMember(ai.ID) {
		writeJSON(w, http.StatusBadGateway, apiError(fmt.Sprintf("connect %s: it is not a node of network %q (it speaks none of its protocols; check its --network); disconnected", ai.ID, n.p2p.Network())))
		return
	}
	writeJSON(w, http.StatusOK, api.PeerInfo{PeerID: ai.ID.String(), Addr: req.Addr, Direction: "outbound"})
}

// readJSON decodes the request body into v; on failure it answers 400 with
// the reason and returns false.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		msg := "request body: " + err.Error()
		if errors.Is(err, io.EOF) {
			msg = "empty request body"
		}
		writeJSON(w, http.StatusBadRequest, apiError(msg))
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// routeLabel keeps the metric's label set small: unknown paths share one.
func routeLabel(path string) string {
	if strings.HasPrefix(path, "/ui/") && path != "/ui/login" {
		return "/ui/"
	}
	switch path {
	case "/healthz", "/metrics", "/v1/id", "/v1/peers", "/v1/peers/connect", "/v1/status", "/v1/shutdown",
		"/v1/gpus", "/v1/gpus/events", "/v1/gpus/inject", "/v1/gpus/reset-health",
		"/v1/data/add", "/v1/data/get", "/v1/data/cat", "/v1/data/ls", "/v1/data/pin/add",
		"/v1/data/pin/rm", "/v1/data/pin/ls", "/v1/data/export", "/v1/data/import", "/v1/data/gc",
		"/v1/wallet", "/v1/wallet/channels", "/v1/wallet/deposit", "/v1/wallet/voucher", "/v1/wallet/redeem",
		"/v1/wallet/close", "/v1/wallet/withdraw", "/v1/market/providers", "/v1/market/offer", "/v1/market/verify", "/v1/market/deals", "/v1/market/receipts", "/v1/jobs",
		"/v1/wallet/earnings", "/v1/wallet/spending", "/v1/testnet", "/v1/testnet/login", "/ui/", "/ui/login", "/ui/login.js",
		"/v1/dashboard/login", "/v1/dashboard/logout", "/v1/dashboard/logout-all":
		return path
	}
	// Per-job routes under one label each: IDs would grow the label set.
	if rest, ok := strings.CutPrefix(path, "/v1/jobs/"); ok {
		_, sub, ok := strings.Cut(rest, "/")
		switch {
		case !ok:
			return "/v1/jobs/{id}"
		case sub == "logs" || sub == "cancel" || sub == "events" || sub == "cost":
			return "/v1/jobs/{id}/" + sub
		}
	}
	if strings.HasPrefix(path, "/v1/dashboard/login/") {
		return "/v1/dashboard/login/{id}"
	}
	return "other"
}
