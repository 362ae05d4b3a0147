package overlay

import (
	"context"
	"io"
	"net"
	"sync"

	"github.com/libp2p/go-libp2p/core/network"
)

// bufPool holds the copy buffers: two per open connection, reused rather
// than 64 KiB of garbage for each. pumpMemory is what one pump holds.
var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBuf); return &b }}

const (
	copyBuf    = 64 << 10
	pumpMemory = 2 * copyBuf
)

// pump carries bytes between a stream and a TCP connection until both
// directions have ended or ctx does. An EOF one way becomes a CloseWrite
// on the other side, so half-closing protocols (a client that shuts its
// write side and waits for the answer) work; an error either way, or the
// end of ctx, aborts both.
func pump(ctx context.Context, s network.Stream, c net.Conn) error {
	var once sync.Once
	abort := func() {
		once.Do(func() {
			s.Reset()
			c.Close()
		})
	}
	stop := context.AfterFunc(ctx, abort)
	defer stop()

	errc := make(chan error, 2)
	go func() { errc <- copyHalf(s, c, s.CloseWrite) }()
	go func() { errc <- copyHalf(c, s, func() error { return closeWrite(c) }) }()
	var first error
	for range 2 {
		if err := <-errc; err != nil && first == nil {
			first = err
			abort()
		}
	}
	if ctx.Err() != nil && first == nil {
		first = ctx.Err()
	}
	once.Do(func() {
		s.Close()
		c.Close()
	})
	return first
}

// copyHalf copies src to dst with a pooled buffer, then half-closes dst.
func copyHalf(dst io.Writer, src io.Reader, closeWrite func() error) error {
	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	// Hide ReadFrom/WriteTo: TCPConn's fallback would use its own buffer.
	_, err := io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *buf)
	if err != nil {
		return err
	}
	return closeWrite()
}

func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}
