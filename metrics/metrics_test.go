package metrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/gatewaytest"
	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
	"github.com/secureagentmessaging/samgw/scripting"
	"github.com/secureagentmessaging/samgw/scripts"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// value reads one sample from a scrape.
func value(t *testing.T, scrape, series string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` ([0-9.e+-]+)$`)
	m := re.FindStringSubmatch(scrape)
	if m == nil {
		t.Fatalf("no %s in the scrape:\n%s", series, scrape)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// serveMetrics serves m on a loopback port until the test ends and
// returns its base URL.
func serveMetrics(t *testing.T, m *Metrics) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	served := make(chan error, 1)
	go func() { served <- m.Serve(ctx, "127.0.0.1:0", ready) }()
	t.Cleanup(func() {
		cancel()
		<-served
	})
	return "http://" + <-ready
}

// serveGateway serves srv on a loopback port until the test ends and
// returns its address.
func serveGateway(t *testing.T, srv *gateway.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		<-done
	})
	return ln.Addr().String()
}

func TestScrape(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	m := New()
	engine, err := scripting.New(scripting.Config{FS: scripts.Handlers(), Logger: quiet, ObserveCall: m.ObserveCall})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := gateway.NewServer(gateway.Config{Handler: engine, Logger: quiet, KeepAliveTimeout: 200 * time.Millisecond, KeepAliveInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	m.Attach(srv, engine)
	ctx := t.Context()
	base := serveMetrics(t, m)

	t.Run("healthy but not ready before listening", func(t *testing.T) {
		if code, body := get(t, base+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
			t.Fatalf("healthz %d %q", code, body)
		}
		if code, _ := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
			t.Fatalf("readyz before listening: %d", code)
		}
	})

	addr := serveGateway(t, srv)
	deadline := time.Now().Add(10 * time.Second)
	t.Run("ready once listening", func(t *testing.T) {
		for code, _ := get(t, base+"/readyz"); code != 200; code, _ = get(t, base+"/readyz") {
			if time.Now().After(deadline) {
				t.Fatal("never ready")
			}
		}
	})

	t.Run("traffic, errors and timeouts are counted", func(t *testing.T) { scrapeTraffic(t, ctx, addr, base, deadline) })
}

// scrapeTraffic drives a client and a silent connection through the
// server at addr and checks the counters the metrics at base report.
func scrapeTraffic(t *testing.T, ctx context.Context, addr, base string, deadline time.Time) {
	quiet := slog.New(slog.DiscardHandler)
	c, err := gateway.NewClient(gateway.ClientConfig{Addr: addr, Logger: quiet, KeepAliveInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := c.Request(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.RequestMessage(ctx, protocol.Message{Type: protocol.TypeData, Route: "missing", Payload: []byte("1")}); err == nil {
		t.Fatal("no_route expected")
	}
	if _, err := c.PingWait(ctx); err != nil {
		t.Fatal(err)
	}
	c.Disconnect("done")

	// A silent raw connection times out.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	io.Copy(io.Discard, raw) // until the server closes it

	var scrape string
	for {
		_, scrape = get(t, base+"/metrics")
		if value(t, scrape, "samgw_connections_open") == 0 && strings.Contains(scrape, "samgw_keepalive_timeouts_total 1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connections never closed:\n%s", scrape)
		}
	}
	checks := map[string]float64{
		`samgw_connections_total`:                                            2,
		`samgw_frames_total{direction="in",type="data"}`:                     6,
		`samgw_frames_total{direction="out",type="data"}`:                    5,
		`samgw_frames_total{direction="out",type="error"}`:                   1,
		`samgw_frames_total{direction="in",type="ping"}`:                     1,
		`samgw_frames_total{direction="out",type="pong"}`:                    1,
		`samgw_frames_total{direction="in",type="close"}`:                    1,
		`samgw_keepalive_timeouts_total`:                                     1,
		`samgw_script_generation`:                                            1,
		`samgw_script_reloads_total{result="ok"}`:                            1,
		`samgw_handler_duration_seconds_count{outcome="ok",route="default"}`: 5,
	}
	for series, want := range checks {
		if got := value(t, scrape, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if value(t, scrape, `samgw_bytes_total{direction="in"}`) == 0 || !strings.Contains(scrape, "go_goroutines") {
		t.Error("bytes or runtime metrics missing")
	}
}

func TestReadinessChecks(t *testing.T) {
	m := New()
	srv, _ := gatewaytest.Serve(t, "", gateway.Config{})
	m.Attach(srv, nil)
	healthy := errors.New("NATS unreachable")
	m.AddCheck("cluster", func() error { return healthy })
	testutil.Eventually(t, "listening", srv.Listening)
	h := m.Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "cluster: NATS unreachable") {
		t.Fatalf("readyz with the cluster down: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `samgw_ready{check="cluster"} 0`) {
		t.Fatal("samgw_ready not 0")
	}
	healthy = nil
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 200 {
		t.Fatalf("readyz with the cluster up: %d", rec.Code)
	}
}

// failedScripts is an engine whose last reload failed.
type failedScripts struct{}

func (failedScripts) Generation() uint64           { return 3 }
func (failedScripts) Reloads() (ok, failed uint64) { return 3, 1 }
func (failedScripts) ReloadError() string          { return "orders.lua:3: near 'end': syntax error" }

func TestReadyzNamesAFailedReload(t *testing.T) {
	m := New()
	srv, _ := gatewaytest.Serve(t, "", gateway.Config{})
	m.Attach(srv, failedScripts{})
	testutil.Eventually(t, "listening", srv.Listening)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	want := "ready; the last reload of the scripts failed, the previous version serves: orders.lua:3: near 'end': syntax error\n"
	if rec.Code != http.StatusOK || rec.Body.String() != want {
		t.Fatalf("readyz: %d %q, want 200 %q", rec.Code, rec.Body, want)
	}
}
