package lease

import (
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/ethereum/go-ethereum/common"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The attacks of a hostile peer on the money path (issue 17), each sent
// as the peer would: crafted wire messages and vouchers signed with its
// own key, against a provider (or requester) on a real dev chain.

// hostile is a provider on an in-memory dev chain and a requester that
// attacks it: its own wallet, chain client, peer ID, a funded channel to
// the provider and a deal with it.
type hostile struct {
	t        *testing.T
	dev      *chain.DevChain
	prov     *Provider
	req      *chain.Client // the attacker's
	from     peer.ID       // the attacker's peer
	deal     market.Deal
	deposit  *big.Int
	interval time.Duration
}

func newHostile(t *testing.T) *hostile {
	t.Helper()
	ctx := t.Context()
	dev, err := chain.StartDevChain(ctx, chain.DevChainConfig{IdleBlock: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	client := func(i int) (*chain.Wallet, *chain.Client) {
		w, err := chain.ImportWallet(t.TempDir(), "", chain.DevKey(i))
		if err != nil {
			t.Fatal(err)
		}
		c, err := chain.NewClient(ctx, dev.Client(), w, chain.Config{Escrow: dev.Info.Escrow, Token: dev.Info.Token, Poll: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return w, c
	}
	reqW, reqC := client(1)
	provW, provC := client(2)
	h := &hostile{t: t, dev: dev, req: reqC, deposit: big.NewInt(1_000_000), interval: time.Second}
	h.prov = providerNode(t, t.TempDir(), provW, provC, h.interval)
	if _, err := reqC.Deposit(ctx, provW.Address(), dev.Info.Token, h.deposit); err != nil {
		t.Fatal(err)
	}
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.from, err = peer.IDFromPrivateKey(key); err != nil {
		t.Fatal(err)
	}
	// 3600 base units per GPU-hour on one GPU: 1 a second.
	h.deal = market.Deal{DealTerms: market.DealTerms{ID: "deal-1", Requester: h.from.String(), RequesterWallet: reqW.Address().Hex(),
		ProviderWallet: provW.Address().Hex(), Token: dev.Info.Token.Hex(), Price: "3600", MaxDurationS: 3600, GPUs: []string{"GPU-0"}}}
	return h
}

// providerNode is the provider's side of a node, from its repo dir: its
// wallet, chain, vouchers and market-job state, without p2p or Docker.
func providerNode(t *testing.T, dir string, w *chain.Wallet, c *chain.Client, interval time.Duration) *Provider {
	t.Helper()
	vouchers, err := OpenVouchers(filepath.Join(dir, "vouchers.json"))
	if err != nil {
		t.Fatal(err)
	}
	return testProvider(t, Config{Dir: dir, Wallet: w, Chain: c, Vouchers: vouchers, VoucherInterval: interval})
}

// voucher is the attacker's voucher for amount on the deal's channel.
func (h *hostile) voucher(amount *big.Int) []byte {
	h.t.Helper()
	v, err := h.req.SignVoucher(h.prov.wallet.Address(), h.dev.Info.Token, amount)
	if err != nil {
		h.t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

func (h *hostile) send(amount *big.Int) error {
	_, err := h.prov.handleJobVoucher(h.t.Context(), h.from, h.voucher(amount))
	return err
}

func (h *hostile) held() *big.Int {
	v := h.prov.vouchers.get(h.prov.vouchers.data.Received, h.prov.providedChannel(h.deal))
	if v == nil {
		return new(big.Int)
	}
	return v.CumulativeAmount.Big()
}

// Attack 1: a voucher for 2^96-1 used to replace the redeemable one, so
// that redeem skipped it and the requester withdrew everything. Now it is
// refused, the redeemable one stays, and redeem pays it.
func TestHostileVoucherPoisoning(t *testing.T) {
	h := newHostile(t)
	h.prov.trackProvided("00000000000000a1", h.deal)
	if err := h.send(big.NewInt(100)); err != nil {
		t.Fatalf("an honest voucher for 100: %v", err)
	}
	for _, amount := range []*big.Int{chain.MaxAmount, new(big.Int).Add(h.deposit, big.NewInt(1))} {
		err := h.send(amount)
		if err == nil || !strings.Contains(err.Error(), "exceeds channel") || !strings.Contains(err.Error(), "deposit") {
			t.Fatalf("voucher for %s over the deposit of %s: %v", amount, h.deposit, err)
		}
		if got := h.held(); got.Cmp(big.NewInt(100)) != 0 {
			t.Fatalf("after a voucher for %s the provider holds %s, want the redeemable 100", amount, got)
		}
	}
	if err := h.send(big.NewInt(99)); err == nil || !strings.Contains(err.Error(), "below the 100 already held") {
		t.Fatalf("a voucher for less than held: %v", err)
	}
	if err := h.send(big.NewInt(100)); err != nil {
		t.Fatalf("the held voucher resent: %v", err)
	}
	res, err := h.prov.RedeemOwed(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := h.prov.chain.Channel(t.Context(), h.req.Address(), h.prov.wallet.Address(), h.dev.Info.Token)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Redeemed.Big().Cmp(big.NewInt(100)) != 0 || res.Paid.Cmp(big.NewInt(100)) != 0 {
		t.Fatalf("redeemed %s (paid %s), want the 100 vouched", ch.Redeemed, res.Paid)
	}
}

// Attack 2: a 1-wei voucher replayed every interval kept a job running
// for its whole timeout, and a voucher on any channel counted. Now the
// job's vouchers must keep up with price × run time; one that falls two
// intervals behind stops it, and a voucher off the deal's channel is
// refused.
func TestHostileVoucherReplay(t *testing.T) {
	h := newHostile(t)
	const id = "00000000000000a2"
	h.prov.trackProvided(id, h.deal)
	t0 := time.Now()
	h.prov.mu.Lock()
	h.prov.runSince[id] = t0 // as watchProvided records the job's start
	h.prov.mu.Unlock()

	// Another channel of the attacker's: the native coin, not the deal's token.
	other, err := h.req.SignVoucher(h.prov.wallet.Address(), chain.NativeToken, big.NewInt(5_000))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(other)
	if _, err := h.prov.handleJobVoucher(t.Context(), h.from, raw); err == nil || !strings.Contains(err.Error(), "not the channel of any deal of yours") {
		t.Fatalf("a voucher on another channel: %v", err)
	}
	// Nor does a stranger's peer get to pay for (or poison) the deal's channel.
	key, _, _ := crypto.GenerateEd25519Key(nil)
	stranger, _ := peer.IDFromPrivateKey(key)
	if _, err := h.prov.handleJobVoucher(t.Context(), stranger, h.voucher(big.NewInt(7))); err == nil {
		t.Fatal("a voucher from a peer without a deal was kept")
	}

	if err := h.send(big.NewInt(1)); err != nil {
		t.Fatalf("the first 1-wei voucher is a valid one: %v", err)
	}
	for i := 1; i <= 10; i++ {
		h.send(big.NewInt(1)) // replayed every interval
		if why := h.prov.unpaid(id, t0.Add(time.Duration(i)*h.interval)); why != "" {
			if i <= 2 {
				t.Fatalf("stopped after %d intervals, within the slack: %s", i, why)
			}
			if !strings.Contains(why, "vouchers stopped") || !strings.Contains(why, "holds 1 base units") {
				t.Fatalf("reason: %s", why)
			}
			t.Logf("stopped after %d intervals: %s", i, why)
			break
		}
		if i == 10 {
			t.Fatal("a replayed 1-wei voucher kept the job running for 10 intervals")
		}
	}

	// An honest requester's vouchers, price × time seen, keep it running.
	if err := h.send(big.NewInt(60)); err != nil {
		t.Fatal(err)
	}
	if why := h.prov.unpaid(id, t0.Add(61*time.Second)); why != "" {
		t.Fatalf("paid for 60 s of 61, stopped: %s", why)
	}
}

// Attack 3: the same start request sent again started another job on the
// same GPUs. A deal starts one job, once, across a restart too.
func TestHostileDealReplay(t *testing.T) {
	h := newHostile(t)
	if err := h.prov.claimDeal(h.deal.ID); err != nil { // the first start
		t.Fatal(err)
	}
	spec := jobs.Spec{Image: "scratch"}
	req, _ := json.Marshal(startRequest{DealID: h.deal.ID, Spec: spec, JobID: "00000000000000b1"})
	for _, prov := range []*Provider{h.prov, providerNode(t, h.prov.cfg.Dir, h.prov.cfg.Wallet, h.prov.cfg.Chain, h.interval)} {
		if _, err := prov.handleJobStart(t.Context(), h.from, req); err == nil || !strings.Contains(err.Error(), "already started its job") {
			t.Fatalf("a replayed start: %v", err)
		}
		if err := prov.claimDeal(h.deal.ID); err == nil {
			t.Fatal("a deal was claimed twice")
		}
	}
}

// Attack 3, the exposure: two deals on one channel were each checked
// against the whole deposit, so a requester could run jobs worth more than
// it deposited. A start now counts what the channel's running jobs may
// still cost.
func TestHostileTwoDealsOneDeposit(t *testing.T) {
	h := newHostile(t)
	large := h.deal // 1 base unit a second, for up to 600000 s: 600000 of the 1000000 deposited
	large.MaxDurationS = 600_000
	ch := h.prov.providedChannel(large)
	if err := h.prov.depositCovers(ch, h.deposit, new(big.Int), &large); err != nil {
		t.Fatalf("the first deal: %v", err)
	}
	h.prov.trackProvided("00000000000000d1", large) // it runs
	second := large
	second.ID = "deal-2"
	err := h.prov.depositCovers(ch, h.deposit, new(big.Int), &second)
	if err == nil || !strings.Contains(err.Error(), "1 running or starting job(s) may still cost (600000)") {
		t.Fatalf("a second deal beyond the deposit: %v", err)
	}
	t.Logf("refused: %v", err)
	// Two starts checked at once: the first that fits is counted until
	// its job runs, so the second is refused (N9).
	third := large
	third.ID, third.MaxDurationS = "deal-3", 400_000
	fourth := third
	fourth.ID = "deal-4"
	h.prov.endProvided("00000000000000d1", nil, nil)
	if err := h.prov.depositCovers(ch, h.deposit, new(big.Int), &third); err != nil {
		t.Fatalf("a start that fits: %v", err)
	}
	if err := h.prov.depositCovers(ch, h.deposit, new(big.Int), &fourth); err != nil {
		t.Fatalf("a second start that fits beside it: %v", err)
	}
	fifth := third
	fifth.ID = "deal-5"
	if err := h.prov.depositCovers(ch, h.deposit, new(big.Int), &fifth); err == nil || !errors.Is(err, errDepositShort) {
		t.Fatalf("a third start while two are being checked, beyond the deposit: %v", err)
	}
	h.prov.doneStarting(third.ID)
	h.prov.doneStarting(fourth.ID)
	if err := h.prov.depositCovers(ch, h.deposit, new(big.Int), &second); err != nil {
		t.Fatalf("once the first ended: %v", err)
	}
}

// Attack 4: a requester that starts closing its channel may withdraw
// what the provider has not redeemed when the challenge period ends. The
// provider redeems at once when it sees the channel closing.
func TestHostileClosingChannel(t *testing.T) {
	h := newHostile(t)
	h.prov.trackProvided("00000000000000a4", h.deal)
	if err := h.send(big.NewInt(755)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.req.StartClose(t.Context(), h.prov.wallet.Address(), h.dev.Info.Token); err != nil {
		t.Fatal(err)
	}
	h.prov.checkClosing(t.Context())
	ch, err := h.prov.chain.Channel(t.Context(), h.req.Address(), h.prov.wallet.Address(), h.dev.Info.Token)
	if err != nil {
		t.Fatal(err)
	}
	if ch.ClosesAt == 0 || ch.Redeemed.Big().Cmp(big.NewInt(755)) != 0 {
		t.Fatalf("closing channel (closes at %d): redeemed %s, want the 755 vouched", ch.ClosesAt, ch.Redeemed)
	}
}

// Attack 8: a provider that reports a start a year ago collected the
// maximum cost of a 1 s job. The requester pays for what it saw itself:
// while the job runs, what it saw plus how far its vouchers run ahead;
// once it ended, the exact run time rounded up to the second.
func TestHostileProviderTime(t *testing.T) {
	deal := market.Deal{DealTerms: market.DealTerms{Price: "3600", MaxDurationS: 3600, GPUs: []string{"GPU-0"}}}
	rj := &Record{ID: "00000000000000c1", Deal: deal}
	t0 := time.Now()
	yearAgo, future := t0.Add(-365*24*time.Hour), t0.Add(365*24*time.Hour)
	rj.see(reply(jobs.Job{State: jobs.Pending, CreatedAt: yearAgo}), t0)
	rj.see(reply(jobs.Job{State: jobs.Running, CreatedAt: yearAgo, StartedAt: &yearAgo}), t0.Add(time.Second))
	ahead := 10 * time.Second
	if got, want := jobPayable(rj, ahead), dealCost(deal, ahead); got.Cmp(want) != 0 {
		t.Fatalf("just seen running: pays %s, want what runs ahead, %s", got, want)
	}
	rj.see(reply(jobs.Job{State: jobs.Completed, CreatedAt: yearAgo, StartedAt: &yearAgo, FinishedAt: &future}), t0.Add(2*time.Second))
	rj.see(reply(jobs.Job{State: jobs.Completed, CreatedAt: yearAgo, StartedAt: &yearAgo, FinishedAt: &future}), t0.Add(time.Hour))
	want := dealCost(deal, time.Second) // seen running for 1 s
	if got := jobPayable(rj, ahead); got.Cmp(want) != 0 {
		t.Fatalf("a 1 s job whose provider claims a year: pays %s, want %s (the deal's maximum is %s)", got, want, dealCost(deal, time.Hour))
	}
	if got := jobCost(rj); got.Cmp(want) != 0 {
		t.Fatalf("the job's cost shown: %s, want 1 s's", got)
	}
}

// Attack 9: the requester named its record after the job ID the provider
// returned: "../config" overwrote its config.json. IDs are 16 lowercase
// hex digits wherever they become file names, on both sides.
func TestHostileJobIDTraversal(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfg, []byte(`{"keep":"me"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	n := testRequester(t, Config{Dir: dir})
	pv := testProvider(t, Config{Dir: dir})
	for _, bad := range []string{"../config", "../../etc/x", "00000000000000AB", "0000000000000000/", "", "0123456789abcdef0"} {
		if _, err := providerJobID("0123456789abcdef", bad); err == nil || !strings.Contains(err.Error(), "16 lowercase hex digits") {
			t.Fatalf("the provider's job ID %q: %v", bad, err)
		}
		if err := n.saveRemote(&Record{ID: bad}); err == nil {
			t.Fatalf("a record saved under %q", bad)
		}
		// The provider's side: the requester's job_id names the job's directory.
		req, _ := json.Marshal(startRequest{DealID: "d", JobID: bad})
		if bad == "" {
			continue // the provider chooses
		}
		if _, err := pv.handleJobStart(t.Context(), "peer", req); err == nil || !strings.Contains(err.Error(), "job_id") {
			t.Fatalf("a start request with job_id %q: %v", bad, err)
		}
	}
	if id, err := providerJobID("0123456789abcdef", "fedcba9876543210"); err != nil || id != "fedcba9876543210" {
		t.Fatalf("a provider's own valid ID: %q, %v", id, err)
	}
	// A record that names another file's job is not loaded.
	b, _ := json.Marshal(Record{ID: "../config"})
	if err := os.WriteFile(filepath.Join(n.remoteDir(), "0123456789abcdef.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	n = testRequester(t, Config{Dir: dir})
	if len(n.records) != 0 {
		t.Fatalf("loaded %v", n.records)
	}
	if b, _ := os.ReadFile(cfg); string(b) != `{"keep":"me"}` {
		t.Fatalf("config.json is now %q", b)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "config.json" && e.Name() != "remote" {
			t.Fatalf("a file outside remote/: %s", e.Name())
		}
	}
}

// A provider restarted without its container runtime still has its deals'
// records: its former requester's status, logs, cancel and go requests
// get a reason, not a crash of the daemon (a nil jobs manager).
func TestProvidedJobWithoutRuntime(t *testing.T) {
	h := newHostile(t)
	id := "00000000000000e1"
	if err := h.prov.saveProvided(id, h.deal); err != nil {
		t.Fatal(err)
	}
	prov := providerNode(t, h.prov.cfg.Dir, h.prov.cfg.Wallet, h.prov.cfg.Chain, h.interval) // loads provided/
	req, _ := json.Marshal(jobIDRequest{ID: id})
	goReq, _ := json.Marshal(goRequest{ID: id})
	for name, call := range map[string]func() ([]byte, error){
		"status": func() ([]byte, error) { return prov.handleJobStatus(t.Context(), h.from, req) },
		"logs":   func() ([]byte, error) { return prov.handleJobLogs(t.Context(), h.from, req) },
		"cancel": func() ([]byte, error) { return prov.handleJobCancel(t.Context(), h.from, req) },
		"go":     func() ([]byte, error) { return prov.handleJobGo(t.Context(), h.from, goReq) },
	} {
		if _, err := call(); err == nil || !strings.Contains(err.Error(), "cannot run jobs") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A stranger's vouchers for channels of its choosing were each kept as
// "why the last voucher was refused" and logged as a warning: unbounded
// memory and log. Only a refusal on a channel that pays a job of the
// sender's is kept.
func TestStrangerVouchersKeepNothing(t *testing.T) {
	h := newHostile(t)
	stranger := peer.ID("not-the-requester")
	for i := range 20 {
		payee := common.BigToAddress(big.NewInt(int64(1000 + i)))
		v, err := h.req.SignVoucher(payee, h.dev.Info.Token, big.NewInt(1))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(v)
		if _, err := h.prov.handleJobVoucher(t.Context(), stranger, b); err == nil {
			t.Fatal("a voucher for another payee was kept")
		}
	}
	if n := len(h.prov.refused); n != 0 {
		t.Fatalf("%d refusals kept for a stranger's vouchers", n)
	}
	// The requester of a running job: its refusal is kept, for the
	// reason the job may stop with.
	h.prov.trackProvided("00000000000000f1", h.deal)
	if err := h.send(new(big.Int).Lsh(big.NewInt(1), 90)); err == nil {
		t.Fatal("a voucher over the deposit was kept")
	}
	if n := len(h.prov.refused); n != 1 {
		t.Fatalf("the requester's refused voucher: %d kept, want 1", n)
	}
}
