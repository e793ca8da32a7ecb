//go:build unix && !race

package gateway

import (
	"syscall"
	"unsafe"
)

// readNonblocking and writeNonblocking read and write a non-blocking socket
// without telling the scheduler. Such a call returns at once (at worst with
// EAGAIN), and announcing it as a syscall lets the runtime's monitor hand
// the P to another thread whenever a loopback write runs long: on a busy
// server, context switches for nothing. (The race detector's build uses
// package syscall's calls, which tell it that the data crossed the socket.)
func readNonblocking(fd uintptr, b []byte) (int, error) {
	return rawIO(syscall.SYS_READ, fd, b)
}

func writeNonblocking(fd uintptr, b []byte) (int, error) {
	return rawIO(syscall.SYS_WRITE, fd, b)
}

func rawIO(trap, fd uintptr, b []byte) (int, error) {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	n, _, e := syscall.RawSyscall(trap, fd, uintptr(p), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
