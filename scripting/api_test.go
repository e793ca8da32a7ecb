package scripting

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/protocol"
	"github.com/secureagentmessaging/samgw/scripts"

	"github.com/secureagentmessaging/samgw/internal/testutil"
)

func TestGatewayModule(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": `
function on_data(msg, conn)
  local p = msg.payload
  if p.op == "send" then return gateway.send(p.to, p.body, p.route) end
  if p.op == "broadcast" then return gateway.broadcast(p.body, p.route, p.except) end
  if p.op == "connections" then return gateway.connections() end
  if p.op == "close" then return gateway.close(p.to, p.reason) end
  if p.op == "bad route" then return gateway.send(conn.id, 1, "../x") end
  if p.op == "bad payload" then return gateway.send(conn.id, function() end) end
end`}, Config{})
	a, aPush := f.client()
	b, bPush := f.client()
	testutil.Eventually(t, "two connections open", func() bool { return len(f.srv.Connections()) == 2 })
	ids := map[string]string{}
	for _, in := range f.srv.Connections() {
		ids[in.RemoteAddr] = in.ID
	}
	var aID, bID string
	got, _ := request(t, a, "", `{"op":"connections"}`)
	var list []string
	if err := json.Unmarshal([]byte(got), &list); err != nil || len(list) != 2 {
		t.Fatalf("gateway.connections() = %s", got)
	}
	for _, id := range list {
		if f.srv.Conn(id) == nil {
			t.Fatalf("connections() lists unknown id %q", id)
		}
	}
	// Tell a and b apart by a push to each.
	for _, id := range list {
		mustReply(t, a, "", fmt.Sprintf(`{"op":"send","to":%q,"body":{"hello":%q},"route":"greet"}`, id, id), `true`)
	}
	for _, ch := range []struct {
		push chan *protocol.Message
		id   *string
	}{{aPush, &aID}, {bPush, &bID}} {
		m := <-ch.push
		var body map[string]string
		json.Unmarshal(m.Payload, &body)
		*ch.id = body["hello"]
		if m.Route != "greet" || !strings.HasPrefix(m.ID, "s-") {
			t.Fatalf("push %+v", m)
		}
	}
	if aID == bID || aID == "" {
		t.Fatalf("ids %q %q", aID, bID)
	}
	mustReply(t, a, "", `{"op":"send","to":"c999","body":1}`, `false`)

	mustReply(t, b, "", `{"op":"broadcast","body":"all"}`, `2`)
	for _, ch := range []chan *protocol.Message{aPush, bPush} {
		if m := <-ch; string(m.Payload) != `"all"` || m.Route != "" {
			t.Fatalf("broadcast push %s route %q", m.Payload, m.Route)
		}
	}
	mustReply(t, b, "", fmt.Sprintf(`{"op":"broadcast","body":"others","route":"chat","except":%q}`, bID), `1`)
	if m := <-aPush; string(m.Payload) != `"others"` || m.Route != "chat" {
		t.Fatalf("broadcast push %s", m.Payload)
	}
	select {
	case m := <-bPush:
		t.Fatalf("the excepted sender got %s", m.Payload)
	default:
	}
	mustFail(t, a, "", `{"op":"bad route"}`, protocol.CodeHandlerError, "invalid route name")
	mustFail(t, a, "", `{"op":"bad payload"}`, protocol.CodeHandlerError, "function")

	mustReply(t, a, "", fmt.Sprintf(`{"op":"close","to":%q,"reason":"kicked by a"}`, bID), `true`)
	testutil.Eventually(t, "b to be closed", func() bool { return f.srv.ConnectionCount() == 1 })
	mustReply(t, a, "", fmt.Sprintf(`{"op":"send","to":%q,"body":1}`, bID), `false`) // closed connection
	mustReply(t, a, "", `{"op":"close","to":"nobody"}`, `false`)
}

func TestJSONModule(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": `
function on_data(msg)
  local p = msg.payload
  if p == "roundtrip" then
    local v = json.decode('{"a":[1,2,{"b":null}],"c":"d","e":[]}')
    assert(v.a[3].b == json.null, "null")
    assert(#v.a == 3)
    return json.encode(v)
  end
  if p == "array" then local t = json.array(); return {t, json.array({1})} end
  if p == "bad" then return json.decode("{nope") end
  if p == "tostring" then return tostring(json.null) end
end`}, Config{})
	c, _ := f.client()
	mustReply(t, c, "", `"roundtrip"`, `"{\"a\":[1,2,{\"b\":null}],\"c\":\"d\",\"e\":[]}"`)
	mustReply(t, c, "", `"array"`, `[[],[1]]`)
	mustFail(t, c, "", `"bad"`, protocol.CodeHandlerError, "json.decode: invalid JSON")
	mustReply(t, c, "", `"tostring"`, `"null"`)
}

func TestStoreModule(t *testing.T) {
	f := newFixture(t, map[string]string{
		"default.lua": `
function on_data(msg)
  local p = msg.payload
  if p.op == "set" then store.set(p.key, p.value) return true end
  if p.op == "get" then local v = store.get(p.key); if v == nil then return "missing" end; return v end
  if p.op == "delete" then store.delete(p.key) return true end
  if p.op == "incr" then return store.incr(p.key, p.n) end
end`,
		"other.lua": `function on_data(msg) return store.get("shared") end`,
	}, Config{})
	c, _ := f.client()
	d, _ := f.client()
	mustReply(t, c, "", `{"op":"set","key":"shared","value":{"list":[1,2],"empty":[]}}`, `true`)
	mustReply(t, d, "", `{"op":"get","key":"shared"}`, `{"list":[1,2],"empty":[]}`)
	mustReply(t, d, "other", `1`, `{"list":[1,2],"empty":[]}`)
	mustReply(t, c, "", `{"op":"delete","key":"shared"}`, `true`)
	mustReply(t, c, "", `{"op":"get","key":"shared"}`, `"missing"`)
	mustReply(t, c, "", `{"op":"set","key":"gone","value":1}`, `true`)
	mustReply(t, c, "", `{"op":"set","key":"gone"}`, `true`) // nil value deletes
	mustReply(t, c, "", `{"op":"get","key":"gone"}`, `"missing"`)
	mustReply(t, c, "", `{"op":"incr","key":"n"}`, `1`)
	mustReply(t, c, "", `{"op":"incr","key":"n","n":41}`, `42`)
	mustReply(t, c, "", `{"op":"set","key":"s","value":"text"}`, `true`)
	mustFail(t, c, "", `{"op":"incr","key":"s"}`, protocol.CodeHandlerError, "not a number")

	// Concurrent increments from many connections are atomic.
	const clients, each = 10, 50
	var wg sync.WaitGroup
	for range clients {
		cl, _ := f.client()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := tryRequest(cl, "", `{"op":"incr","key":"count"}`); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	mustReply(t, c, "", `{"op":"get","key":"count"}`, fmt.Sprint(clients*each))
	if f.engine.Store().Len() != 3 {
		t.Fatalf("store has %d keys", f.engine.Store().Len())
	}
}

func TestLogModule(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": `
function on_data(msg, conn)
  log.debug("debug line")
  log.info("hello", {user = "john", n = 3, ok = true, t = {1, 2}})
  log.warn("careful")
  log.error("broken")
  print("printed", 1, nil)
  return true
end`}, Config{})
	c, _ := f.client()
	mustReply(t, c, "", `1`, `true`)
	logs := f.logs.String()
	for _, want := range []string{
		`level=DEBUG msg="debug line" script=default.lua generation=1 conn=c1`,
		`level=INFO msg=hello script=default.lua generation=1 conn=c1`,
		`user=john n=3 ok=true t=[1,2]`, // in the order given
		`level=WARN msg=careful`, `level=ERROR msg=broken`, `level=INFO msg="printed\t1\tnil"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

// A log call writes at most 8 KiB of message and of each field, and at
// most 64 fields, however large what the script hands it.
func TestLogCallsAreBounded(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": `
function on_data(msg, conn)
  local big = string.rep("é", 1024 * 1024)
  local fields = {payload = big, t = {big}}
  for i = 1, 200 do fields["f" .. i] = i end
  log.info("a" .. big, fields) -- one byte more: the cut falls inside a character
  print(big)
  return true
end`}, Config{})
	c, _ := f.client()
	mustReply(t, c, "", `1`, `true`)
	logs := f.logs.String()
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	var logged []string
	for _, line := range lines {
		if strings.Contains(line, "script=default.lua") {
			logged = append(logged, line)
		}
	}
	if len(logged) != 2 {
		t.Fatalf("%d log lines from the script, want 2:\n%.2000s", len(logged), logs)
	}
	for _, line := range logged {
		// message, payload, t: three clipped texts; 64 short fields.
		if len(line) > 4*8<<10 {
			t.Errorf("a log line of %d bytes", len(line))
		}
		if !strings.Contains(line, "… (2097153 bytes)") && !strings.Contains(line, "… (2097152 bytes)") {
			t.Errorf("the clipped message does not say its length: %.300s", line)
		}
		if strings.Contains(line, "\ufffd") || strings.Contains(line, `\xc3`) || !utf8.ValidString(line) {
			t.Errorf("a character was cut in two: %.300s", line)
		}
	}
	if !strings.Contains(logged[0], "fields_not_logged=138") {
		t.Errorf("the fields over 64 are not counted: %.300s", logged[0][len(logged[0])-300:])
	}
}

// A handler that stores something per message cannot grow the store past
// its budget: the write that would fails with handler_error naming it,
// what was stored stays readable, and deleting makes room again.
func TestStoreIsBoundedFromLua(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": `
function on_data(msg)
  if msg.payload == "count" then
    local n = 0
    for i = 1, 100 do if store.get("seen." .. i) then n = n + 1 end end
    return n
  end
  if msg.payload == "forget" then store.delete("seen.10") return true end
  store.set("seen." .. msg.payload, string.rep("x", 1000))
  return true
end`}, Config{StoreMaxBytes: 9*(64+6+1002) + (64 + 7 + 1002)}) // seen.1 … seen.10, each 1,002 bytes of JSON
	c, _ := f.client()
	for i := 1; i <= 10; i++ {
		got, err := tryRequest(c, "", fmt.Sprintf(`%q`, fmt.Sprint(i)))
		if err != nil || got != "true" {
			t.Fatalf("message %d within the budget: %s, %v", i, got, err)
		}
	}
	mustFail(t, c, "", `"11"`, protocol.CodeHandlerError, "store.set: scripting: store full")
	mustReply(t, c, "", `"count"`, `10`)
	mustReply(t, c, "", `"forget"`, `true`)
	mustReply(t, c, "", `"12"`, `true`)
}

// conn.state is kept per connection, so each is bounded: a handler that
// leaves it past the bound gets handler_error, and the connection keeps
// the state it had.
func TestConnStateIsBounded(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": `
function on_data(msg, conn)
  if msg.payload == "peek" then return #(conn.state.blob or "") end
  conn.state.blob = string.rep("x", msg.payload)
  return true
end`}, Config{ConnStateMaxBytes: 1024})
	c, _ := f.client()
	mustReply(t, c, "", `1000`, `true`) // {"blob":"x…"} is 1,011 bytes
	mustFail(t, c, "", `1014`, protocol.CodeHandlerError, "conn.state is 1025 bytes as JSON, more than the 1024")
	mustReply(t, c, "", `"peek"`, `1000`) // the state before the refused call
	mustReply(t, c, "", `1013`, `true`)   // 1,024 bytes: the bound itself fits
}

func TestConnStatePersists(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": `
function on_data(msg, conn)
  local p = msg.payload
  if p == "count" then
    conn.state.n = (conn.state.n or 0) + 1
    return conn.state.n
  end
  if p == "replace" then conn.state = {n = 100, list = json.array()} return true end
  if p == "clear" then conn.state = nil return true end
  if p == "peek" then return conn.state end
  if p == "function" then conn.state.f = function() end return true end
  if p == "write id" then conn.id = "x" end
end`}, Config{MaxStates: 4})
	a, _ := f.client()
	b, _ := f.client()
	for i := 1; i <= 5; i++ {
		mustReply(t, a, "", `"count"`, fmt.Sprint(i))
	}
	mustReply(t, b, "", `"count"`, `1`) // per connection
	// It survives a reload.
	writeScripts(t, f.dir, map[string]string{"default.lua": strings.Replace(fileOf(t, f, "default.lua"), "+ 1", "+ 10", 1)})
	if err := f.engine.Reload(); err != nil {
		t.Fatal(err)
	}
	mustReply(t, a, "", `"count"`, `15`)
	mustReply(t, a, "", `"replace"`, `true`)
	mustReply(t, a, "", `"peek"`, `{"n":100,"list":[]}`)
	mustReply(t, a, "", `"clear"`, `true`)
	mustReply(t, a, "", `"peek"`, `{}`)
	mustFail(t, a, "", `"function"`, protocol.CodeHandlerError, "conn.state can hold only JSON data")
	mustFail(t, a, "", `"write id"`, protocol.CodeHandlerError, "conn.id is read-only")
}

// TestOnDataSeesItsConnHoweverItIsDeclared: a call makes the conn object
// only for an on_data that can see a second argument, and every such
// declaration gets it.
func TestOnDataSeesItsConnHoweverItIsDeclared(t *testing.T) {
	f := newFixture(t, map[string]string{
		"default.lua": `function on_data(msg, conn) return {conn.id == msg.payload, type(conn)} end`,
		"varargs.lua": `function on_data(msg, ...) local conn = ... return {conn.id == msg.payload, select("#", ...)} end`,
		"go.lua":      `on_data = rawequal -- a Go function: rawequal(msg, conn) needs both`,
		"msg.lua":     `function on_data(msg) return msg.payload end`,
		"state.lua":   `function on_data(msg) gateway.send(msg.payload, "pushed") return "sent" end`,
	}, Config{})
	c, pushes := f.client()
	testutil.Eventually(t, "the connection to open", func() bool { return len(f.srv.Connections()) == 1 })
	id := fmt.Sprintf("%q", f.srv.Connections()[0].ID)
	mustReply(t, c, "", id, `[true,"userdata"]`)
	mustReply(t, c, "varargs", id, `[true,1]`)
	mustReply(t, c, "go", id, `false`)
	mustReply(t, c, "msg", id, id)
	// Without a conn object, the gateway module still knows the call's
	// connection.
	mustReply(t, c, "state", id, `"sent"`)
	select {
	case m := <-pushes:
		if string(m.Payload) != `"pushed"` {
			t.Fatalf("push %s, want \"pushed\"", m.Payload)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no push")
	}
}

func fileOf(t *testing.T, f *fixture, name string) string {
	t.Helper()
	src, err := readFile(f.dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func TestConnectAndCloseHooks(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": `
function on_connect(conn)
  local n = store.incr("connects")
  conn.state.number = n
  if n == 2 then return false, "second visitor turned away" end
  if n == 3 then error("third visitor refused") end
  if n == 4 then return "a string alone admits" end
end
function on_close(conn, reason)
  store.set("closed:" .. conn.id, reason)
end
function on_data(msg, conn) return conn.state.number end`}, Config{})
	a, _ := f.client()
	mustReply(t, a, "", `1`, `1`)
	for _, want := range []string{"second visitor turned away", "third visitor refused"} {
		lost := make(chan string, 1)
		p := newRawConn(t, f.addr, lost)
		if reason := <-lost; !strings.Contains(reason, want) {
			t.Fatalf("rejected with %q, want %q", reason, want)
		}
		p.Close()
	}
	// Only false (with a reason) or an error refuses: the stubs say so.
	d, _ := f.client()
	mustReply(t, d, "", `1`, `4`)
	testutil.Eventually(t, "on_close of the rejected connections", func() bool {
		return f.engine.Store().Len() == 3 // connects, closed:c2, closed:c3
	})
	if got := string(f.engine.Store().Get("closed:c2")); !strings.Contains(got, "rejected") {
		t.Fatalf("on_close reason %s", got)
	}
	a.Disconnect("bye")
	testutil.Eventually(t, "on_close of a", func() bool { return f.engine.Store().Get("closed:c1") != nil })
	if got := string(f.engine.Store().Get("closed:c1")); got != `"closed by client"` {
		t.Fatalf("on_close reason %s", got)
	}
}

func TestShippedExamples(t *testing.T) {
	e, err := New(Config{FS: scripts.Examples(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(e.Routes(), ","); got != "chat,counter,fanout,http_bridge,pubsub,relay,session,upper,workers" {
		t.Fatalf("example routes %s", got)
	}
}

// TestExamplesWork runs the shipped examples as a scripts directory.
func TestExamplesWork(t *testing.T) {
	files := map[string]string{}
	for _, name := range []string{"upper.lua", "relay.lua", "counter.lua", "chat.lua"} {
		src, err := fs.ReadFile(scripts.Examples(), name)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(src)
	}
	f := newFixture(t, files, Config{})
	a, aPush := f.client()
	b, bPush := f.client()
	testutil.Eventually(t, "two connections open", func() bool { return len(f.srv.Connections()) == 2 })

	mustReply(t, a, "upper", `{"greeting":"hello","list":["a",{"b":"c"}],"n":1}`, `{"greeting":"HELLO","list":["A",{"b":"C"}],"n":1}`)
	mustReply(t, a, "", `"no default.lua: built-in echo"`, `"no default.lua: built-in echo"`)

	mustReply(t, a, "counter", `1`, `{"connection":1,"total":1}`)
	mustReply(t, a, "counter", `1`, `{"connection":2,"total":2}`)
	mustReply(t, b, "counter", `1`, `{"connection":1,"total":3}`)

	got, _ := request(t, b, "relay", `{"list":true}`)
	var listing struct {
		Connections []string `json:"connections"`
		You         string   `json:"you"`
	}
	if err := json.Unmarshal([]byte(got), &listing); err != nil || len(listing.Connections) != 2 || listing.You == "" {
		t.Fatalf("relay list: %s", got)
	}
	aID := listing.Connections[0]
	if aID == listing.You {
		aID = listing.Connections[1]
	}
	mustReply(t, b, "relay", fmt.Sprintf(`{"to":%q,"body":{"task":"index"}}`, aID), `{"delivered":true}`)
	if m := <-aPush; m.Route != "relay" || !jsonEqual(string(m.Payload), fmt.Sprintf(`{"from":%q,"body":{"task":"index"}}`, listing.You)) {
		t.Fatalf("relayed %s on %q", m.Payload, m.Route)
	}
	mustReply(t, b, "relay", `{"to":"c404","body":1}`, `{"delivered":false}`)
	mustFail(t, b, "relay", `"not an object"`, protocol.CodeHandlerError, "payload must be an object")

	mustReply(t, a, "chat", `"hi all"`, `{"sent_to":1}`)
	if m := <-bPush; m.Route != "chat" || !jsonEqual(string(m.Payload), fmt.Sprintf(`{"from":%q,"text":"hi all"}`, aID)) {
		t.Fatalf("chat push %s", m.Payload)
	}
	mustReply(t, b, "chat", `{"text":"hello"}`, `{"sent_to":1}`)
	<-aPush
	mustFail(t, b, "chat", `42`, protocol.CodeHandlerError, "payload must be a string")
}

func TestConnIdentityAndRejectByIdentity(t *testing.T) {
	dir := t.TempDir()
	writeScripts(t, dir, map[string]string{"default.lua": `
function on_connect(conn)
  if conn.identity == "blocked" then return false, "identity " .. conn.identity .. " is blocked" end
end
function on_data(msg, conn) return conn.identity end`})
	e, err := New(Config{Dir: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	hash := func(token string) string {
		sum := sha256.Sum256([]byte(token))
		return hex.EncodeToString(sum[:])
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := gateway.NewServer(gateway.Config{Handler: e, Logger: quietLogger(), Auth: &gateway.AuthConfig{Identities: []gateway.Identity{
		{Name: "agent-a", TokenSHA256: hash("a")}, {Name: "blocked", TokenSHA256: hash("b")},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		<-done
	})
	a, err := gateway.NewClient(gateway.ClientConfig{Addr: ln.Addr().String(), Token: "a", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer a.Disconnect("done")
	mustReply(t, a, "", `1`, `"agent-a"`)

	lost := make(chan string, 1)
	b, err := gateway.NewClient(gateway.ClientConfig{Addr: ln.Addr().String(), Token: "b", Logger: quietLogger(), NoReconnect: true,
		OnDisconnect: func(r string) { lost <- r }})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Connect(t.Context()); err != nil {
		t.Fatal(err) // authentication succeeds; on_connect rejects after it
	}
	defer b.Disconnect("done")
	if r := <-lost; !strings.Contains(r, "identity blocked is blocked") {
		t.Fatalf("rejection reason %q", r)
	}
}

// TestFailedHandlerLogNamesTheRequest: "Handler failed" and "Handler timed
// out" lines name the connection, the message id and the route.
func TestFailedHandlerLogNamesTheRequest(t *testing.T) {
	f := newFixture(t, map[string]string{
		"boom.lua": `function on_data(msg) error("bad input") end`,
		"slow.lua": `function on_data(msg) while true do end end`,
	}, Config{Timeout: 100 * time.Millisecond})
	c, _ := f.client()
	mustFail(t, c, "boom", `1`, protocol.CodeHandlerError, "bad input")
	mustFail(t, c, "slow", `1`, protocol.CodeHandlerTimeout, "100ms")
	logs := f.logs.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`msg="Handler failed" script=boom.lua generation=1 conn=c1 id=\S+ route=boom error="boom.lua:1: bad input"`),
		regexp.MustCompile(`msg="Handler timed out" script=slow.lua generation=1 conn=c1 id=\S+ route=slow timeout=100ms`),
	} {
		if !want.MatchString(logs) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}

// TestWhereStateLives runs docs/handlers.md's example of where state lives:
// conn.state counts per connection and store for all, whichever pooled
// state serves the call.
func TestWhereStateLives(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": `
local count = 0
function on_data(msg, conn)
  count = count + 1
  conn.state.n = (conn.state.n or 0) + 1
  return { here = count, conn = conn.state.n, all = store.incr("messages") }
end`}, Config{})
	a, _ := f.client()
	b, _ := f.client()
	for i, tc := range []struct {
		c         *gateway.Client
		conn, all int
	}{{a, 1, 1}, {a, 2, 2}, {b, 1, 3}, {a, 3, 4}, {b, 2, 5}} {
		got, err := request(t, tc.c, "", `1`)
		if err != nil {
			t.Fatal(err)
		}
		var r struct{ Here, Conn, All int }
		if err := json.Unmarshal([]byte(got), &r); err != nil || r.Conn != tc.conn || r.All != tc.all || r.Here < 1 {
			t.Fatalf("message %d: %s, want conn %d all %d", i, got, tc.conn, tc.all)
		}
	}
}

// TestSendToEmptyIdentityReachesNoOne: without authentication every
// connection's identity is empty; send_to("") once reached them all.
func TestSendToEmptyIdentityReachesNoOne(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": `function on_data(msg)
  if type(msg.payload) == "string" then return gateway.send_to(msg.payload, "x") end
  return msg.payload
end`}, Config{})
	a, pushes := f.client()
	b, _ := f.client()
	mustReply(t, b, "", `1`, `1`) // b is open
	mustReply(t, a, "", `""`, `0`)
	select {
	case m := <-pushes:
		if m.Type == "data" && m.Route == "x" {
			t.Fatalf("send_to(\"\") pushed %s", m.Payload)
		}
	default:
	}
}

// TestErrorValues: what a handler raises reaches the client as an error
// frame the application chose (error{code, message}), or as its text, and
// never as a heap address: error({...}) once sent "table: 0x35b8bd430060".
func TestErrorValues(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": `function on_data(msg)
  local p = msg.payload
  if p == "coded" then error({code = "not_assigned", message = "task 7 is not yours"}) end
  if p == "reserved" then error({code = "forbidden", message = "mimicking the gateway"}) end
  if p == "bad code" then error({code = "Not Valid!", message = "x"}) end
  if p == "table" then error({1, 2, 3}) end
  if p == "function" then error(function() end) end
  if p == "userdata" then error(json.null) end
  if p == "number" then error(42) end
  error("plain text")
end`}, Config{})
	c, _ := f.client()
	for _, tc := range []struct {
		payload string
		code    protocol.Code
		message string // exact when code is the application's, else contained
	}{
		{`"coded"`, "not_assigned", "task 7 is not yours"},
		{`"reserved"`, protocol.CodeHandlerError, `error{code = "forbidden"}: not a valid error code`},
		{`"bad code"`, protocol.CodeHandlerError, `error{code = "Not Valid!"}: not a valid error code`},
		{`"table"`, protocol.CodeHandlerError, "the handler raised a table value"},
		{`"function"`, protocol.CodeHandlerError, "the handler raised a function value"},
		{`"userdata"`, protocol.CodeHandlerError, "the handler raised a userdata value"},
		{`"number"`, protocol.CodeHandlerError, "42"},
		{`"text"`, protocol.CodeHandlerError, "default.lua:10: plain text"},
	} {
		t.Run(tc.payload, func(t *testing.T) {
			_, err := request(t, c, "", tc.payload)
			var pe *protocol.Error
			if !errors.As(err, &pe) || pe.Code != tc.code || !strings.Contains(pe.Message, tc.message) {
				t.Fatalf("got %v, want %s containing %q", err, tc.code, tc.message)
			}
			if tc.code == "not_assigned" && pe.Message != tc.message {
				t.Fatalf("message %q: the application's own message goes as it is, without file:line", pe.Message)
			}
			if strings.Contains(pe.Message, "0x") {
				t.Fatalf("a heap address reached the client: %q", pe.Message)
			}
		})
	}
}
