package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// A job that sets resources.disk_mib gets a filesystem of its own: a
// sparse file of disk_mib in the job's directory, made ext4 and
// loop-mounted (nosuid, nodev) at disk/, which holds the fetched inputs
// and the /outputs the container writes. The kernel refuses the write
// that would pass the limit (ENOSPC), so nothing overruns it between
// polls, and the host's disk outside it is untouched. The file is sparse,
// so a job takes only what it writes, never more than disk_mib. When the
// job's scratch is cleaned the filesystem is unmounted (its loop device
// goes with it) and the file deleted.
//
// This needs root, mkfs.ext4, mount and loop devices. A provider without
// them still runs jobs that leave disk_mib out; one that sets it fails
// at once with the reason, rather than running with a limit it cannot
// keep.

// MinDiskMiB is the smallest disk_mib: ext4 needs room for its own
// tables.
const MinDiskMiB = 8

const (
	diskImage = "disk.img"
	diskMount = "disk"
)

// diskSupport says why this host cannot enforce disk_mib, or nil.
func diskSupport() error {
	if os.Geteuid() != 0 {
		return errors.New("the daemon is not root, so it cannot mount a filesystem per job")
	}
	for _, tool := range []string{"mkfs.ext4", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed (e2fsprogs, util-linux)", tool)
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return fmt.Errorf("no loop devices (%v)", err)
	}
	return nil
}

// scratch is where a job's inputs and outputs live: its own filesystem
// when it has a disk limit, else its directory.
func (m *Manager) scratch(j *Job) string {
	if j.Spec.Resources.DiskMiB > 0 {
		return filepath.Join(m.dir(j), diskMount)
	}
	return m.dir(j)
}

// makeDisk creates and mounts the job's filesystem of mib MiB in dir.
func makeDisk(ctx context.Context, dir string, mib uint64) error {
	img, mnt := filepath.Join(dir, diskImage), filepath.Join(dir, diskMount)
	f, err := os.OpenFile(img, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(int64(mib) << 20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// No reserved blocks (the job gets all of disk_mib) and no journal
	// (scratch that dies with the job needs no crash recovery).
	if out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", img).CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4: %v: %s", err, strings.TrimSpace(string(out)))
	}
	// The mount point stays empty and unwritable underneath: an engine
	// that did not see the mount would find no inputs or outputs there
	// and fail the job, rather than let it write to the host's disk.
	if err := os.Mkdir(mnt, 0o500); err != nil {
		return err
	}
	if err := mountDisk(ctx, dir); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(mnt, "inputs"), 0o755); err != nil {
		return err
	}
	return nil
}

// mountDisk mounts dir's disk image at its mount point, if it is not
// mounted already (after a reboot, say).
func mountDisk(ctx context.Context, dir string) error {
	img, mnt := filepath.Join(dir, diskImage), filepath.Join(dir, diskMount)
	if mounted(mnt) {
		return nil
	}
	if _, err := os.Stat(img); err != nil {
		return fmt.Errorf("the job's disk: %w", err)
	}
	out, err := exec.CommandContext(ctx, "mount", "-t", "ext4", "-o", "loop,nosuid,nodev", img, mnt).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mount the job's disk: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// mounted reports whether p is a mount point (its device differs from
// its parent's).
func mounted(p string) bool {
	var a, b syscall.Stat_t
	if syscall.Lstat(p, &a) != nil || syscall.Lstat(filepath.Dir(p), &b) != nil {
		return false
	}
	return a.Dev != b.Dev
}

// removeDisk unmounts and deletes dir's disk, if it has one.
func removeDisk(dir string) error {
	img, mnt := filepath.Join(dir, diskImage), filepath.Join(dir, diskMount)
	if mounted(mnt) {
		if err := syscall.Unmount(mnt, 0); err != nil {
			// Still busy (a container the engine has not let go of):
			// detach it now; the kernel frees it with the last user.
			if err2 := syscall.Unmount(mnt, syscall.MNT_DETACH); err2 != nil {
				return fmt.Errorf("unmount %s: %w", mnt, err)
			}
		}
	}
	if err := os.Remove(mnt); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := os.Remove(img); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// diskFull reports whether the filesystem at mnt is out of room: no
// inodes, or (nearly) no blocks. A write fails with ENOSPC while statfs
// still shows a little free (ext4 keeps blocks back for its own tables),
// so nearly means under 1 MiB plus 1/128 of the disk. A job that
// exited 0 counts as full only with nothing at all left, so one that
// handled its disk well is not failed for using it.
func diskFull(mnt string, exited0 bool) bool {
	var st syscall.Statfs_t
	if syscall.Statfs(mnt, &st) != nil {
		return false
	}
	if st.Ffree == 0 || st.Bavail == 0 {
		return true
	}
	return !exited0 && st.Bavail*uint64(st.Bsize) < 1<<20+st.Blocks*uint64(st.Bsize)/128
}

// diskExceeded is the reason of a job that filled its disk.
func diskExceeded(mib uint64, what string) string {
	return fmt.Sprintf("disk_mib %d exceeded: %s (raise resources.disk_mib)", mib, what)
}
