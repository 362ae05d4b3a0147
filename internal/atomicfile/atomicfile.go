// Package atomicfile replaces a file's contents so that a crash or a
// failed write leaves either the old contents or the new, never a mix, a
// truncated file or a stray temporary: the one way the daemon's state
// files (job records, vouchers, deal records, the API file, caches) are
// written.
//
// It sits under internal/ because several top-level packages (jobs,
// market, node and node/lease) write such files and none of them may
// import the others for it; it holds only this and imports only the
// standard library.
package atomicfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFile replaces path with data, with permissions perm (umask does
// not apply). It writes a temporary file of its own in path's directory
// (so that concurrent writers of one path never share one, and the
// rename stays on one file system), syncs it, renames it over path and
// syncs the directory, so that the rename itself survives a crash. On any
// error before the rename the temporary file is removed and path is
// untouched. An error after it (syncing the directory) means the new
// contents are in place but may not survive a crash. Errors name path.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	if err := write(path, data, perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func write(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
