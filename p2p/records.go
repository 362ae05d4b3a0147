package p2p

import (
	"errors"
	"fmt"
	"strings"

	record "github.com/libp2p/go-libp2p-record"
)

// RecordValidator is one DHT record namespace: keys look like /<Namespace>/...
// Every value is size-checked before Check sees it, so a validator never
// parses more than MaxSize bytes from an untrusted peer.
type RecordValidator struct {
	// Namespace is the first key segment, without slashes.
	Namespace string
	// MaxSize caps a value in bytes; zero means 16 KiB.
	MaxSize int
	// Check validates a value for a key (signature, expiry, version...).
	Check func(key string, value []byte) error
	// Pick chooses the best of several valid values; nil picks the first.
	Pick func(key string, values [][]byte) (int, error)
}

// ErrRecordTooLarge is returned for values over a namespace's MaxSize.
var ErrRecordTooLarge = errors.New("record too large")

func (v RecordValidator) check() error {
	if v.Namespace == "" || strings.Contains(v.Namespace, "/") {
		return fmt.Errorf("record namespace %q: want one non-empty segment", v.Namespace)
	}
	if v.Check == nil {
		return fmt.Errorf("record namespace %q: no Check function", v.Namespace)
	}
	return nil
}

// Validate implements record.Validator.
func (v RecordValidator) Validate(key string, value []byte) error {
	max := v.MaxSize
	if max == 0 {
		max = 16 << 10
	}
	if len(value) > max {
		return fmt.Errorf("%s: %d bytes over the %d limit: %w", key, len(value), max, ErrRecordTooLarge)
	}
	return v.Check(key, value)
}

// Select implements record.Validator.
func (v RecordValidator) Select(key string, values [][]byte) (int, error) {
	if len(values) == 0 {
		return 0, errors.New("no values")
	}
	if v.Pick == nil {
		return 0, nil
	}
	return v.Pick(key, values)
}

func namespaced(rs []RecordValidator) (record.NamespacedValidator, error) {
	nv := record.NamespacedValidator{"pk": record.PublicKeyValidator{}}
	for _, r := range rs {
		if err := r.check(); err != nil {
			return nil, err
		}
		if _, dup := nv[r.Namespace]; dup {
			return nil, fmt.Errorf("record namespace %q registered twice", r.Namespace)
		}
		nv[r.Namespace] = r
	}
	return nv, nil
}
