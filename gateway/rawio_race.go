//go:build unix && race

package gateway

import "syscall"

// The race detector's build reads and writes through package syscall, whose
// calls tell the detector that what one goroutine wrote to a socket another
// read (see rawio.go).

func readNonblocking(fd uintptr, b []byte) (int, error) {
	n, err := syscall.Read(int(fd), b)
	return max(n, 0), err
}

func writeNonblocking(fd uintptr, b []byte) (int, error) {
	n, err := syscall.Write(int(fd), b)
	return max(n, 0), err
}
