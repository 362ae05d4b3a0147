package overlay

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzPortHeader feeds the provider's header reader what any peer can
// send: it must never panic, never read past the frame, and whatever it
// accepts must be valid and survive a round trip.
func FuzzPortHeader(f *testing.F) {
	good, _ := encodeHeader(Header{Version: Version, JobID: "0123456789abcdef", Port: 8080})
	f.Add(good)
	f.Add(append(good, "GET / HTTP/1.1\r\n"...))
	f.Add(frameOf(map[string]any{"v": 1, "j": "job1", "p": 65535}))
	f.Add(frameOf(map[string]any{"v": 1, "j": "job1", "p": 8080, "x": 1}))
	f.Add(frameOf(map[string]any{"v": 1, "j": "job1", "j ": "dup", "p": 1}))
	f.Add(frameOf([]any{1, "job1", 8080}))
	f.Add(binary.AppendUvarint(nil, 1<<40))
	f.Add([]byte{0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		h, err := readHeader(r)
		if err != nil {
			return
		}
		if err := h.validate(); err != nil {
			t.Fatalf("accepted an invalid header %+v: %v", h, err)
		}
		size, n := binary.Uvarint(b)
		if consumed := len(b) - r.Len(); n <= 0 || consumed != n+int(size) {
			t.Fatalf("read %d bytes of a %d-byte frame", consumed, n+int(size))
		}
		again, err := encodeHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		h2, err := readHeader(bytes.NewReader(again))
		if err != nil || h2 != h {
			t.Fatalf("round trip: %+v, %v; want %+v", h2, err, h)
		}
	})
}
