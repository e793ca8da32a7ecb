package scripting

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/protocol"
)

// TestHostilePayloads feeds the Lua echo what a hostile or careless peer
// might send: every frame gets a clear answer and the connection goes on.
func TestHostilePayloads(t *testing.T) {
	f := newFixtureWith(t, map[string]string{"default.lua": echo}, Config{}, gateway.Config{MaxFrameSize: 4 << 20})
	c, err := gateway.NewClient(gateway.ClientConfig{Addr: f.addr, MaxFrameSize: 4 << 20, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect("done")

	// A million-element array within the frame limit.
	million := "[" + strings.Repeat("0,", 999999) + "0]"
	got, err := request(t, c, "", million)
	if err != nil || got != million {
		t.Fatalf("million elements: %d bytes back, %v", len(got), err)
	}
	// Numbers JSON allows but a double cannot hold exactly.
	mustReply(t, c, "", `123456789012345678901234567890`, `1.2345678901234568e+29`)
	mustFail(t, c, "", `1e400`, protocol.CodeHandlerError, "not JSON")
	mustReply(t, c, "", `-0`, `0`)
	// Duplicate keys inside a payload: the last wins, like most JSON decoders.
	mustReply(t, c, "", `{"a":1,"a":2}`, `{"a":2}`)
	// Escapes, surrogates and NUL inside strings.
	mustReply(t, c, "", `"\u0000\ud83d\ude00\ud800"`, `"\u0000😀\ufffd"`)
	mustReply(t, c, "", `"after all that"`, `"after all that"`)
}

// TestRunawayTableIsStopped: a handler that grows a table without end is cut
// off by its deadline with a clear error; the memory comes back and the
// server goes on.
func TestRunawayTableIsStopped(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": `
function on_data(msg)
  if msg.payload == "grow" then
    local t, i = {}, 0
    while true do i = i + 1; t[i] = {i} end
  end
  return msg.payload
end`}, Config{Timeout: 300 * time.Millisecond})
	c, _ := f.client()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	mustFail(t, c, "", `"grow"`, protocol.CodeHandlerTimeout, "300ms")
	mustReply(t, c, "", `"fine"`, `"fine"`)
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 64<<20 {
		t.Fatalf("the heap kept %d MiB after the runaway call", grown>>20)
	}
}

// TestMemoryLimitStopsRunawayCalls: a handler that allocates without end is
// stopped when the heap passes the memory limit, long before its deadline,
// and the server goes on.
func TestMemoryLimitStopsRunawayCalls(t *testing.T) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	f := newFixture(t, map[string]string{"default.lua": `
function on_data(msg)
  if msg.payload == "grow" then
    local t, i = {}, 0
    while true do i = i + 1; t[i] = {i, "x"} end
  end
  return msg.payload
end`}, Config{Timeout: time.Minute, MemoryLimit: ms.HeapAlloc + 64<<20})
	c, _ := f.client()
	mustFail(t, c, "", `"grow"`, protocol.CodeHandlerError, "memory limit")
	mustReply(t, c, "", `"fine"`, `"fine"`)
}

// TestGarbageOfAStoppedCallStopsNoOther: a call that piles up strings
// until the memory limit stops it leaves them behind as garbage,
// which the heap counts until the collector frees it; the guard counted it
// against the calls that ran next and stopped 219 of 560 innocent ones over
// 3 to 4 s. It measures after a collection now: every call after the
// runaway is served.
func TestGarbageOfAStoppedCallStopsNoOther(t *testing.T) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	f := newFixture(t, map[string]string{"default.lua": `
function on_data(msg)
  if msg.payload == "double" then
    local t, i = {}, 0
    while true do i = i + 1; t[i] = string.rep("y", 4096) end
  end
  local t0, n = os.clock(), 0
  while os.clock() - t0 < 0.005 do n = n + 1 end -- busy for 5 ms, so the guard looks while it runs
  return msg.payload
end`}, Config{Timeout: 10 * time.Second, MemoryLimit: ms.HeapAlloc + 64<<20})
	c, _ := f.client()
	mustFail(t, c, "", `"double"`, protocol.CodeHandlerError, "memory limit")
	stopped := 0
	for i := range 200 {
		if _, err := request(t, c, "", fmt.Sprint(i)); err != nil {
			t.Logf("call %d: %v", i, err)
			stopped++
		}
	}
	if stopped != 0 {
		t.Fatalf("%d of 200 calls after the runaway were stopped", stopped)
	}
}
