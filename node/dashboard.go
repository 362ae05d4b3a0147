package node

import (
	"bufio"
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/testnet"
)

// The dashboard is plain HTML, CSS and JavaScript embedded in the binary:
// nothing is fetched at run time and there is no build step.
//
//go:embed dashboard
var dashboardFiles embed.FS

// sessionCookie carries the API token for the dashboard's own requests
// (EventSource cannot send an Authorization header). It is HttpOnly and
// SameSite=Strict, so other sites can neither read nor send it.
const sessionCookie = "aixblock_session"

// csrfHeader must accompany every state-changing request authenticated by
// the cookie: a cross-origin page cannot set it without a CORS preflight,
// which this API never grants.
const csrfHeader = "X-Aixblock-Request"

// LoginURL is the URL that opens the dashboard: it trades the token for a
// session cookie, then leaves the token out of the address bar.
func LoginURL(apiBase, token string) string {
	return strings.TrimRight(apiBase, "/") + "/ui/login?token=" + token
}

func (n *Node) dashboardRoutes(open, auth *http.ServeMux) {
	open.HandleFunc("GET /ui/login", func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("token")), []byte(n.repo.Token)) != 1 {
			loginPage(w, http.StatusUnauthorized, "That login link's token is wrong or out of date.")
			return
		}
		http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: n.repo.Token, Path: "/",
			HttpOnly: true, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
	})
	open.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
	})
	static, _ := fs.Sub(dashboardFiles, "dashboard")
	files := http.StripPrefix("/ui/", http.FileServer(http.FS(static)))
	auth.Handle("GET /ui/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}))
	auth.HandleFunc("GET /v1/jobs/{id}/events", n.handleJobEvents)
	auth.HandleFunc("GET /v1/wallet/earnings", func(w http.ResponseWriter, r *http.Request) {
		e, err := n.earnings(r.Context())
		reply(w, e, err)
	})
	auth.HandleFunc("GET /v1/testnet", func(w http.ResponseWriter, r *http.Request) {
		t, err := n.testnetNodes()
		if err != nil {
			writeJSON(w, http.StatusNotFound, apiError{err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, t)
	})
}

func loginPage(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.WriteHeader(code)
	fmt.Fprintf(w, `<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>AIxBlock: sign in</title><style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#111}code{background:#eee;padding:.1rem .3rem}</style>
<main><h1>AIxBlock dashboard</h1><p>%s</p><p>Run <code>aixblock dashboard</code> on this machine: it prints a login link (or opens it with <code>--open</code>).</p></main></html>`, msg)
}

// checkHost refuses requests addressed to any name but the API's own
// address (DNS rebinding: a foreign site's name pointed at 127.0.0.1 must
// not reach the API) and cross-origin browser requests.
func (n *Node) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !n.hostAllowed(r.Host) {
			writeJSON(w, http.StatusMisdirectedRequest, apiError{fmt.Sprintf("host %q refused: this API answers only to %s", r.Host, n.apiLn.Addr())})
			return
		}
		if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
			writeJSON(w, http.StatusForbidden, apiError{fmt.Sprintf("cross-origin request from %q refused", o)})
			return
		}
		if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
			writeJSON(w, http.StatusForbidden, apiError{"cross-site request refused"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (n *Node) hostAllowed(host string) bool {
	h, p, err := net.SplitHostPort(host)
	if err != nil {
		return false
	}
	lh, lp, _ := net.SplitHostPort(n.apiLn.Addr().String())
	if p != lp {
		return false
	}
	if h == "localhost" || h == lh {
		return true
	}
	ip := net.ParseIP(h)
	if ip == nil {
		return false // a name other than localhost: maybe rebound
	}
	if ip.IsLoopback() {
		return true
	}
	// Listening on every address: any IP literal names this host.
	lip := net.ParseIP(lh)
	return lip != nil && lip.IsUnspecified()
}

// handleJobEvents streams a job as server-sent events: "state" (the job's
// JSON, on every change), "log" (one line of output each), and "end" once
// the job has ended and its logs are drained.
func (n *Node) handleJobEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ctx := r.Context()
	j, err := n.lookupJob(ctx, id)
	if err != nil {
		jobReply(w, nil, err)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	send := func(event, data string) bool {
		for i, line := range strings.Split(data, "\n") {
			if i == 0 {
				fmt.Fprintf(w, "event: %s\n", event)
			}
			fmt.Fprintf(w, "data: %s\n", line)
		}
		fmt.Fprint(w, "\n")
		return rc.Flush() == nil
	}
	pr, pw := io.Pipe()
	defer pr.Close() // a client gone mid-stream unblocks the log writer
	go func() { pw.CloseWithError(n.jobLogs(ctx, id, true, pw)) }()
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	last, _ := json.Marshal(j)
	if !send("state", string(last)) {
		return
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	logsDone := false
	for {
		select {
		case <-ctx.Done():
			return
		case l, ok := <-lines:
			if !ok {
				logsDone, lines = true, nil
				continue
			}
			if !send("log", l) {
				return
			}
		case <-tick.C:
			j, err := n.lookupJob(ctx, id)
			if err != nil {
				continue
			}
			if b, _ := json.Marshal(j); string(b) != string(last) {
				last = b
				if !send("state", string(b)) {
					return
				}
			}
			if logsDone && j.State.Terminal() {
				send("end", string(j.State))
				return
			}
		}
	}
}

// Earning is one payment into the wallet, for the earnings chart.
type Earning struct {
	Time     time.Time     `json:"time"`
	Channel  string        `json:"channel"`
	Token    string        `json:"token"`
	Symbol   string        `json:"symbol"`
	Decimals uint8         `json:"decimals"`
	Amount   *chain.Amount `json:"amount"`
	Units    string        `json:"amount_units"`
	Tx       string        `json:"tx"`
}

// EarningsInfo is GET /v1/wallet/earnings.
type EarningsInfo struct {
	Address  string    `json:"address"`
	Earnings []Earning `json:"earnings"`
}

func (n *Node) earnings(ctx context.Context) (EarningsInfo, error) {
	out := EarningsInfo{Address: n.wallet.Address().Hex(), Earnings: []Earning{}}
	red, err := n.chain.Redemptions(ctx)
	if err != nil {
		return out, err
	}
	chs, err := n.chain.Channels(ctx)
	if err != nil {
		return out, err
	}
	byID := map[string]chain.Channel{}
	for _, c := range chs {
		byID[c.ID.Hex()] = c
	}
	for _, e := range red {
		ch := byID[e.Channel.Hex()]
		sym, dec, _ := n.chain.TokenInfo(ctx, ch.Token)
		out.Earnings = append(out.Earnings, Earning{Time: e.Time, Channel: e.Channel.Hex(), Token: ch.Token.Hex(),
			Symbol: sym, Decimals: dec, Amount: e.Amount, Units: chain.FormatUnits(e.Amount.Big(), dec), Tx: e.Tx.Hex()})
	}
	return out, nil
}

// TestnetNode is one node of the local testnet this node belongs to.
type TestnetNode struct {
	testnet.Node
	Self bool `json:"self"`
	// Login opens that node's dashboard (its token, read from its repo:
	// the testnet's repos all belong to the user running it).
	Login string `json:"login,omitempty"`
}

// TestnetNodes is GET /v1/testnet.
type TestnetNodes struct {
	Dir   string        `json:"dir"`
	Nodes []TestnetNode `json:"nodes"`
}

// testnetNodes reads the testnet.json beside this node's repo, which
// `aixblock testnet up` writes; a node it did not start has none.
func (n *Node) testnetNodes() (TestnetNodes, error) {
	dir := filepath.Dir(n.repo.Dir)
	if _, err := os.Stat(filepath.Join(dir, "testnet.json")); err != nil {
		return TestnetNodes{}, fmt.Errorf("this node is not part of a testnet (no testnet.json beside its repo)")
	}
	info, err := testnet.Status(dir)
	if err != nil {
		return TestnetNodes{}, err
	}
	out := TestnetNodes{Dir: info.Dir, Nodes: []TestnetNode{}}
	for _, nd := range info.Nodes {
		t := TestnetNode{Node: nd, Self: nd.PeerID == n.p2p.Host.ID().String()}
		// A live node's api file is current (testnet.json's may predate a
		// restart); a stopped node gets no link.
		if b, err := os.ReadFile(filepath.Join(nd.Repo, APIFile)); err == nil && nd.Up {
			t.API = strings.TrimSpace(string(b))
			if tok, err := readToken(nd.Repo); err == nil {
				t.Login = LoginURL(t.API, tok)
			}
		}
		out.Nodes = append(out.Nodes, t)
	}
	return out, nil
}
