package lease

import (
	"slices"
	"testing"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// A replicated job's runs are dealt for from one offer: one negotiation
// for all of them, each run started with its own deal, holding back the
// share the options say.
func TestSubmitTogetherOneOffer(t *testing.T) {
	r := newRequesterRig(t, "3600", 2000)
	buyer := r.rq.market.(*fakeBuyer)
	buyer.many = true
	spec := jobs.Spec{Image: "x", MaxPrice: "1", Resources: jobs.Resources{GPUs: 1}}
	js, err := r.rq.SubmitTogether(t.Context(), &spec, 2, RemoteOptions{HoldbackBps: 2000})
	if err != nil {
		t.Fatal(err)
	}
	if len(js) != 2 {
		t.Fatalf("%d jobs, want 2", len(js))
	}
	p2ptest.WaitFor(t, waitLong, func() bool {
		return r.record(js[0].ID).Deal.ID != "" && r.record(js[1].ID).Deal.ID != ""
	}, "both runs started with a deal")
	if got := buyer.negotiations(); !slices.Equal(got, []int{2}) {
		t.Fatalf("negotiations %v, want one for 2 deals", got)
	}
	a, b := r.record(js[0].ID), r.record(js[1].ID)
	if a.Deal.ID == b.Deal.ID || a.HoldbackBps != 2000 || b.HoldbackBps != 2000 {
		t.Fatalf("runs dealt %s and %s, holding back %d and %d bps: want two deals, 2000 each", a.Deal.ID, b.Deal.ID, a.HoldbackBps, b.HoldbackBps)
	}
	if _, err := r.rq.SubmitTogether(t.Context(), &spec, 0, RemoteOptions{}); err == nil {
		t.Fatal("0 jobs together: accepted")
	}
}
