package overlay

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// BenchmarkForward compares small HTTP requests through a forward (two
// libp2p hosts on loopback, the provider dialing the server) with the
// same requests straight to the server, in one run: requests per second
// and p50/p99 latency on a kept-alive connection, and the p50 time to the
// first byte of a new connection (its setup), with ratios forward/direct.
func BenchmarkForward(b *testing.B) {
	hs := newHosts(b, 2)
	provider, requester := hs[0], hs[1]
	target := httpServer(b)
	newServer(b, provider, allowOnly(requester.ID(), "job1", 8080, target))
	f := forward(b, requester, provider.ID(), "job1", 8080)
	direct, fwd := "http://"+target+"/", "http://"+f.Addr().String()+"/"

	n := max(b.N, 200)
	b.ResetTimer()
	dRate, dLat := requests(b, direct, n)
	fRate, fLat := requests(b, fwd, n)
	setups := min(n, 500)
	dSetup := firstBytes(b, target, setups)
	fSetup := firstBytes(b, f.Addr().String(), setups)
	b.StopTimer()

	b.ReportMetric(dRate, "direct-req/s")
	b.ReportMetric(fRate, "fwd-req/s")
	b.ReportMetric(fRate/dRate, "fwd/direct-req/s")
	b.ReportMetric(p2ptest.Ms(pct(dLat, 50)), "direct-p50-ms")
	b.ReportMetric(p2ptest.Ms(pct(fLat, 50)), "fwd-p50-ms")
	b.ReportMetric(p2ptest.Ms(pct(dLat, 99)), "direct-p99-ms")
	b.ReportMetric(p2ptest.Ms(pct(fLat, 99)), "fwd-p99-ms")
	b.ReportMetric(float64(pct(fLat, 50))/float64(pct(dLat, 50)), "fwd/direct-p50")
	b.ReportMetric(p2ptest.Ms(pct(dSetup, 50)), "direct-setup-p50-ms")
	b.ReportMetric(p2ptest.Ms(pct(fSetup, 50)), "fwd-setup-p50-ms")
	b.ReportMetric(float64(pct(fSetup, 50))/float64(pct(dSetup, 50)), "fwd/direct-setup-p50")
	b.ReportMetric(0, "ns/op") // the figures above are the result
}

// requests sends n GETs one after another on one kept-alive connection.
func requests(b *testing.B, url string, n int) (perSec float64, lat []time.Duration) {
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer c.CloseIdleConnections()
	start := time.Now()
	for range n {
		t := time.Now()
		res, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		lat = append(lat, time.Since(t))
	}
	return float64(n) / time.Since(start).Seconds(), lat
}

// firstBytes times a new connection up to the first byte of its answer.
func firstBytes(b *testing.B, addr string, n int) []time.Duration {
	var out []time.Duration
	buf := make([]byte, 1)
	for range n {
		t := time.Now()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		out = append(out, time.Since(t))
		c.Close()
	}
	return out
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}
