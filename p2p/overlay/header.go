package overlay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/aixblock/aixblock/internal/canon"
)

// Version is the port protocol's version; a header with another is refused.
const Version = 1

// MaxHeaderBytes bounds the CBOR header; MaxReplyBytes the reply line.
const (
	MaxHeaderBytes = 256
	MaxReplyBytes  = 256
)

// ErrHeader marks a header that could not be read or is invalid.
var ErrHeader = errors.New("port header")

// Header opens every port stream: which port of which job the peer wants.
type Header struct {
	Version int    `cbor:"v"`
	JobID   string `cbor:"j"`
	Port    int    `cbor:"p"`
}

// Job IDs are 16 hex digits today; the header allows a little more so the
// format outlives that, but never anything that is not a plain name.
var jobIDRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$`)

func (h Header) validate() error {
	switch {
	case h.Version != Version:
		return fmt.Errorf("%w: version %d, this node speaks %d", ErrHeader, h.Version, Version)
	case !jobIDRE.MatchString(h.JobID):
		return fmt.Errorf("%w: job ID %q is not a job ID", ErrHeader, truncate(h.JobID, 70))
	case h.Port < 1 || h.Port > 65535:
		return fmt.Errorf("%w: port %d: want 1 to 65535", ErrHeader, h.Port)
	}
	return nil
}

var codec = canon.New(canon.Bounds{MaxArrayElements: 16, MaxMapPairs: 16, MaxNestedLevels: 4})

// encodeHeader is the frame: a uvarint length, then the canonical CBOR.
func encodeHeader(h Header) ([]byte, error) {
	body, err := codec.Marshal(h)
	if err != nil {
		return nil, err
	}
	if len(body) > MaxHeaderBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrHeader, len(body), MaxHeaderBytes)
	}
	return append(binary.AppendUvarint(nil, uint64(len(body))), body...), nil
}

// decodeHeader checks a header's CBOR body.
func decodeHeader(body []byte) (Header, error) {
	var h Header
	if err := codec.Unmarshal(body, &h); err != nil {
		return Header{}, fmt.Errorf("%w: %v", ErrHeader, err)
	}
	return h, h.validate()
}

// readHeader reads one header frame and not a byte more: what follows on
// the stream belongs to the service.
func readHeader(r io.Reader) (Header, error) {
	size, err := binary.ReadUvarint(byteReader{r})
	if err != nil {
		return Header{}, fmt.Errorf("%w: length: %v", ErrHeader, err)
	}
	if size == 0 || size > MaxHeaderBytes {
		return Header{}, fmt.Errorf("%w: %d bytes, limit %d", ErrHeader, size, MaxHeaderBytes)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(r, body); err != nil {
		return Header{}, fmt.Errorf("%w: body: %v", ErrHeader, err)
	}
	return decodeHeader(body)
}

// readLine reads up to '\n', one byte at a time so that nothing of the
// service's bytes after it is consumed, and at most max bytes.
func readLine(r io.Reader, max int) (string, error) {
	var line []byte
	br := byteReader{r}
	for len(line) < max {
		b, err := br.ReadByte()
		if err != nil {
			return string(line), err
		}
		if b == '\n' {
			return string(line), nil
		}
		line = append(line, b)
	}
	return string(line), fmt.Errorf("reply over %d bytes", max)
}

type byteReader struct{ r io.Reader }

func (b byteReader) ReadByte() (byte, error) {
	var one [1]byte
	_, err := io.ReadFull(b.r, one[:])
	return one[0], err
}

// truncate keeps s to one printable line of at most n bytes, for logs
// and replies (a reason may quote what a stranger sent).
func truncate(s string, n int) string {
	var b strings.Builder
	for _, r := range s {
		if r < ' ' || r == 0x7f || r == utf8.RuneError {
			r = ' '
		}
		if b.Len()+utf8.RuneLen(r) > n {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}
