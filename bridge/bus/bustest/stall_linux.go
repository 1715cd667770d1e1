package bustest

import (
	"fmt"
	"maps"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/screenpop/screenpop/internal/testenv"
)

// StallDisk is a directory on a file system whose writes can be made to
// stop answering and then answer again: a stalled EBS volume, an NFS
// server gone away. It is a FUSE passthrough, served by this test
// process, of a directory of its own: while stalled, every call that
// writes (write, fsync, create, mkdir, rename, unlink, truncate,
// fallocate) blocks in the kernel for the caller, as a disk that does not
// answer does, until Resume; reads and lookups still answer (from cache,
// as they mostly do on such a disk).
//
// Only a process other than the test's should use it (the daemon in a
// child process): a write of the test binary itself would block it.
type StallDisk struct {
	// Dir is the mount point.
	Dir string

	mu      sync.Mutex
	gate    chan struct{} // nil while answering; closed by Resume
	blocked atomic.Int64
	ops     map[string]int
}

// MountStallDisk mounts a StallDisk on a temporary directory. It needs
// /dev/fuse and root (mount(2) is called directly: no fusermount), a
// missing dependency by testenv's rule (failed in CI). The cleanup
// resumes the disk, then unmounts it lazily, so a daemon still running
// (killed by its own cleanup, registered later, so run earlier) neither
// hangs the test's end nor is left blocked.
func MountStallDisk(t *testing.T) *StallDisk {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testenv.Missing(t, fmt.Sprintf("/dev/fuse, for a FUSE file system that stalls (modprobe fuse; a container needs --device /dev/fuse): %v", err))
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root, to mount a FUSE file system that stalls (run the tests as root)")
	}
	backing, mnt := t.TempDir(), t.TempDir()
	root, err := fs.NewLoopbackRoot(backing)
	if err != nil {
		t.Fatal(err)
	}
	d := &StallDisk{Dir: mnt, ops: map[string]int{}}
	sec := time.Second
	raw := fs.NewNodeFS(root, &fs.Options{EntryTimeout: &sec, AttrTimeout: &sec})
	srv, err := fuse.NewServer(stallFS{raw, d}, mnt, &fuse.MountOptions{
		DirectMountStrict: true,
		FsName:            "stalldisk",
		Name:              "stalldisk",
		// Not the kernel's passthrough (Linux 6.9+), which would send
		// reads and writes to the backing file without asking us.
		DisabledCapabilities: fuse.CAP_PASSTHROUGH,
	})
	if err != nil {
		testenv.Missing(t, fmt.Sprintf("mounting a FUSE file system (root and /dev/fuse; a container needs --device /dev/fuse --cap-add SYS_ADMIN): %v", err))
	}
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve() }()
	if err := srv.WaitMount(); err != nil {
		_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
		t.Fatalf("FUSE mount: %v", err)
	}
	t.Cleanup(func() {
		d.Resume()
		_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			// A process outside the test still holds a file open on it:
			// the lazy unmount ends the mount once it lets go.
			t.Logf("the stalling FUSE mount %s is still in use 10 s after its lazy unmount", mnt)
		}
	})
	return d
}

// Stall makes every later (and pending) write on the disk block until
// Resume.
func (d *StallDisk) Stall() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gate == nil {
		d.gate = make(chan struct{})
	}
}

// Resume answers the writes blocked since Stall, and the later ones at
// once.
func (d *StallDisk) Resume() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gate != nil {
		close(d.gate)
		d.gate = nil
	}
}

// Blocked is the number of calls waiting on the stalled disk now.
func (d *StallDisk) Blocked() int { return int(d.blocked.Load()) }

// wait blocks while the disk is stalled. Like a disk (a process blocked on
// it is in D state), it does not give way to the caller's signals.
func (d *StallDisk) wait(op string) {
	d.mu.Lock()
	g := d.gate
	if g != nil {
		d.ops[op]++
	}
	d.mu.Unlock()
	if g == nil {
		return
	}
	d.blocked.Add(1)
	<-g
	d.blocked.Add(-1)
}

// BlockedOps counts the calls blocked by a stall so far, by operation
// (Write, Fsync, Create...).
func (d *StallDisk) BlockedOps() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return maps.Clone(d.ops)
}

// stallFS is the passthrough with its writing calls gated.
type stallFS struct {
	fuse.RawFileSystem
	d *StallDisk
}

func (s stallFS) Write(c <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	s.d.wait("Write")
	return s.RawFileSystem.Write(c, in, data)
}

func (s stallFS) Writev(c <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	s.d.wait("Writev")
	return s.RawFileSystem.Writev(c, in, data)
}

func (s stallFS) Fsync(c <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	s.d.wait("Fsync")
	return s.RawFileSystem.Fsync(c, in)
}

func (s stallFS) FsyncDir(c <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	s.d.wait("FsyncDir")
	return s.RawFileSystem.FsyncDir(c, in)
}

func (s stallFS) Fallocate(c <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	s.d.wait("Fallocate")
	return s.RawFileSystem.Fallocate(c, in)
}

func (s stallFS) CopyFileRange(c <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	s.d.wait("CopyFileRange")
	return s.RawFileSystem.CopyFileRange(c, in)
}

func (s stallFS) SetAttr(c <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	s.d.wait("SetAttr")
	return s.RawFileSystem.SetAttr(c, in, out)
}

func (s stallFS) Create(c <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	s.d.wait("Create")
	return s.RawFileSystem.Create(c, in, name, out)
}

func (s stallFS) Mknod(c <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	s.d.wait("Mknod")
	return s.RawFileSystem.Mknod(c, in, name, out)
}

func (s stallFS) Mkdir(c <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	s.d.wait("Mkdir")
	return s.RawFileSystem.Mkdir(c, in, name, out)
}

func (s stallFS) Unlink(c <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	s.d.wait("Unlink")
	return s.RawFileSystem.Unlink(c, h, name)
}

func (s stallFS) Rmdir(c <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	s.d.wait("Rmdir")
	return s.RawFileSystem.Rmdir(c, h, name)
}

func (s stallFS) Rename(c <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	s.d.wait("Rename")
	return s.RawFileSystem.Rename(c, in, oldName, newName)
}

func (s stallFS) Link(c <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	s.d.wait("Link")
	return s.RawFileSystem.Link(c, in, name, out)
}

func (s stallFS) Symlink(c <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	s.d.wait("Symlink")
	return s.RawFileSystem.Symlink(c, h, target, name, out)
}
