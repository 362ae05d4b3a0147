package canon

import (
	"errors"
	"strings"
	"testing"
)

type msg struct {
	V uint8  `cbor:"v"`
	S string `cbor:"s"`
}

// Decode takes a message's canonical bytes only, within its size and
// structure bounds; DecodeVersion only of its version.
func TestDecode(t *testing.T) {
	c := New(Bounds{MaxArrayElements: 16, MaxMapPairs: 16, MaxNestedLevels: 4})
	good, err := c.Marshal(msg{V: 1, S: "x"})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := c.Marshal(msg{V: 2, S: "x"})
	if err != nil {
		t.Fatal(err)
	}
	// The same map with its keys in the other order: valid CBOR, not
	// the canonical encoding.
	swapped := []byte{0xa2, 0x61, 'v', 0x01, 0x61, 's', 0x61, 'x'}
	for _, tc := range []struct {
		name  string
		raw   []byte
		limit int
		want  string // "" to decode
	}{
		{"canonical", good, 64, ""},
		{"over the limit", good, len(good) - 1, "over the"},
		{"keys out of order", swapped, 64, "not canonical"},
		{"unknown field", []byte{0xa1, 0x61, 'z', 0x01}, 64, "unknown field"},
		{"duplicate key", []byte{0xa2, 0x61, 'v', 0x01, 0x61, 'v', 0x02}, 64, "duplicate"},
		{"indefinite length", []byte{0xbf, 0x61, 'v', 0x01, 0xff}, 64, "indefinite"},
		{"another version", v2, 64, "version 2, want 1"},
	} {
		var m msg
		err := c.DecodeVersion(tc.raw, tc.limit, &m, func() uint8 { return m.V }, 1)
		switch {
		case tc.want == "" && err != nil:
			t.Fatalf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(strings.ToLower(err.Error()), tc.want)):
			t.Fatalf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	var m msg
	if err := c.Decode(swapped, 64, &m); !errors.Is(err, ErrNotCanonical) {
		t.Fatalf("a non-canonical encoding: %v, want ErrNotCanonical", err)
	}
}
