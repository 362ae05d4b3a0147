package jobs

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// rotating is a log file that, past max bytes, moves to NAME.1 (replacing
// the previous one) and starts again, so a chatty job keeps at most twice
// max on disk.
type rotating struct {
	mu   sync.Mutex
	path string
	max  int64
	f    *os.File
	n    int64
}

func openRotating(path string, max int64, truncate bool) (*rotating, error) {
	flag := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if truncate {
		flag |= os.O_TRUNC
	}
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	st, _ := f.Stat()
	return &rotating{path: path, max: max, f: f, n: st.Size()}, nil
}

func (r *rotating) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n+int64(len(p)) > r.max && r.n > 0 {
		r.f.Close()
		os.Rename(r.path, r.path+".1")
		f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return 0, err
		}
		r.f, r.n = f, 0
	}
	n, err := r.f.Write(p)
	r.n += int64(n)
	return n, err
}

func (r *rotating) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Close()
}

var _ io.WriteCloser = (*rotating)(nil)
