package reliability

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/protocol"
)

// TestTenThousandConnections holds 10,000 connections with keep-alive to one
// server: every connection is answered and gets the server's keepalives. The
// server runs as its own process (each side needs 10,000 descriptors) and
// reports its memory per connection.
func TestTenThousandConnections(t *testing.T) {
	skipIfShort(t)
	const n, workers = 10000, 100
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < n+1000 {
		lim.Cur = min(lim.Max, 3*n)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < n+1000 {
			t.Fatalf("need %d file descriptors, the limit is %d (%v)", n+1000, lim.Cur, err)
		}
	}
	bin := buildSamgw(t)
	srv := startProcess(t, bin, "--keepalive-interval", "1s", "--keepalive-timeout", "20s", "--max-conns", "20000")
	before := srv.rss()

	// Each worker owns n/workers connections and serves them in turn, so the
	// test needs a hundred goroutines, not ten thousand. The phases run as
	// subtests over the same connections.
	groups := make([][]scaleConn, workers)
	defer func() {
		for _, g := range groups {
			for _, c := range g {
				c.nc.Close()
			}
		}
	}()
	t.Run("10,000 connections open", func(t *testing.T) {
		inWorkers(t, workers, func(w int) error {
			for i := range n / workers {
				nc, err := net.DialTimeout("tcp", srv.addr, 10*time.Second)
				if err != nil {
					return fmt.Errorf("worker %d dial %d: %w", w, i, err)
				}
				groups[w] = append(groups[w], scaleConn{nc, bufio.NewReaderSize(nc, 512)})
			}
			return nil
		})
	})
	held := srv.rss()
	t.Run("every connection answers a ping", func(t *testing.T) {
		inWorkers(t, workers, func(w int) error {
			for i, c := range groups[w] {
				c.nc.SetDeadline(time.Now().Add(30 * time.Second))
				fmt.Fprintf(c.nc, `{"type":"ping","id":"%d-%d"}`+"\n", w, i)
			}
			for i, c := range groups[w] {
				if !expectType(c.r, "pong", fmt.Sprintf("%d-%d", w, i)) {
					return fmt.Errorf("worker %d conn %d: no pong", w, i)
				}
			}
			return nil
		})
	})
	t.Run("every connection receives the periodic keepalive", func(t *testing.T) {
		inWorkers(t, workers, func(w int) error {
			for i, c := range groups[w] {
				if !expectType(c.r, "keepalive", "") {
					return fmt.Errorf("worker %d conn %d: no keepalive", w, i)
				}
			}
			return nil
		})
	})
	t.Logf("%d connections answered and kept alive; server RSS %d MiB → %d MiB: %.1f KiB per connection",
		n, before>>20, held>>20, float64(held-before)/n/1024)
}

// scaleConn is one of the test's connections.
type scaleConn struct {
	nc net.Conn
	r  *bufio.Reader
}

// inWorkers runs f for workers 0..n-1 at once and reports the first few
// failures on the test's goroutine.
func inWorkers(t testing.TB, n int, f func(w int) error) {
	t.Helper()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- f(w)
		}()
	}
	wg.Wait()
	close(errs)
	var failures []string
	for err := range errs {
		if err != nil && len(failures) < 5 {
			failures = append(failures, err.Error())
		}
	}
	if len(failures) > 0 {
		t.Fatalf("failures: %s", strings.Join(failures, "; "))
	}
}

// expectType reads frames until one of type typ (with id, if given)
// arrives; keepalives and other frames in between are skipped.
func expectType(r *bufio.Reader, typ, id string) bool {
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return false
		}
		var m protocol.Message
		if protocol.Decode(line[:len(line)-1], &m, protocol.Limits{}) != nil {
			return false
		}
		if string(m.Type) == typ && (id == "" || m.ID == id) {
			return true
		}
	}
}
