package reliability

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/secureagentmessaging/samgw/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// skipIfShort leaves the heavy tests of this package (10,000 connections,
// the soak, the restart under traffic) to the full run: `go test -short
// ./...` is the quick check while editing, `go test ./...` (and CI) runs
// everything.
func skipIfShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("heavy reliability test: runs without -short")
	}
}

// buildSamgw compiles the binary once per test binary run.
func buildSamgw(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "samgw")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/samgw").CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// process is a samgw serve running as a child process.
type process struct {
	cmd      *exec.Cmd
	addr     string
	httpAddr string // of --http-listen, if asked for
}

// startProcess runs `samgw serve` with args on a free loopback port.
func startProcess(t testing.TB, bin string, args ...string) *process {
	t.Helper()
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--data-dir") }) {
		args = append([]string{"--data-dir", t.TempDir()}, args...)
	}
	cmd := exec.Command(bin, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd}
	t.Cleanup(func() { p.stop() })
	addrs, httpAddrs := make(chan string, 1), make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`msg="TCP server listening" addr=(\S+)`)
		reHTTP := regexp.MustCompile(`msg="HTTP listening" addr=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addrs <- m[1]:
				default:
				}
			}
			if m := reHTTP.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case httpAddrs <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case p.addr = <-addrs:
	case <-time.After(testutil.WaitTimeout):
		t.Fatal("samgw did not start")
	}
	select { // logged before the TCP listener's line
	case p.httpAddr = <-httpAddrs:
	default:
	}
	return p
}

func (p *process) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() {
		p.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(testutil.WaitTimeout):
		p.cmd.Process.Kill()
		<-done
	}
}

// rss is the process's resident set size in bytes.
func (p *process) rss() int64 {
	data, _ := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(data)
	if m == nil {
		return 0
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

func timeoutCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
