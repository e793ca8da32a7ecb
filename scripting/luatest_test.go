package scripting

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/scripts"
)

// TestShippedLuaTestsPass runs the *_test.lua files shipped beside the
// default handler and the examples, as `samgw test` does.
func TestShippedLuaTestsPass(t *testing.T) {
	for name, cfg := range map[string]TestConfig{"default": {FS: scripts.Handlers()}, "examples": {FS: scripts.Examples()}} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			cfg.Out = &out
			cfg.Verbose = true
			report, err := RunTests(cfg)
			if err != nil || report.Failed != 0 || report.Passed == 0 {
				t.Fatalf("%+v, %v\n%s", report, err, out.String())
			}
			t.Logf("\n%s", out.String())
		})
	}
}

// runnerFixture is a scripts directory whose tests pass and fail in known
// ways.
var runnerFixture = map[string]string{
	"echo.lua": `function on_data(msg, conn)
  if msg.payload == "boom" then error("boom") end
  if msg.payload == "tick" then
    local id = conn.id
    timer.every(10, function() gateway.send(id, "tick") end)
  end
  if msg.payload == "bad timer" then
    timer.after(5, function() error("timer boom") end)
  end
  return msg.payload
end`,
	"a_test.lua": `test("passes", function()
  assert_eq(call("echo", {1, 2}), {1, 2})
end)
test("fails on a value", function()
  assert_eq(call("echo", {a = 1}), {a = 2})
end)
test("fails with a message", function()
  assert_eq(1, 2, "one is not two")
end)
test("wants an error that never comes", function()
  assert_error(function() call("echo", "fine") end, "boom")
end)
test("gets another error", function()
  assert_error(function() call("echo", "boom") end, "bang")
end)
test("runs forever", function()
  while true do end
end)
test("moves the clock for ever", function()
  call("echo", "tick")
  clock.advance(1e11)
end)
test("a timer fails", function()
  call("echo", "bad timer")
  clock.advance(10)
end)
test("calls an upstream without a stub", function()
  upstream.request("nowhere", 1)
end)
test("calls a route that does not exist", function()
  call("nope", 1)
end)`,
	"b_test.lua":       "test(\"broken\", function()\n  assert_eq(1, 1\nend)\n",
	"c_test.lua":       "local x = 1\n",
	"d_test.lua":       "test(\"twice\", function() end)\ntest(\"twice\", function() end)\n",
	"lib/helper.lua":   "return {}",
	"e_test.lua":       "local h = require('helper')\ntest(\"requires a module\", function() assert_eq(type(h), 'table') end)\n",
	"ignored.txt":      "not a test",
	"lib/x_test.lua":   "not a test: tests are at the top",
	".hidden_test.lua": "not a test: hidden",
}

func TestRunTestsReportsEachFailureWithItsLine(t *testing.T) {
	dir := t.TempDir()
	writeScripts(t, dir, runnerFixture)
	var out bytes.Buffer
	start := time.Now()
	report, err := RunTests(TestConfig{Dir: dir, Out: &out, Timeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrTestsFailed) {
		t.Fatalf("err %v, want ErrTestsFailed", err)
	}
	// Two tests ran out of time, one each: the run is bounded by them.
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the run took %v", d)
	}
	want := []string{
		`a_test.lua: fails on a value: a_test.lua:5: got {"a":1}, want {"a":2}`,
		`a_test.lua: fails with a message: a_test.lua:8: one is not two: got 1, want 2`,
		`a_test.lua: wants an error that never comes: a_test.lua:11: no error raised (want one containing "boom")`,
		`a_test.lua: gets another error: a_test.lua:14: error "echo.lua:2: boom" does not contain "bang"`,
		`a_test.lua: runs forever: did not finish within 300ms`,
		`a_test.lua: moves the clock for ever: did not finish within 300ms`,
		`a_test.lua: a timer fails: a_test.lua:25: clock.advance: timer made at echo.lua:8 failed: echo.lua:8: timer boom`,
		`a_test.lua: calls an upstream without a stub: a_test.lua:28: upstream.request: no stub for nowhere: add stub.upstream("nowhere", answer) to the test`,
		`a_test.lua: calls a route that does not exist: a_test.lua:31: bad argument #1 to call (no handler for route "nope" (routes: echo))`,
		`b_test.lua: b_test.lua:3:3: near 'end': syntax error`,
		`c_test.lua: declares no test: call test(name, function() … end)`,
		`d_test.lua: d_test.lua:2: test: "twice" is declared twice`,
	}
	if !slices.Equal(report.Failures, want) {
		t.Fatalf("failures:\n%s\nwant:\n%s\noutput:\n%s", strings.Join(report.Failures, "\n"), strings.Join(want, "\n"), out.String())
	}
	if report.Passed != 2 || report.Failed != len(want) {
		t.Fatalf("%d passed, %d failed; want 2 and %d", report.Passed, report.Failed, len(want))
	}
	if !strings.HasSuffix(out.String(), "2 passed, 12 failed\n") || !strings.Contains(out.String(), "--- FAIL: a_test.lua: fails on a value\n    a_test.lua:5: got") {
		t.Fatalf("output:\n%s", out.String())
	}

	t.Run("run selects tests by file and name", func(t *testing.T) {
		var out bytes.Buffer
		report, err := RunTests(TestConfig{Dir: dir, Out: &out, Run: `^(a_test.lua: passes|e_test)`, Verbose: true})
		if err != nil || report.Passed != 2 || report.Failed != 0 {
			t.Fatalf("%+v, %v\n%s", report, err, out.String())
		}
		want := "--- PASS: a_test.lua: passes"
		if !strings.HasPrefix(out.String(), want) || !strings.HasSuffix(out.String(), "2 passed, 0 failed\n") {
			t.Fatalf("output:\n%s", out.String())
		}
		if _, err := RunTests(TestConfig{Dir: dir, Run: "("}); err == nil {
			t.Fatal("a --run that does not compile was accepted")
		}
	})
	t.Run("test files are never routes", func(t *testing.T) {
		e, err := New(Config{Dir: dir, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		if got := strings.Join(e.Routes(), ","); got != "echo" {
			t.Fatalf("routes %s, want echo", got)
		}
	})
}

// TestHarnessDoublesBehaveLikeTheGateway runs a test file that uses every
// part of the harness; each assert in it must hold.
func TestHarnessDoublesBehaveLikeTheGateway(t *testing.T) {
	dir := t.TempDir()
	writeScripts(t, dir, map[string]string{
		"default.lua": `
function on_start()
  timer.every(1000, function() gateway.broadcast({beat = store.incr("beats")}, "beat") end)
end
function on_connect(conn)
  if conn.identity == "mallory" then return false, "not you" end
  return true
end
function on_close(conn, reason) store.set("closed." .. conn.id, reason) end
function on_data(msg, conn)
  local p = msg.payload
  if p.op == "send_to" then return gateway.send_to(p.identity, p.body) end
  if p.op == "close" then return gateway.close(p.id, "bye") end
  if p.op == "nats" then nats.publish("events.x", p.body); return nats.request("svc.echo", p.body) end
  if p.op == "ttl" then store.set("k", "v", {ttl_ms = 100}); return true end
  if p.op == "state" then conn.state.n = (conn.state.n or 0) + 1; return conn.state.n end
  if p.op == "all" then return upstream.all{{"a", 1}, {"b", 2, "route2"}} end
  if p.op == "get" then local r, err = http.get(p.url); return r and r.status or err end
  if p.op == "msg" then return {id = msg.id, route = msg.route, type = msg.type, ts = msg.timestamp > 0} end
  if p.op == "publish" then return gateway.publish(p.topic, 1) end
  if p.op == "can" then return conn.can(p.kind, p.target) end
  if p.op == "roles" then return conn.roles end
  return p
end`,
		"features_test.lua": `
test("connect and disconnect run the hooks", function()
  local ok, why = connect(new_conn{identity = "mallory"})
  assert_eq({ok, why}, {false, "not you"})
  local c = new_conn{id = "c-1", identity = "ann", remote = "10.0.0.1:5"}
  assert_eq(connect(c), true)
  assert_eq({c.id, c.identity, c.remote}, {"c-1", "ann", "10.0.0.1:5"})
  disconnect(c, "gone")
  assert_eq(store.get("closed.c-1"), "gone")
  assert_eq(closed(c), "gone")
end)

test("on_start and the clock drive timers", function()
  local a = new_conn()
  start()
  clock.advance(999)
  assert_eq(#pushes(a), 0)
  clock.advance(1)
  assert_eq(pushes(a), {{route = "beat", payload = {beat = 1}}})
  clock.advance(3000)
  assert_eq(#pushes(a), 4)
  assert_eq(clock.now(), 4000)
end)

test("now() follows the test clock", function()
  local t0 = now()
  clock.advance(1500)
  assert_eq(now() - t0, 1500)
end)

test("send_to, close and the outbox", function()
  local a, b, c = new_conn{identity = "ann"}, new_conn{identity = "ann"}, new_conn{identity = "bob"}
  assert_eq(call("default", {op = "send_to", identity = "ann", body = "hi"}, c), 2)
  assert_eq(#pushes(a) + #pushes(b) + #pushes(c), 2)
  assert_eq(call("default", {op = "close", id = b.id}), true)
  assert_eq(call("default", {op = "close", id = b.id}), false)
  assert_eq(closed(b), "bye")
  assert_eq(outbox()[1], {action = "send_to", identity = "ann", payload = "hi"})
  assert_eq(outbox()[3], {action = "close", to = b.id, reason = "bye"})
end)

test("nats, upstream and http stubs", function()
  stub.nats("svc.echo", function(p) return {echo = p} end)
  assert_eq(call("default", {op = "nats", body = 7}), {echo = 7})
  assert_eq(outbox()[1], {action = "nats.publish", subject = "events.x", payload = 7})
  stub.upstream("a", function(p, route) return {p = p, route = route} end)
  stub.upstream("b", function(p, route) return {p = p, route = route} end)
  assert_eq(call("default", {op = "all"}), {{reply = {p = 1}}, {reply = {p = 2, route = "route2"}}})
  stub.http("GET http://x/", {status = 204})
  assert_eq(call("default", {op = "get", url = "http://x/"}), 204)
  assert_error(function() call("default", {op = "get", url = "http://y/"}) end, 'no stub for GET http://y/: add stub.http("GET http://y/", answer)')
end)

test("the store's time to live follows the test clock", function()
  call("default", {op = "ttl"})
  clock.advance(99)
  assert_eq(store.get("k"), "v")
  clock.advance(1)
  assert_eq(store.get("k"), nil)
end)

test("conn.state is kept per connection", function()
  local a, b = new_conn(), new_conn()
  assert_eq(call("default", {op = "state"}, a), 1)
  assert_eq(call("default", {op = "state"}, a), 2)
  assert_eq(call("default", {op = "state"}, b), 1)
  assert_eq(conn_state(a), {n = 2})
end)

test("msg has the fields a handler sees", function()
  local got = call("default", {op = "msg"})
  assert_eq({got.route, got.type, got.ts}, {"default", "data", true})
  assert_eq(type(got.id), "string")
end)

test("roles: new_conn's grants drive conn.can and the checks", function()
  local w = new_conn{identity = "w1", roles = {"worker"}, grants = {publish = {"results.*"}, send_to = {"coord"}}}
  assert_eq(call("default", {op = "roles"}, w), {"worker"})
  assert_eq(call("default", {op = "can", kind = "publish", target = "results.a"}, w), true)
  assert_eq(call("default", {op = "can", kind = "publish", target = "tasks.a"}, w), false)
  assert_eq(call("default", {op = "publish", topic = "results.a"}, w), 0)
  assert_error(function() call("default", {op = "publish", topic = "tasks.a"}, w) end, 'forbidden: ')
  assert_error(function() call("default", {op = "send_to", identity = "ann", body = "hi"}, w) end, 'identity "w1" may not send_to "ann"')
  assert_eq(call("default", {op = "can", kind = "send_to", target = "ann"}), true) -- no grants: everything
end)

test("values cross as JSON", function()
  assert_error(function() call("default", function() end) end, "payload is not JSON")
  assert_eq(call("default", {1, 2, json.null}), {1, 2, json.null})
end)
`,
	})
	var out bytes.Buffer
	report, err := RunTests(TestConfig{Dir: dir, Out: &out, Verbose: true})
	if err != nil || report.Failed != 0 || report.Passed != 10 {
		t.Fatalf("%+v, %v\n%s", report, err, out.String())
	}
}
