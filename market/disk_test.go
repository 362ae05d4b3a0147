package market

import (
	"strings"
	"testing"
	"time"
)

// A requester leaves disk_mib out of its job, which would then have no
// disk bound on the provider: a provider that requires one refuses the
// offer and names the field; one with a default bound bids, and the deal's
// job is bounded by it.
func TestMarketJobsGetADiskBound(t *testing.T) {
	nodes := startMarket(t, "marketdisk", []nodeSpec{
		{"dgxh100", map[string]string{h100: "1000"}},
		{"", nil},
	}, Config{ReserveFor: 10 * time.Second, RequireDiskMiB: true})
	prov, evil := nodes[0], nodes[1]
	_, nb := hostileOffer(t, evil, prov, time.Now(), nil)
	if nb == nil || nb.Code != NoBidDisk || !strings.Contains(nb.Detail, "resources.disk_mib") {
		t.Fatalf("an offer with no disk_mib where one is required: %+v", nb)
	}
	if b, nb := hostileOffer(t, evil, prov, time.Now().Add(1), func(o *JobOffer) { o.Req.DiskMiB = 1024 }); b == nil {
		t.Fatalf("an offer with disk_mib where one is required: %+v", nb)
	}

	nodes = startMarket(t, "marketdiskdefault", []nodeSpec{
		{"dgxh100", map[string]string{h100: "1000"}},
		{"", nil},
	}, Config{ReserveFor: 10 * time.Second, DefaultDiskMiB: 2048})
	prov, evil = nodes[0], nodes[1]
	for _, c := range []struct {
		asked, bound uint64
	}{{0, 2048}, {512, 512}} {
		var off JobOffer
		b, nb := hostileOffer(t, evil, prov, time.Now().Add(time.Duration(c.asked)), func(o *JobOffer) { o.Req.DiskMiB = c.asked; off = *o })
		if b == nil {
			t.Fatalf("disk_mib %d: %+v", c.asked, nb)
		}
		d, err := evil.m.award(t.Context(), &off, b)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := prov.m.DiskBound(d.ID); !ok || got != c.bound {
			t.Fatalf("a job that asked disk_mib %d runs with a bound of %d MiB (%v), want %d", c.asked, got, ok, c.bound)
		}
	}
}
