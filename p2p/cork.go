package p2p

import (
	"context"
	"io"
	"net"
	"sync"

	ic "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
	tptu "github.com/libp2p/go-libp2p/p2p/net/upgrader"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
)

// Go's TLS writes each record of a Write (16 KiB of plaintext at most)
// with a call of its own on the connection below, so a yamux frame of
// 64 KiB cost four system calls. corkedTLS is libp2p's TLS with a
// corkConn under it: the records of one Write are gathered and written
// together when the Write ends. The bytes on the wire, and so the
// protocol, are those of libp2p's TLS (a peer without this change reads
// them as ever); only how many calls carry them changes.

const (
	// recordPlaintext is the most one TLS record carries: a Write of no
	// more is one record, which goes out as it is.
	recordPlaintext = 16 << 10
	// corkLimit bounds what one corkConn gathers: past it, what was
	// gathered is written before more is taken. A yamux frame (64 KiB)
	// is five records at most, well within it.
	corkLimit = 128 << 10
)

// corkPool holds the gathering buffers, taken by a Write that gathers
// and given back when it ends: an idle connection holds none.
var corkPool = sync.Pool{New: func() any { b := make([]byte, 0, corkLimit); return &b }}

// corkedTLS is libp2p's TLS transport with corked connections.
type corkedTLS struct{ *tls.Transport }

// newCorkedTLS has tls.New's signature, for libp2p.Security.
func newCorkedTLS(id protocol.ID, key ic.PrivKey, muxers []tptu.StreamMuxer) (*corkedTLS, error) {
	t, err := tls.New(id, key, muxers)
	if err != nil {
		return nil, err
	}
	return &corkedTLS{t}, nil
}

func (t *corkedTLS) SecureInbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	return corked(insecure, func(c net.Conn) (sec.SecureConn, error) { return t.Transport.SecureInbound(ctx, c, p) })
}

func (t *corkedTLS) SecureOutbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	return corked(insecure, func(c net.Conn) (sec.SecureConn, error) { return t.Transport.SecureOutbound(ctx, c, p) })
}

// corked secures insecure with a corkConn between them.
func corked(insecure net.Conn, secure func(net.Conn) (sec.SecureConn, error)) (sec.SecureConn, error) {
	cc := &corkConn{Conn: insecure}
	sc, err := secure(cc)
	if err != nil {
		return nil, err
	}
	return &corkedConn{SecureConn: sc, cork: cc}, nil
}

// corkedConn is a secure connection whose Write of more than one record
// holds its cork: the records go out in one call when the Write ends.
type corkedConn struct {
	sec.SecureConn
	cork *corkConn
}

func (c *corkedConn) Write(b []byte) (int, error) {
	if len(b) <= recordPlaintext {
		return c.SecureConn.Write(b)
	}
	c.cork.hold()
	n, err := c.SecureConn.Write(b)
	if ferr := c.cork.release(); err == nil && ferr != nil {
		// TLS counted the bytes as sent; they were not.
		return 0, ferr
	}
	return n, err
}

// corkConn gathers the writes made while it is held and writes them in
// one call when a holder releases it (or when corkLimit is reached).
// Writes while nobody holds it (a TLS alert from the reading side, say)
// go straight through, after what was gathered: the bytes leave in the
// order they were written, and each write's bytes together. Nothing
// gathered waits for more: the release of the Write that holds it
// writes it. A failed write is kept and returned by every later one, as
// TLS does with its own.
type corkConn struct {
	net.Conn

	mu   sync.Mutex
	held int
	buf  *[]byte // nil while nothing is gathered
	err  error
}

func (c *corkConn) hold() {
	c.mu.Lock()
	c.held++
	c.mu.Unlock()
}

// release ends one hold and writes what was gathered (with another hold
// still on, that holder's records so far too: each is whole).
func (c *corkConn) release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held--
	return c.flushLocked()
}

func (c *corkConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.held == 0 || len(b) > corkLimit {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		return c.writeLocked(b)
	}
	if c.buf != nil && len(*c.buf)+len(b) > corkLimit {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	if c.buf == nil {
		c.buf = corkPool.Get().(*[]byte)
	}
	*c.buf = append(*c.buf, b...)
	return len(b), nil
}

// flushLocked writes what was gathered and gives the buffer back.
func (c *corkConn) flushLocked() error {
	if c.buf == nil {
		return c.err
	}
	bp := c.buf
	c.buf = nil
	if c.err == nil {
		c.writeLocked(*bp)
	}
	*bp = (*bp)[:0]
	corkPool.Put(bp)
	return c.err
}

// writeLocked writes b below; a failure (or a short write) sticks.
func (c *corkConn) writeLocked(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		c.err = err
	}
	return n, err
}

// Close closes the connection first, which ends a write blocked under
// the lock, then drops what is gathered: the Write that holds it fails.
func (c *corkConn) Close() error {
	err := c.Conn.Close()
	c.mu.Lock()
	if c.buf != nil {
		*c.buf = (*c.buf)[:0]
		corkPool.Put(c.buf)
		c.buf = nil
	}
	if c.err == nil {
		c.err = net.ErrClosed
	}
	c.mu.Unlock()
	return err
}
