package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
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
	var s string
	var err error
	p2ptest.WaitFor(t, timeout, func() bool {
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		s, err = chromedp.Run(tctx, chromedp.Text(chromedp.CSS(sel)))
		return err == nil && ok(s)
	}, "%s: %v (err %v); page:\n%s", sel, later(func() string { return fmt.Sprintf("%q", s) }), later(func() string { return fmt.Sprint(err) }), later(func() string {
		body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
		return body
	}))
	return s
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
	d := newDashboardTest(t, filepath.Join(dir, "node0"), filepath.Join(dir, "node1"))
	d.providerPages()
	d.badForm()
	jobID := d.jobRunsLive()
	d.walletMatchesCLI(jobID)
	d.cancelFromPage()
	d.servicePage()
	d.rankToggles()
	d.earnings()
	d.phoneWidth()
	d.openSignsIn()
	d.security()
}

// dashboardTest is TestDashboard's testnet and browser, which its phases
// share in turn: each leaves the browser where the next expects it.
type dashboardTest struct {
	t         *testing.T
	ctx       context.Context // the browser's tab
	req, prov string          // the requester's and the provider's repos
	provID    idInfo
	base      string // the requester's dashboard, once signed in there
	provBase  string // the provider's dashboard
	symbol    string // the token the requester pays in
}

func newDashboardTest(t *testing.T, req, prov string) *dashboardTest {
	d := &dashboardTest{t: t, req: req, prov: prov, ctx: browser(t)}
	runJSON(t, prov, &d.provID, "id")
	d.provBase = strings.Split(strings.TrimSpace(readFile(t, filepath.Join(prov, "api"))), "/ui/")[0]
	return d
}

// providerPages: the GPU page lists the mock's 8 GPUs, then shows a fault;
// the testnet page's "open" signs this browser in to another node.
func (d *dashboardTest) providerPages() {
	t, ctx, prov := d.t, d.ctx, d.prov
	login := strings.TrimSpace(mustRun(t, prov, "dashboard"))
	if err := chromedp.Do(ctx, chromedp.Navigate(login), chromedp.WaitVisible(chromedp.CSS("#node-peer-id"))); err != nil {
		t.Fatal(err)
	}
	textOf(t, ctx, "#node-peer-id", 10*time.Second, eq(d.provID.PeerID))
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
	// Its "open" signs this browser in to another node, through that node's
	// own one-time link.
	var reqID idInfo
	runJSON(t, d.req, &reqID, "id")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`main table tbody tr:first-child button`))); err != nil {
		t.Fatal(err)
	}
	textOf(t, ctx, "#node-peer-id", 20*time.Second, eq(reqID.PeerID))
}

// submit fills in the requester's submit form and sends it.
func (d *dashboardTest) submit(image, command, gpus, price string) {
	d.t.Helper()
	if err := chromedp.Do(d.ctx, chromedp.Navigate(d.base+"/ui/#/submit"), chromedp.WaitVisible(chromedp.CSS("#image")),
		chromedp.SetValue(chromedp.CSS("#image"), image), chromedp.SetValue(chromedp.CSS("#command"), command),
		chromedp.SetValue(chromedp.CSS("#gpus"), gpus), chromedp.SetValue(chromedp.CSS("#max_price"), price),
		chromedp.Click(chromedp.CSS("form button[type=submit]"))); err != nil {
		d.t.Fatal(err)
	}
}

// badForm signs in to the requester: a bad form gets the CLI's error, and
// every field of the form has its label.
func (d *dashboardTest) badForm() {
	t, ctx, req := d.t, d.ctx, d.req
	login := strings.TrimSpace(mustRun(t, req, "dashboard"))
	d.base = strings.Split(login, "/ui/")[0]
	if err := chromedp.Do(ctx, chromedp.Navigate(login)); err != nil {
		t.Fatal(err)
	}
	d.submit(jobImage, "sleep 1s", "-1", "5")
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
}

// jobRunsLive submits a good form: the job's logs arrive while it runs,
// and its page shows its elapsed time and cost in token units. It returns
// the job's ID.
func (d *dashboardTest) jobRunsLive() string {
	t, ctx := d.t, d.ctx
	d.submit(jobImage, "sleep 3s", "1", "5")
	textOf(t, ctx, "#job-state", 30*time.Second, func(s string) bool { return s != "" })
	// Live: the first line shows while the job still runs.
	// Generous: on a loaded machine the testnet's first deal can take a
	// while (the job waits queued, with its reason, until then).
	textOf(t, ctx, "#job-logs", 90*time.Second, func(s string) bool { return strings.Contains(s, "sleeping 3s") })
	st, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#job-state")))
	if st == "completed" {
		t.Fatalf("the first log line came only after the job completed")
	}
	screenshot(t, ctx, "job-running")
	textOf(t, ctx, "#job-state", time.Minute, eq("completed"))
	textOf(t, ctx, "#job-logs", 10*time.Second, func(s string) bool { return strings.Contains(s, "woke up") })
	textOf(t, ctx, "#job-result", 10*time.Second, func(s string) bool { return strings.HasPrefix(s, "bafy") })
	screenshot(t, ctx, "job")
	// Its elapsed time and cost, in token units; what it paid is what the
	// channel's voucher says.
	jobID, err := chromedp.Run(ctx, chromedp.Evaluate[string](`decodeURIComponent(location.hash.split("/")[2])`))
	if err != nil {
		t.Fatal(err)
	}
	textOf(t, ctx, "#job-elapsed", 5*time.Second, func(s string) bool { return strings.HasSuffix(s, "s") && !strings.Contains(s, "running") })
	var wallet struct {
		Symbol string `json:"token_symbol"`
	}
	runJSON(t, d.req, &wallet, "wallet", "balance")
	d.symbol = wallet.Symbol
	textOf(t, ctx, "#job-price", 10*time.Second, func(s string) bool { return strings.HasSuffix(s, wallet.Symbol+" per GPU-hour × 1 GPU") })
	units := regexp.MustCompile(`^(< )?[0-9][0-9,]*(\.[0-9]+)?…? ` + regexp.QuoteMeta(wallet.Symbol) + `$`)
	for _, id := range []string{"#job-cost", "#job-paid", "#job-max-cost"} {
		textOf(t, ctx, id, 10*time.Second, units.MatchString)
	}
	chromedp.Do(ctx, chromedp.Navigate(d.base+"/ui/#/jobs"))
	textOf(t, ctx, "main table", 10*time.Second, func(s string) bool { return strings.Contains(s, "completed") })
	screenshot(t, ctx, "jobs")
	chromedp.Do(ctx, chromedp.Navigate(d.base+"/ui/#/market"))
	textOf(t, ctx, "main", 15*time.Second, func(s string) bool { return strings.Contains(s, "dgxh100") || strings.Contains(s, "mock-h100") })
	screenshot(t, ctx, "market")
	return jobID
}

// walletMatchesCLI: the wallet page's figures are the CLI's, channel by
// channel, and its spending lists the job.
func (d *dashboardTest) walletMatchesCLI(jobID string) {
	t, ctx := d.t, d.ctx
	chromedp.Do(ctx, chromedp.Navigate(d.base+"/ui/#/wallet"))
	var page, want []string
	var perr error
	p2ptest.WaitFor(t, 30*time.Second, func() bool {
		var cli struct {
			Channels []struct {
				ID           string `json:"channel"`
				Deposited    string `json:"deposited"`
				Vouched      string `json:"vouched"`
				Redeemed     string `json:"redeemed"`
				Withdrawable string `json:"withdrawable"`
			} `json:"channels"`
		}
		runJSON(t, d.req, &cli, "wallet", "channels")
		page, perr = chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#channels tbody tr")].map(tr =>
			[tr.querySelector("[data-channel]").dataset.channel, ...[...tr.querySelectorAll("[data-base]")].map(e => e.dataset.base)].join(" "))`))
		want = want[:0]
		for _, c := range cli.Channels {
			want = append(want, strings.Join([]string{c.ID, c.Deposited, c.Vouched, c.Redeemed, c.Withdrawable}, " "))
		}
		return perr == nil && len(want) > 0 && fmt.Sprint(page) == fmt.Sprint(want)
	}, "wallet page %v (err %v), CLI %v", &page, later(func() string { return fmt.Sprint(perr) }), &want)
	t.Logf("wallet page = wallet channels --json: %v", want)
	screenshot(t, ctx, "wallet")
	textOf(t, ctx, "#spending", 5*time.Second, func(s string) bool { return strings.Contains(s, jobID) })
	d.noCardOverflows("balances overflow their cards")
}

// noCardOverflows fails the test if a figure spills out of its card.
func (d *dashboardTest) noCardOverflows(what string) {
	d.t.Helper()
	if over, err := chromedp.Run(d.ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll(".card .v")]
		.filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)`)); err != nil || len(over) > 0 {
		d.t.Fatalf("%s: %v (err %v)", what, over, err)
	}
}

// cancelFromPage: a long job, canceled from its page with two clicks;
// while it runs, the provider's pages and both sides' metrics say which
// job holds the GPU.
func (d *dashboardTest) cancelFromPage() {
	t, ctx := d.t, d.ctx
	d.submit(jobImage, "sleep 120s", "1", "5")
	textOf(t, ctx, "#job-state", 30*time.Second, eq("running"))
	jobURL, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href`))
	chromedp.Do(ctx, chromedp.Navigate(d.provBase+"/ui/#/gpus")) // signed in there at the start
	textOf(t, ctx, "#gpus-in-use", 10*time.Second, eq("1"))
	d.metricsWhileRunning()
	textOf(t, ctx, "#gpus-table", 5*time.Second, func(s string) bool { return strings.Contains(s, "in use by job") })
	screenshot(t, ctx, "gpus-in-use")
	chromedp.Do(ctx, chromedp.Navigate(d.provBase+"/ui/#/node"))
	textOf(t, ctx, "#node-gpus-busy", 10*time.Second, eq("1 of 8"))
	textOf(t, ctx, "#node-jobs", 10*time.Second, func(s string) bool { return strings.Contains(s, "running") })
	screenshot(t, ctx, "node-summary")
	chromedp.Do(ctx, chromedp.Navigate(jobURL))
	textOf(t, ctx, "#job-elapsed", 10*time.Second, func(s string) bool { return strings.Contains(s, "running") })
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#job-cancel"))); err != nil {
		t.Fatal(err)
	}
	textOf(t, ctx, "#job-cancel", 5*time.Second, eq("Click again to cancel"))
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#job-cancel"))); err != nil {
		t.Fatal(err)
	}
	textOf(t, ctx, "#job-state", 30*time.Second, eq("canceled"))
	screenshot(t, ctx, "job-canceled")
}

// metricsWhileRunning is the operator's view of the running job:
// Prometheus metrics on both sides.
func (d *dashboardTest) metricsWhileRunning() {
	t := d.t
	pm, rm := scrape(t, d.prov), scrape(t, d.req)
	// The requester challenged the provider (proof of GPU): each
	// challenge is a local job of the provider's, completed.
	var local []struct {
		State string `json:"state"`
		Spec  struct {
			Name string `json:"name"`
		} `json:"spec"`
	}
	runJSON(t, d.prov, &local, "job", "list")
	challenges := 0.0
	for _, j := range local {
		if j.Spec.Name == "proof-of-gpu" && j.State == "completed" {
			challenges++
		}
	}
	for _, c := range []struct {
		text, series string
		want         float64
	}{
		{pm, `aixblock_gpus_allocated`, 1},
		{pm, `aixblock_gpus{health="unhealthy"}`, 1},
		{pm, `aixblock_gpus{health="healthy"}`, 7},
		{pm, `aixblock_jobs{state="running",where="local"}`, 1},
		{pm, `aixblock_jobs{state="completed",where="local"}`, 1 + challenges},
		{pm, `aixblock_deals_active{side="provider"}`, 1},
		{pm, `aixblock_vouchers{direction="received"}`, 1},
		{pm, `aixblock_bids_total`, 2}, // the first job and this one
		{rm, `aixblock_jobs{state="running",where="remote"}`, 1},
		{rm, `aixblock_deals_active{side="requester"}`, 1},
		{rm, `aixblock_vouchers{direction="signed"}`, 1},
		{rm, `aixblock_dashboard_sessions`, 2}, // the testnet page's "open", then the login link
	} {
		if got, ok := metric(c.text, c.series); !ok || got != c.want {
			t.Errorf("metric %s = %v (present %v), want %v", c.series, got, ok, c.want)
		}
	}
	for _, series := range []string{`aixblock_vouchers_amount{direction="signed",token="` + d.symbol + `"}`,
		`aixblock_deposited_amount{token="` + d.symbol + `"}`, `aixblock_bitswap_bytes_total{direction="sent"}`} {
		if v, ok := metric(rm, series); !ok || (v <= 0 && !strings.HasPrefix(series, "aixblock_bitswap")) {
			t.Errorf("no metric %s", series)
		}
	}
}

// servicePage: a service's page shows its port, its readiness, the
// forward the CLI printed (a link that opens apart from the dashboard),
// the forward's connections and the cost growing while it runs; the jobs
// list marks it; canceled, its forward is gone.
func (d *dashboardTest) servicePage() {
	t, ctx, base := d.t, d.ctx, d.base
	svc := runService(t, d.req, "--ready-http", "/healthz", "--gpus", "1", "--max-price", "5", jobImage, "--", "serve", ":8080")
	local := svc.Local
	chromedp.Do(ctx, chromedp.Navigate(base+"/ui/#/jobs/"+svc.ID))
	textOf(t, ctx, "#job-ports", 10*time.Second, eq("8080"))
	textOf(t, ctx, "#job-ready", 60*time.Second, eq("✓ ready"))
	textOf(t, ctx, "#job-forwards a", 10*time.Second, func(s string) bool { return strings.HasPrefix(s, local) })
	link, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#job-forwards a")]
		.map(a => [a.dataset.local, a.getAttribute("href"), a.target, a.rel.split(" ").includes("noopener")].join(" "))
		.concat([...document.querySelectorAll("#job-service caption, #job-forwards th")].map(e => e.textContent))`))
	if err != nil || len(link) < 2 || link[0] != local+" http://"+local+"/ _blank true" || !strings.HasPrefix(link[1], "Forwards") {
		t.Fatalf("the forward on the service's page: %q (err %v), want %s linked to http://%s/ in a new tab, noopener, in a captioned table", link, err, local, local)
	}
	if r, err := http.Get("http://" + local + "/"); err != nil {
		t.Fatalf("GET through the forward: %v", err)
	} else {
		r.Body.Close()
	}
	textOf(t, ctx, "#job-forwards tbody td:nth-child(3)", 10*time.Second, func(s string) bool { n, _ := strconv.Atoi(s); return n >= 1 })
	d.costGrows()
	screenshot(t, ctx, "job-service")
	chromedp.Do(ctx, chromedp.Navigate(base+"/ui/#/jobs"))
	textOf(t, ctx, `#jobs-table [data-service="`+svc.ID+`"]`, 10*time.Second, eq("service · 8080"))
	screenshot(t, ctx, "jobs-service")
	chromedp.Do(ctx, chromedp.Navigate(base+"/ui/#/jobs/"+svc.ID))
	textOf(t, ctx, "#job-ready", 10*time.Second, eq("✓ ready"))
	mustRun(t, d.req, "job", "cancel", svc.ID)
	textOf(t, ctx, "#job-state", 30*time.Second, eq("canceled"))
	textOf(t, ctx, "#job-forwards", 10*time.Second, func(s string) bool { return strings.Contains(s, "closes when its job ends") })
}

// costGrows waits until the cost so far on the running job's page grows.
func (d *dashboardTest) costGrows() {
	costNow := func() float64 {
		v, _ := chromedp.Run(d.ctx, chromedp.Evaluate[float64](`Number((document.querySelector("#job-cost") || {dataset: {}}).dataset.base || 0)`))
		return v
	}
	first, last := costNow(), 0.0
	p2ptest.WaitFor(d.t, 20*time.Second, func() bool {
		last = costNow()
		if first == 0 {
			first = last
		}
		return first > 0 && last > first
	}, "the service's cost so far did not grow on its page")
	d.t.Logf("the service's cost so far grew on its page: %v to %v base units", first, last)
}

// rankToggles: a job whose lines carry rank prefixes, as a distributed
// job's merged log does; the pressed toggle shows, and filters.
func (d *dashboardTest) rankToggles() {
	t, ctx := d.t, d.ctx
	ranked := strings.TrimSpace(mustRun(t, d.req, "job", "run", "--local", "-d", jobImage, "--", "echo", "[rank 0] zero", "[rank 1] one"))
	chromedp.Do(ctx, chromedp.Navigate(d.base+"/ui/#/jobs/"+ranked))
	textOf(t, ctx, "#job-logs", 30*time.Second, func(s string) bool { return strings.Contains(s, "[rank 1] one") })
	textOf(t, ctx, "#job-ranks", 5*time.Second, func(s string) bool { return strings.Contains(s, "rank 1") })
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#job-ranks button[data-rank="1"]`))); err != nil {
		t.Fatal(err)
	}
	shown, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#job-ranks button[aria-pressed=true]")].map(b => b.textContent)
		.concat([...document.querySelectorAll("#job-logs div")].filter(d => !d.hidden).map(d => d.textContent))`))
	if err != nil || fmt.Sprint(shown) != fmt.Sprint([]string{"rank 1", "[rank 1] one"}) {
		t.Fatalf("after pressing rank 1: pressed and shown %q (err %v), want rank 1 pressed and only its line", shown, err)
	}
	screenshot(t, ctx, "job-ranks")
}

// earnings: the provider redeems; its wallet charts the earnings on two
// axes.
func (d *dashboardTest) earnings() {
	t, ctx := d.t, d.ctx
	mustRun(t, d.prov, "wallet", "redeem")
	chromedp.Do(ctx, chromedp.Navigate(d.provBase+"/ui/#/wallet"))
	textOf(t, ctx, "#earnings-total", 15*time.Second, func(s string) bool { return strings.HasPrefix(s, "Total earned: ") })
	ticks, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#earnings-chart text")].map(e => e.textContent)`))
	if err != nil || len(ticks) < 8 || !strings.HasPrefix(ticks[3], "earned, ") {
		t.Fatalf("the earnings chart's labels: %q (err %v), want 3 amounts, the amount axis, 3 times and the time axis", ticks, err)
	}
	t.Logf("earnings chart labels: %q", ticks)
	d.noCardOverflows("the provider's balances overflow their cards")
	screenshot(t, ctx, "wallet-earnings")
}

// phoneWidth: at phone width nothing spills sideways, and each job's
// State shows without scrolling.
func (d *dashboardTest) phoneWidth() {
	t, ctx := d.t, d.ctx
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844), chromedp.Navigate(d.base+"/ui/#/jobs"), chromedp.Sleep(time.Second)); err != nil {
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
	right, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`Math.max(...[...document.querySelectorAll("#jobs-table tbody td:nth-child(2)")].map(td => td.getBoundingClientRect().right))`))
	if err != nil || right > 390 {
		t.Fatalf("the State column ends at %.0f px on a 390 px screen (err %v)", right, err)
	}
}

// openSignsIn: --open in a real browser. After --logout-all, the file it
// is pointed at (from file://, which the browser calls cross-site) signs
// it in.
func (d *dashboardTest) openSignsIn() {
	t, ctx := d.t, d.ctx
	mustRun(t, d.prov, "dashboard", "--logout-all")
	o := startDashboardOpen(t, d.prov, openWithBROWSER)
	if err := chromedp.Do(ctx, chromedp.Navigate(o.argv[0])); err != nil {
		t.Fatal(err)
	}
	textOf(t, ctx, "#node-peer-id", 20*time.Second, eq(d.provID.PeerID))
	o.waitDone(t)
	screenshot(t, ctx, "open")
}

// security: no token, a wrong token, a foreign Host, a foreign Origin.
func (d *dashboardTest) security() {
	t, base, req := d.t, d.base, d.req
	for _, c := range []struct {
		name, path, host, origin string
		want                     int
	}{
		{"no token", "/ui/", "", "", http.StatusUnauthorized},
		{"no token on the API", "/v1/wallet/channels", "", "", http.StatusUnauthorized},
		{"wrong login code", "/ui/login?code=nope", "", "", http.StatusUnauthorized},
		{"the API token as a login code", "/ui/login?token=" + strings.TrimSpace(readFile(t, filepath.Join(req, "api.token"))), "", "", http.StatusUnauthorized},
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
	d.foreignPosts()
}

// foreignPosts: a POST with a session's cookie but not its key, or from
// a foreign origin, is refused.
func (d *dashboardTest) foreignPosts() {
	t, base, req := d.t, d.base, d.req
	tok, _ := os.ReadFile(filepath.Join(req, "api.token"))
	resp, _ := get(t, strings.TrimSpace(mustRun(t, req, "dashboard")), nil)
	c := sessionCookie(resp)
	if c == nil {
		t.Fatalf("sign in: %s", resp.Status)
	}
	for _, c := range []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"cookie without the session's key", map[string]string{"Cookie": c.Name + "=" + c.Value, "X-Aixblock-Request": "1"}, http.StatusForbidden},
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

// dashboardOpen is a `dashboard --open` running with a fake browser that
// records the argv it was started with.
type dashboardOpen struct {
	argv     []string
	done     chan error
	out, err *strings.Builder
}

// How a fake browser is found: as $BROWSER, or as xdg-open on $PATH with
// $BROWSER empty.
const (
	openWithBROWSER = iota
	openWithXDGOpen
)

// startDashboardOpen runs `dashboard --open` on repo with a fake browser
// found as how says, and returns once the browser has started, with the
// argv it was given (what any local user could read in /proc).
func startDashboardOpen(t *testing.T, repo string, how int) *dashboardOpen {
	t.Helper()
	dir := t.TempDir()
	record := filepath.Join(dir, "argv")
	name, env := "browser", []string{"BROWSER=" + filepath.Join(dir, "browser")}
	if how == openWithXDGOpen {
		name, env = "xdg-open", []string{"PATH=" + dir + ":" + os.Getenv("PATH"), "BROWSER="}
	}
	writeFile(t, filepath.Join(dir, name), "#!/bin/sh\nprintf '%s\\n' \"$@\" >"+record+".tmp && mv "+record+".tmp "+record+"\n")
	os.Chmod(filepath.Join(dir, name), 0o755)
	cmd := exec.Command(bin, "--repo", repo, "dashboard", "--open")
	cmd.Env = append(os.Environ(), env...)
	o := &dashboardOpen{done: make(chan error, 1), out: &strings.Builder{}, err: &strings.Builder{}}
	cmd.Stdout, cmd.Stderr = o.out, o.err
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { o.done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	p2ptest.WaitFor(t, 20*time.Second, func() bool {
		b, err := os.ReadFile(record)
		o.argv = strings.Split(strings.TrimSpace(string(b)), "\n")
		return err == nil
	}, "dashboard --open did not start the browser; stdout %q stderr %q", o.out, o.err)
	return o
}

// waitDone waits for `dashboard --open` to see the browser sign in and
// exit.
func (o *dashboardOpen) waitDone(t *testing.T) {
	t.Helper()
	select {
	case err := <-o.done:
		if err != nil {
			t.Fatalf("dashboard --open: %v: %s", err, o.err.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("dashboard --open did not notice the sign-in")
	}
}

// noRedirect sees each answer itself, as a hostile client would.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func get(t *testing.T, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func sessionCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if strings.HasPrefix(c.Name, "aixblock_session") && c.Value != "" {
			return c
		}
	}
	return nil
}

var keyMeta = regexp.MustCompile(`name="aixblock-key" content="([^"]+)"`)

// The dashboard's sign-in from the hostile side: what another listener on
// 127.0.0.1 receives (the cookie) is not the token and reaches no API on
// its own; a login link works once; --logout-all ends every session; and
// what --open hands the browser's process is nothing anyone can use.
func TestDashboardSessions(t *testing.T) {
	repo := initRepo(t, "dashtest")
	startDaemon(t, repo)
	s := &sessionsTest{
		repo:  repo,
		base:  strings.TrimSpace(readFile(t, filepath.Join(repo, "api"))),
		token: strings.TrimSpace(readFile(t, filepath.Join(repo, "api.token"))),
	}
	cookie, signedIn := s.signIn(t)
	t.Run("open", s.open)
	s.logoutAll(t, cookie, signedIn)
}

// sessionsTest is TestDashboardSessions' daemon.
type sessionsTest struct {
	repo, base, token string
}

// signIn signs in with a login link and checks what a stranger could do
// with the cookie alone, and that the link works once. It returns the
// session's cookie, and the headers of a signed-in request.
func (s *sessionsTest) signIn(t *testing.T) (string, map[string]string) {
	base, token := s.base, s.token
	link := strings.TrimSpace(mustRun(t, s.repo, "dashboard"))
	if strings.Contains(link, token) {
		t.Errorf("the login link carries the API token: %s", link)
	}
	resp, body := get(t, link, nil)
	c := sessionCookie(resp)
	if resp.StatusCode >= 400 || c == nil {
		t.Fatalf("sign in with %s: %s, cookies %v\n%s", link, resp.Status, resp.Cookies(), body)
	}
	if strings.Contains(c.Value, token) {
		t.Fatalf("the session cookie %s carries the API token", c.Name)
	}
	cookie := c.Name + "=" + c.Value
	// What a stranger listening on another port of 127.0.0.1 receives.
	for name, h := range map[string]map[string]string{
		"cookie as a bearer":                  {"Authorization": "Bearer " + c.Value},
		"cookie alone":                        {"Cookie": cookie},
		"cookie with the old constant header": {"Cookie": cookie, "X-Aixblock-Request": "1"},
	} {
		if resp, body := get(t, base+"/v1/id", h); resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: GET /v1/id = %s, want 401 or 403: %s", name, resp.Status, body)
		}
	}
	// The page the browser got holds the session's key; with both, the
	// dashboard works.
	m := keyMeta.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("the sign-in page holds no session key:\n%s", body)
	}
	signedIn := map[string]string{"Cookie": cookie, "X-Aixblock-Request": m[1]}
	if resp, body := get(t, base+"/v1/id", signedIn); resp.StatusCode != http.StatusOK {
		t.Fatalf("cookie and key: GET /v1/id = %s: %s", resp.Status, body)
	}
	if resp, _ := get(t, base+"/ui/", map[string]string{"Cookie": cookie}); resp.StatusCode != http.StatusOK {
		t.Fatalf("cookie: GET /ui/ = %s", resp.Status)
	}
	// A used link is dead.
	if resp, body := get(t, link, nil); resp.StatusCode != http.StatusUnauthorized || sessionCookie(resp) != nil {
		t.Errorf("a used login link: %s, cookies %v, want 401 and none: %s", resp.Status, resp.Cookies(), body)
	}
	return cookie, signedIn
}

// open: what --open hands the browser's process (its argv, which any
// local user could read in /proc) signs nobody in; the file it points at
// is the user's alone, leads to the login link, and is gone after the
// sign-in.
func (s *sessionsTest) open(t *testing.T) {
	o := startDashboardOpen(t, s.repo, openWithXDGOpen)
	argv := o.argv
	t.Logf("the browser's argv: %q", argv)
	// An onlooker tries what it read before the browser does.
	for _, a := range argv {
		if strings.Contains(a, s.token) {
			t.Errorf("the browser's argv carries the API token: %q", a)
		}
		for _, try := range []string{a, s.base + "/ui/login?code=" + url.QueryEscape(a)} {
			if !strings.HasPrefix(try, "http") {
				continue
			}
			if resp, _ := get(t, try, nil); resp.StatusCode < 400 || sessionCookie(resp) != nil {
				t.Errorf("signed in with %q read from the browser's argv: %s", try, resp.Status)
			}
		}
	}
	if t.Failed() {
		return
	}
	// The browser: the file it was pointed at is the user's alone and
	// leads to the login link.
	p := strings.TrimPrefix(argv[len(argv)-1], "file://")
	st, err := os.Stat(p)
	if err != nil {
		t.Fatalf("the browser was pointed at %q: %v", p, err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", p, st.Mode().Perm())
	}
	page := readFile(t, p)
	lm := regexp.MustCompile(`http://[^"' ]+/ui/login\?code=[A-Za-z0-9_-]+`).FindString(page)
	if lm == "" {
		t.Fatalf("no login link in %s:\n%s", p, page)
	}
	if resp, _ := get(t, lm, nil); sessionCookie(resp) == nil {
		t.Fatalf("the browser's sign-in failed: %s", resp.Status)
	}
	o.waitDone(t)
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("%s is still there after the sign-in (%v)", p, err)
	}
	t.Logf("dashboard --open: %s", strings.TrimSpace(o.out.String()))
}

// logoutAll: --logout-all ends the session signIn made (and the one
// --open made).
func (s *sessionsTest) logoutAll(t *testing.T, cookie string, signedIn map[string]string) {
	out := mustRun(t, s.repo, "dashboard", "--logout-all")
	if !strings.Contains(out, "2") {
		t.Errorf("dashboard --logout-all: %q, want 2 sessions signed out", out)
	}
	if resp, body := get(t, s.base+"/v1/id", signedIn); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after --logout-all, the old session: GET /v1/id = %s, want 401: %s", resp.Status, body)
	}
	if resp, _ := get(t, s.base+"/ui/", map[string]string{"Cookie": cookie}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after --logout-all, the old cookie: GET /ui/ = %s, want 401", resp.Status)
	}
}

// scrape reads the daemon's Prometheus metrics with its token.
func scrape(t *testing.T, repo string) string {
	t.Helper()
	tok := strings.TrimSpace(readFile(t, filepath.Join(repo, "api.token")))
	resp, body := get(t, strings.TrimSpace(readFile(t, filepath.Join(repo, "api")))+"/metrics", map[string]string{"Authorization": "Bearer " + tok})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	return body
}

// metric is the value of one series ("name{labels}" as Prometheus prints it).
func metric(text, series string) (float64, bool) {
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}
