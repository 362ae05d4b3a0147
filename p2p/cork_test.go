package p2p

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"

	ic "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/sec"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
)

// writeRecorder is the connection under a corkConn: it keeps each write
// whole, or fails them as told.
type writeRecorder struct {
	net.Conn // nil: only Write and Close are used

	mu     sync.Mutex
	writes [][]byte
	short  bool  // take one byte less than asked, without an error
	fail   error // fail every write
	closed bool
}

func (w *writeRecorder) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.closed:
		return 0, net.ErrClosed
	case w.fail != nil:
		return 0, w.fail
	case w.short:
		w.writes = append(w.writes, slices.Clone(b[:len(b)-1]))
		return len(b) - 1, nil
	}
	w.writes = append(w.writes, slices.Clone(b))
	return len(b), nil
}

func (w *writeRecorder) Close() error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	return nil
}

func (w *writeRecorder) sizes() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	var s []int
	for _, b := range w.writes {
		s = append(s, len(b))
	}
	return s
}

// corkOp is one step on a corkConn: hold (h), release (r), or a write
// of that many bytes.
type corkOp struct {
	op string
	n  int
}

var hold, release = corkOp{op: "h"}, corkOp{op: "r"}

func write(n int) corkOp { return corkOp{op: "w", n: n} }

// Writes while held are gathered into one below, up to corkLimit; the
// bytes arrive whole and in order either way.
func TestCorkConnGathers(t *testing.T) {
	tests := []struct {
		name string
		ops  []corkOp
		want []int
	}{
		{"not held: each write goes through", []corkOp{write(10), write(20)}, []int{10, 20}},
		{"held: gathered until the release", []corkOp{hold, write(100), write(200), write(300), release}, []int{600}},
		{"a release with nothing gathered writes nothing", []corkOp{hold, release}, nil},
		{"gathered up to the limit", []corkOp{hold, write(corkLimit - 10), write(100), release}, []int{corkLimit - 10, 100}},
		{"a write over the limit goes as it is", []corkOp{hold, write(10), write(corkLimit + 1), write(5), release}, []int{10, corkLimit + 1, 5}},
		{"a second holder's release writes what is gathered", []corkOp{hold, hold, write(10), release, write(20), release}, []int{10, 20}},
		{"a write after the release goes through", []corkOp{hold, write(10), release, write(20)}, []int{10, 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &writeRecorder{}
			c := &corkConn{Conn: rec}
			var sent []byte
			for _, op := range tt.ops {
				switch op.op {
				case "h":
					c.hold()
				case "r":
					if err := c.release(); err != nil {
						t.Fatal(err)
					}
				case "w":
					b := make([]byte, op.n)
					rand.Read(b)
					if n, err := c.Write(b); n != op.n || err != nil {
						t.Fatalf("Write: %d, %v", n, err)
					}
					sent = append(sent, b...)
				}
			}
			if got := rec.sizes(); !slices.Equal(got, tt.want) {
				t.Fatalf("writes below %v, want %v", got, tt.want)
			}
			if got := bytes.Join(rec.writes, nil); !bytes.Equal(got, sent) {
				t.Fatal("the bytes below are not those written, in order")
			}
		})
	}
}

// A failed or short write below sticks: the release that meets it and
// every later write return it, and nothing more is written.
func TestCorkConnWriteFailures(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name string
		rec  *writeRecorder
		want error
	}{
		{"an error", &writeRecorder{fail: boom}, boom},
		{"a short write", &writeRecorder{short: true}, io.ErrShortWrite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &corkConn{Conn: tt.rec}
			c.hold()
			if _, err := c.Write(make([]byte, 100)); err != nil {
				t.Fatalf("a gathered write failed early: %v", err)
			}
			if err := c.release(); !errors.Is(err, tt.want) {
				t.Fatalf("release: %v, want %v", err, tt.want)
			}
			before := len(tt.rec.sizes())
			if _, err := c.Write(make([]byte, 10)); !errors.Is(err, tt.want) {
				t.Fatalf("a later write: %v, want %v", err, tt.want)
			}
			c.hold()
			c.Write(make([]byte, 10))
			if err := c.release(); !errors.Is(err, tt.want) {
				t.Fatalf("a later release: %v, want %v", err, tt.want)
			}
			if after := len(tt.rec.sizes()); after != before {
				t.Fatalf("%d writes below after the failure", after-before)
			}
		})
	}
}

// Close while something is gathered closes the connection and drops it:
// the holder's release fails, and nothing reaches the closed connection.
func TestCorkConnCloseWhileGathered(t *testing.T) {
	rec := &writeRecorder{}
	c := &corkConn{Conn: rec}
	c.hold()
	c.Write(make([]byte, 100))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if !rec.closed {
		t.Fatal("the connection below is open")
	}
	if err := c.release(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("release after Close: %v, want net.ErrClosed", err)
	}
	if _, err := c.Write(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v, want net.ErrClosed", err)
	}
	if s := rec.sizes(); len(s) != 0 {
		t.Fatalf("writes below %v, want none", s)
	}
}

// Writers at once, holding or not: every write's bytes arrive whole and
// none is lost or doubled.
func TestCorkConnConcurrentWrites(t *testing.T) {
	rec := &writeRecorder{}
	c := &corkConn{Conn: rec}
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				chunk := bytes.Repeat([]byte{byte(w)}, 1000+w)
				copy(chunk, fmt.Sprintf("%d:%d;", w, i))
				held := w%2 == 0
				if held {
					c.hold()
				}
				if _, err := c.Write(chunk); err != nil {
					t.Error(err)
				}
				if held {
					if err := c.release(); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	all := bytes.Join(rec.writes, nil)
	seen := map[string]bool{}
	for len(all) > 0 {
		var w, i int
		if _, err := fmt.Sscanf(string(all[:min(len(all), 16)]), "%d:%d;", &w, &i); err != nil {
			t.Fatalf("a write's bytes are not whole: %v", err)
		}
		chunk := bytes.Repeat([]byte{byte(w)}, 1000+w)
		copy(chunk, fmt.Sprintf("%d:%d;", w, i))
		if !bytes.HasPrefix(all, chunk) {
			t.Fatalf("write %d:%d is not whole", w, i)
		}
		key := fmt.Sprintf("%d:%d", w, i)
		if seen[key] {
			t.Fatalf("write %s arrived twice", key)
		}
		seen[key] = true
		all = all[len(chunk):]
	}
	if len(seen) != writers*each {
		t.Fatalf("%d writes arrived, want %d", len(seen), writers*each)
	}
}

// countConn counts the writes made on a connection.
type countConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *countConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *countConn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

type secureTransport interface {
	SecureInbound(context.Context, net.Conn, peer.ID) (sec.SecureConn, error)
	SecureOutbound(context.Context, net.Conn, peer.ID) (sec.SecureConn, error)
}

func newTLS(t *testing.T, corked bool) (secureTransport, peer.ID) {
	t.Helper()
	key, _, err := ic.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if corked {
		tr, err := newCorkedTLS(tls.ID, key, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tr, id
	}
	tr, err := tls.New(tls.ID, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tr, id
}

// handshake secures the two ends of a pipe, client over a, server over b.
func handshake(t *testing.T, client, server secureTransport, serverID peer.ID, a, b net.Conn) (sec.SecureConn, sec.SecureConn) {
	t.Helper()
	ctx := context.Background()
	type result struct {
		c   sec.SecureConn
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := server.SecureInbound(ctx, b, "")
		done <- result{c, err}
	}()
	cc, err := client.SecureOutbound(ctx, a, serverID)
	if err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	// The pipe first: TLS's close would wait for its alert to be read.
	t.Cleanup(func() { a.Close(); b.Close(); cc.Close(); r.c.Close() })
	return cc, r.c
}

// sendAll writes data from one end in frames and reads it at the other.
func sendAll(t *testing.T, from, to net.Conn, data []byte, frame int) {
	t.Helper()
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, len(data))
		io.ReadFull(to, b)
		got <- b
	}()
	for off := 0; off < len(data); off += frame {
		if _, err := from.Write(data[off:min(off+frame, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(<-got, data) {
		t.Fatal("the bytes read are not those written")
	}
}

// Corked TLS is libp2p's TLS on the wire: it talks to the plain one
// either way round, and its writes of several records each leave in one
// call below.
func TestCorkedTLSTalksToPlain(t *testing.T) {
	const size, frame = 1 << 20, 64 << 10
	data := make([]byte, size)
	rand.Read(data)
	for _, tt := range []struct {
		name                   string
		clientCork, serverCork bool
	}{
		{"corked client, plain server", true, false},
		{"plain client, corked server", false, true},
		{"both corked", true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client, _ := newTLS(t, tt.clientCork)
			server, serverID := newTLS(t, tt.serverCork)
			p1, p2 := net.Pipe()
			a, b := &countConn{Conn: p1}, &countConn{Conn: p2}
			ca, cb := handshake(t, client, server, serverID, a, b)
			for _, dir := range []struct {
				from, to net.Conn
				below    *countConn
				corked   bool
			}{{ca, cb, a, tt.clientCork}, {cb, ca, b, tt.serverCork}} {
				before := dir.below.count()
				sendAll(t, dir.from, dir.to, data, frame)
				writes, frames := dir.below.count()-before, size/frame
				if dir.corked && writes != frames {
					t.Errorf("%d writes below for %d frames, want one each", writes, frames)
				}
				if !dir.corked && writes < 4*frames {
					t.Errorf("plain TLS made %d writes for %d frames: the test no longer shows a record per write", writes, frames)
				}
			}
		})
	}
}
