package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
)

func writeFile(t *testing.T, path, src string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

// sendOK runs `samgw send` and returns its stdout, failing on error.
func sendOK(t *testing.T, addr string, args ...string) string {
	t.Helper()
	code, out, errOut := runSamgw(t, "", append([]string{"send", "--addr", addr}, args...)...)
	if code != 0 {
		t.Fatalf("send %v: exit %d: %s", args, code, errOut)
	}
	return strings.TrimSpace(out)
}

func TestServeEmbeddedLuaEcho(t *testing.T) {
	addr, log, _ := startServe(t)
	if got := sendOK(t, addr, `{"a":[],"b":{}}`); got != `{"a":[],"b":{}}` {
		t.Fatalf("embedded echo: %s", got)
	}
	if !strings.Contains(log.String(), `msg="Scripts loaded" generation=1 handlers=1 routes=[default]`) {
		t.Fatalf("log: %s", log.String())
	}
	code, _, errOut := runSamgw(t, "", "send", "--addr", addr, "--route", "nothing", "1")
	if code == 0 || !strings.Contains(errOut, "no_route") {
		t.Fatalf("unknown route: exit %d %s", code, errOut)
	}
}

func TestServeNoScripts(t *testing.T) {
	addr, log, _ := startServe(t, "--no-scripts")
	if got := sendOK(t, addr, "--route", "anything", `[1]`); got != `[1]` {
		t.Fatalf("Go echo: %s", got)
	}
	if !strings.Contains(log.String(), "built-in Go echo") {
		t.Fatalf("log: %s", log.String())
	}
}

func TestServeScriptsDirReloadsOnChangeAndSIGHUP(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "default.lua"), `function on_data(msg) return "v1" end`)
	addr, log, _ := startServe(t, "--scripts", dir)
	if got := sendOK(t, addr, `0`); got != `"v1"` {
		t.Fatalf("got %s", got)
	}
	writeFile(t, filepath.Join(dir, "default.lua"), `function on_data(msg) return "v2" end`)
	testutil.Eventually(t, "the edit to be served", func() bool { return sendOK(t, addr, `0`) == `"v2"` })

	// SIGHUP reloads too (generation 3 with no change on disk).
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the SIGHUP reload", func() bool { return strings.Contains(log.String(), `msg="Scripts reloaded" generation=3`) })
}

func TestServeRejectsBrokenScripts(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "default.lua"), "function on_data(msg)\n  return (\nend\n")
	code, _, errOut := runSamgw(t, "", "serve", "--listen", "127.0.0.1:0", "--scripts", dir)
	if code == 0 || !strings.Contains(errOut, "default.lua:3:") || !strings.Contains(errOut, "near 'end': syntax error") || !strings.Contains(errOut, "cannot start") ||
		strings.Contains(errOut, "keeping the previous version") {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	code, _, errOut = runSamgw(t, "", "serve", "--listen", "127.0.0.1:0", "--scripts", filepath.Join(dir, "missing"))
	if code == 0 || !strings.Contains(errOut, "scripts directory") {
		t.Fatalf("missing dir: exit %d, stderr %s", code, errOut)
	}
	code, _, errOut = runSamgw(t, "", "serve", "--scripts", dir, "--no-scripts")
	if code == 0 || !strings.Contains(errOut, "exclude each other") {
		t.Fatalf("both flags: exit %d, stderr %s", code, errOut)
	}
}

func TestBenchCommand(t *testing.T) {
	addr := startGateway(t, nil)
	code, out, errOut := runSamgw(t, "", "bench", "--addr", addr, "--conns", "4", "--pipeline", "8", "--messages", "2000", "--size", "64", "--json")
	if code != 0 {
		t.Fatalf("bench: exit %d: %s", code, errOut)
	}
	var r map[string]float64
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bench --json printed %q: %v", out, err)
	}
	for _, key := range []string{"frames_per_sec", "mb_per_sec", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "sent", "received", "errors"} {
		if _, ok := r[key]; !ok {
			t.Errorf("no %s in %s", key, out)
		}
	}
	if r["received"] < 2000 || r["errors"] != 0 || r["received"] != r["sent"] || r["frames_per_sec"] <= 0 ||
		!(r["p50_ms"] <= r["p99_ms"] && r["p99_ms"] <= r["max_ms"]) {
		t.Fatalf("implausible result %s", out)
	}
	code, out, _ = runSamgw(t, "", "bench", "--addr", addr, "--conns", "2", "--messages", "100")
	if code != 0 || !strings.Contains(out, "frames/s") || !strings.Contains(out, "p99.9") {
		t.Fatalf("text output: %s", out)
	}
}

func TestClientScenarios(t *testing.T) {
	addr := startGateway(t, nil)
	dir := t.TempDir()
	check := filepath.Join(dir, "check.lua")
	writeFile(t, check, `
local r = request({hello = args.name})
assert(r.hello == args.name, "echo mismatch")
log("checked", args.name)
`)
	code, out, errOut := runSamgw(t, "", "client", "--addr", addr, "--scenario", check, "--arg", "name=ada")
	if code != 0 || out != "checked ada\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	failing := filepath.Join(dir, "failing.lua")
	writeFile(t, failing, "send(1)\nexpect(\"pong\", 100)\n")
	code, _, errOut = runSamgw(t, "", "client", "--addr", addr, "--scenario", failing)
	if code == 0 || !strings.Contains(errOut, "failing.lua:2: expect pong: timed out after 100ms") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}

	code, out, errOut = runSamgw(t, "", "client", "--addr", addr, "--scenario", check, "--arg", "name=bob", "--clients", "20")
	if code != 0 || !strings.Contains(out, "20 clients: 20 passed, 0 failed") || !strings.Contains(out, "requests: 20, latency p50") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = runSamgw(t, "", "client", "--addr", addr, "--arg", "novalue")
	if code == 0 || !strings.Contains(errOut, "want k=v") {
		t.Fatalf("bad --arg: exit %d, %q", code, errOut)
	}
	code, _, errOut = runSamgw(t, "", "client", "--addr", addr, "--scenario", filepath.Join(dir, "none.lua"))
	if code == 0 || !strings.Contains(errOut, "--scenario") {
		t.Fatalf("missing file: exit %d, %q", code, errOut)
	}
}

func TestServeConfigFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "samgw.yaml")
	writeFile(t, cfg, "max-frame: 2KiB\nkeepalive-interval: 7s\nlog-format: json\nmax-conns: 5\n")
	_, log, _ := startServe(t, "--config", cfg)
	for _, want := range []string{`"max_frame":2048`, `"keepalive_interval":"7s"`, `"max_conns":5`} {
		if !strings.Contains(log.String(), want) {
			t.Fatalf("config not applied (%s): %s", want, log.String())
		}
	}
	// Precedence: flag > environment > file.
	t.Setenv("SAMGW_MAX_CONNS", "6")
	_, log, _ = startServe(t, "--config", cfg, "--max-frame", "3KiB")
	for _, want := range []string{`"max_frame":3072`, `"max_conns":6`, `"keepalive_interval":"7s"`} {
		if !strings.Contains(log.String(), want) {
			t.Fatalf("precedence (%s): %s", want, log.String())
		}
	}
	// The shipped example is valid.
	code, _, errOut := runSamgw(t, "", "serve", "--config", "../../samgw.example.yaml", "--listen", "256.1.1.1:0")
	if code == 0 || !strings.Contains(errOut, "listen") || strings.Contains(errOut, "config") {
		t.Fatalf("example config: exit %d, %s", code, errOut)
	}
	for _, tt := range []struct{ yaml, want string }{
		{"max-conn: 5\n", `line 1: unknown key "max-conn"`},
		{"listen: x\nkeepalive-timeout: soon\n", "line 2: keepalive-timeout: invalid value \"soon\": want a duration like 30s"},
		{"shutdown-timeout: [1, [2]]\n", "shutdown-timeout"},
		{"not yaml: [\n", "--config"},
	} {
		writeFile(t, cfg, tt.yaml)
		code, _, errOut := runSamgw(t, "", "serve", "--config", cfg, "--listen", "256.1.1.1:0")
		if code == 0 || !strings.Contains(errOut, tt.want) {
			t.Errorf("config %q: exit %d, stderr %q, want %q", tt.yaml, code, errOut, tt.want)
		}
	}
}

func TestServeMetricsListen(t *testing.T) {
	addr, log, _ := startServe(t, "--metrics-listen", "127.0.0.1:0")
	re := regexp.MustCompile(`msg="Metrics listening" addr=(\S+)`)
	m := re.FindStringSubmatch(log.String())
	if m == nil {
		t.Fatalf("no metrics address in the log: %s", log.String())
	}
	sendOK(t, addr, `1`)
	resp, err := http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`samgw_frames_total{direction="in",type="data"} 1`, `samgw_handler_duration_seconds_count{outcome="ok",route="default"} 1`, "samgw_script_generation 1",
		`samgw_ready{check="mailboxes"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	resp, err = http.Get("http://" + m[1] + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestScriptMetricsFromLua: metrics.inc, set and observe in a handler
// reach /metrics; a bad name fails that call only.
func TestScriptMetricsFromLua(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "default.lua"), `
function on_data(msg)
  if msg.payload == "bad" then metrics.inc("Not-A-Name") end
  metrics.inc("tasks_done")
  metrics.inc("bytes_in", #json.encode(msg.payload))
  metrics.set("last_n", msg.payload)
  metrics.observe("work_seconds", 0.25)
  return "ok"
end`)
	for _, args := range [][]string{{"--metrics-listen", "127.0.0.1:0"}, {}} {
		addr, log, _ := startServe(t, append([]string{"--scripts", dir}, args...)...)
		sendOK(t, addr, `41`)
		sendOK(t, addr, `42`)
		code, _, errOut := runSamgw(t, "", "send", "--addr", addr, `"bad"`)
		if code == 0 || !strings.Contains(errOut, "handler_error") || !strings.Contains(errOut, "invalid metric name") {
			t.Fatalf("a bad metric name (%v): exit %d %s", args, code, errOut)
		}
		m := regexp.MustCompile(`msg="Metrics listening" addr=(\S+)`).FindStringSubmatch(log.String())
		if len(args) == 0 {
			if m != nil {
				t.Fatal("metrics served without --metrics-listen")
			}
			continue
		}
		resp, err := http.Get("http://" + m[1] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{"samgw_script_tasks_done_total 2", "samgw_script_bytes_in_total 4", "samgw_script_last_n 42", "samgw_script_work_seconds_count 2"} {
			if !strings.Contains(string(body), want+"\n") {
				t.Errorf("scrape lacks %q", want)
			}
		}
	}
}

func TestServeUpstreamFlags(t *testing.T) {
	upstream := startGateway(t, nil)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "forward.lua"), `function on_data(msg) return {via = "upstream", reply = assert(upstream.request("echo", msg.payload))} end`)
	writeFile(t, filepath.Join(dir, "web.lua"), `function on_data(msg) local r, err = http.get(msg.payload) return err end`)
	addr, _, _ := startServe(t, "--scripts", dir, "--upstream", "echo="+upstream, "--upstream-allow", "api.example.com")
	if got := sendOK(t, addr, "--route", "forward", `{"n":1}`); got != `{"via":"upstream","reply":{"n":1}}` {
		t.Fatalf("forward: %s", got)
	}
	if got := sendOK(t, addr, "--route", "web", `"http://`+upstream+`/"`); got != `"destination not allowed"` {
		t.Fatalf("web: %s", got)
	}
	for _, tt := range []struct{ args []string }{
		{[]string{"--upstream", "noequals"}},
		{[]string{"--upstream", "a=x:1", "--upstream", "a=y:2"}},
		{[]string{"--upstream-allow", "10.0.0.0/99"}},
		{[]string{"--upstream-max-body", "huge"}},
	} {
		code, _, errOut := runSamgw(t, "", append([]string{"serve", "--listen", "127.0.0.1:0"}, tt.args...)...)
		if code == 0 || !strings.Contains(errOut, "upstream") {
			t.Errorf("serve %v: exit %d, %q", tt.args, code, errOut)
		}
	}
}

func TestServeWarnsAboutAnAllowListMatchingEveryHost(t *testing.T) {
	_, log, _ := startServe(t, "--upstream-allow", "*:443")
	if !strings.Contains(log.String(), "matches every host") {
		t.Fatalf("no warning for --upstream-allow *:443:\n%s", log.String())
	}
	_, log, _ = startServe(t, "--upstream-allow", "api.example.com")
	if strings.Contains(log.String(), "matches every host") {
		t.Fatalf("a warning for a specific host:\n%s", log.String())
	}
}

// TestServeOneFramePerWrite: with --one-frame-per-write a burst of answers
// reaches a peer that parses one JSON object per read with every frame
// parsed.
func TestServeOneFramePerWrite(t *testing.T) {
	addr, _, _ := startServe(t, "--one-frame-per-write", "--no-scripts")
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var burst strings.Builder
	for i := range 10 {
		fmt.Fprintf(&burst, `{"type":"ping","id":"%d"}`+"\n", i)
	}
	if _, err := nc.Write([]byte(burst.String())); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for i := range 10 {
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := nc.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		var m struct{ Type, ID string }
		if err := json.Unmarshal(bytes.TrimSpace(buf[:n]), &m); err != nil || m.Type != "pong" || m.ID != fmt.Sprint(i) {
			t.Fatalf("read %d held %q (%v), want pong %d alone", i, buf[:n], err, i)
		}
	}
}

// TestBenchFailsOnErrors: replies that are errors make bench exit non-zero
// after printing its summary.
func TestBenchFailsOnErrors(t *testing.T) {
	var n atomic.Int64
	addr := startGateway(t, gateway.HandlerFunc(func(_ context.Context, c *gateway.Conn, m *protocol.Message) error {
		if n.Add(1)%4 == 0 {
			return protocol.Errorf(protocol.CodeHandlerError, "every fourth fails")
		}
		return c.Reply(m, m.Payload)
	}))
	code, out, errOut := runSamgw(t, "", "bench", "--addr", addr, "--conns", "2", "--messages", "50")
	if code == 0 || !strings.Contains(out, "errors") || !strings.Contains(errOut, "were errors or did not match") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
}

// TestConfigFileRelativePaths: a relative path in a --config file is read
// from the file's folder, not from wherever samgw was started.
func TestConfigFileRelativePaths(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "handlers"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "handlers", "default.lua"), `function on_data(msg) return "from the config's folder" end`)
	writeFile(t, filepath.Join(dir, "samgw.yaml"), "scripts: handlers\n")
	addr, _, _ := startServe(t, "--config", filepath.Join(dir, "samgw.yaml"))
	if got := sendOK(t, addr, `1`); got != `"from the config's folder"` {
		t.Fatalf("reply %s", got)
	}
}

// TestAuditLogFolderIsCreated: --audit-log in a folder that does not exist
// yet creates it, private (0700).
func TestAuditLogFolderIsCreated(t *testing.T) {
	file := filepath.Join(t.TempDir(), "var", "log", "samgw", "audit.jsonl")
	addr, _, stop := startServe(t, "--audit-log", file)
	sendOK(t, addr, `1`)
	if code := stop(); code != 0 {
		t.Fatalf("serve exit %d", code)
	}
	info, err := os.Stat(filepath.Dir(file))
	if err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("folder: %v %v", info, err)
	}
	if b, err := os.ReadFile(file); err != nil || !strings.Contains(string(b), `"event":"connect"`) {
		t.Fatalf("audit log: %q %v", b, err)
	}
}

// TestServePprof: the profiler is off unless --pprof, and then served on
// the metrics listener, mutex and block profiles included.
func TestServePprof(t *testing.T) {
	metricsAddr := func(log string) string {
		t.Helper()
		m := regexp.MustCompile(`msg="Metrics listening" addr=(\S+)`).FindStringSubmatch(log)
		if m == nil {
			t.Fatalf("no metrics address in the log: %s", log)
		}
		return m[1]
	}
	status := func(url string) int {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	_, log, _ := startServe(t, "--metrics-listen", "127.0.0.1:0")
	if code := status("http://" + metricsAddr(log.String()) + "/debug/pprof/"); code != http.StatusNotFound {
		t.Fatalf("without --pprof: /debug/pprof/ answered %d", code)
	}
	_, log, _ = startServe(t, "--metrics-listen", "127.0.0.1:0", "--pprof")
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/mutex?debug=1", "/debug/pprof/block?debug=1", "/debug/pprof/goroutine?debug=1"} {
		if code := status("http://" + metricsAddr(log.String()) + path); code != http.StatusOK {
			t.Errorf("with --pprof: %s answered %d", path, code)
		}
	}
	if code, _, errOut := runSamgw(t, "", "serve", "--pprof"); code == 0 || !strings.Contains(errOut, "--metrics-listen") {
		t.Fatalf("--pprof alone: exit %d, %s", code, errOut)
	}
}

// TestExampleConfigListsEveryServeFlag: samgw.example.yaml says it lists
// every flag of serve; it does (set or commented out).
func TestExampleConfigListsEveryServeFlag(t *testing.T) {
	example, err := os.ReadFile("../../samgw.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range serveCommand().Flags {
		name := f.Names()[0]
		if name == "config" {
			continue
		}
		if !regexp.MustCompile(`(?m)^(# )?` + regexp.QuoteMeta(name) + `:`).Match(example) {
			t.Errorf("samgw.example.yaml lacks %s", name)
		}
	}
}

func TestGCMinHeapFlag(t *testing.T) {
	for _, tc := range []struct{ value, want string }{
		{"lots", "--gc-min-heap: invalid size"},
		{"-5MiB", "--gc-min-heap"},
	} {
		code, _, errOut := runSamgw(t, "", "serve", "--gc-min-heap", tc.value, "--listen", "256.1.1.1:0")
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Fatalf("--gc-min-heap %s: exit %d, %s", tc.value, code, errOut)
		}
	}
	// 0 and sizes are accepted: the failure is the listen address.
	for _, value := range []string{"0", "16MiB"} {
		code, _, errOut := runSamgw(t, "", "serve", "--gc-min-heap", value, "--listen", "256.1.1.1:0")
		if code == 0 || strings.Contains(errOut, "gc-min-heap") || !strings.Contains(errOut, "listen") {
			t.Fatalf("--gc-min-heap %s: exit %d, %s", value, code, errOut)
		}
	}
}

func TestBenchHoldSendMustBeJSON(t *testing.T) {
	code, _, errOut := runSamgw(t, "", "bench", "--addr", "127.0.0.1:1", "--hold", "1", "--hold-send", "{subscribe", "--duration", "1s")
	if code == 0 || !strings.Contains(errOut, "--hold-send: not JSON") {
		t.Fatalf("exit %d, %s", code, errOut)
	}
}

func TestLuaMaxTimersMustNotBeNegative(t *testing.T) {
	code, _, errOut := runSamgw(t, "", "serve", "--lua-max-timers", "-1", "--listen", "256.1.1.1:0")
	if code == 0 || !strings.Contains(errOut, "MaxTimers -1") {
		t.Fatalf("exit %d, %s", code, errOut)
	}
}

// TestRouteTimeoutFlag: --route-timeout gives one route its own bound; a
// malformed, duplicated or out-of-range value refuses to start, naming it.
func TestRouteTimeoutFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--route-timeout", "tool"}, `--route-timeout "tool": want ROUTE=DURATION`},
		{[]string{"--route-timeout", "tool=soon"}, `--route-timeout "tool=soon": want ROUTE=DURATION`},
		{[]string{"--route-timeout", "tool=1s", "--route-timeout", "tool=2s"}, `route "tool" is given twice`},
		{[]string{"--route-timeout", "tool=1h"}, `route "tool": 1h0m0s: want more than 0 and at most 10m0s`},
		{[]string{"--route-timeout", "no route=1s"}, `"no route" is not a route name`},
	} {
		code, _, errOut := runSamgw(t, "", append([]string{"serve", "--listen", "256.1.1.1:0"}, tc.args...)...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, %q; want %q", tc.args, code, errOut, tc.want)
		}
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "slow.lua"), "function on_data(msg)\n  local t0 = os.clock()\n  while os.clock() - t0 < 0.3 do end\n  return 'done'\nend\n")
	writeFile(t, filepath.Join(dir, "default.lua"), "function on_data(msg)\n  local t0 = os.clock()\n  while os.clock() - t0 < 0.3 do end\n  return 'done'\nend\n")
	addr, _, _ := startServe(t, "--scripts", dir, "--script-timeout", "100ms", "--route-timeout", "slow=10s")
	if code, out, errOut := runSamgw(t, "", "send", "--addr", addr, "--route", "slow", "1"); code != 0 || out != "\"done\"\n" {
		t.Fatalf("route slow: exit %d, %q %q", code, out, errOut)
	}
	if code, _, errOut := runSamgw(t, "", "send", "--addr", addr, "1"); code == 0 || !strings.Contains(errOut, "handler_timeout") {
		t.Fatalf("the default route: exit %d, %q", code, errOut)
	}
}

// TestRouteTimeoutInTheConfigFile: the config file takes route-timeout as
// a list, as samgw.example.yaml shows it.
func TestRouteTimeoutInTheConfigFile(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "slow.lua"), "function on_data(msg)\n  local t0 = os.clock()\n  while os.clock() - t0 < 0.3 do end\n  return 'done'\nend\n")
	conf := filepath.Join(dir, "samgw.yaml")
	writeFile(t, conf, "scripts: .\nscript-timeout: 100ms\nroute-timeout: [slow=10s]\n")
	addr, _, _ := startServe(t, "--config", conf)
	if code, out, errOut := runSamgw(t, "", "send", "--addr", addr, "--route", "slow", "1"); code != 0 || out != "\"done\"\n" {
		t.Fatalf("route slow: exit %d, %q %q", code, out, errOut)
	}
}

// TestPresenceTTLFlagIsBounded: --presence-ttl outside 3s..10m refuses to
// start, naming the bounds.
func TestPresenceTTLFlagIsBounded(t *testing.T) {
	for _, ttl := range []string{"1s", "2h"} {
		code, _, errOut := runSamgw(t, "", "serve", "--listen", "127.0.0.1:0", "--nats", "nats://127.0.0.1:1", "--presence-ttl", ttl)
		if code == 0 || !strings.Contains(errOut, "--presence-ttl") || !strings.Contains(errOut, "want 3s to 10m0s") {
			t.Errorf("--presence-ttl %s: exit %d, %q", ttl, code, errOut)
		}
	}
}

// TestConnectionIDsNeverRepeatAcrossRestarts: ids started again at c1
// after a restart, so state a script kept by connection id in the store
// pointed at new, unrelated connections. Each start has a boot id now.
func TestConnectionIDsNeverRepeatAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "default.lua"), "function on_data(msg, conn) return conn.id end\n")
	format := regexp.MustCompile(`^"([a-z2-7]{6})\.c(\d+)"$`)
	seen := map[string]bool{}
	for range 3 {
		addr, _, stop := startServe(t, "--scripts", dir)
		for range 2 {
			got := sendOK(t, addr, "1")
			m := format.FindStringSubmatch(got)
			if m == nil {
				t.Fatalf("connection id %s is not BOOT.cN", got)
			}
			if seen[got] {
				t.Fatalf("connection id %s repeated across restarts", got)
			}
			seen[got] = true
		}
		stop()
	}
}

// TestClientTokenFileAndKeepAliveFlags: copies of `samgw client` take
// their tokens from --token-file in turn; the keep-alive flags are checked
// like serve's.
func TestClientTokenFileAndKeepAliveFlags(t *testing.T) {
	dir := t.TempDir()
	ids := filepath.Join(dir, "identities.yaml")
	var yaml string
	for _, name := range []string{"agent-a", "agent-b"} {
		sum := sha256.Sum256([]byte("tok-" + name))
		yaml += "- name: " + name + "\n  token_sha256: " + hex.EncodeToString(sum[:]) + "\n"
	}
	writeFile(t, ids, yaml)
	if err := os.MkdirAll(filepath.Join(dir, "handlers"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "handlers", "default.lua"), `function on_data(msg, conn) return conn.identity end`)
	addr, _, _ := startServe(t, "--identities", ids, "--scripts", filepath.Join(dir, "handlers"))
	tokens := filepath.Join(dir, "tokens")
	writeFile(t, tokens, "# one a line\ntok-agent-a\n\ntok-agent-b\n")
	scenario := filepath.Join(dir, "who.lua")
	writeFile(t, scenario, `log(request("who"))`)
	code, out, errOut := runSamgw(t, "", "client", "--addr", addr, "--clients", "4", "--token-file", tokens, "--scenario", scenario,
		"--keepalive-interval", "2s", "--keepalive-timeout", "6s")
	if code != 0 || strings.Count(out, "agent-a") != 2 || strings.Count(out, "agent-b") != 2 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--token-file", filepath.Join(dir, "missing")}, "--token-file"},
		{[]string{"--token-file", tokens, "--token", "x"}, "exclude each other"},
		{[]string{"--keepalive-interval", "-1s"}, "KeepAliveInterval"},
	} {
		code, _, errOut := runSamgw(t, "", append([]string{"client", "--addr", addr, "--scenario", scenario}, tc.args...)...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, code, errOut, tc.want)
		}
	}
}

// TestClientResumeIsOptIn: `samgw client` takes an identity's mailbox only
// with --resume (a scenario that drives traffic must not consume and ack
// an agent's waiting messages); with it, the messages reach the scenario
// with their seq and are acked.
func TestClientResumeIsOptIn(t *testing.T) {
	dir := t.TempDir()
	ids := filepath.Join(dir, "identities.yaml")
	sum := sha256.Sum256([]byte("tok-alice"))
	writeFile(t, ids, "- name: alice\n  token_sha256: "+hex.EncodeToString(sum[:])+"\n")
	if err := os.MkdirAll(filepath.Join(dir, "handlers"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "handlers", "default.lua"), `function on_data(msg) return gateway.deliver("alice", msg.payload) end`)
	addr, _, _ := startServe(t, "--identities", ids, "--scripts", filepath.Join(dir, "handlers"))
	if got := sendOK(t, addr, "--token", "tok-alice", `"for later"`); got != "1" {
		t.Fatalf("deliver answered %s", got)
	}
	scenario := filepath.Join(dir, "take.lua")
	writeFile(t, scenario, `local m = expect("data", 2000) log(m.payload, m.seq)`)
	quiet := filepath.Join(dir, "quiet.lua")
	writeFile(t, quiet, `ping()`)
	if code, _, errOut := runSamgw(t, "", "client", "--addr", addr, "--token", "tok-alice", "--scenario", quiet); code != 0 {
		t.Fatalf("without --resume: exit %d %s", code, errOut)
	}
	code, out, errOut := runSamgw(t, "", "client", "--addr", addr, "--token", "tok-alice", "--resume", "--scenario", scenario)
	if code != 0 || out != "for later 1\n" {
		t.Fatalf("with --resume: exit %d, stdout %q, stderr %q (the message must still wait after the run without it)", code, out, errOut)
	}
	// Acked before the scenario's client closed: nothing waits any more.
	code, out, errOut = runSamgw(t, "", "send", "--addr", addr, "--token", "tok-alice", "--resume", "1", "--timeout", "300ms")
	if code == 0 || out != "" || !strings.Contains(errOut, "0 of 1 mailbox messages") {
		t.Fatalf("after --resume: exit %d, stdout %q, stderr %q; want nothing waiting", code, out, errOut)
	}
}

// TestRouteConcurrencyFlag: bad values refuse to start, naming the flag.
func TestRouteConcurrencyFlag(t *testing.T) {
	for value, want := range map[string]string{
		"tool":     "want ROUTE=N",
		"tool=x":   "want ROUTE=N",
		"tool=0":   "want 1 to 256",
		"tool=257": "want 1 to 256",
		"bad!=2":   "is not a route name",
		"=4":       "want ROUTE=N",
	} {
		code, _, errOut := runSamgw(t, "", "serve", "--listen", "127.0.0.1:0", "--route-concurrency", value)
		if code == 0 || !strings.Contains(errOut, "--route-concurrency") || !strings.Contains(errOut, want) {
			t.Errorf("--route-concurrency %s: exit %d: %s", value, code, errOut)
		}
	}
}
