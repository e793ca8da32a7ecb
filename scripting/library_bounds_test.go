package scripting

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/protocol"
)

// boundedLibraryHandler runs the library call named by the route on a
// payload string; each ran for seconds to minutes, or allocated hundreds of
// megabytes, in one Go call before the sandbox bounded them.
var boundedLibraryHandlers = map[string]string{
	"echo":      `function on_data(msg) return #msg.payload end`,
	"big":       `function on_data(msg) return #msg.payload:rep(16) end`,
	"escape":    `function on_data(msg) return #(msg.payload:gsub("<", "&lt;")) end`,
	"trim":      `function on_data(msg) return #msg.payload:match("^%s*(.-)%s*$") end`,
	"backtrack": `function on_data(msg) return msg.payload:find(".-.-.-.-x") end`,
	"recurse":   `function on_data(msg) return msg.payload:match(string.rep("a?", 1000) .. "b") end`,
	"concat": `function on_data(msg)
  local big, t = msg.payload:rep(16), {}
  for i = 1, 24 do t[i] = big end
  return #table.concat(t)
end`,
	"unpack": `function on_data(msg) return select("#", unpack({}, 1, 1e7)) end`,
	"load":   `function on_data(msg) local f, err = loadstring((msg.payload:sub(1, 60000):gsub("a", "("))) return err end`,
	"encode": `function on_data(msg)
  local big, t = msg.payload:rep(16), {}
  for i = 1, 24 do t[i] = big end
  return #json.encode(t)
end`,
	"format": `function on_data(msg) return #string.format(string.rep("%s", 40), unpack({msg.payload:rep(16)}, 1, 40)) end`,
	"leak":   `function on_data(msg) return string.format("%p", {}) end`,
}

// TestLibraryCallsOnLargePayloadsAreBounded sends a 1 MiB payload to each
// hostile handler: each call ends (with the reply or error it should, or
// handler_timeout on a machine too slow to finish in time) within
// --script-timeout + 100 ms, as the engine measures the call, plus what the
// legitimate work it may do whole costs on this machine at that moment
// (converting the payload; building and copying one 16 MiB string, which no
// deadline cuts in the middle: measured just before each case, so a loaded
// machine does not fail the bound for work the sandbox allows); the
// process's peak memory does not grow by the hundreds of megabytes the
// calls used to build; another connection is served meanwhile.
func TestLibraryCallsOnLargePayloadsAreBounded(t *testing.T) {
	const timeout = 300 * time.Millisecond
	files := map[string]string{}
	for route, src := range boundedLibraryHandlers {
		files[route+".lua"] = src
	}
	type call struct {
		route string
		took  time.Duration
	}
	// Observed after the reply is queued, so it may come after the reply.
	calls := make(chan call, 64)
	observe := func(route string, d time.Duration, _ string) { calls <- call{route, d} }
	f := newFixtureWith(t, files, Config{Timeout: timeout, ObserveCall: observe}, gateway.Config{MaxFrameSize: 2 << 20})
	attacker, err := gateway.NewClient(gateway.ClientConfig{Addr: f.addr, MaxFrameSize: 2 << 20, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := attacker.Connect(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer attacker.Disconnect("done")
	bystander, _ := f.client()
	payload := strconv.Quote(strings.Repeat("a", 1<<20))

	// observed waits for the engine's measure of the next call of route.
	observed := func(t *testing.T, route string) time.Duration {
		t.Helper()
		for {
			select {
			case c := <-calls:
				if c.route == route {
					return c.took
				}
			case <-time.After(waitTimeout):
				t.Fatalf("the call of %s was never observed", route)
			}
		}
	}
	mustReply(t, attacker, "echo", payload, strconv.Itoa(1<<20))
	// What any call on this payload costs before the script runs (its
	// conversion to a Lua string), measured the same way: fast here, slow
	// under -race on a loaded machine, and not what an attack can grow.
	baseline := observed(t, "echo")
	peakBefore := peakRSS(t)

	cases := []struct {
		route string
		code  protocol.Code // "" for a reply
		want  string        // the reply, or text in the error
	}{
		{"escape", "", "1048576"},
		{"trim", "", "1048576"},
		{"backtrack", protocol.CodeHandlerTimeout, ""},
		{"recurse", protocol.CodeHandlerError, "pattern too complex"},
		{"concat", protocol.CodeHandlerError, "larger than the limit"},
		{"unpack", protocol.CodeHandlerError, "too many results"},
		{"load", "", `"load: source nested deeper than 200 levels"`},
		{"encode", protocol.CodeHandlerError, "larger than the limit"},
		{"format", protocol.CodeHandlerError, "larger than the limit"},
		{"leak", protocol.CodeHandlerError, "invalid option '%p'"},
	}
	for _, tc := range cases {
		t.Run(tc.route, func(t *testing.T) {
			// On a machine loaded enough, even this legitimate step meets
			// the deadline (handler_timeout); its measure counts either way.
			if got, err := tryRequest(attacker, "big", payload); err != nil && !isCode(err, protocol.CodeHandlerTimeout) || err == nil && got != strconv.Itoa(16<<20) {
				t.Fatalf("the 16 MiB step: %q, %v", got, err)
			}
			big := observed(t, "big")
			done := make(chan struct{})
			var got string
			var err error
			go func() {
				defer close(done)
				got, err = tryRequest(attacker, tc.route, payload)
			}()
			mustReply(t, bystander, "echo", `"still served"`, "12")
			<-done
			took := observed(t, tc.route)
			if limit := baseline + 2*big + timeout + 100*time.Millisecond; took > limit {
				t.Fatalf("the call took %v; the bound is %v (a 16 MiB string took %v)", took, limit, big)
			}
			var pe *protocol.Error
			switch {
			case errors.As(err, &pe) && pe.Code == protocol.CodeHandlerTimeout && tc.code != protocol.CodeHandlerTimeout:
				// A slow machine (or -race) may stop even the bounded
				// versions at the deadline: that is the bound holding.
				t.Logf("stopped by the deadline after %v", took)
			case tc.code == "" && (err != nil || got != tc.want):
				t.Fatalf("got %.80q, %v; want %s", got, err, tc.want)
			case tc.code != "" && (!errors.As(err, &pe) || pe.Code != tc.code || !strings.Contains(pe.Message, tc.want)):
				t.Fatalf("got %.80q, %v; want %s mentioning %q", got, err, tc.code, tc.want)
			}
		})
	}
	if grown := peakRSS(t) - peakBefore; grown > 200<<20 {
		t.Fatalf("peak RSS grew by %d MiB", grown>>20)
	}
}

// peakRSS is the process's peak resident set (VmHWM), in bytes.
func peakRSS(t *testing.T) int64 {
	t.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatalf("reading the peak RSS: %v", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}

// TestSharedLibrariesCannotBePoisoned: one route tries every way to change
// the string library for the routes that run on the same pooled Lua state
// after it; the next route still gets the real string.upper.
func TestSharedLibrariesCannotBePoisoned(t *testing.T) {
	f := newFixture(t, map[string]string{
		"poison.lua": `function on_data(msg)
  local evil = function() return "pwned" end
  local attempts = {
    function() getmetatable("").__index.upper = evil end,
    function() string.upper = evil end,
    function() rawset(string, "upper", evil) end,
    function() _G.string = {upper = evil} end,
    function() loadstring("string.upper = ...")(evil) end,
  }
  local refused = 0
  for _, attempt in ipairs(attempts) do
    if not pcall(attempt) then refused = refused + 1 end
  end
  return refused
end`,
		"upper.lua": `function on_data(msg) return msg.payload:upper() end`,
	}, Config{MaxStates: 1})
	c, _ := f.client()
	// _G.string = … writes the route's own globals, which is allowed and
	// changes nothing for other routes; the other four are refused.
	mustReply(t, c, "poison", `""`, "4")
	mustReply(t, c, "upper", `"abc"`, `"ABC"`)
}

// isCode reports whether err is a protocol error with code.
func isCode(err error, code protocol.Code) bool {
	var pe *protocol.Error
	return errors.As(err, &pe) && pe.Code == code
}

// TestSharedMetatablesCannotBePoisoned: numbers, booleans and functions
// share one metatable per type in a Lua state, like strings; gopher-lua's
// setmetatable set it, so one route's setmetatable(0, {__tostring = f})
// changed tostring(42) for every route after it on that state. Only
// tables take a metatable now, as in Lua 5.1.
func TestSharedMetatablesCannotBePoisoned(t *testing.T) {
	f := newFixture(t, map[string]string{
		"poison.lua": `function on_data(msg)
  local evil = {__tostring = function() return "pwned" end, __index = function() return "pwned" end,
    __add = function() return 666 end}
  local refused = 0
  for _, v in ipairs({0, true, print, function() end}) do
    if not pcall(setmetatable, v, evil) then refused = refused + 1 end
  end
  if not pcall(setmetatable, {}, 42) then refused = refused + 1 end
  local protected = setmetatable({}, {__metatable = "locked"})
  if not pcall(setmetatable, protected, {}) then refused = refused + 1 end
  return refused
end`,
		"victim.lua": `function on_data(msg) return {tostring(42), tostring(true), 1 + 1, type(print)} end`,
	}, Config{MaxStates: 1})
	c, _ := f.client()
	mustReply(t, c, "poison", `0`, "6")
	mustReply(t, c, "victim", `0`, `["42","true",2,"function"]`)
}
