// Package netfake gives tests network peers that misbehave in ways a real
// server cannot be told to: a host that never answers a connection.
package netfake

import (
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"
)

// Silent returns the address of a listener that never accepts and whose
// accept queue is full, so a further dial gets no answer at all and only a
// dial timeout ends it: a host that is down. (Addresses meant to be
// unroutable are not reliable: a sandbox may answer for any address.)
func Silent(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for i := 0; i < 8; i++ { // fill the queue; later dials hang
		d := net.Dialer{Timeout: 200 * time.Millisecond}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return addr
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatal("the accept queue never filled")
	return ""
}
