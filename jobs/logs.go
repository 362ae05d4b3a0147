package jobs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
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

// outputLog is the job's combined output (stdout and stderr as they
// came), the file Logs and ReadLog read.
func (m *Manager) outputLog(j *Job) string { return filepath.Join(m.dir(j), "output.log") }

// LogChunk is a piece of a job's combined output, read at a byte offset.
type LogChunk struct {
	Data []byte
	// Next is the offset just past Data, where the next read starts.
	Next int64
	// Done: the job had ended before the read, so its output was whole,
	// and Data is its last piece (shorter than asked for). A piece that
	// ends exactly at the output's end leaves Done to the next read.
	Done bool
}

// ReadLog reads at most max bytes of job id's combined output from
// offset, at once, without waiting for more: a remote reader's poll. A
// job with no output yet gives an empty chunk at offset; an offset past
// the output's end gives an empty one too. Offsets count bytes of the
// current log file, which past Config.MaxLogBytes starts again (see
// rotating).
func (m *Manager) ReadLog(id string, offset int64, max int) (LogChunk, error) {
	if offset < 0 {
		return LogChunk{}, fmt.Errorf("logs: offset %d: want 0 or more", offset)
	}
	if max <= 0 {
		return LogChunk{}, fmt.Errorf("logs: read of %d bytes: want 1 or more", max)
	}
	// The state first: a job's output is written whole before it ends,
	// so a job seen ended here has nothing more to come.
	j, err := m.Get(id)
	if err != nil {
		return LogChunk{}, err
	}
	ended := j.State.Terminal()
	f, err := os.Open(m.outputLog(j))
	if errors.Is(err, fs.ErrNotExist) {
		return LogChunk{Next: offset, Done: ended}, nil
	}
	if err != nil {
		return LogChunk{}, fmt.Errorf("logs: %w", err)
	}
	defer f.Close()
	// No more than the file holds now: a reader asks for large pieces
	// of what is mostly a short log.
	n := max
	if st, err := f.Stat(); err == nil {
		n = int(min(int64(max), st.Size()-min(offset, st.Size())))
	}
	buf := make([]byte, n)
	k, err := io.ReadFull(io.NewSectionReader(f, offset, int64(max)), buf)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return LogChunk{}, fmt.Errorf("logs: offset %d: %w", offset, err)
	}
	return LogChunk{Data: buf[:k], Next: offset + int64(k), Done: ended && k < max}, nil
}
