package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser starts headless Chromium (Debian's chromium, which .ci/run
// installs) and returns a context that drives one tab.
func browser(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, b := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(b); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("AIXBLOCK_REQUIRE_BROWSER") == "1" {
			t.Fatal("chromium required (AIXBLOCK_REQUIRE_BROWSER=1) but not found")
		}
		t.Skip("no chromium here; .ci/run installs it")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 900),
		chromedp.Flag("proxy-server", "direct://"), chromedp.Flag("proxy-bypass-list", "*"))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 4*time.Minute)
	t.Cleanup(cancel3)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// screenshot saves the whole page as a test artifact (go test -artifacts
// keeps them; make test puts them under artifacts/).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	chromedp.Do(ctx, chromedp.Sleep(150*time.Millisecond))
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(t.ArtifactDir(), name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", p)
}

// textOf waits until the element's text satisfies ok (or the timeout).
func textOf(t *testing.T, ctx context.Context, sel string, timeout time.Duration, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var s string
	for {
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		var err error
		s, err = chromedp.Run(tctx, chromedp.Text(chromedp.CSS(sel)))
		cancel()
		if err == nil && ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
			t.Fatalf("%s: %q after %s (err %v); page:\n%s", sel, s, timeout, err, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func eq(want string) func(string) bool {
	return func(s string) bool { return strings.TrimSpace(s) == want }
}

// The dashboard in a real browser against a testnet: GPUs and an injected
// fault, a job submitted from the form with its logs arriving live, the
// wallet's figures against the CLI's, and the security checks.
func TestDashboard(t *testing.T) {
	jobDocker(t)
	dir := testnetUp(t, "--nodes", "2")
	req, prov := filepath.Join(dir, "node0"), filepath.Join(dir, "node1")
	ctx := browser(t)

	// Provider: the GPU page lists the mock's 8 GPUs, then shows a fault.
	login := strings.TrimSpace(mustRun(t, prov, "dashboard"))
	if err := chromedp.Do(ctx, chromedp.Navigate(login), chromedp.WaitVisible(chromedp.CSS("#node-peer-id"))); err != nil {
		t.Fatal(err)
	}
	var id idInfo
	runJSON(t, prov, &id, "id")
	textOf(t, ctx, "#node-peer-id", 10*time.Second, eq(id.PeerID))
	screenshot(t, ctx, "node")
	chromedp.Do(ctx, chromedp.Navigate(strings.Split(login, "/ui/")[0]+"/ui/#/gpus"))
	textOf(t, ctx, "#gpus-healthy", 10*time.Second, eq("8"))
	screenshot(t, ctx, "gpus")
	injected := time.Now()
	mustRun(t, prov, "gpu", "inject", "--gpu", "3", "--xid", "79")
	textOf(t, ctx, "#gpus-unhealthy", 10*time.Second, eq("1"))
	t.Logf("fault on the GPU page %s after the injection", time.Since(injected).Round(time.Millisecond))
	textOf(t, ctx, "main table", 5*time.Second, func(s string) bool { return strings.Contains(s, "79") })
	screenshot(t, ctx, "gpus-fault")
	chromedp.Do(ctx, chromedp.Navigate(strings.Split(login, "/ui/")[0]+"/ui/#/testnet"))
	textOf(t, ctx, "main table", 10*time.Second, func(s string) bool { return strings.Contains(s, "node1 (this node)") })
	screenshot(t, ctx, "testnet")

	// Requester: a bad form gets the CLI's error, a good one runs.
	login = strings.TrimSpace(mustRun(t, req, "dashboard"))
	base := strings.Split(login, "/ui/")[0]
	submit := func(image, command, gpus, price string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/#/submit"), chromedp.WaitVisible(chromedp.CSS("#image")),
			chromedp.SetValue(chromedp.CSS("#image"), image), chromedp.SetValue(chromedp.CSS("#command"), command),
			chromedp.SetValue(chromedp.CSS("#gpus"), gpus), chromedp.SetValue(chromedp.CSS("#max_price"), price),
			chromedp.Click(chromedp.CSS("form button[type=submit]"))); err != nil {
			t.Fatal(err)
		}
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(login)); err != nil {
		t.Fatal(err)
	}
	submit(jobImage, "sleep 1s", "-1", "5")
	cli := run(t, req, "job", "run", "-d", "--gpus", "-1", "--max-price", "5", jobImage, "--", "sleep", "1s")
	cliErr := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(cli.stderr), "aixblock:"))
	if cli.code == 0 || cliErr == "" {
		t.Fatalf("the CLI accepted gpus -1: %+v", cli)
	}
	pageErr := textOf(t, ctx, "#submit-result .error", 10*time.Second, func(s string) bool { return s != "" })
	if !strings.Contains(cliErr, pageErr) && !strings.Contains(pageErr, cliErr) {
		t.Fatalf("form error %q, CLI error %q", pageErr, cliErr)
	}
	screenshot(t, ctx, "submit-error")
	// Every form field has its label; the page has one top heading.
	unlabelled, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("input")]
		.filter(i => !document.querySelector('label[for="' + i.id + '"]')).map(i => i.name || "?")
		.concat(document.querySelectorAll("h1").length === 1 ? [] : ["h1 count"])`))
	if err != nil || len(unlabelled) > 0 {
		t.Fatalf("submit form: unlabelled %v (err %v)", unlabelled, err)
	}

	submit(jobImage, "sleep 3s", "1", "5")
	textOf(t, ctx, "#job-state", 30*time.Second, func(s string) bool { return s != "" })
	// Live: the first line shows while the job still runs.
	textOf(t, ctx, "#job-logs", 30*time.Second, func(s string) bool { return strings.Contains(s, "sleeping 3s") })
	st, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#job-state")))
	if st == "completed" {
		t.Fatalf("the first log line came only after the job completed")
	}
	screenshot(t, ctx, "job-running")
	textOf(t, ctx, "#job-state", time.Minute, eq("completed"))
	textOf(t, ctx, "#job-logs", 10*time.Second, func(s string) bool { return strings.Contains(s, "woke up") })
	textOf(t, ctx, "#job-result", 10*time.Second, func(s string) bool { return strings.HasPrefix(s, "bafy") })
	screenshot(t, ctx, "job")
	chromedp.Do(ctx, chromedp.Navigate(base+"/ui/#/jobs"))
	textOf(t, ctx, "main table", 10*time.Second, func(s string) bool { return strings.Contains(s, "completed") })
	screenshot(t, ctx, "jobs")
	chromedp.Do(ctx, chromedp.Navigate(base+"/ui/#/market"))
	textOf(t, ctx, "main", 15*time.Second, func(s string) bool { return strings.Contains(s, "dgxh100") || strings.Contains(s, "nvidia-h100") })
	screenshot(t, ctx, "market")

	// Wallet: the page's figures are the CLI's, channel by channel.
	chromedp.Do(ctx, chromedp.Navigate(base+"/ui/#/wallet"))
	deadline := time.Now().Add(30 * time.Second)
	for {
		var cli struct {
			Channels []struct {
				ID           string `json:"channel"`
				Deposited    string `json:"deposited"`
				Vouched      string `json:"vouched"`
				Redeemed     string `json:"redeemed"`
				Withdrawable string `json:"withdrawable"`
			} `json:"channels"`
		}
		runJSON(t, req, &cli, "wallet", "channels")
		page, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("main tbody tr")].map(tr =>
			[tr.querySelector("[data-channel]").dataset.channel, ...[...tr.querySelectorAll("[data-base]")].map(e => e.dataset.base)].join(" "))`))
		var want []string
		for _, c := range cli.Channels {
			want = append(want, strings.Join([]string{c.ID, c.Deposited, c.Vouched, c.Redeemed, c.Withdrawable}, " "))
		}
		if err == nil && len(want) > 0 && fmt.Sprint(page) == fmt.Sprint(want) {
			t.Logf("wallet page = wallet channels --json: %v", want)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("wallet page %v (err %v), CLI %v", page, err, want)
		}
		time.Sleep(500 * time.Millisecond)
	}
	screenshot(t, ctx, "wallet")
	// At phone width nothing spills sideways.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844), chromedp.Navigate(base+"/ui/#/jobs"), chromedp.Sleep(time.Second)); err != nil {
		t.Fatal(err)
	}
	overflow, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`))
	if err != nil {
		t.Fatal(err)
	}
	screenshot(t, ctx, "jobs-phone")
	if overflow {
		t.Fatal("the jobs page is wider than a phone's screen")
	}

	// Security: no token, a wrong token, a foreign Host, a foreign Origin.
	for _, c := range []struct {
		name, path, host, origin string
		want                     int
	}{
		{"no token", "/ui/", "", "", http.StatusUnauthorized},
		{"no token on the API", "/v1/wallet/channels", "", "", http.StatusUnauthorized},
		{"wrong login token", "/ui/login?token=nope", "", "", http.StatusUnauthorized},
		{"rebound host name", "/healthz", "attacker.example:" + strings.Split(base, ":")[2], "", http.StatusMisdirectedRequest},
		{"foreign host", "/ui/", "attacker.example", "", http.StatusMisdirectedRequest},
	} {
		r, _ := http.NewRequest("GET", base+c.path, nil)
		if c.host != "" {
			r.Host = c.host
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d, want %d", c.name, resp.StatusCode, c.want)
		}
	}
	tok, _ := os.ReadFile(filepath.Join(req, "api.token"))
	for _, c := range []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"cookie without the dashboard header", map[string]string{"Cookie": "aixblock_session=" + strings.TrimSpace(string(tok))}, http.StatusForbidden},
		{"foreign origin", map[string]string{"Authorization": "Bearer " + strings.TrimSpace(string(tok)), "Origin": "http://attacker.example"}, http.StatusForbidden},
	} {
		r, _ := http.NewRequest("POST", base+"/v1/jobs", strings.NewReader(`{"spec_yaml":"x"}`))
		for k, v := range c.header {
			r.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Error string }
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d %q, want %d", c.name, resp.StatusCode, e.Error, c.want)
		}
	}
}
