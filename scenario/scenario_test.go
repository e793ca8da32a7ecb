package scenario

import (
	"context"
	"io/fs"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/gatewaytest"
	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
	"github.com/secureagentmessaging/samgw/scripts"
)

// scenarioServer serves handler (nil: echo) for scenario tests.
func scenarioServer(t *testing.T, handler gateway.Handler) string {
	t.Helper()
	_, addr := gatewaytest.Serve(t, "", gateway.Config{Handler: handler})
	return addr
}

func runSource(t *testing.T, addr, src string, scale float64) (string, error) {
	t.Helper()
	out := &testutil.SyncBuffer{}
	res := Run(t.Context(), Config{Name: "test.lua", Source: []byte(src),
		Client: gateway.ClientConfig{Addr: addr}, TimeScale: scale, Out: out, Args: map[string]string{"who": "tester"}})
	return out.String(), res.Err
}

func TestDemoScenario(t *testing.T) {
	// The server's keep-alive interval at the demo's time scale: 10 s / 100.
	_, addr := gatewaytest.Serve(t, "", gateway.Config{KeepAliveInterval: 100 * time.Millisecond})
	out := &testutil.SyncBuffer{}
	res := Run(t.Context(), Config{Name: "demo.lua", Source: scripts.Demo(),
		Client: gateway.ClientConfig{Addr: addr}, TimeScale: 0.01, Out: out})
	if res.Err != nil {
		t.Fatalf("demo: %v\n%s", res.Err, out)
	}
	var lines []string
	keepalives := 0
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if l == "Keep-alive received" {
			keepalives++
			continue
		}
		lines = append(lines, l)
	}
	want := []*regexp.Regexp{
		regexp.MustCompile(`^Connected to server$`),
		regexp.MustCompile(`^Data received: \{"name":"John","age":30,"email":"john@example.com"\}$`),
		regexp.MustCompile(`^Pong received$`),
		regexp.MustCompile(`^Data received: \{"message":"Hello again!","timestamp":\d{13}\}$`),
		regexp.MustCompile(`^Disconnecting after 30 seconds\.\.\.$`),
		regexp.MustCompile(`^Disconnected from server$`),
	}
	if len(lines) != len(want) {
		t.Fatalf("demo printed:\n%s", out)
	}
	for i, re := range want {
		if !re.MatchString(lines[i]) {
			t.Fatalf("line %d: %q, want %s\n%s", i, lines[i], re, out)
		}
	}
	if keepalives < 2 || keepalives > 3 { // at 100, 200 and (racing the disconnect) 300 ms
		t.Fatalf("%d keep-alive lines, want the server's 2 or 3:\n%s", keepalives, out)
	}
	if res.Requests.Count() != 1 { // the ping
		t.Fatalf("%d round trips recorded", res.Requests.Count())
	}
}

func TestScenarioAPI(t *testing.T) {
	addr := scenarioServer(t, nil)
	out, err := runSource(t, addr, `
local seen = {}
on("data", function(msg) seen[#seen + 1] = msg.payload.n end)
assert(connected(), "connected at start")
assert(client.id == 1 and args.who == "tester", "client.id and args")
local id = send({n = 1})
assert(type(id) == "string" and #id > 0, "send returns an id")
local m = expect("data", 1000)
assert(m.type == "data" and m.id == id and m.payload.n == 1, "expect returns the echo")
local reply = request({n = 2}, 1000)
assert(reply.n == 2, "request returns the payload")
local routed = request({n = 3}, "some.route")
assert(routed.n == 3)
local rtt = ping(1000)
assert(type(rtt) == "number" and rtt >= 0, "ping returns ms")
sleep(10)
-- The echo of send reaches the callbacks; the replies to request are the
-- request's alone.
assert(#seen == 1 and seen[1] == 1, "callbacks saw " .. #seen)
log("done", #seen, json.encode({ok = true}), now() > 0)
disconnect("bye")
assert(not connected(), "disconnected")
`, 1)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out != "done 1 {\"ok\":true} true\n" {
		t.Fatalf("output %q", out)
	}
}

func TestScenarioFailuresNameFileAndLine(t *testing.T) {
	silent := scenarioServer(t, gateway.HandlerFunc(func(context.Context, *gateway.Conn, *protocol.Message) error { return nil }))
	refusing := scenarioServer(t, gateway.HandlerFunc(func(context.Context, *gateway.Conn, *protocol.Message) error {
		return protocol.Errorf(protocol.CodeNoRoute, "nope")
	}))
	tests := []struct {
		name, addr, src, want string
	}{
		{"expect times out", silent, "send(1)\nexpect(\"data\", 100)", `^test.lua:2: expect data: timed out after 100ms`},
		{"request times out", silent, "\n\nrequest(1, 50)", `^test.lua:3: request: timed out after 50ms`},
		{"error frame", refusing, "request(1)", `^test.lua:1: request: the server answered with error .*no_route`},
		{"script error", silent, "local x = nil\nx.y = 1", `^test.lua:2: attempt to index`},
		{"raised error", silent, "error('custom failure')", `^test.lua:1: custom failure`},
		{"syntax error", silent, "this is not lua", `^test.lua: test.lua line:1`},
		{"sandbox", silent, "io.open('/etc/passwd')", `^test.lua:1: .*'open'`},
		{"sandbox os", silent, "os.execute('true')", `^test.lua:1: attempt to call a non-function`},
		{"time scale applies", silent, "request(1, 1000)", `timed out after 10ms`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			scale := 1.0
			if tt.name == "time scale applies" {
				scale = 0.01
			}
			_, err := runSource(t, tt.addr, tt.src, scale)
			if err == nil || !regexp.MustCompile(tt.want).MatchString(err.Error()) {
				t.Fatalf("error %v, want %s", err, tt.want)
			}
		})
	}
}

func TestScenarioConnectFails(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	_, err := runSource(t, addr, "log('never')", 1)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("error %v", err)
	}
}

func TestScenarioInterrupted(t *testing.T) {
	addr := scenarioServer(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	res := Run(ctx, Config{Name: "long.lua", Source: []byte("sleep(60000)"), Client: gateway.ClientConfig{Addr: addr}})
	if res.Err == nil || !strings.Contains(res.Err.Error(), "interrupted") {
		t.Fatalf("error %v", res.Err)
	}
}

func TestManyScenarioClients(t *testing.T) {
	addr := scenarioServer(t, nil)
	src := `
for i = 1, 10 do
  local r = request({client = client.id, i = i})
  assert(r.client == client.id and r.i == i, "wrong reply")
end
if client.id == tonumber(args.fail or "0") then error("client " .. client.id .. " fails on purpose") end
log("ok")`
	run := func(n int, args map[string]string) (Summary, string) {
		out := &testutil.SyncBuffer{}
		sum := RunMany(t.Context(), Config{Name: "load.lua", Source: []byte(src), Args: args,
			Client: gateway.ClientConfig{Addr: addr}, Out: out}, n)
		return sum, out.String()
	}
	sum, out := run(50, nil)
	if sum.Passed != 50 || sum.Failed != 0 || len(sum.Errors) != 0 {
		t.Fatalf("50 clients: %+v", sum)
	}
	if sum.Requests.Count() != 500 || sum.Requests.Quantile(0.99) <= 0 {
		t.Fatalf("%d requests recorded", sum.Requests.Count())
	}
	if n := strings.Count(out, "] ok\n"); n != 50 {
		t.Fatalf("%d prefixed lines:\n%s", n, out)
	}
	sum, _ = run(10, map[string]string{"fail": "7"})
	if sum.Passed != 9 || sum.Failed != 1 || len(sum.Errors) != 1 ||
		!strings.Contains(sum.Errors[0], "client 7: load.lua:6: client 7 fails on purpose") {
		t.Fatalf("summary %+v", sum)
	}
}

func TestShippedScenarios(t *testing.T) {
	addr := scenarioServer(t, nil)
	for _, tc := range []struct {
		file    string
		args    map[string]string
		clients int
	}{
		{"check.lua", nil, 1},
		{"load.lua", map[string]string{"n": "20"}, 10},
	} {
		src, err := fs.ReadFile(scripts.FS(), "scenarios/"+tc.file)
		if err != nil {
			t.Fatal(err)
		}
		out := &testutil.SyncBuffer{}
		sum := RunMany(t.Context(), Config{Name: tc.file, Source: src, Args: tc.args,
			Client: gateway.ClientConfig{Addr: addr}, Out: out}, tc.clients)
		if sum.Failed != 0 || sum.Passed != tc.clients {
			t.Fatalf("%s: %+v\n%s", tc.file, sum.Errors, out)
		}
	}
}
