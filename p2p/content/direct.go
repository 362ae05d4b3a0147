package content

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Direct I/O, used when Config.DirectIO asks for it. A write into the page
// cache costs the kernel's page handling: on a VM whose host hands back
// the guest's freed memory, 1.5-4 ms per MiB of CPU for pages touched for
// the first time, less than 0.7 once warm. O_DIRECT moves the bytes
// between our buffer and the disk with no page cache (about 0.5 ms per
// MiB of CPU), and the data is on the device when the write returns; but
// every byte then waits for the device. Direct I/O was chosen when page
// cache writes here measured 2-4 ms/MiB; on a day this machine's disk
// moved 460 MiB/s in all (reads and writes share it), a get between two
// daemons, which reads each block once and writes it twice, could not
// pass a third of that, and the page cache made it 1.3-1.6x faster (2x
// in one process). Hence off by default.
// What it needs: a buffer, length and file offset aligned to the device's
// block (dioAlign covers 512- and 4096-byte devices); a block that is not
// aligned is copied into an aligned buffer first, and a length that is not
// a multiple is padded and the file truncated back. Filesystems without
// O_DIRECT (tmpfs, some overlays) refuse the open with EINVAL; then the
// plain page-cache path is used.

const dioAlign = 4096

func roundUp(n int) int { return (n + dioAlign - 1) &^ (dioAlign - 1) }

func isAligned(b []byte) bool {
	return len(b) > 0 && uintptr(unsafe.Pointer(unsafe.SliceData(b)))&(dioAlign-1) == 0
}

// alignedBuf is a buffer of roundUp(n) bytes whose start is aligned.
func alignedBuf(n int) []byte {
	size := roundUp(n)
	if b := make([]byte, size); isAligned(b) { // Go's large objects start on a page
		return b
	}
	b := make([]byte, size+dioAlign)
	off := 0
	if r := int(uintptr(unsafe.Pointer(unsafe.SliceData(b))) & (dioAlign - 1)); r != 0 {
		off = dioAlign - r
	}
	return b[off : off+size : off+size]
}

// dioPool holds 1 MiB aligned buffers for copying unaligned blocks.
var dioPool = sync.Pool{New: func() any { b := alignedBuf(1 << 20); return &b }}

// setDirect turns O_DIRECT on for fd; false when the filesystem does not
// do direct I/O (the descriptor then stays as it was). Setting it after
// the open, rather than opening with it, leaves no half-made file behind
// an open that fails.
func setDirect(fd int) bool {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return false
	}
	_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl|unix.O_DIRECT)
	return err == nil
}

// writeNew writes data as the whole content of the new file path
// (O_EXCL), with O_DIRECT where the filesystem allows and direct is set.
// It says whether it wrote directly.
func writeNew(path string, data []byte, direct bool) (wrote bool, err error) {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return false, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer func() {
		if cerr := unix.Close(fd); err == nil && cerr != nil {
			err = &fs.PathError{Op: "close", Path: path, Err: cerr}
		}
	}()
	if direct && setDirect(fd) {
		return true, writeAllDirect(fd, path, data)
	}
	return false, writeFull(fd, path, data)
}

// writeAllDirect writes data at the descriptor's (aligned) offset and
// leaves the file exactly len(data) longer.
func writeAllDirect(fd int, path string, data []byte) error {
	whole := len(data) &^ (dioAlign - 1)
	if isAligned(data) && whole > 0 {
		if err := writeFull(fd, path, data[:whole]); err != nil {
			return err
		}
		data = data[whole:]
		if len(data) == 0 {
			return nil
		}
	}
	// Copy what is left through aligned buffers; pad the tail.
	bp := dioPool.Get().(*[]byte)
	defer dioPool.Put(bp)
	buf := *bp
	for len(data) > 0 {
		n := copy(buf, data)
		data = data[n:]
		padded := roundUp(n)
		clear(buf[n:padded])
		if err := writeFull(fd, path, buf[:padded]); err != nil {
			return err
		}
		if padded != n {
			off, err := unix.Seek(fd, 0, 1)
			if err != nil {
				return &fs.PathError{Op: "seek", Path: path, Err: err}
			}
			if err := unix.Ftruncate(fd, off-int64(padded-n)); err != nil {
				return &fs.PathError{Op: "truncate", Path: path, Err: err}
			}
			if len(data) > 0 {
				return fmt.Errorf("%s: unaligned write in the middle", path)
			}
		}
	}
	return nil
}

func writeFull(fd int, path string, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &fs.PathError{Op: "write", Path: path, Err: err}
		}
		b = b[n:]
	}
	return nil
}

// readDirect reads the whole file with O_DIRECT. ok is false when the
// filesystem does not do direct I/O; err wraps fs.ErrNotExist when the
// file is not there.
func readDirect(path string) (data []byte, ok bool, err error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_DIRECT, 0)
	if errors.Is(err, unix.EINVAL) {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, true, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	size := int(st.Size)
	buf := alignedBuf(size)
	n := 0
	for n < size {
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, true, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			break
		}
		n += m
	}
	if n != size {
		return nil, true, fmt.Errorf("%s: read %d of %d bytes", path, n, size)
	}
	return buf[:size:size], true, nil
}

// readFile reads path directly when the filesystem can, else through the
// page cache.
func readFile(path string) ([]byte, error) {
	data, ok, err := readDirect(path)
	if !ok {
		return os.ReadFile(path)
	}
	return data, err
}

// directFile writes a file sequentially with O_DIRECT: writes that are
// aligned go straight from the caller's buffer (a block bitswap decoded
// is), the rest through an aligned buffer; Close pads the last write and
// truncates the file back to the bytes written.
type directFile struct {
	fd    int
	path  string
	buf   []byte
	n     int
	total int64
}

const directFileBuf = 4 << 20

func (d *directFile) Write(p []byte) (int, error) {
	written := len(p)
	d.total += int64(len(p))
	if d.n == 0 {
		if whole := len(p) &^ (dioAlign - 1); whole > 0 && isAligned(p) {
			if err := writeFull(d.fd, d.path, p[:whole]); err != nil {
				return 0, err
			}
			p = p[whole:]
		}
	}
	for len(p) > 0 {
		if d.buf == nil {
			d.buf = alignedBuf(directFileBuf)
		}
		c := copy(d.buf[d.n:], p)
		d.n += c
		p = p[c:]
		if d.n == len(d.buf) {
			if err := writeFull(d.fd, d.path, d.buf); err != nil {
				return 0, err
			}
			d.n = 0
		}
	}
	return written, nil
}

// Close writes what is buffered and closes the descriptor.
func (d *directFile) Close() error {
	err := d.flush()
	if cerr := unix.Close(d.fd); err == nil && cerr != nil {
		err = &fs.PathError{Op: "close", Path: d.path, Err: cerr}
	}
	return err
}

func (d *directFile) flush() error {
	if d.n == 0 {
		return nil
	}
	padded := roundUp(d.n)
	clear(d.buf[d.n:padded])
	if err := writeFull(d.fd, d.path, d.buf[:padded]); err != nil {
		return err
	}
	d.n = 0
	if err := unix.Ftruncate(d.fd, d.total); err != nil {
		return &fs.PathError{Op: "truncate", Path: d.path, Err: err}
	}
	return nil
}
