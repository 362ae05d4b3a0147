package node

import (
	"net"
	"strconv"
	"testing"
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
