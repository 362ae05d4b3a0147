package node

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/node/api"
)

// Only the API's own address, loopback names and (when listening on every
// address) IP literals pass; any other name may be a rebound DNS name.
func TestHostAllowed(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:0", "0.0.0.0:0"} {
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		n := &Node{apiLn: ln}
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		any := listen == "0.0.0.0:0"
		for _, c := range []struct {
			host string
			want bool
		}{
			{"127.0.0.1:" + port, true},
			{"localhost:" + port, true},
			{"[::1]:" + port, true},
			{"127.0.0.1:1", false},
			{"127.0.0.1", false},
			{"attacker.example:" + port, false},
			{"localhost.attacker.example:" + port, false},
			{"192.168.1.20:" + port, any},
			{"", false},
		} {
			if got := n.hostAllowed(c.host); got != c.want {
				t.Errorf("listening on %s: host %q allowed %v, want %v", listen, c.host, got, c.want)
			}
		}
	}
}

// dashServer is the API's real chain of handlers (host check, token or
// session, the dashboard's routes) around two stand-in routes, with the
// sessions' clock in the test's hands.
type dashServer struct {
	t     *testing.T
	base  string
	token string
	now   time.Time
}

func newDashServer(t *testing.T) *dashServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dashServer{t: t, base: "http://" + ln.Addr().String(), token: strings.Repeat("k", 64), now: time.Unix(1_800_000_000, 0)}
	n := &Node{apiLn: ln, repo: &Repo{Token: s.token}, log: slog.New(slog.DiscardHandler)}
	mux, auth := http.NewServeMux(), http.NewServeMux()
	dash := n.dashboardRoutes(mux, auth)
	dash.now = func() time.Time { return s.now }
	ok := func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"ok": "yes"})
	}
	auth.HandleFunc("GET /v1/id", ok)
	auth.HandleFunc("POST /v1/jobs", ok)
	mux.Handle("/", n.requireToken(auth, dash))
	srv := httptest.NewUnstartedServer(n.checkHost(mux))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return s
}

func (s *dashServer) do(method, path string, header map[string]string) (int, string, *http.Response) {
	s.t.Helper()
	req, _ := http.NewRequest(method, s.base+path, nil)
	if strings.HasPrefix(path, "http") {
		req, _ = http.NewRequest(method, path, nil)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b), resp
}

// link makes a login link as `aixblock dashboard` does, with the token.
func (s *dashServer) link() string {
	s.t.Helper()
	code, body, _ := s.do("POST", "/v1/dashboard/login", map[string]string{"Authorization": "Bearer " + s.token})
	var l api.DashboardLogin
	if code != http.StatusOK || json.Unmarshal([]byte(body), &l) != nil || l.URL == "" {
		s.t.Fatalf("POST /v1/dashboard/login: %d %s", code, body)
	}
	return l.URL
}

// signIn follows a login link; it returns the session's cookie and key
// headers, or nil when the link was refused.
func (s *dashServer) signIn(link string) map[string]string {
	s.t.Helper()
	code, body, resp := s.do("GET", link, nil)
	var c *http.Cookie
	for _, x := range resp.Cookies() {
		if strings.HasPrefix(x.Name, "aixblock_session") && x.Value != "" {
			c = x
		}
	}
	m := regexp.MustCompile(`name="aixblock-key" content="([^"]+)"`).FindStringSubmatch(body)
	if code != http.StatusOK || c == nil || m == nil {
		if code == http.StatusOK || c != nil {
			s.t.Fatalf("sign in: %d, cookie %v, but no whole session:\n%s", code, c, body)
		}
		return nil
	}
	if c.Value == s.token || m[1] == s.token || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
		s.t.Fatalf("session cookie %+v / key %q: the token, or not HttpOnly and Strict", c, m[1])
	}
	return map[string]string{"Cookie": c.Name + "=" + c.Value, csrfHeader: m[1]}
}

func (s *dashServer) status(path string, h map[string]string) int {
	s.t.Helper()
	code, _, _ := s.do("GET", path, h)
	return code
}

// A login code lives 2 minutes and signs in once; a session ends after
// 12 h idle or 7 days in all; only the token makes codes or signs every
// session out; a session's cookie works only with its key.
func TestDashboardSessionLifetimes(t *testing.T) {
	s := newDashServer(t)

	t.Run("code used twice", func(t *testing.T) {
		l := s.link()
		if s.signIn(l) == nil {
			t.Fatal("a fresh link was refused")
		}
		if s.signIn(l) != nil {
			t.Fatal("a used link signed in again")
		}
	})
	t.Run("code expired", func(t *testing.T) {
		l := s.link()
		s.now = s.now.Add(loginCodeTTL)
		if s.signIn(l) != nil {
			t.Fatalf("a link %s old signed in", loginCodeTTL)
		}
		l = s.link()
		s.now = s.now.Add(loginCodeTTL - time.Second)
		if s.signIn(l) == nil {
			t.Fatal("a link just under 2 minutes old was refused")
		}
	})
	t.Run("idle and max age", func(t *testing.T) {
		h := s.signIn(s.link())
		for i := 0; i < 3; i++ { // used every 11 h: stays
			s.now = s.now.Add(sessionIdle - time.Hour)
			if c := s.status("/v1/id", h); c != http.StatusOK {
				t.Fatalf("a session used %s ago: %d", sessionIdle-time.Hour, c)
			}
		}
		s.now = s.now.Add(sessionIdle)
		if c := s.status("/v1/id", h); c != http.StatusUnauthorized {
			t.Fatalf("a session idle for %s: %d, want 401", sessionIdle, c)
		}
		h = s.signIn(s.link())
		for age := time.Duration(0); age < sessionMaxAge-sessionIdle; age += sessionIdle / 2 {
			s.now = s.now.Add(sessionIdle / 2)
			if c := s.status("/v1/id", h); c != http.StatusOK {
				t.Fatalf("a session %s old, in use: %d", age, c)
			}
		}
		s.now = s.now.Add(sessionIdle)
		if c := s.status("/v1/id", h); c != http.StatusUnauthorized {
			t.Fatalf("a session older than %s: %d, want 401", sessionMaxAge, c)
		}
	})
	t.Run("what a session may not do", func(t *testing.T) {
		h := s.signIn(s.link())
		for _, p := range []string{"/v1/dashboard/login", "/v1/dashboard/logout-all"} {
			if c, body, _ := s.do("POST", p, h); c != http.StatusForbidden {
				t.Errorf("a session: POST %s = %d, want 403: %s", p, c, body)
			}
		}
		cookieOnly := map[string]string{"Cookie": h["Cookie"]}
		for _, c := range []struct {
			method, path string
			h            map[string]string
			want         int
		}{
			{"GET", "/v1/id", cookieOnly, http.StatusForbidden},
			{"POST", "/v1/jobs", cookieOnly, http.StatusForbidden},
			{"POST", "/v1/jobs", map[string]string{"Cookie": h["Cookie"], csrfHeader: "1"}, http.StatusForbidden},
			{"GET", "/v1/id", map[string]string{"Authorization": "Bearer " + strings.TrimPrefix(h["Cookie"], "aixblock_session")}, http.StatusUnauthorized},
			{"GET", "/ui/", cookieOnly, http.StatusOK}, // static pages: nothing secret
			{"POST", "/v1/jobs", h, http.StatusOK},
			{"POST", "/v1/jobs", map[string]string{"Cookie": h["Cookie"], csrfHeader: h[csrfHeader], "Origin": "http://attacker.example"}, http.StatusForbidden},
		} {
			if got, body, _ := s.do(c.method, c.path, c.h); got != c.want {
				t.Errorf("%s %s with %v: %d, want %d: %s", c.method, c.path, c.h, got, c.want, body)
			}
		}
	})
	t.Run("logout-all", func(t *testing.T) {
		a, b := s.signIn(s.link()), s.signIn(s.link())
		waiting := s.link()
		code, body, _ := s.do("POST", "/v1/dashboard/logout-all", map[string]string{"Authorization": "Bearer " + s.token})
		var res api.LogoutResult
		if code != http.StatusOK || json.Unmarshal([]byte(body), &res) != nil || res.SignedOut < 2 {
			t.Fatalf("logout-all: %d %s", code, body)
		}
		for _, h := range []map[string]string{a, b} {
			if c := s.status("/v1/id", h); c != http.StatusUnauthorized {
				t.Errorf("a session after logout-all: %d, want 401", c)
			}
		}
		if s.signIn(waiting) != nil {
			t.Error("a login link made before logout-all signed in after it")
		}
	})
}

// Guessed cookies and keys never make a session, whatever their bytes.
func FuzzDashboardSession(f *testing.F) {
	d := newDashSessions("5901")
	id, key := d.newSession()
	f.Add(id, key[:len(key)-1])
	f.Add(id[:len(id)-1], key)
	f.Add("", "")
	f.Add(id+"\x00", key)
	f.Fuzz(func(t *testing.T, gid, gkey string) {
		if gid == id && gkey == key {
			return
		}
		if gid != id && d.check(gid, gkey, false) == nil {
			t.Fatalf("cookie %q opened a session", gid)
		}
		if d.check(gid, gkey, true) == nil {
			t.Fatalf("cookie %q with key %q passed", gid, gkey)
		}
	})
}

// fakeTestnet is the harness's view of a testnet, as the wiring hands it
// to the dashboard.
type fakeTestnet struct {
	nodes TestnetNodes
	err   error
	asked []string
}

func (f *fakeTestnet) Status(dir string) (TestnetNodes, error) {
	f.asked = append(f.asked, dir)
	return f.nodes, f.err
}

// The testnet view: the harness's nodes, this one marked, a live node's
// API read from its repo and a login offered where its token is readable;
// and why there is no view for a node outside a testnet.
func TestTestnetView(t *testing.T) {
	dir := t.TempDir()
	repo := func(name string, files map[string]string) string {
		r := filepath.Join(dir, name)
		if err := os.MkdirAll(r, 0o700); err != nil {
			t.Fatal(err)
		}
		for f, b := range files {
			if err := os.WriteFile(filepath.Join(r, f), []byte(b), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return r
	}
	token := strings.Repeat("t", 40)
	live := repo("node0", map[string]string{APIFile: "127.0.0.1:5901\n", TokenFile: token})
	noToken := repo("node1", map[string]string{APIFile: "127.0.0.1:5902\n"})
	down := repo("node2", map[string]string{APIFile: "127.0.0.1:5903\n", TokenFile: token})
	fake := &fakeTestnet{nodes: TestnetNodes{Dir: dir, Nodes: []TestnetNode{
		{TestnetMember: TestnetMember{Name: "node0", Repo: live, PeerID: "peer0", API: "stale", Up: true}},
		{TestnetMember: TestnetMember{Name: "node1", Repo: noToken, PeerID: "peer1", API: "stale", Up: true}},
		{TestnetMember: TestnetMember{Name: "node2", Repo: down, PeerID: "peer2", API: "stale"}},
	}}}
	if _, err := testnetView(fake, dir, "peer1"); err == nil || !strings.Contains(err.Error(), "no testnet.json beside its repo") || len(fake.asked) != 0 {
		t.Fatalf("without testnet.json: %v, harness asked %q", err, fake.asked)
	}
	if err := os.WriteFile(filepath.Join(dir, "testnet.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := testnetView(nil, dir, "peer1"); err == nil || !strings.Contains(err.Error(), "not part of a testnet") {
		t.Fatalf("without a view: %v", err)
	}
	got, err := testnetView(fake, dir, "peer1")
	if err != nil || !slices.Equal(fake.asked, []string{dir}) || got.Dir != dir {
		t.Fatalf("view %+v, %v; harness asked %q", got, err, fake.asked)
	}
	want := []string{
		`{"name":"node0","repo":"` + live + `","peer_id":"peer0","api":"127.0.0.1:5901","gpus":"","wallet":"","pid":0,"up":true,"self":false,"can_login":true}`,
		`{"name":"node1","repo":"` + noToken + `","peer_id":"peer1","api":"127.0.0.1:5902","gpus":"","wallet":"","pid":0,"up":true,"self":true}`,
		`{"name":"node2","repo":"` + down + `","peer_id":"peer2","api":"stale","gpus":"","wallet":"","pid":0,"up":false,"self":false}`,
	}
	for i, nd := range got.Nodes {
		if b, _ := json.Marshal(nd); i >= len(want) || string(b) != want[i] {
			t.Errorf("node %d: %s", i, b)
		}
	}
	if len(got.Nodes) != len(want) {
		t.Errorf("%d nodes, want %d", len(got.Nodes), len(want))
	}
	fake.err = errors.New("testnet.json is corrupt")
	if _, err := testnetView(fake, dir, "peer1"); !errors.Is(err, fake.err) {
		t.Errorf("the harness's error: %v", err)
	}
}
