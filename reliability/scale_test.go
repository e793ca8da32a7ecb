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
	// test needs a hundred goroutines, not ten thousand.
	type conn struct {
		nc net.Conn
		r  *bufio.Reader
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 5 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	opened := make(chan []conn, workers)
	var ready sync.WaitGroup
	ready.Add(workers)
	proceed := make(chan struct{})
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conns := make([]conn, 0, n/workers)
			defer func() {
				for _, c := range conns {
					c.nc.Close()
				}
			}()
			for i := range n / workers {
				nc, err := net.DialTimeout("tcp", srv.addr, 10*time.Second)
				if err != nil {
					fail("worker %d dial %d: %v", w, i, err)
					break
				}
				conns = append(conns, conn{nc, bufio.NewReaderSize(nc, 512)})
			}
			opened <- conns
			ready.Done()
			<-proceed
			// Every connection answers a ping...
			for i, c := range conns {
				c.nc.SetDeadline(time.Now().Add(30 * time.Second))
				fmt.Fprintf(c.nc, `{"type":"ping","id":"%d-%d"}`+"\n", w, i)
			}
			for i, c := range conns {
				if !expectType(c.r, "pong", fmt.Sprintf("%d-%d", w, i)) {
					fail("worker %d conn %d: no pong", w, i)
					return
				}
			}
			// ...and receives the periodic keepalive.
			for i, c := range conns {
				if !expectType(c.r, "keepalive", "") {
					fail("worker %d conn %d: no keepalive", w, i)
					return
				}
			}
		}()
	}
	ready.Wait()
	total := 0
	for range workers {
		total += len(<-opened)
	}
	held := srv.rss()
	close(proceed)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d connections opened; failures: %s", total, strings.Join(failures, "; "))
	}
	if total != n {
		t.Fatalf("opened %d connections, want %d", total, n)
	}
	t.Logf("%d connections answered and kept alive; server RSS %d MiB → %d MiB: %.1f KiB per connection",
		n, before>>20, held>>20, float64(held-before)/n/1024)
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
