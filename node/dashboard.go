package node

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/node/api"
	"github.com/prometheus/client_golang/prometheus"
)

// The dashboard is plain HTML, CSS and JavaScript embedded in the binary:
// nothing is fetched at run time and there is no build step.
//
//go:embed dashboard
var dashboardFiles embed.FS

// Signing in to the dashboard. The browser never holds the API token:
//
//   - `aixblock dashboard`, which holds the token, asks the daemon for a
//     login code: random, good for one use within loginCodeTTL (2 minutes).
//   - GET /ui/login?code= spends the code and starts a session: a random
//     session ID in an HttpOnly, SameSite=Strict cookie, and a random key
//     that the sign-in page stores in the origin's localStorage before it
//     moves on to /ui/ (so the address bar and history keep no live code).
//   - Every API request from the page carries both: the cookie, and the
//     key in the X-Aixblock-Request header. The static pages need only the
//     cookie (a navigation cannot send a header); they hold nothing secret.
//
// Why two halves: browsers do not isolate cookies by port, so any other
// listener on 127.0.0.1 that the browser visits (a job with host
// networking, another local program) receives the cookie. localStorage is
// per origin, port included, so no other port ever sees the key, and the
// cookie alone reaches no API. The key also does the work of a CSRF token:
// a cross-site page can neither read it nor send it without a CORS
// preflight, which this API never grants.
//
// Sessions live in the daemon's memory only. One idle for sessionIdle
// (12 h) or older than sessionMaxAge (7 days) ends; `aixblock dashboard
// --logout-all` (a token-only route) ends them all, as does a restart.
// Sessions cannot make login codes: only the token can.
//
// `dashboard --open` must not put anything secret in the browser's argv,
// which every local user can read in /proc for as long as the browser runs.
// A code in argv would be live until the browser spends it, and a local
// onlooker racing the browser could win. So the browser is given only the
// path of a file in a fresh 0700 directory, mode 0600, that redirects to
// the login link; the CLI waits until the code is spent (or dead) and
// removes the file.
const (
	loginCodeTTL  = 2 * time.Minute
	sessionIdle   = 12 * time.Hour
	sessionMaxAge = 7 * 24 * time.Hour
	// maxLoginCodes bounds the codes waiting to be used.
	maxLoginCodes = 64
)

// csrfHeader carries the session's key on every API request the dashboard
// makes on its cookie.
const csrfHeader = "X-Aixblock-Request"

// dashSessions holds the dashboard's login codes and sessions. Secrets are
// kept only as SHA-256 hashes, which are also the map keys: a lookup's
// timing says nothing about a secret.
type dashSessions struct {
	mu  sync.Mutex
	now func() time.Time // the clock, for tests
	// cookie is the session cookie's name: one per API port, so that two
	// daemons on one machine keep their sessions apart.
	cookie string
	// idle and maxAge end a session (defaults sessionIdle, sessionMaxAge;
	// a config key can set them here).
	idle, maxAge time.Duration
	codes        map[[32]byte]*loginCode
	sessions     map[[32]byte]*dashSession
}

type loginCode struct {
	id      string // a handle that names the code without revealing it
	expires time.Time
	used    bool
}

type dashSession struct {
	key           [32]byte // hash of the key the page sends in csrfHeader
	created, used time.Time
}

func newDashSessions(port string) *dashSessions {
	return &dashSessions{now: time.Now, cookie: "aixblock_session_" + port, idle: sessionIdle, maxAge: sessionMaxAge,
		codes: map[[32]byte]*loginCode{}, sessions: map[[32]byte]*dashSession{}}
}

func randomSecret() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashSecret(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// newCode makes a login code; id names it for codeState.
func (d *dashSessions) newCode() (code, id string, expires time.Time, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	for h, c := range d.codes {
		if !now.Before(c.expires) {
			delete(d.codes, h)
		}
	}
	if len(d.codes) >= maxLoginCodes {
		return "", "", time.Time{}, fmt.Errorf("%d login codes are waiting to be used: try again in %s", len(d.codes), loginCodeTTL)
	}
	code = randomSecret()
	h := hashSecret(code)
	id = hex.EncodeToString(h[:8])
	expires = now.Add(loginCodeTTL)
	d.codes[h] = &loginCode{id: id, expires: expires}
	return code, id, expires, nil
}

// useCode spends a code: true once, for a code that is live.
func (d *dashSessions) useCode(code string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, ok := d.codes[hashSecret(code)]
	if !ok || c.used || !d.now().Before(c.expires) {
		return false
	}
	c.used = true
	return true
}

// codeState says whether the code named id was used or has died.
func (d *dashSessions) codeState(id string) (api.LoginCodeState, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.codes {
		if c.id == id {
			return api.LoginCodeState{Used: c.used, Expired: !c.used && !d.now().Before(c.expires)}, true
		}
	}
	return api.LoginCodeState{}, false
}

func (d *dashSessions) newSession() (id, key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	for h, s := range d.sessions {
		if d.dead(s, now) {
			delete(d.sessions, h)
		}
	}
	id, key = randomSecret(), randomSecret()
	d.sessions[hashSecret(id)] = &dashSession{key: hashSecret(key), created: now, used: now}
	return id, key
}

func (d *dashSessions) dead(s *dashSession, now time.Time) bool {
	return now.Sub(s.used) >= d.idle || now.Sub(s.created) >= d.maxAge
}

var (
	errNoSession = errors.New("the dashboard session has expired or was signed out: run `aixblock dashboard` for a new login link")
	errNoKey     = errors.New("a request on the dashboard's session cookie needs the session's key in the " + csrfHeader + " header (the dashboard's pages send it)")
)

// check finds the session of the cookie's ID; with needKey, the request
// must also carry the session's key.
func (d *dashSessions) check(id, key string, needKey bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	h := hashSecret(id)
	s, ok := d.sessions[h]
	now := d.now()
	if !ok || d.dead(s, now) {
		delete(d.sessions, h)
		return errNoSession
	}
	if needKey {
		k := hashSecret(key)
		if key == "" || subtle.ConstantTimeCompare(k[:], s.key[:]) != 1 {
			return errNoKey
		}
	}
	s.used = now
	return nil
}

func (d *dashSessions) logout(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.sessions, hashSecret(id))
}

// live counts the sessions that have not ended.
func (d *dashSessions) live() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	k, now := 0, d.now()
	for _, s := range d.sessions {
		if !d.dead(s, now) {
			k++
		}
	}
	return k
}

// logoutAll ends every session and kills every waiting code; it returns
// how many sessions were live.
func (d *dashSessions) logoutAll() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	now := d.now()
	for _, s := range d.sessions {
		if !d.dead(s, now) {
			n++
		}
	}
	clear(d.sessions)
	clear(d.codes)
	return n
}

// authenticate checks the request's session cookie, if it has one: ok when
// the session is live (and, but for static pages, the key is right);
// answered when it carried a cookie of ours, in which case a refusal has
// been written.
func (d *dashSessions) authenticate(w http.ResponseWriter, r *http.Request) (ok, answered bool) {
	c, err := r.Cookie(d.cookie)
	if err != nil || c.Value == "" {
		return false, false
	}
	static := (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.HasPrefix(r.URL.Path, "/ui/")
	if err := d.check(c.Value, r.Header.Get(csrfHeader), !static); err != nil {
		code := http.StatusForbidden
		if errors.Is(err, errNoSession) {
			code = http.StatusUnauthorized
			http.SetCookie(w, &http.Cookie{Name: d.cookie, Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
		}
		if strings.HasPrefix(r.URL.Path, "/ui/") {
			loginPage(w, code, "Your session has expired or was signed out.")
		} else {
			writeJSON(w, code, apiError(err.Error()))
		}
		return false, true
	}
	return true, true
}

// viaToken: the request carries the API token itself (not a session).
func (n *Node) viaToken(r *http.Request) bool {
	return subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+n.repo.Token)) == 1
}

// dashboardRoutes adds the dashboard's pages and routes; the sessions it
// returns are what requireToken accepts besides the token.
func (n *Node) dashboardRoutes(open, auth *http.ServeMux) *dashSessions {
	_, port, _ := net.SplitHostPort(n.apiLn.Addr().String())
	dash := newDashSessions(port)
	n.countSessions(dash)
	signInRoutes(open, dash)
	n.loginRoutes(auth, dash)
	pageRoutes(open, auth)
	n.dashDataRoutes(auth)
	n.testnetRoutes(auth)
	return dash
}

// countSessions reports dash's live sessions among the node's metrics.
func (n *Node) countSessions(dash *dashSessions) {
	if n.metrics != nil {
		// Registered here, where the sessions are made; a second handler
		// (tests) keeps the first one's gauge.
		_ = n.metrics.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "aixblock_dashboard_sessions", Help: "Live dashboard sessions.",
		}, func() float64 { return float64(dash.live()) }))
	}
}

// signInRoutes are the sign-in page, which spends a login code and starts
// a session, and its script; they need neither token nor session.
func signInRoutes(open *http.ServeMux, dash *dashSessions) {
	open.HandleFunc("GET /ui/login", func(w http.ResponseWriter, r *http.Request) {
		code := r.URL.Query().Get("code")
		if code == "" || !dash.useCode(code) {
			msg := "That login link was used already or is more than 2 minutes old: each link signs in once."
			if r.URL.Query().Has("token") {
				msg = "Login links no longer carry the API token."
			}
			loginPage(w, http.StatusUnauthorized, msg)
			return
		}
		id, key := dash.newSession()
		http.SetCookie(w, &http.Cookie{Name: dash.cookie, Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		// Not a redirect: the page stores the key, then moves on itself,
		// a same-origin navigation on which the Strict cookie is sent
		// (after a redirect from a cross-site start, such as --open's
		// file, it would not be).
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		fmt.Fprintf(w, `<!doctype html><html lang="en"><meta charset="utf-8"><meta name="aixblock-key" content="%s">
<title>AIxBlock: signing in</title><script src="/ui/login.js"></script>
<main><p>Signing in… <a href="/ui/">Open the dashboard</a></p></main></html>`, key)
	})
	open.HandleFunc("GET /ui/login.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, dashboardFiles, "dashboard/login.js")
	})
}

// loginRoutes make login codes (with the token only) and end sessions.
func (n *Node) loginRoutes(auth *http.ServeMux, dash *dashSessions) {
	auth.HandleFunc("POST /v1/dashboard/login", func(w http.ResponseWriter, r *http.Request) {
		if !n.viaToken(r) {
			writeJSON(w, http.StatusForbidden, apiError("login links are made with the API token (aixblock dashboard), not by a dashboard session"))
			return
		}
		code, id, exp, err := dash.newCode()
		if err != nil {
			writeJSON(w, http.StatusTooManyRequests, apiError(err.Error()))
			return
		}
		writeJSON(w, http.StatusOK, api.DashboardLogin{URL: "http://" + r.Host + "/ui/login?code=" + code, CodeID: id, ExpiresAt: exp})
	})
	auth.HandleFunc("GET /v1/dashboard/login/{id}", func(w http.ResponseWriter, r *http.Request) {
		st, ok := dash.codeState(r.PathValue("id"))
		if !ok {
			writeJSON(w, http.StatusNotFound, apiError(fmt.Sprintf("no login code %q (codes are forgotten %s after they are made, and by --logout-all)", r.PathValue("id"), loginCodeTTL)))
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	auth.HandleFunc("POST /v1/dashboard/logout-all", func(w http.ResponseWriter, r *http.Request) {
		if !n.viaToken(r) {
			writeJSON(w, http.StatusForbidden, apiError("signing every session out needs the API token (aixblock dashboard --logout-all)"))
			return
		}
		k := dash.logoutAll()
		n.log.Info("dashboard: every session signed out", "sessions", k)
		writeJSON(w, http.StatusOK, api.LogoutResult{SignedOut: k})
	})
	auth.HandleFunc("POST /v1/dashboard/logout", func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(dash.cookie)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, apiError("no dashboard session to sign out (this route is the dashboard's own; use --logout-all with the token)"))
			return
		}
		dash.logout(c.Value)
		http.SetCookie(w, &http.Cookie{Name: dash.cookie, Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
		writeJSON(w, http.StatusOK, api.LogoutResult{SignedOut: 1})
	})
}

// pageRoutes serve the dashboard's static pages.
func pageRoutes(open, auth *http.ServeMux) {
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
}

// dashDataRoutes are the API routes only the dashboard's pages use.
func (n *Node) dashDataRoutes(auth *http.ServeMux) {
	auth.HandleFunc("GET /v1/jobs/{id}/events", n.handleJobEvents)
	auth.HandleFunc("GET /v1/wallet/earnings", func(w http.ResponseWriter, r *http.Request) {
		e, err := n.earnings(r.Context())
		reply(w, e, err)
	})
	auth.HandleFunc("GET /v1/jobs/{id}/cost", func(w http.ResponseWriter, r *http.Request) {
		c, err := n.lease.Cost(r.Context(), r.PathValue("id"))
		if err != nil {
			jobReply(w, nil, err)
			return
		}
		writeJSON(w, http.StatusOK, c)
	})
	auth.HandleFunc("GET /v1/wallet/spending", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.lease.Spending(r.Context()))
	})
}

// testnetRoutes are the testnet view's: its nodes, and a login link to
// another of them.
func (n *Node) testnetRoutes(auth *http.ServeMux) {
	auth.HandleFunc("GET /v1/testnet", func(w http.ResponseWriter, r *http.Request) {
		t, err := n.testnetNodes()
		if err != nil {
			writeJSON(w, http.StatusNotFound, apiError(err.Error()))
			return
		}
		writeJSON(w, http.StatusOK, t)
	})
	auth.HandleFunc("POST /v1/testnet/login", func(w http.ResponseWriter, r *http.Request) {
		var req TestnetLoginRequest
		if !readJSON(w, r, &req) {
			return
		}
		l, err := n.testnetLogin(r.Context(), req.Name)
		if err != nil {
			writeJSON(w, http.StatusNotFound, apiError(err.Error()))
			return
		}
		writeJSON(w, http.StatusOK, l)
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
			writeJSON(w, http.StatusMisdirectedRequest, apiError(fmt.Sprintf("host %q refused: this API answers only to %s", r.Host, n.apiLn.Addr())))
			return
		}
		if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
			writeJSON(w, http.StatusForbidden, apiError(fmt.Sprintf("cross-origin request from %q refused", o)))
			return
		}
		// The sign-in page is the one exception: --open's file starts it
		// from file://, which the browser calls cross-site. It changes
		// nothing but a live code into a session, and a stranger has no
		// live code.
		signIn := r.Method == http.MethodGet && (r.URL.Path == "/ui/login" || r.URL.Path == "/ui/login.js")
		if r.Header.Get("Sec-Fetch-Site") == "cross-site" && !signIn {
			writeJSON(w, http.StatusForbidden, apiError("cross-site request refused"))
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
	j, err := n.lease.Get(ctx, id)
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
	go func() { pw.CloseWithError(n.lease.Logs(ctx, id, true, pw)) }()
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
			j, err := n.lease.Get(ctx, id)
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

func (n *Node) earnings(ctx context.Context) (api.EarningsInfo, error) {
	out := api.EarningsInfo{Address: n.wallet.Address().Hex(), Earnings: []api.Earning{}}
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
		out.Earnings = append(out.Earnings, api.Earning{Time: e.Time, Channel: e.Channel.Hex(), Token: ch.Token.Hex(),
			Symbol: sym, Decimals: dec, Amount: e.Amount, Units: chain.FormatUnits(e.Amount.Big(), dec), Tx: e.Tx.Hex()})
	}
	return out, nil
}

// Testnet is what the dashboard's testnet view needs of the local
// testnet harness (package testnet, a test harness node does not
// depend on): the daemon's wiring hands it in with SetTestnet.
type Testnet interface {
	// Status is the testnet kept in dir (`aixblock testnet up --dir`):
	// its directory and its nodes, each with whether its process runs.
	// Self and CanLogin are left to the dashboard.
	Status(dir string) (TestnetNodes, error)
}

// SetTestnet gives the dashboard its testnet view; call it before Run.
// Without one, the view says this node is not part of a testnet.
func (n *Node) SetTestnet(t Testnet) { n.testnet = t }

// TestnetMember is one node of a testnet as the harness records it: the
// fields of testnet.Node, which the wiring converts.
type TestnetMember struct {
	Name   string `json:"name"`
	Repo   string `json:"repo"`
	PeerID string `json:"peer_id"`
	API    string `json:"api"`
	GPUs   string `json:"gpus"`
	Wallet string `json:"wallet"`
	PID    int    `json:"pid"`
	Up     bool   `json:"up"`
}

// TestnetNode is one node of the local testnet this node belongs to.
type TestnetNode struct {
	TestnetMember
	Self bool `json:"self"`
	// CanLogin: POST /v1/testnet/login makes a login link for that node
	// (with its token, read from its repo: the testnet's repos all belong
	// to the user running it).
	CanLogin bool `json:"can_login,omitempty"`
}

// TestnetLoginRequest is POST /v1/testnet/login.
type TestnetLoginRequest struct {
	Name string `json:"name"`
}

// TestnetNodes is GET /v1/testnet.
type TestnetNodes struct {
	Dir   string        `json:"dir"`
	Nodes []TestnetNode `json:"nodes"`
}

// testnetNodes reads the testnet.json beside this node's repo, which
// `aixblock testnet up` writes; a node it did not start has none.
func (n *Node) testnetNodes() (TestnetNodes, error) {
	return testnetView(n.testnet, filepath.Dir(n.repo.Dir), n.p2p.Host.ID().String())
}

// testnetView is the testnet that t keeps in dir, as the node whose peer
// ID is self shows it.
func testnetView(t Testnet, dir, self string) (TestnetNodes, error) {
	if _, err := os.Stat(filepath.Join(dir, "testnet.json")); err != nil {
		return TestnetNodes{}, fmt.Errorf("this node is not part of a testnet (no testnet.json beside its repo)")
	}
	if t == nil {
		return TestnetNodes{}, fmt.Errorf("this node is not part of a testnet (its daemon has no testnet view)")
	}
	info, err := t.Status(dir)
	if err != nil {
		return TestnetNodes{}, err
	}
	out := TestnetNodes{Dir: info.Dir, Nodes: []TestnetNode{}}
	for _, nd := range info.Nodes {
		nd.Self = nd.PeerID == self
		// A live node's api file is current (testnet.json's may predate a
		// restart); a stopped node gets no link.
		if b, err := os.ReadFile(filepath.Join(nd.Repo, APIFile)); err == nil && nd.Up {
			nd.API = strings.TrimSpace(string(b))
			_, err := readToken(nd.Repo)
			nd.CanLogin = err == nil
		}
		out.Nodes = append(out.Nodes, nd)
	}
	return out, nil
}

// testnetLogin makes a one-time login link for the testnet node called
// name, through that node's API with its token.
func (n *Node) testnetLogin(ctx context.Context, name string) (api.DashboardLogin, error) {
	t, err := n.testnetNodes()
	if err != nil {
		return api.DashboardLogin{}, err
	}
	var names []string
	for _, nd := range t.Nodes {
		if nd.Name != name {
			names = append(names, nd.Name)
			continue
		}
		if !nd.Up {
			return api.DashboardLogin{}, fmt.Errorf("testnet node %s is not running", name)
		}
		c, err := NewClient(nd.Repo)
		if err != nil {
			return api.DashboardLogin{}, fmt.Errorf("testnet node %s: %w", name, err)
		}
		return c.DashboardLogin(ctx)
	}
	return api.DashboardLogin{}, fmt.Errorf("name: no testnet node %q (nodes: %s)", name, strings.Join(names, ", "))
}
