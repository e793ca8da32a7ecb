package scripting

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
	"github.com/secureagentmessaging/samgw/scripts"
)

// nextPush waits for the next push and returns its payload.
func nextPush(t *testing.T, pushes <-chan *protocol.Message) string {
	t.Helper()
	select {
	case m := <-pushes:
		return string(m.Payload)
	case <-time.After(waitTimeout):
		t.Fatal("no push arrived")
		return ""
	}
}

const timerHandler = `
function on_data(msg, conn)
  local p, id = msg.payload, conn.id
  if p == "after" then
    timer.after(30, function() gateway.send(id, "later") end)
    return "scheduled"
  elseif p == "every" then
    local n = 0
    timer.every(10, function(t)
      n = n + 1
      if n == 3 then assert(t:cancel()) end
      gateway.send(id, "tick " .. n)
    end)
    return "started"
  elseif p == "cancel" then
    local t = timer.after(20, function() gateway.send(id, "should not run") end)
    return {t:cancel(), t:cancel()}
  end
  return "pong"
end
`

func TestTimersRunLaterAndCancel(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": timerHandler}, Config{})
	c, pushes := f.client()

	mustReply(t, c, "", `"cancel"`, `[true,false]`)
	if n := f.engine.pendingTimers(); n != 0 {
		t.Fatalf("%d timers pending after cancel, want 0", n)
	}

	mustReply(t, c, "", `"after"`, `"scheduled"`)
	if got := nextPush(t, pushes); got != `"later"` {
		t.Fatalf("push %s, want \"later\"", got)
	}

	mustReply(t, c, "", `"every"`, `"started"`)
	for i := 1; i <= 3; i++ {
		if got, want := nextPush(t, pushes), fmt.Sprintf(`"tick %d"`, i); got != want {
			t.Fatalf("push %s, want %s", got, want)
		}
	}
	// The third run cancelled its timer before it sent: nothing is left.
	if n := f.engine.pendingTimers(); n != 0 {
		t.Fatalf("%d timers pending after the every cancelled itself, want 0", n)
	}
	// A ping after: had a stray timer run, its push would come first.
	mustReply(t, c, "", `"ping"`, `"pong"`)
	select {
	case m := <-pushes:
		t.Fatalf("unexpected push %s", m.Payload)
	default:
	}
}

func TestTimersAreBounded(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": `
function on_data(msg)
  local p = msg.payload
  if p == "many" then
    local n = 0
    for i = 1, 10 do
      local ok, err = pcall(timer.after, 60000, function() end)
      if not ok then return {n = n, err = err} end
      n = n + 1
    end
    return {n = n}
  end
  local ok, err = pcall(timer[p.kind], p.ms, function() end)
  return {ok = ok, err = err}
end
`}, Config{MaxTimers: 3})
	c, _ := f.client()

	got, err := request(t, c, "", `"many"`)
	if err != nil || !strings.Contains(got, `"n":3`) || !strings.Contains(got, "too many pending timers: 3") {
		t.Fatalf("reply %s, %v; want 3 timers made, then too many pending timers: 3", got, err)
	}
	for _, tc := range []struct {
		kind string
		ms   string
		want string
	}{
		{"every", "5", "at least 10 ms"},
		{"every", "0", "at least 10 ms"},
		{"after", "-1", "a delay from 0 to"},
		{"after", "1e300", "a delay from 0 to"},
	} {
		t.Run(tc.kind+" "+tc.ms, func(t *testing.T) {
			got, err := request(t, c, "", `{"kind":"`+tc.kind+`","ms":`+tc.ms+`}`)
			if err != nil || !strings.Contains(got, tc.want) || !strings.Contains(got, `"ok":false`) {
				t.Fatalf("reply %s, %v; want an error containing %q", got, err, tc.want)
			}
		})
	}

	// A timer made while a file loads would outlive a failed reload: refused.
	writeScripts(t, f.dir, map[string]string{"late.lua": "timer.after(10, function() end)\nfunction on_data() end\n"})
	if err := f.engine.Reload(); err == nil || !strings.Contains(err.Error(), "late.lua:1") || !strings.Contains(err.Error(), "no timers while a script loads") {
		t.Fatalf("reload error %v, want late.lua:1 and no timers while a script loads", err)
	}
}

func TestOnStartRunsAtServeAndAgainAfterReload(t *testing.T) {
	start := func(v string) string {
		return `function on_start() timer.every(10, function() gateway.broadcast("` + v + `") end) end
function on_data() return "ok" end`
	}
	f := newFixture(t, map[string]string{"default.lua": start("v1")}, Config{})
	_, pushes := f.client()
	if got := nextPush(t, pushes); got != `"v1"` {
		t.Fatalf("push %s, want \"v1\"", got)
	}

	writeScripts(t, f.dir, map[string]string{"default.lua": start("v2")})
	if err := f.engine.Reload(); err != nil {
		t.Fatal(err)
	}
	// Pushes of v1 queued before the reload may still arrive; once v2 has
	// come, the v1 timer is gone.
	for nextPush(t, pushes) != `"v2"` {
	}
	for range 3 {
		if got := nextPush(t, pushes); got != `"v2"` {
			t.Fatalf("push %s after the reload's on_start, want only \"v2\"", got)
		}
	}
	if n := f.engine.pendingTimers(); n != 1 {
		t.Fatalf("%d timers pending, want 1 (the v2 every)", n)
	}

	// Shutting down stops every timer.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := f.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.engine.pendingTimers(); n != 0 {
		t.Fatalf("%d timers pending after shutdown, want 0", n)
	}
}

func TestTimerFailuresAreLoggedAndContained(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": `
function on_data(msg)
  if msg.payload == "boom" then
    timer.after(0, function() error("boom") end)
  elseif msg.payload == "hang" then
    timer.after(0, function() while true do end end)
  end
  return msg.payload
end
`}, Config{Timeout: 200 * time.Millisecond})
	c, _ := f.client()

	mustReply(t, c, "", `"boom"`, `"boom"`)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(f.logs.String())
		}
	})
	testutil.Eventually(t, "the failed timer's log line", func() bool {
		return strings.Contains(f.logs.String(), `"Timer failed" script=default.lua timer=default.lua:4 generation=1 error="default.lua:4: boom"`)
	})
	mustReply(t, c, "", `"hang"`, `"hang"`)
	testutil.Eventually(t, "the overdue timer's log line", func() bool {
		return strings.Contains(f.logs.String(), `"Timer failed" script=default.lua timer=default.lua:6 generation=1 error="timed out"`)
	})
	for range 20 { // served on, whichever state the next calls get
		mustReply(t, c, "", `"still here"`, `"still here"`)
	}
}

func TestOnStartSurvivesTheLossOfItsState(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": `
function on_start()
  local starts = store.incr("starts")
  timer.every(10, function()
    if store.get("hang") then
      store.delete("hang")
      while true do end
    end
    gateway.broadcast("start " .. starts)
  end)
end
function on_data(msg)
  store.set("hang", true)
  return "ok"
end
`}, Config{Timeout: 200 * time.Millisecond})
	c, pushes := f.client()
	if got := nextPush(t, pushes); got != `"start 1"` {
		t.Fatalf("push %s, want \"start 1\"", got)
	}
	mustReply(t, c, "", `"hang"`, `"ok"`)
	// The hung run broke the state holding on_start's timer: on_start ran
	// again on another state, and its timer runs on.
	for nextPush(t, pushes) != `"start 2"` {
	}
	if !strings.Contains(f.logs.String(), "Running on_start again") {
		t.Fatalf("no log of on_start running again:\n%s", f.logs.String())
	}
}

// TestSessionExampleClosesIdleSessions serves session.lua with a short
// idle time: a renewed session lives on, then the idle one is closed.
func TestSessionExampleClosesIdleSessions(t *testing.T) {
	src, err := fs.ReadFile(scripts.Examples(), "session.lua")
	if err != nil {
		t.Fatal(err)
	}
	settings := filepath.Join(t.TempDir(), "settings.yaml")
	if err := os.WriteFile(settings, []byte("session:\n  idle_ms: 1500\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, map[string]string{"session.lua": string(src)}, Config{ConfigFile: settings})
	closed := make(chan string, 1)
	nc := newRawConn(t, f.addr, closed)
	defer nc.Close()
	send := func(payload string) {
		if _, err := nc.Write([]byte(`{"type":"data","route":"session","payload":` + payload + "}\n")); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	send(`{"login":"ann"}`)
	send(`"renew"`)
	select {
	case reason := <-closed:
		if !strings.Contains(reason, "session expired") {
			t.Fatalf("closed with %s, want session expired", reason)
		}
		// The store entry lives 1.5 s; the timer looks every second.
		if d := time.Since(start); d < 1500*time.Millisecond {
			t.Fatalf("closed after %v, before the session could expire", d)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the idle session was not closed")
	}
}

// TestOneConnectionCannotTakeEveryTimer: a handler that makes a timer per
// message (as session.lua did per login) let one connection take all
// 1,024 timers, and every other client's call then failed. A connection's
// calls now hold at most MaxTimersPerConn; the total bound stays.
func TestOneConnectionCannotTakeEveryTimer(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": `function on_data(msg)
  timer.after(60000, function() end)
  return "ok"
end`}, Config{MaxTimers: 10, MaxTimersPerConn: 4})
	greedy, _ := f.client()
	for range 4 {
		mustReply(t, greedy, "", `1`, `"ok"`)
	}
	for range 100 {
		mustFail(t, greedy, "", `1`, protocol.CodeHandlerError, "too many pending timers for one connection: 4")
	}
	other, _ := f.client()
	for range 4 {
		mustReply(t, other, "", `1`, `"ok"`)
	}
	third, _ := f.client()
	mustReply(t, third, "", `1`, `"ok"`)
	mustReply(t, third, "", `1`, `"ok"`)
	mustFail(t, third, "", `1`, protocol.CodeHandlerError, "too many pending timers: 10") // the total still holds
	if n := f.engine.current.Load().timers.pending(); n != 10 {
		t.Fatalf("%d timers pending, want 10", n)
	}
}
