package main

import (
	"encoding/binary"
	"os"

	"golang.org/x/sys/unix"
)

// aclReadableByOthers reads path's POSIX access ACL (the
// system.posix_acl_access attribute, as the kernel stores it) and reports
// whether it lets anyone read the file but its owner and this process's
// user. ok is false when the file has no ACL: then its mode bits say it.
func aclReadableByOthers(path string) (others, ok bool) {
	b := make([]byte, 4+8*128)
	n, err := unix.Getxattr(path, "system.posix_acl_access", b)
	if err != nil || n < 4 || binary.LittleEndian.Uint32(b) != 2 {
		return false, false
	}
	const (
		user, groupObj, group, mask, other = 0x02, 0x04, 0x08, 0x10, 0x20
		read                               = 4
	)
	type entry struct {
		tag, perm uint16
		id        uint32
	}
	var es []entry
	maskPerm := uint16(7)
	for p := b[4:n]; len(p) >= 8; p = p[8:] {
		e := entry{binary.LittleEndian.Uint16(p), binary.LittleEndian.Uint16(p[2:]), binary.LittleEndian.Uint32(p[4:])}
		if e.tag == mask {
			maskPerm = e.perm
		}
		es = append(es, e)
	}
	me := uint32(os.Geteuid())
	for _, e := range es {
		switch {
		case e.tag == other && e.perm&read != 0,
			(e.tag == groupObj || e.tag == group) && e.perm&maskPerm&read != 0,
			e.tag == user && e.id != me && e.perm&maskPerm&read != 0:
			return true, true
		}
	}
	return false, true
}
