package scripting

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
	"github.com/secureagentmessaging/samgw/scripts"
)

// httpBackend is a test HTTP API.
func httpBackend(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Echo-Method", r.Method)
		fmt.Fprintf(w, `{"got":%q,"ctype":%q,"auth":%q}`, body, r.Header.Get("Content-Type"), r.Header.Get("Authorization"))
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "backend broke", http.StatusBadGateway)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", 2<<20)))
	})
	srv := httptest.NewServer(mux)
	mux.HandleFunc("/redirect-in", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ok", http.StatusFound)
	})
	mux.HandleFunc("/redirect-out", func(w http.ResponseWriter, r *http.Request) {
		_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
		http.Redirect(w, r, "http://127.0.0.2:"+port+"/ok", http.StatusFound)
	})
	t.Cleanup(func() {
		close(release)
		srv.Close()
	})
	return srv, srv.Listener.Addr().String()
}

func TestHTTPRequests(t *testing.T) {
	_, backend := httpBackend(t)
	_, port, _ := net.SplitHostPort(backend)
	f := newFixture(t, map[string]string{"default.lua": `
function on_data(msg)
  local p = msg.payload
  local res, err
  if p.op == "get" then res, err = http.get(p.url, {headers = {Authorization = "Bearer x"}}) end
  if p.op == "post table" then res, err = http.post(p.url, {a = 1}) end
  if p.op == "post string" then res, err = http.request{method = "PUT", url = p.url, body = "plain"} end
  if p.op == "timeout" then res, err = http.get(p.url, {timeout_ms = 100}) end
  if p.op == "escape" then return assert(http.get(p.url, {timeout_ms = p.ms})).status end
  if not res then return {err = err} end
  return {status = res.status, body = res.body, method = res.headers["x-echo-method"]}
end`}, Config{Upstream: &UpstreamConfig{Allow: []string{"127.0.0.1:" + port, "localhost:*"}, MaxBody: 1 << 20}})
	c, _ := f.client()
	base := "http://" + backend
	req := func(op, url string) string {
		t.Helper()
		got, err := request(t, c, "", fmt.Sprintf(`{"op":%q,"url":%q}`, op, url))
		if err != nil {
			t.Fatalf("%s %s: %v", op, url, err)
		}
		return got
	}
	for _, tt := range []struct{ op, url, want string }{
		{"get", base + "/ok", `{"status":200,"body":"{\"got\":\"\",\"ctype\":\"\",\"auth\":\"Bearer x\"}","method":"GET"}`},
		{"post table", base + "/ok", `{"status":200,"body":"{\"got\":\"{\\\"a\\\":1}\",\"ctype\":\"application/json\",\"auth\":\"\"}","method":"POST"}`},
		{"post string", base + "/ok", `{"status":200,"body":"{\"got\":\"plain\",\"ctype\":\"\",\"auth\":\"\"}","method":"PUT"}`},
		{"get", base + "/fail", `{"status":502,"body":"backend broke\n"}`},
		{"get", base + "/redirect-in", `{"status":200,"body":"{\"got\":\"\",\"ctype\":\"\",\"auth\":\"Bearer x\"}","method":"GET"}`},
		{"timeout", base + "/slow", `{"err":"timeout"}`},
		{"get", base + "/big", `{"err":"response body larger than 1048576 bytes"}`},
		{"get", "http://127.0.0.2:" + port + "/ok", `{"err":"destination not allowed"}`},     // not on the list
		{"get", "http://localhost:" + port + "/ok", `{"err":"destination not allowed"}`},     // a name that resolves to loopback
		{"get", base + "/redirect-out", `{"err":"destination not allowed"}`},                 // a redirect hop elsewhere
		{"get", "http://192.168.255.1:" + port + "/ok", `{"err":"destination not allowed"}`}, // private, never dialled
		{"get", "http://100.64.0.1:" + port + "/ok", `{"err":"destination not allowed"}`},    // shared address space, never dialled
		{"get", "http://198.18.0.1:" + port + "/ok", `{"err":"destination not allowed"}`},    // benchmarking range, never dialled
	} {
		if got := req(tt.op, tt.url); !jsonEqual(got, tt.want) {
			t.Errorf("%s %s: %s, want %s", tt.op, tt.url, got, tt.want)
		}
	}
	mustFail(t, c, "", fmt.Sprintf(`{"op":"escape","url":%q,"ms":5000}`, "http://127.0.0.2:"+port+"/ok"), protocol.CodeUpstreamError, "destination not allowed")
	mustFail(t, c, "", fmt.Sprintf(`{"op":"escape","url":%q,"ms":100}`, base+"/slow"), protocol.CodeUpstreamTimeout, "timeout")
	f.engine.Close()
}

func TestAllowList(t *testing.T) {
	a, err := ParseAllow([]string{"api.example.com", "*.svc.example.com:443", "10.1.0.0/16", "127.0.0.1:8080", "[::1]:9000"})
	if err != nil {
		t.Fatal(err)
	}
	public, private, loop := mustAddr("93.184.216.34"), mustAddr("10.1.2.3"), mustAddr("127.0.0.1")
	tests := []struct {
		host, port string
		ip         string
		ok         bool
	}{
		{"api.example.com", "80", public.String(), true},
		{"API.example.com", "443", public.String(), true},
		{"api.example.com", "80", loop.String(), false}, // DNS rebinding to loopback
		{"api.example.com", "80", "192.168.1.1", false},
		{"x.svc.example.com", "443", public.String(), true},
		{"x.svc.example.com", "80", public.String(), false},
		{"anything", "80", private.String(), true}, // the CIDR allows the address
		{"other.example.com", "80", public.String(), false},
		{"127.0.0.1", "8080", loop.String(), true}, // named outright
		{"127.0.0.1", "8081", loop.String(), false},
		{"::1", "9000", "::1", true},
		{"localhost", "8080", loop.String(), false},
	}
	for _, tt := range tests {
		if got := a.permits(tt.host, tt.port, mustAddr(tt.ip)); got != tt.ok {
			t.Errorf("permits(%s, %s, %s) = %v, want %v", tt.host, tt.port, tt.ip, got, tt.ok)
		}
	}
	if _, err := ParseAllow([]string{"10.0.0.0/99"}); err == nil {
		t.Error("bad CIDR accepted")
	}
}

// TestAllowListDeniesSpecialPurposeRanges: with a pattern that matches every
// host, every IANA special-purpose range and the host's own addresses are
// still denied, unless a CIDR names them.
func TestAllowListDeniesSpecialPurposeRanges(t *testing.T) {
	anyHost, err := ParseAllow([]string{"*"})
	if err != nil {
		t.Fatal(err)
	}
	if !anyHost.AllowsAnyHost() {
		t.Fatal("AllowsAnyHost is false for *")
	}
	inside := []string{"100.64.0.1", "100.127.255.254", "192.0.0.8", "198.18.0.1", "198.19.255.255", "240.0.0.1",
		"255.255.255.255", "0.1.2.3", "192.0.2.1", "198.51.100.7", "203.0.113.9", "192.88.99.1", "224.0.0.1",
		"64:ff9b::a9fe:a9fe", "64:ff9b:1::1", "2002:a00:1::1", "2001:db8::1", "2001::1", "fd00::1", "fe80::1",
		"100::1", "::ffff:10.0.0.1", "::ffff:100.64.0.1", "3fff::1", "5f00::1"}
	for _, ip := range inside {
		if anyHost.permits("example.com", "80", mustAddr(ip)) {
			t.Errorf("%s is allowed by *", ip)
		}
	}
	for _, ip := range []string{"93.184.216.34", "1.1.1.1", "2606:4700::1111"} {
		if !anyHost.permits("example.com", "80", mustAddr(ip)) {
			t.Errorf("public %s is denied by *", ip)
		}
	}
	named, err := ParseAllow([]string{"100.64.0.0/10", "64:ff9b::/96"})
	if err != nil {
		t.Fatal(err)
	}
	if named.AllowsAnyHost() || !named.permits("x", "80", mustAddr("100.64.0.1")) || !named.permits("x", "80", mustAddr("64:ff9b::a9fe:a9fe")) {
		t.Error("a CIDR that names a special-purpose range does not allow it")
	}
	for ip := range interfaceAddrs() {
		if anyHost.permits("example.com", "80", ip) {
			t.Errorf("this host's own address %s is allowed by *", ip)
		}
	}
}

// upstreamServer is a samgw-protocol service: echo, plus route "slow" that
// waits for release.
func upstreamServer(t *testing.T, addr string, release <-chan struct{}) (*gateway.Server, string, chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := gateway.NewServer(gateway.Config{Logger: slog.New(slog.DiscardHandler), Handler: gateway.HandlerFunc(
		func(ctx context.Context, c *gateway.Conn, m *protocol.Message) error {
			switch m.Route {
			case "slow":
				select {
				case <-release:
				case <-ctx.Done():
				}
			case "hang": // until the server is cut off
				<-ctx.Done()
				return nil
			}
			return c.Reply(m, m.Payload)
		})})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	return srv, ln.Addr().String(), served
}

func TestUpstreamRequests(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	releaseAll := func() { once.Do(func() { close(release) }) }
	defer releaseAll()
	up, addr, served := upstreamServer(t, "127.0.0.1:0", release)
	f := newFixture(t, map[string]string{
		"default.lua": `
function on_data(msg)
  local reply, err = upstream.request("backend", msg.payload, msg.payload.route, msg.payload.ms)
  if err then return {err = err} end
  return {reply = reply}
end`,
		"fast.lua": `function on_data(msg) return "fast" end`,
	}, Config{Timeout: 5 * time.Second, Upstream: &UpstreamConfig{Named: map[string]gateway.ClientConfig{
		"backend": {Addr: addr, Logger: slog.New(slog.DiscardHandler), BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond},
	}}})
	defer f.engine.Close()
	c, _ := f.client()
	mustReply(t, c, "", `{"x":1}`, `{"reply":{"x":1}}`)
	mustReply(t, c, "", `{"route":"slow","ms":100}`, `{"err":"timeout"}`)

	// 100 connections wait on the slow upstream; other routes stay served.
	const waiting = 100
	results := make(chan string, waiting)
	for i := range waiting {
		cl, _ := f.client()
		go func() {
			got, err := tryRequest(cl, "", fmt.Sprintf(`{"route":"slow","n":%d}`, i))
			if err != nil {
				got = err.Error()
			}
			results <- got
		}()
	}
	// All 100 are in their handlers, each holding a Lua state while its
	// request waits on the upstream connection.
	testutil.Eventually(t, "the slow calls to be in their handlers", func() bool {
		return f.srv.Stats().FramesIn[0] >= waiting+2
	})
	mustReply(t, c, "fast", `1`, `"fast"`) // not stalled behind the 100
	releaseAll()
	for range waiting {
		if got := <-results; !strings.HasPrefix(got, `{"reply":{"route":"slow"`) {
			t.Fatalf("slow call: %s", got)
		}
	}

	// The upstream restarts: a call in flight fails cleanly, later ones work.
	inflight := make(chan string, 1)
	go func() {
		got, _ := tryRequest(c, "", `{"route":"hang"}`)
		inflight <- got
	}()
	testutil.Eventually(t, "the call to be in flight", func() bool { return up.Stats().FramesIn[0] >= waiting+3 })
	cut, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	up.Shutdown(cut) // the hanging handler never finishes: cut it off
	<-served
	if got := <-inflight; !strings.Contains(got, "err") {
		t.Fatalf("in-flight call across the restart: %s", got)
	}
	up2, _, served2 := upstreamServer(t, addr, release)
	defer func() {
		up2.Shutdown(context.Background())
		<-served2
	}()
	testutil.Eventually(t, "the upstream connection to recover", func() bool {
		got, err := request(t, c, "", `{"again":true}`)
		return err == nil && got == `{"reply":{"again":true}}`
	})
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestGatewayExamples(t *testing.T) {
	_, backend := httpBackend(t)
	_, port, _ := net.SplitHostPort(backend)
	bridge, err := fs.ReadFile(scripts.Examples(), "http_bridge.lua")
	if err != nil {
		t.Fatal(err)
	}
	fanout, err := fs.ReadFile(scripts.Examples(), "fanout.lua")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	defer close(release)
	left, leftAddr, leftServed := upstreamServer(t, "127.0.0.1:0", release)
	defer func() {
		left.Shutdown(context.Background())
		<-leftServed
	}()
	quiet := slog.New(slog.DiscardHandler)
	settings := filepath.Join(t.TempDir(), "settings.yaml") // the bridge reads its URL from the script config
	if err := os.WriteFile(settings, []byte("http_bridge:\n  url: http://"+backend+"/ok\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, map[string]string{
		"http_bridge.lua": string(bridge),
		"fanout.lua":      string(fanout),
	}, Config{ConfigFile: settings, Upstream: &UpstreamConfig{Allow: []string{"127.0.0.1:" + port}, Named: map[string]gateway.ClientConfig{
		"left":  {Addr: leftAddr, Logger: quiet},
		"right": {Addr: "127.0.0.1:1", Logger: quiet, DialTimeout: 200 * time.Millisecond}, // nobody there
	}}})
	defer f.engine.Close()
	c, _ := f.client()
	mustReply(t, c, "http_bridge", `{"q":"status"}`, `{"got":"{\"q\":\"status\"}","ctype":"application/json","auth":""}`)
	got, err := request(t, c, "fanout", `{"q":42}`)
	if err != nil || !strings.HasPrefix(got, `{"left":{"q":42},"right":{"error":`) {
		t.Fatalf("fanout: %s %v", got, err)
	}
}

// TestAnyHostPatternStillDeniesInside: with --upstream-allow '*', a script
// asking for the shared address space, the benchmarking range or this
// host's own interface addresses gets "destination not allowed"; nothing is
// dialled.
func TestAnyHostPatternStillDeniesInside(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": `
function on_data(msg)
  local res, err = http.get(msg.payload, {timeout_ms = 500})
  return err or res.status
end`}, Config{Upstream: &UpstreamConfig{Allow: []string{"*"}}})
	c, _ := f.client()
	urls := []string{"http://100.64.0.1:8080/", "http://198.18.0.1/", "http://[64:ff9b::a9fe:a9fe]/", "http://240.0.0.1/"}
	for ip := range interfaceAddrs() {
		urls = append(urls, "http://"+net.JoinHostPort(ip.String(), "9")+"/")
	}
	for _, u := range urls {
		mustReply(t, c, "", fmt.Sprintf("%q", u), `"destination not allowed"`)
	}
	f.engine.Close()
}

// TestUpstreamErrorsNameTheirCause: a failed call tells the script why.
func TestUpstreamErrorsNameTheirCause(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	f := newFixture(t, map[string]string{"default.lua": `
function on_data(msg)
  local p = msg.payload
  if p.named then
    local reply, err = upstream.request("gone", 1, 500)
    return err
  end
  local res, err = http.get(p.url, {timeout_ms = 2000})
  return err or res.status
end`}, Config{Upstream: &UpstreamConfig{Allow: []string{"127.0.0.1"}, Named: map[string]gateway.ClientConfig{
		"gone": {Addr: closed, Logger: quietLogger()}}}})
	c, _ := f.client()
	mustReply(t, c, "", fmt.Sprintf(`{"url":"http://%s/"}`, closed), `"upstream error: connection refused"`)
	mustReply(t, c, "", `{"named":true}`, `"upstream error: connection refused"`)
	mustFail(t, c, "", `{"url":"ftp://127.0.0.1/"}`, protocol.CodeHandlerError, "unsupported URL scheme")
	f.engine.Close()
}

// Two slow upstreams called with upstream.all cost the slower one's time,
// not the sum: with a handler timeout shorter than the sum, each is
// reported as its own timeout instead of the handler timing out; an
// upstream nobody listens on says why, and an unknown name is reported.
func TestUpstreamAllRunsCallsAtOnce(t *testing.T) {
	release := make(chan struct{})
	quiet := slog.New(slog.DiscardHandler)
	var addrs []string
	for range 2 {
		srv, addr, served := upstreamServer(t, "127.0.0.1:0", release)
		defer func() {
			srv.Shutdown(context.Background())
			<-served
		}()
		addrs = append(addrs, addr)
	}
	defer close(release) // first of the defers: the slow handlers finish, then the servers shut down
	f := newFixture(t, map[string]string{"default.lua": `
function on_data(msg)
  local out = {}
  for i, r in ipairs(upstream.all{
    {"left", msg.payload, "slow", 400}, {"right", msg.payload, "slow", 400},
    {"fast", msg.payload}, {"nobody", msg.payload, 650}, {"unknown", 1},
  }) do
    out[i] = r.reply or r.error
  end
  return out
end`}, Config{Timeout: 700 * time.Millisecond, Upstream: &UpstreamConfig{Named: map[string]gateway.ClientConfig{
		"left":   {Addr: addrs[0], Logger: quiet},
		"right":  {Addr: addrs[1], Logger: quiet},
		"fast":   {Addr: addrs[1], Logger: quiet},
		"nobody": {Addr: "127.0.0.1:1", Logger: quiet, DialTimeout: 200 * time.Millisecond},
	}}})
	defer f.engine.Close()
	c, _ := f.client()
	got, err := request(t, c, "", `{"q":1}`)
	if err != nil {
		t.Fatalf("upstream.all: %v (the calls ran one after the other?)", err)
	}
	var out []string
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(got), &raw); err != nil || len(raw) != 5 {
		t.Fatalf("reply %s", got)
	}
	for _, r := range raw {
		out = append(out, string(r))
	}
	if out[0] != `"timeout"` || out[1] != `"timeout"` || out[2] != `{"q":1}` ||
		!strings.Contains(out[3], "refused") || !strings.Contains(out[4], `no upstream named`) {
		t.Fatalf("results %v", out)
	}
}

// TestSettingsNeverReachClientsOrLogs: a handler that builds a URL with a
// key from --script-config and fails (a bad escape in an id from the
// payload) sent the whole URL, key included, to the client and the WARN
// log, and at debug level every failed call logged it. Now neither the
// URL's query nor any setting's value is in an error text or a log line.
func TestSettingsNeverReachClientsOrLogs(t *testing.T) {
	const key = "sk-live-0123456789abcdef"
	settings := filepath.Join(t.TempDir(), "settings.yaml")
	if err := os.WriteFile(settings, []byte("api:\n  base: http://127.0.0.1:9\n  key: "+key+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, map[string]string{"default.lua": `function on_data(msg)
  local url = config.api.base .. "/items/" .. msg.payload.id .. "?api_key=" .. config.api.key
  if msg.payload.quote then error("calling " .. url .. " failed") end
  local res, err = http.get(url, {timeout_ms = 500})
  if not res then error("lookup failed: " .. err) end
  return res.status
end`}, Config{ConfigFile: settings, Upstream: &UpstreamConfig{Allow: []string{"127.0.0.1"}}})
	c, _ := f.client()
	for _, tc := range []struct{ payload, want string }{
		{`{"id":"%zz"}`, `http.request: invalid URL: invalid URL escape "%zz"`},      // the URL does not parse
		{`{"id":"7"}`, "lookup failed: upstream error: connection refused"},          // nothing listens on port 9
		{`{"id":"7","quote":true}`, "calling [redacted]/items/7?api_key=[redacted]"}, // the script quotes it itself
	} {
		_, err := request(t, c, "", tc.payload)
		var pe *protocol.Error
		if !errors.As(err, &pe) || !strings.Contains(pe.Message, tc.want) {
			t.Fatalf("payload %s: got %v, want a message containing %q", tc.payload, err, tc.want)
		}
		if strings.Contains(pe.Message, key) {
			t.Fatalf("the key reached the client: %q", pe.Message)
		}
	}
	logs := f.logs.String()
	if strings.Contains(logs, key) || strings.Contains(logs, "api_key=sk") {
		t.Fatalf("the key reached the log:\n%s", logs)
	}
	if !strings.Contains(logs, "Upstream call failed") {
		t.Fatalf("the failed call was not logged at debug level:\n%s", logs)
	}
}
