package scripting

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
	"github.com/secureagentmessaging/samgw/scripts"
)

const echo = `function on_data(msg, conn) return msg.payload end`

func TestEchoRoundTripsPayloadsExactly(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": echo}, Config{})
	c, _ := f.client()
	for _, payload := range []string{
		`{"name":"John","age":30,"email":"john@example.com"}`, // key order kept
		`[]`, `{}`, `[[],{},[{}]]`, `{"a":[],"b":{}}`,
		`null`, `true`, `false`, `0`, `-1`, `1.5`, `-0.25`, `1e+100`, `9007199254740992`, `-9007199254740992`,
		`"text"`, `""`, `"quote \" backslash \\ newline \n tab \t"`, `"ünïcödé ✓ 😀"`,
		`[1,null,3]`, `{"x":null}`, `[null]`, `{"nested":{"deep":[1,[2,[3,{"k":"v"}]]]}}`,
		`{"1":"string key one"}`, `["a","b","c"]`,
		// Integers a float64 cannot hold come back verbatim, not rounded.
		`12345678901234567890`, `9007199254740993`, `-9007199254740993`, `{"id":18446744073709551617,"ids":[9007199254740993,1]}`,
	} {
		got, err := request(t, c, "", payload)
		if err != nil {
			t.Fatalf("echo of %s: %v", payload, err)
		}
		if got != payload {
			t.Errorf("echo of %s returned %s", payload, got)
		}
	}
	// Absent payload: the handler gets nil and returns it: no reply, so a
	// ping afterwards is the next answer.
	if _, err := c.SendMessage(protocol.Message{Type: protocol.TypeData}); err != nil {
		t.Fatal(err)
	}
	mustReply(t, c, "", `"after"`, `"after"`)
}

func TestLuaValuesBecomeJSON(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": `
function on_data(msg, conn)
  local p = msg.payload
  if p == "sequence" then return {1, 2, 3} end
  if p == "empty" then return {} end
  if p == "empty array" then return json.array() end
  if p == "mixed" then return {1, 2, x = 3} end
  if p == "sparse" then local t = {}; t[3] = "c"; t[2] = "b"; t[1] = "a"; return t end
  if p == "null" then return {a = json.null} end
  if p == "numbers" then return {int = 42, neg = -7, frac = 0.5, big = 2^53} end
  if p == "string" then return "\0\1 bytes" end
  if p == "function" then return {f = function() end} end
  if p == "nan" then return 0/0 end
  if p == "cycle" then local t = {}; t.self = t; return t end
  if p == "msg" then return msg end
  if p == "modify" then msg.payload = {changed = true}; return msg.payload end
  return p
end`}, Config{})
	c, _ := f.client()
	tests := []struct{ in, want string }{
		{`"sequence"`, `[1,2,3]`},
		{`"empty"`, `{}`},
		{`"empty array"`, `[]`},
		{`"mixed"`, `{"1":1,"2":2,"x":3}`},
		{`"sparse"`, `["a","b","c"]`},
		{`"null"`, `{"a":null}`},
		{`"numbers"`, `{"int":42,"neg":-7,"frac":0.5,"big":9007199254740992}`},
		{`"string"`, `"\u0000\u0001 bytes"`},
		{`"modify"`, `{"changed":true}`},
	}
	for _, tt := range tests {
		mustReply(t, c, "", tt.in, tt.want)
	}
	got, err := request(t, c, "", `"msg"`)
	var whole map[string]any
	if err != nil || json.Unmarshal([]byte(got), &whole) != nil || whole["type"] != "data" || whole["payload"] != "msg" ||
		whole["id"] == nil || whole["timestamp"] == nil || len(whole) != 4 {
		t.Fatalf("json of msg: %s %v", got, err)
	}
	for _, bad := range []string{`"function"`, `"nan"`, `"cycle"`} {
		mustFail(t, c, "", bad, protocol.CodeHandlerError, "not JSON")
	}
}

func TestMessageAndConnFields(t *testing.T) {
	f := newFixture(t, map[string]string{"info.lua": `
function on_data(msg, conn)
  return {type = msg.type, id = msg.id, route = msg.route, ts = msg.timestamp,
          conn = conn.id, remote = conn.remote, identity = conn.identity or "none",
          tostring = tostring(conn)}
end`}, Config{})
	c, _ := f.client()
	ctx := t.Context()
	reply, err := c.RequestMessage(ctx, protocol.Message{Type: protocol.TypeData, ID: "my-id", Route: "info", Timestamp: 1234, Payload: []byte(`1`)})
	if err != nil {
		t.Fatal(err)
	}
	info := f.srv.Connections()[0]
	want := fmt.Sprintf(`{"type":"data","id":"my-id","route":"info","ts":1234,"conn":%q,"remote":%q,"identity":"none","tostring":"conn %s"}`,
		info.ID, info.RemoteAddr, info.ID)
	if !jsonEqual(string(reply.Payload), want) {
		t.Fatalf("got %s, want %s", reply.Payload, want)
	}
}

func TestRouting(t *testing.T) {
	f := newFixture(t, map[string]string{
		"default.lua":  `function on_data(msg) return {from = "default", got = msg.payload} end`,
		"upper.lua":    `function on_data(msg) return string.upper(msg.payload) end`,
		"v2.chat.lua":  `function on_data(msg) return "dotted" end`,
		"notes.txt":    `not a script`,
		"lib/util.lua": `return {}`,
	}, Config{})
	c, _ := f.client()
	mustReply(t, c, "", `"x"`, `{"from":"default","got":"x"}`)
	mustReply(t, c, "upper", `"shout"`, `"SHOUT"`)
	mustReply(t, c, "v2.chat", `1`, `"dotted"`)
	mustFail(t, c, "missing", `1`, protocol.CodeNoRoute, `no handler for route "missing"`)
	mustFail(t, c, "lib", `1`, protocol.CodeNoRoute, `"lib"`)
	for _, bad := range []string{"../default", "a/b", "with space", "semi;colon"} {
		mustFail(t, c, bad, `1`, protocol.CodeInvalidMessage, "invalid route name")
	}
	if got := strings.Join(f.engine.Routes(), ","); got != "default,upper,v2.chat" {
		t.Fatalf("routes %s", got)
	}
}

func TestNoDefaultScriptMeansBuiltInEcho(t *testing.T) {
	f := newFixture(t, map[string]string{"other.lua": echo}, Config{})
	c, _ := f.client()
	mustReply(t, c, "", `{"b":2,"a":1}`, `{"b":2,"a":1}`)
}

func TestEmbeddedDefaultIsEcho(t *testing.T) {
	e, err := New(Config{FS: scripts.Handlers(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(e.Routes(), ","); got != "default" {
		t.Fatalf("embedded routes %s, want default", got)
	}
	if err := e.Watch(t.Context(), 0); !errors.Is(err, ErrNotWatchable) {
		t.Fatalf("Watch on embedded scripts: %v", err)
	}
}

func TestScriptErrorsAreReportedAndContained(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": `
function on_data(msg)
  if msg.payload == "error" then error("bad input: " .. msg.id) end
  if msg.payload == "runtime" then local t = nil; return t.x end
  if msg.payload == "table error" then error({code = 7}) end
  return msg.payload
end`}, Config{})
	c, _ := f.client()
	mustFail(t, c, "", `"error"`, protocol.CodeHandlerError, "default.lua:3: bad input: ")
	mustFail(t, c, "", `"runtime"`, protocol.CodeHandlerError, "default.lua:4: attempt to index")
	mustFail(t, c, "", `"table error"`, protocol.CodeHandlerError, "table")
	mustReply(t, c, "", `"still fine"`, `"still fine"`)
	if !strings.Contains(f.logs.String(), `msg="Handler failed" script=default.lua`) {
		t.Fatalf("failure not logged:\n%s", f.logs.String())
	}
}

func TestTimeoutsAndRunawayScripts(t *testing.T) {
	runaway := `
function on_data(msg)
  local p = msg.payload
  if p == "loop" then while true do end end
  if p == "pcall loop" then while true do pcall(function() while true do end end) end end
  if p == "recurse" then local function r(n) return 1 + r(n + 1) end return r(1) end
  if p == "grow" then local s = "x"; while true do s = s .. s end end
  if p == "rep" then return string.rep("x", 1e9) end
  return p
end`
	// "bounded" runs the same code with a long bound: the calls that must end
	// in an error of their own (a stack overflow, a size refusal) are checked
	// there, so a loaded machine that is slow to build a fresh state after a
	// timeout cannot turn them into timeouts.
	f := newFixture(t, map[string]string{"default.lua": runaway, "bounded.lua": runaway},
		Config{Timeout: 200 * time.Millisecond, RouteTimeouts: map[string]time.Duration{"bounded": time.Minute}})
	c, _ := f.client()
	other, _ := f.client()
	start := time.Now()
	mustFail(t, c, "", `"loop"`, protocol.CodeHandlerTimeout, "200ms")
	if elapsed := time.Since(start); elapsed < 200*time.Millisecond {
		t.Fatalf("timed out after %v, before the deadline", elapsed)
	}
	mustReply(t, other, "", `"other connection unaffected"`, `"other connection unaffected"`)
	mustFail(t, c, "", `"pcall loop"`, protocol.CodeHandlerTimeout, "")
	mustFail(t, c, "bounded", `"recurse"`, protocol.CodeHandlerError, "stack overflow")
	got, err := request(t, c, "", `"grow"`)
	var pe *protocol.Error
	if !errors.As(err, &pe) || (pe.Code != protocol.CodeHandlerTimeout && pe.Code != protocol.CodeHandlerError) {
		t.Fatalf("doubling string: %s %v", got, err)
	}
	mustFail(t, c, "bounded", `"rep"`, protocol.CodeHandlerError, "exceeds the limit")
	mustReply(t, c, "", `"alive"`, `"alive"`)
}

func TestSandbox(t *testing.T) {
	f := newFixture(t, map[string]string{
		"default.lua": `
function on_data(msg)
  local code = msg.payload
  local fn, err = loadstring(code)
  if not fn then error(err) end
  return fn()
end`,
		"lib/ok.lua": `return {answer = 42}`,
	}, Config{})
	c, _ := f.client()
	escapes := []struct{ code, want string }{
		{`return io.open("/etc/passwd")`, "(nil) with key 'open'"},
		{`return os.execute("true")`, "attempt to call a non-function object"},
		{`return os.exit(1)`, "attempt to call a non-function object"},
		{`return os.getenv("HOME")`, "attempt to call a non-function object"},
		{`return os.remove("/tmp/x")`, "attempt to call a non-function object"},
		{`return debug.getinfo(1)`, "(nil) with key 'getinfo'"},
		{`return dofile("/etc/passwd")`, "attempt to call a non-function object"},
		{`return loadfile("/etc/passwd")`, "attempt to call a non-function object"},
		{`return require("../x")`, "invalid module name"},
		{`return require("/etc/passwd")`, "invalid module name"},
		{`return require("nothere")`, "no module"},
		{`return package.loadlib("libc.so", "system")`, "(nil) with key 'loadlib'"},
		{`return string.dump(print)`, "attempt to call a non-function object"},
		{`return collectgarbage("count")`, "attempt to call a non-function object"},
		{`return setfenv(1, {})`, "attempt to call a non-function object"},
		{`return assert(loadstring("\27LuaQ\0\1\4\8"))()`, "<string>"},
	}
	for _, e := range escapes {
		code, _ := jsonString(e.code)
		mustFail(t, c, "", code, protocol.CodeHandlerError, e.want)
	}
	allowed := []struct{ code, want string }{
		{`return require("ok").answer`, `42`},
		{`return type(os.time())`, `"number"`},
		{`return type(os.clock())`, `"number"`},
		{`return os.date("%Y", 0)`, `"1970"`},
		{`return math.floor(2.5) + string.len("abc") + #table.concat({"a", "b"})`, `7`},
		{`return now() > 1.7e12`, `true`},
	}
	for _, a := range allowed {
		code, _ := jsonString(a.code)
		mustReply(t, c, "", code, a.want)
	}
}

func jsonString(s string) (string, error) {
	return string(protocol.AppendString(nil, s)), nil
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"syntax error", map[string]string{"default.lua": "function on_data(msg)\n  return (\nend"}, "default.lua"},
		{"no on_data", map[string]string{"default.lua": `function handler() end`}, "no on_data"},
		{"empty file", map[string]string{"empty.lua": ``}, "empty.lua: scripting: the file defines no on_data"},
		{"error at load", map[string]string{"boom.lua": `error("refusing to load")`}, "refusing to load"},
		{"endless loop at load", map[string]string{"spin.lua": `while true do end`}, "longer than"},
		{"bad name", map[string]string{"bad name.lua": echo}, "not a valid route"},
		{"lib syntax error", map[string]string{"default.lua": echo, "lib/broken.lua": `return {`}, "lib/broken.lua"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeScripts(t, dir, tt.files)
			_, err := New(Config{Dir: dir, Timeout: 200 * time.Millisecond, Logger: quietLogger()})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestRouteTimeouts: a route named in RouteTimeouts gets its own bound
// (a tool call that takes longer than the default), the others keep the
// default; invalid entries are refused with ErrInvalidRouteTimeout.
func TestRouteTimeouts(t *testing.T) {
	busy := func(ms int) string {
		return fmt.Sprintf(`function on_data(msg)
  local t0 = os.clock()
  while os.clock() - t0 < %g do end
  return "done"
end`, float64(ms)/1000)
	}
	f := newFixture(t, map[string]string{"slow_tool.lua": busy(300), "other.lua": busy(300)},
		Config{Timeout: 100 * time.Millisecond, RouteTimeouts: map[string]time.Duration{"slow_tool": 5 * time.Second}})
	c, _ := f.client()
	mustReply(t, c, "slow_tool", `0`, `"done"`)
	mustFail(t, c, "other", `0`, protocol.CodeHandlerTimeout, "within 100ms")
	for _, bad := range []map[string]time.Duration{
		{"bad route!": time.Second},
		{"ok": 0},
		{"ok": -time.Second},
		{"ok": time.Hour},
	} {
		if _, err := New(Config{FS: scripts.Handlers(), RouteTimeouts: bad}); !errors.Is(err, ErrInvalidRouteTimeout) {
			t.Errorf("RouteTimeouts %v: %v, want ErrInvalidRouteTimeout", bad, err)
		}
	}
}

// auditEvents records audit events.
type auditEvents struct {
	mu     sync.Mutex
	events []gateway.AuditEvent
}

func (a *auditEvents) Audit(ev gateway.AuditEvent) {
	a.mu.Lock()
	a.events = append(a.events, ev)
	a.mu.Unlock()
}

func (a *auditEvents) of(kind string) []gateway.AuditEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []gateway.AuditEvent
	for _, ev := range a.events {
		if ev.Event == kind {
			out = append(out, ev)
		}
	}
	return out
}

// TestRefusalsMarkedAuditGoToTheAuditLog: error{code, message, audit =
// true} is a handler_refused event; a flood of them is one event a second
// per connection, and the rest are counted when the connection closes.
// Refusals without audit = true stay out of it.
func TestRefusalsMarkedAuditGoToTheAuditLog(t *testing.T) {
	audit := &auditEvents{}
	f := newFixture(t, map[string]string{"default.lua": `
function on_data(msg)
  if msg.payload == "quiet" then error({code = "not_yours", message = "task 7 is not yours"}) end
  error({code = "not_yours", message = "task 7 is not yours", audit = true})
end`}, Config{Audit: audit})
	c, _ := f.client()
	mustFail(t, c, "", `"quiet"`, "not_yours", "task 7 is not yours")
	if got := audit.of(gateway.AuditHandlerRefused); len(got) != 0 {
		t.Fatalf("a refusal without audit = true was audited: %+v", got)
	}
	mustFail(t, c, "", `"x"`, "not_yours", "task 7 is not yours")
	got := audit.of(gateway.AuditHandlerRefused)
	if len(got) != 1 || got[0].Reason != "not_yours: task 7 is not yours" || got[0].Route != "default" || got[0].Count != 1 || got[0].Conn == "" {
		t.Fatalf("audited refusal: %+v", got)
	}
	for range 99 { // within the second: counted, not written
		mustFail(t, c, "", `"x"`, "not_yours", "")
	}
	if got := audit.of(gateway.AuditHandlerRefused); len(got) > 2 {
		t.Fatalf("%d events for 100 refusals within about a second", len(got))
	}
	c.Disconnect("done")
	testutil.Eventually(t, "the remaining refusals counted at close", func() bool {
		var n uint64
		for _, ev := range audit.of(gateway.AuditHandlerRefused) {
			n += ev.Count
		}
		return n == 100
	})
}

// TestStoreKeysFromLua: store.keys lists live keys by prefix, sorted,
// bounded by its limit (100 by default, 1 to 1000).
func TestStoreKeysFromLua(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": `
function on_data(msg)
  local p = msg.payload
  if p.op == "fill" then
    for i = 1, 150 do store.set(string.format("job:%03d", i), i) end
    store.set("other", 1)
    store.set("job:gone", 1, {ttl_ms = 1})
    return true
  end
  if p.op == "keys" then return store.keys(p.prefix, p.limit) end
  return #store.keys(p.prefix)
end`}, Config{})
	c, _ := f.client()
	mustReply(t, c, "", `{"op":"fill"}`, `true`)
	testutil.Eventually(t, "job:gone to expire", func() bool {
		got, err := request(t, c, "", `{"op":"keys","prefix":"job:g","limit":5}`)
		return err == nil && got == `{}` // an empty Lua table encodes as {}
	})
	mustReply(t, c, "", `{"op":"keys","prefix":"job:14","limit":3}`, `["job:140","job:141","job:142"]`)
	mustReply(t, c, "", `{"op":"count","prefix":"job:"}`, `100`)
	mustReply(t, c, "", `{"op":"keys","prefix":"oth"}`, `["other"]`)
	mustFail(t, c, "", `{"op":"keys","prefix":"job:","limit":0}`, protocol.CodeHandlerError, "limit must be 1 to 1000")
	mustFail(t, c, "", `{"op":"keys","prefix":"job:","limit":1001}`, protocol.CodeHandlerError, "limit must be 1 to 1000")
}
