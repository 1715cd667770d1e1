//go:build linux

package fdlimit

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// Close while Accept waits out EMFILE ends Accept with net.ErrClosed; once
// descriptors are free again the queued connection is accepted.
func TestListener_AcceptEMFILEThenClose(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Listen(inner, Config{Name: "t", Log: zerolog.Nop()})
	client, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = 256
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	var held []*os.File
	free := func() {
		for _, f := range held {
			f.Close()
		}
		held = nil
	}
	defer free()
	for {
		f, err := os.Open("/dev/null")
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				t.Fatal(err)
			}
			break
		}
		held = append(held, f)
	}
	type res struct {
		c   net.Conn
		err error
	}
	got := make(chan res, 1)
	go func() { c, err := ln.Accept(); got <- res{c, err} }()
	select {
	case r := <-got:
		t.Fatalf("Accept returned %v, %v while out of descriptors", r.c, r.err)
	case <-time.After(300 * time.Millisecond):
	}
	free()
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatalf("Accept after descriptors were freed: %v", r.err)
		}
		r.c.Close()
	case <-time.After(3 * time.Second):
		t.Fatal("Accept did not take the queued connection once descriptors were free")
	}
	// Again, out of descriptors with a connection queued, then Close.
	client2, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client2.Close()
	for {
		f, err := os.Open("/dev/null")
		if err != nil {
			break
		}
		held = append(held, f)
	}
	go func() { c, err := ln.Accept(); got <- res{c, err} }()
	time.Sleep(100 * time.Millisecond)
	ln.Close()
	free()
	select {
	case r := <-got:
		if !errors.Is(r.err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v, %v; want net.ErrClosed", r.c, r.err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}
