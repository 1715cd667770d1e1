package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// setServiceACL gives path the mode and access ACL systemd gives a
// LoadCredential= file when the credentials directory is a tmpfs (systemd
// 254 and later on Linux 6.4 and later; src/core/exec-credential.c,
// write_credential): 0400, and read for the service's user through an ACL
// entry, whose mask then shows in the group bits (ls -l: -r--r-----+). The
// daemon is that user; the owner is root (here: another user, when the test
// may chown). It skips the test where the file system has no ACLs.
func setServiceACL(t *testing.T, path string) {
	t.Helper()
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(path, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	const undefined = 0xffffffff
	b := binary.LittleEndian.AppendUint32(nil, 2) // POSIX_ACL_XATTR_VERSION
	for _, e := range []struct {
		tag, perm uint16
		id        uint32
	}{{0x01, 4, undefined}, {0x02, 4, uint32(os.Geteuid())}, {0x04, 0, undefined}, {0x10, 4, undefined}, {0x20, 0, undefined}} {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	if err := unix.Setxattr(path, "system.posix_acl_access", b, 0); err != nil {
		t.Skipf("no POSIX ACLs here: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o440 {
		t.Fatalf("mode %v with the ACL, want 0440 (the mask in the group bits)", fi.Mode().Perm())
	}
}

// TestDaemon_DataverseCertificateFromSystemdCredential: under the unit the
// docs prescribe (DynamicUser=yes, the file handed over with
// LoadCredential=), no one but the service may read the certificate's
// copy, so the daemon must not warn at each start that others can read it
// and that it should use LoadCredential=.
func TestDaemon_DataverseCertificateFromSystemdCredential(t *testing.T) {
	cert := mustCert(t, dataversetest.CertificateOptions{})
	file := filepath.Join(t.TempDir(), "dataverse.pem")
	if err := cert.WriteFile(file); err != nil {
		t.Fatal(err)
	}
	setServiceACL(t, file)
	logs := startCertDaemon(t, cert, file).logs
	if strings.Contains(logs.String(), "DATAVERSE_CLIENT_CERTIFICATE is readable by other users") {
		t.Error("the daemon warns that others may read a file only its own user may read (systemd's LoadCredential= copy)")
	}
}

// readableByOthers still tells a file others may read, ACL or not.
func TestReadableByOthers_ACL(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	acl := func(path string, named uint32, groupPerm uint16) {
		const undefined = 0xffffffff
		b := binary.LittleEndian.AppendUint32(nil, 2)
		for _, e := range []struct {
			tag, perm uint16
			id        uint32
		}{{0x01, 4, undefined}, {0x02, 4, named}, {0x04, groupPerm, undefined}, {0x10, 4, undefined}, {0x20, 0, undefined}} {
			b = binary.LittleEndian.AppendUint16(b, e.tag)
			b = binary.LittleEndian.AppendUint16(b, e.perm)
			b = binary.LittleEndian.AppendUint32(b, e.id)
		}
		if err := unix.Setxattr(path, "system.posix_acl_access", b, 0); err != nil {
			t.Skipf("no POSIX ACLs here: %v", err)
		}
	}
	me := uint32(os.Geteuid())
	private, groupRead, worldRead := write("private", 0o600), write("group", 0o640), write("world", 0o604)
	mine, anothers, groups := write("mine", 0o400), write("anothers", 0o400), write("groups", 0o400)
	acl(mine, me, 0)
	acl(anothers, me+1, 0)
	acl(groups, me, 4)
	for path, want := range map[string]bool{private: false, groupRead: true, worldRead: true, mine: false, anothers: true, groups: true} {
		if got := readableByOthers(path); got != want {
			t.Errorf("readableByOthers(%s) = %v, want %v", filepath.Base(path), got, want)
		}
	}
}
