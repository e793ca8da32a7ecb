package gateway

import (
	"bufio"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/internal/testutil"
)

// TestAbortedConnectionCannotDeafenTheNextOne forces the interleaving the
// adversarial review found: a parked connection aborted from another
// goroutine (a slow consumer cut off by a publish) had its socket closed
// at once; a new connection took the same descriptor number and parked;
// then the old reader's forget removed that number, now the new
// connection's, from the parker's epoll set, and the new connection went
// deaf until its keep-alive timeout. Here the old reader is held in forget
// until the new connection has parked, and the new connection is accepted
// right after the abort, when the lowest free descriptor is the one the
// abort would free. The new connection must answer at once.
func TestAbortedConnectionCannotDeafenTheNextOne(t *testing.T) {
	srv, addr := startServer(t, Config{KeepAliveTimeout: time.Minute})
	old := dialPeer(t, addr)
	old.send(`{"type":"ping","id":"1"}` + "\n")
	expectFrame(t, old.nextSkipping(), "pong", "1", "")
	var oldConn *Conn
	srv.Range(func(c *Conn) bool { oldConn = c; return false })
	testutil.Eventually(t, "the first connection to park", func() bool { return oldConn.w.parked.Load() })

	newParked := make(chan struct{})
	var held atomic.Bool
	setTestHookForget(t, func(c *Conn) {
		if c == oldConn && held.CompareAndSwap(false, true) {
			select { // hold the old reader here until the newcomer parked
			case <-newParked:
			case <-time.After(waitTimeout):
			}
		}
	})
	// The client's socket exists before the abort, so the descriptor the
	// abort might free goes to the server's accept, not to the client.
	next := connectAfter(t, addr, func() { oldConn.w.abort(causeSlowConsumer) },
		func() bool { return srv.ConnectionCount() == 2 })
	var nextConn *Conn
	testutil.Eventually(t, "the new connection to open and park", func() bool {
		srv.Range(func(c *Conn) bool {
			if c != oldConn {
				nextConn = c
			}
			return true
		})
		return nextConn != nil && nextConn.w.parked.Load()
	})
	t.Logf("old fd %d new fd %d", oldConn.w.fd, nextConn.w.fd)
	if nextConn.w.fd == oldConn.w.fd {
		t.Fatalf("the new connection got fd %d while the old one still held it", nextConn.w.fd)
	}
	close(newParked)
	testutil.Eventually(t, "the old connection to end", func() bool { return oldConn.State() == "closed" })
	next.SetDeadline(time.Now().Add(2 * time.Second)) // the keep-alive timeout is a minute: an answer now is the parker's
	if _, err := next.Write([]byte(`{"type":"ping","id":"2"}` + "\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(next).ReadString('\n')
	if err != nil {
		t.Fatalf("the new connection went deaf: %v", err)
	}
	if want := `"type":"pong"`; !strings.Contains(line, want) {
		t.Fatalf("got %q, want a pong", line)
	}
}

// connectAfter makes a TCP socket, runs between, connects the socket to
// addr (IPv4 loopback), waits until accepted reports the server took it,
// and returns it as a net.Conn (made only then: it takes a descriptor of
// its own, which must not be the one the server was to get).
func connectAfter(t *testing.T, addr string, between func(), accepted func() bool) net.Conn {
	t.Helper()
	host, portText, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portText)
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	between()
	sa := &syscall.SockaddrInet4{Port: port}
	copy(sa.Addr[:], net.ParseIP(host).To4())
	if err := syscall.Connect(fd, sa); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	testutil.Eventually(t, "the server to accept", accepted)
	f := os.NewFile(uintptr(fd), "client")
	defer f.Close()
	nc, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}
