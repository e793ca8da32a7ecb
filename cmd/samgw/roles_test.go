package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/access"
	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/testutil"
)

// rolesFile is the coordinator and workers of docs/security.md, with an
// auditor (who may read admin.>), an identity with no roles and one with
// only a routes list of its own.
const rolesFile = `roles:
  coordinator:
    routes: [post_task, status, act]
    topics: { publish: ["tasks.>"], subscribe: ["results.*"] }
    send_to: ["role:worker"]
    queues: { push: ["jobs.>"] }
  worker:
    routes: [report, act, timer]
    topics: { subscribe: ["tasks.*"], publish: ["results.*"] }
    send_to: ["coord"]
    queues: { join: ["jobs.*"] }
  auditor:
    routes: [act]
    topics: { subscribe: ["admin.>"] }
identities:
  - name: coord
    token_sha256: %s
    roles: [coordinator]
  - name: w1
    token_sha256: %s
    roles: [worker]
  - name: w2
    token_sha256: %s
    roles: [worker]
  - name: aud
    token_sha256: %s
    roles: [auditor]
  - name: nobody
    token_sha256: %s
  - name: legacy
    token_sha256: %s
    routes: [act]
`

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// writeRoles writes rolesFile with each identity's token "tok-NAME";
// edit, when not nil, changes the text first.
func writeRoles(t *testing.T, file string, edit func(string) string) {
	t.Helper()
	var hashes []any
	for _, n := range []string{"coord", "w1", "w2", "aud", "nobody", "legacy"} {
		hashes = append(hashes, tokenHash("tok-"+n))
	}
	text := fmt.Sprintf(rolesFile, hashes...)
	if edit != nil {
		text = edit(text)
	}
	// Written aside and renamed, as an editor or a deploy would: the
	// watcher never reads half a file.
	tmp := file + ".tmp"
	writeFile(t, tmp, text)
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

// agent is a raw NDJSON connection: what is asked and what comes back,
// frame by frame.
type agent struct {
	t      *testing.T
	nc     net.Conn
	r      *bufio.Reader
	seq    int
	pushes []map[string]any
}

// dialAgent connects and authenticates with "tok-NAME".
func dialAgent(t *testing.T, addr, name string) *agent {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	a := &agent{t: t, nc: nc, r: bufio.NewReader(nc)}
	reply := a.frame(`{"type":"auth","id":"a1","payload":{"token":"tok-` + name + `"}}`)
	if reply["type"] != "auth" {
		t.Fatalf("%s: auth answered %v", name, reply)
	}
	return a
}

// read returns the next frame.
func (a *agent) read() map[string]any {
	a.t.Helper()
	a.nc.SetReadDeadline(time.Now().Add(waitTimeout))
	line, err := a.r.ReadBytes('\n')
	if err != nil {
		a.t.Fatalf("read: %v", err)
	}
	var f map[string]any
	if err := json.Unmarshal(line, &f); err != nil {
		a.t.Fatalf("frame %q: %v", line, err)
	}
	return f
}

// frame writes a raw frame and returns the frame answering its id
// (pushes that come first are kept).
func (a *agent) frame(raw string) map[string]any {
	a.t.Helper()
	var m struct{ ID string }
	json.Unmarshal([]byte(raw), &m) //nolint:errcheck // the test's own frames
	if _, err := a.nc.Write([]byte(raw + "\n")); err != nil {
		a.t.Fatal(err)
	}
	for {
		f := a.read()
		if f["id"] == m.ID {
			return f
		}
		a.pushes = append(a.pushes, f)
	}
}

// call sends a data frame on route and returns the answer: the payload,
// or the error's code as {"error": code}.
func (a *agent) call(route string, payload any) map[string]any {
	a.t.Helper()
	a.seq++
	body, _ := json.Marshal(map[string]any{"type": "data", "id": fmt.Sprint("q", a.seq), "route": route, "payload": payload})
	f := a.frame(string(body))
	p, _ := f["payload"].(map[string]any)
	if f["type"] == "error" {
		return map[string]any{"error": p["code"], "message": p["message"]}
	}
	return p
}

// push waits for a push on topic's route and returns its payload.
func (a *agent) push() map[string]any {
	a.t.Helper()
	if len(a.pushes) == 0 {
		a.pushes = append(a.pushes, a.read())
	}
	f := a.pushes[0]
	a.pushes = a.pushes[1:]
	return f
}

func TestRoles(t *testing.T) {
	dir := t.TempDir()
	ids := filepath.Join(dir, "identities.yaml")
	writeRoles(t, ids, nil)
	audit := filepath.Join(dir, "audit.log")
	// act stores mailbox messages: its calls get room for a store that is
	// slow on a loaded machine (a deliver that runs out of time fails).
	addr, log, stop := startServe(t, "--identities", ids, "--scripts", "testdata/roles", "--audit-log", audit, "--route-timeout", "act=20s")

	coord, w1, w2 := dialAgent(t, addr, "coord"), dialAgent(t, addr, "w1"), dialAgent(t, addr, "w2")
	aud, nobody, legacy := dialAgent(t, addr, "aud"), dialAgent(t, addr, "nobody"), dialAgent(t, addr, "legacy")

	t.Run("routes: refused before any Lua runs", func(t *testing.T) {
		for _, a := range []*agent{w1, nobody, legacy, aud} {
			if got := a.call("post_task", map[string]any{"task": "t1"}); got["error"] != "forbidden" {
				t.Fatalf("post_task answered %v, want forbidden", got)
			}
		}
		if got := coord.call("act", map[string]any{"op": "runs"}); got["runs"] != 0.0 {
			t.Fatalf("post_task ran %v times for refused senders", got["runs"])
		}
		for _, a := range []*agent{coord, nobody} {
			if got := a.call("report", map[string]any{"task": "t1"}); got["error"] != "forbidden" {
				t.Fatalf("report answered %v, want forbidden", got)
			}
		}
		if got := nobody.call("", "hello"); got["error"] != "forbidden" {
			t.Fatalf("the default route answered %v for an identity with no roles", got)
		}
		if got := legacy.call("act", map[string]any{"op": "roles"}); got["error"] != nil {
			t.Fatalf("an identity's own routes list stopped working: %v", got)
		}
	})
	t.Run("subscribe and publish with * and >", func(t *testing.T) {
		for _, tc := range []struct {
			who   *agent
			topic string
			ok    bool
		}{
			{w1, "tasks.t1", true},
			{w1, "tasks", false},      // tasks.* needs one more token
			{w1, "tasks.t1.x", false}, // and only one
			{w1, "results.t1", false},
			{coord, "results.t1", true},
			{coord, "tasks.t1", false},
			{nobody, "tasks.t1", false},
			{legacy, "tasks.t1", false},
		} {
			got := tc.who.call("act", map[string]any{"op": "subscribe", "topic": tc.topic})
			if (got["ok"] == true) != tc.ok || (!tc.ok && got["error"] != "forbidden") {
				t.Errorf("subscribe %s: %v, want allowed %v", tc.topic, got, tc.ok)
			}
		}
		// The subscriber's roles count, not the sender's: the coordinator
		// may not subscribe a worker to results.
		w1ID := w1.call("act", map[string]any{"op": "roles"})["id"]
		if got := coord.call("act", map[string]any{"op": "subscribe", "conn": w1ID, "topic": "results.t9"}); got["error"] != "forbidden" {
			t.Errorf("coord subscribing w1 to results.t9: %v", got)
		}
		if got := coord.call("post_task", map[string]any{"task": "t1"}); got["n"] != 1.0 {
			t.Fatalf("post_task: %v, want one subscriber reached", got)
		}
		if p := w1.push(); p["route"] != nil && p["payload"].(map[string]any)["task"] != "t1" {
			t.Fatalf("w1 got %v", p)
		}
		for _, tc := range []struct {
			who   *agent
			topic string
			ok    bool
		}{
			{coord, "tasks.a.b.c", true}, // tasks.> takes the rest
			{coord, "tasks", false},      // but at least one token
			{coord, "results.t1", false},
			{w1, "results.t1", true},
			{w1, "results.t1.x", false},
			{w1, "tasks.t1", false},
			{nobody, "results.t1", false},
		} {
			got := tc.who.call("act", map[string]any{"op": "publish", "topic": tc.topic})
			if (got["n"] != nil) != tc.ok || (!tc.ok && got["error"] != "forbidden") {
				t.Errorf("publish %s: %v, want allowed %v", tc.topic, got, tc.ok)
			}
		}
		if p := coord.push(); p["payload"] != "x" {
			t.Fatalf("coord got %v from results.t1", p)
		}
		got := w1.call("act", map[string]any{"op": "guarded", "topic": "admin.x"})
		if got["ok"] != false || !strings.Contains(got["err"].(string), `may not publish to "admin.x"`) {
			t.Errorf("a caught refusal: %v", got)
		}
	})
	t.Run("send_to and deliver by name and by role", func(t *testing.T) {
		for _, tc := range []struct {
			who  *agent
			op   string
			to   string
			want string // "" allowed, else the error code
		}{
			{coord, "send_to", "w1", ""}, // role:worker
			{coord, "send_to", "w2", ""},
			{coord, "send_to", "aud", "forbidden"},
			{w1, "send_to", "coord", ""}, // by name
			{w1, "send_to", "w2", "forbidden"},
			{nobody, "send_to", "coord", "forbidden"}, // the route already
			{legacy, "send_to", "coord", "forbidden"}, // no role grants it
			{coord, "deliver", "w2", ""},
			{w1, "deliver", "coord", ""},
			{w1, "deliver", "w2", "forbidden"},
		} {
			got := tc.who.call("act", map[string]any{"op": tc.op, "to": tc.to})
			if got["error"] != nil != (tc.want != "") || (tc.want != "" && got["error"] != tc.want) {
				t.Errorf("%s %s: %v, want %q", tc.op, tc.to, got, tc.want)
			}
		}
		for _, a := range []*agent{w1, w2, coord} {
			if p := a.push(); p["payload"] != "x" {
				t.Fatalf("send_to reached %v", p)
			}
		}
	})
	t.Run("queue.push and queue.join", func(t *testing.T) {
		for _, tc := range []struct {
			who  *agent
			op   string
			q    string
			conn any
			ok   bool
		}{
			{coord, "push", "jobs.a", nil, true},
			{coord, "push", "jobs.a.b", nil, true},
			{coord, "push", "jobs", nil, false},
			{w1, "push", "jobs.a", nil, false},
			{w1, "join", "jobs.a", nil, true},
			{w1, "join", "jobs.a.b", nil, false},
			{coord, "join", "jobs.a", nil, false},
			{legacy, "push", "jobs.a", nil, false},
		} {
			got := tc.who.call("act", map[string]any{"op": tc.op, "queue": tc.q})
			if (got["error"] == nil) != tc.ok || (!tc.ok && got["error"] != "forbidden") {
				t.Errorf("%s %s: %v, want allowed %v", tc.op, tc.q, got, tc.ok)
			}
		}
		// The worker's roles count for join, not the sender's.
		w1ID := w1.call("act", map[string]any{"op": "roles"})["id"]
		if got := coord.call("act", map[string]any{"op": "join", "conn": w1ID, "queue": "jobs.b"}); got["ok"] != true {
			t.Errorf("coord making w1 a worker of jobs.b: %v", got)
		}
		// The job pushed to jobs.a reaches w1, its worker.
		if f := w1.push(); f["job"] == nil || f["route"] != "jobs.a" {
			t.Fatalf("w1 got %v", f)
		}
	})
	t.Run("conn.roles and conn.can", func(t *testing.T) {
		got := w1.call("act", map[string]any{"op": "roles"})
		if fmt.Sprint(got["roles"]) != "[worker]" {
			t.Errorf("conn.roles = %v", got["roles"])
		}
		if got := nobody.call("act", map[string]any{"op": "roles"}); got["error"] != "forbidden" {
			t.Errorf("nobody on act: %v", got)
		}
		for _, tc := range []struct {
			kind, target string
			want         bool
		}{
			{"route", "report", true}, {"route", "post_task", false},
			{"publish", "results.t1", true}, {"publish", "tasks.t1", false},
			{"subscribe", "tasks.t1", true}, {"subscribe", "tasks.t1.x", false},
			{"send_to", "coord", true}, {"send_to", "w2", false},
		} {
			got := w1.call("act", map[string]any{"op": "can", "kind": tc.kind, "target": tc.target})
			if got["can"] != tc.want || got["can_colon"] != tc.want {
				t.Errorf("conn.can(%q, %q) = %v, want %v", tc.kind, tc.target, got, tc.want)
			}
		}
		if got := w1.call("act", map[string]any{"op": "can", "kind": "delete", "target": "x"}); got["error"] != "handler_error" {
			t.Errorf("an unknown kind: %v", got)
		}
	})
	t.Run("a timer acts as the server", func(t *testing.T) {
		if got := aud.call("act", map[string]any{"op": "subscribe", "topic": "admin.audit"}); got["ok"] != true {
			t.Fatalf("aud subscribe: %v", got)
		}
		if got := w1.call("timer", nil); got["armed"] != true {
			t.Fatalf("timer: %v", got)
		}
		if p := aud.push(); p["payload"].(map[string]any)["from"] != "timer" {
			t.Fatalf("aud got %v", p)
		}
	})
	t.Run("a reload revokes a role at the next message", func(t *testing.T) {
		writeRoles(t, ids, func(s string) string {
			s = strings.Replace(s, "  - name: w1\n    token_sha256: "+tokenHash("tok-w1")+"\n    roles: [worker]\n",
				"  - name: w1\n    token_sha256: "+tokenHash("tok-w1")+"\n    roles: [auditor]\n", 1)
			return strings.Replace(s, "  - name: w2\n    token_sha256: "+tokenHash("tok-w2")+"\n    roles: [worker]\n", "", 1)
		})
		testutil.Eventually(t, "the reload", func() bool { return strings.Contains(log.String(), `connections_closed=1`) })
		if got := w1.call("report", map[string]any{"task": "t2"}); got["error"] != "forbidden" {
			t.Fatalf("w1 after losing worker: %v", got)
		}
		if got := w1.call("act", map[string]any{"op": "roles"}); fmt.Sprint(got["roles"]) != "[auditor]" {
			t.Fatalf("w1's roles after the reload: %v", got)
		}
		// w2 is gone from the file: it is told why, and closed.
		var frames []string
		for {
			f := w2.read()
			frames = append(frames, fmt.Sprint(f["type"], " ", f["payload"]))
			if f["type"] == "close" {
				break
			}
		}
		if got := strings.Join(frames, " | "); !strings.Contains(got, "error map[code:unauthorized message:the identity was removed or its credentials changed] | close map[reason:unauthorized]") {
			t.Fatalf("w2 got %s", got)
		}
		if got := coord.call("act", map[string]any{"op": "send_to", "to": "w1"}); got["error"] != "forbidden" {
			t.Fatalf("role:worker still names w1: %v", got)
		}
	})
	t.Run("a file that fails keeps the previous one", func(t *testing.T) {
		writeRoles(t, ids, func(s string) string { return strings.Replace(s, "roles: [coordinator]", "roles: [coordinater]", 1) })
		ok := false
		testutil.Eventually(t, "the failed reload", func() bool {
			ok = strings.Contains(log.String(), `identities.yaml:18: identity \"coord\": unknown role \"coordinater\"`)
			return ok || strings.Contains(log.String(), "Identities not reloaded")
		})
		if !ok {
			t.Fatal(log.String())
		}
		if got := coord.call("act", map[string]any{"op": "publish", "topic": "tasks.t3"}); got["error"] != nil {
			t.Fatalf("coord after a failed reload: %v", got)
		}
	})
	if code := stop(); code != 0 {
		t.Fatalf("serve exit %d", code)
	}
	t.Run("every refusal is audited", func(t *testing.T) {
		raw, err := os.ReadFile(audit)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{
			`"identity":"w1","route":"post_task","kind":"route","target":"post_task"`: false,
			`"identity":"w1","kind":"subscribe","target":"tasks.t1.x"`:                false,
			`"identity":"coord","kind":"publish","target":"results.t1"`:               false,
			`"identity":"w1","kind":"send_to","target":"w2"`:                          false,
			`"identity":"legacy","kind":"send_to","target":"coord"`:                   false,
			`"identity":"nobody","route":"post_task","kind":"route"`:                  false,
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if !strings.Contains(line, `"event":"forbidden"`) {
				continue
			}
			for w := range want {
				if strings.Contains(line, w) {
					want[w] = true
					if strings.Contains(w, `"identity":"w1"`) && !strings.Contains(line, `"roles":["worker"]`) {
						t.Errorf("no role set in %s", line)
					}
					if !strings.Contains(w, `"identity":"w1"`) && !strings.Contains(w, `"identity":"coord"`) && !strings.Contains(line, `"roles":[]`) {
						t.Errorf("no empty role set in %s", line)
					}
				}
			}
		}
		for w, seen := range want {
			if !seen {
				t.Errorf("no audit line with %s", w)
			}
		}
	})
}

// TestCheckIdentities: samgw check --identities accepts the example and
// refuses every mistake with file:line, as serve and a reload would.
func TestCheckIdentities(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "identities.yaml")
	writeRoles(t, file, nil)
	code, out, errOut := runSamgw(t, "", "check", "--identities", file)
	if code != 0 || !strings.Contains(out, "identities.yaml: ok: 6 identities, 3 roles (sha256 ") {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"unknown key of a role", "    routes: [post_task, status, act]", "    routes: [post_task, status, act]\n    route: [x]", `:4: role "coordinator": unknown key "route"`},
		{"unknown key of topics", `{ publish: ["tasks.>"], subscribe: ["results.*"] }`, `{ publsh: ["tasks.>"] }`, `:4: role "coordinator": topics: unknown key "publsh"`},
		{"unknown key of an identity", "  - name: nobody\n", "  - name: nobody\n    rolez: [worker]\n", `line 29: field rolez not found`},
		{"> not last", `publish: ["tasks.>"]`, `publish: ["tasks.>.x"]`, `:4: role "coordinator": topics.publish: access: invalid pattern: "tasks.>.x": ">" must be the last token`},
		{"partial wildcard", `subscribe: ["tasks.*"]`, `subscribe: ["tasks.a*"]`, `:9: role "worker": topics.subscribe: access: invalid pattern`},
		{"empty token", "routes: [report, act, timer]", "routes: [report, act, timer, a..b]", `:8: role "worker": routes: access: invalid pattern: "a..b" has an empty token`},
		{"unknown role of an identity", "roles: [auditor]", "roles: [auditer]", `:27: identity "aud": unknown role "auditer"`},
		{"role twice in an identity", "roles: [auditor]", "roles: [auditor, auditor]", `:27: roles: "auditor" is listed twice`},
		{"role defined twice", "  auditor:\n", "  worker:\n    routes: [x]\n  auditor:\n", `:12: role "worker" is defined twice`},
		{"pattern twice", "routes: [report, act, timer]", "routes: [report, act, report]", `:8: role "worker": routes: "report" is listed twice`},
		{"send_to an unknown role", `send_to: ["role:worker"]`, `send_to: ["role:wroker"]`, `:5: role "coordinator": send_to: access: unknown role "wroker"`},
		{"send_to an unknown identity", `send_to: ["coord"]`, `send_to: ["cord"]`, `:10: role "worker": send_to: access: unknown identity "cord"`},
		{"roles not a map", "roles:\n  coordinator:\n    routes: [post_task, status, act]\n    topics: { publish: [\"tasks.>\"], subscribe: [\"results.*\"] }\n    send_to: [\"role:worker\"]\n    queues: { push: [\"jobs.>\"] }\n  worker:\n    routes: [report, act, timer]\n    topics: { subscribe: [\"tasks.*\"], publish: [\"results.*\"] }\n    send_to: [\"coord\"]\n    queues: { join: [\"jobs.*\"] }\n  auditor:\n    routes: [act]\n    topics: { subscribe: [\"admin.>\"] }\n",
			"roles: [coordinator, worker]\n", `:1: roles: want a map`},
		{"unknown key of queues", `queues: { join: ["jobs.*"] }`, `queues: { take: ["jobs.*"] }`, `:11: role "worker": queues: unknown key "take" (want push, join)`},
		{"a pattern not a string", "routes: [report, act, timer]", "routes: [report, act, {a: 1}]", `:8: role "worker": routes: want strings`},
		{"roles without a roles section", "roles:\n  coordinator:", "rolez:\n  coordinator:", `field rolez not found`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeRoles(t, file, func(s string) string {
				if !strings.Contains(s, tc.old) {
					t.Fatalf("the file has no %q", tc.old)
				}
				return strings.Replace(s, tc.old, tc.new, 1)
			})
			code, out, _ := runSamgw(t, "", "check", "--identities", file)
			if code == 0 || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d: %q, want %q", code, out, tc.want)
			}
			if !strings.Contains(out, file) {
				t.Fatalf("%q does not name the file", out)
			}
			// serve refuses to start with the same words.
			code, _, errOut := runSamgw(t, "", "serve", "--listen", "127.0.0.1:0", "--identities", file)
			if code == 0 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("serve: exit %d: %s", code, errOut)
			}
		})
	}
}

// TestHostileIdentitiesFiles: the largest files are loaded or refused in
// bounded time, never half-applied.
func TestHostileIdentitiesFiles(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "identities.yaml")
	build := func(roles, patterns int, pattern func(r, p int) string) string {
		var b strings.Builder
		b.WriteString("roles:\n")
		for r := range roles {
			fmt.Fprintf(&b, "  r%d:\n    topics:\n      publish:\n", r)
			for p := range patterns {
				fmt.Fprintf(&b, "        - %q\n", pattern(r, p))
			}
		}
		b.WriteString("identities:\n  - name: a\n    token_sha256: " + tokenHash("x") + "\n    roles: [r0, r1]\n")
		return b.String()
	}
	for _, tc := range []struct {
		name, text, want string
	}{
		{"10,000 roles load", build(10_000, 3, func(r, p int) string { return fmt.Sprintf("t.%d.%d.>", r, p) }), "ok: 1 identities, 10000 roles"},
		{"10,001 roles are refused", build(10_001, 1, func(r, p int) string { return "t.>" }), "roles: 10001 roles, at most 10000"},
		{"a deep pattern is refused", build(2, 1, func(r, p int) string { return strings.Repeat("a.", 40) + "b" }), "more than 32 tokens"},
		{"a long pattern is refused", build(2, 1, func(r, p int) string { return strings.Repeat("a", 300) }), "300 bytes, at most 256"},
		{"a list too long is refused", build(1, 10_001, func(r, p int) string { return fmt.Sprint("t.", p) }), "10001 entries, at most 10000"},
		{"duplicates are refused", build(2, 2, func(r, p int) string { return "t.same" }), `"t.same" is listed twice`},
		{"an alias bomb is refused", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n" +
			"d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n" +
			"g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nidentities: [*g]\n", "identities"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, file, tc.text)
			start := time.Now()
			code, out, _ := runSamgw(t, "", "check", "--identities", file)
			took := time.Since(start)
			if (code == 0) != strings.HasPrefix(tc.want, "ok") || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d: %.300s, want %q", code, out, tc.want)
			}
			if took > waitTimeout {
				t.Fatalf("took %v", took)
			}
			t.Logf("%d bytes: %v", len(tc.text), took)
		})
	}
	writeFile(t, file, strings.Repeat("# padding\n", maxIdentitiesFile/10+1))
	if code, out, _ := runSamgw(t, "", "check", "--identities", file); code == 0 || !strings.Contains(out, "larger than 16 MiB") {
		t.Fatalf("a file over the bound: exit %d: %s", code, out)
	}
}

// TestDocsRolesExample: the roles file of docs/security.md loads and
// grants what the page says it does.
func TestDocsRolesExample(t *testing.T) {
	page, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(page), "   # roles.yaml\n")
	if !ok {
		t.Fatal("no roles.yaml example in docs/security.md")
	}
	block, _, _ := strings.Cut(rest, "   ```")
	file := filepath.Join(t.TempDir(), "roles.yaml")
	writeFile(t, file, block)
	f, err := loadIdentities(file)
	if err != nil {
		t.Fatalf("the example does not load: %v\n%s", err, block)
	}
	members := map[string][]string{}
	for _, id := range f.Identities {
		members[id.Name] = id.Roles
	}
	policy, err := access.Compile(f.Roles, members)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		who    string
		kind   access.Kind
		target string
		want   bool
	}{
		{"worker-1", access.KindRoute, "post_task", false},
		{"coord", access.KindRoute, "report", false},
		{"coord", access.KindRoute, "post_task", true},
		{"worker-1", access.KindPublish, "results.t1", true},
		{"worker-1", access.KindPublish, "results.t1.x", false},
		{"worker-1", access.KindPublish, "tasks.t1", false},
		{"worker-1", access.KindSubscribe, "tasks.summarise", true},
		{"worker-1", access.KindSubscribe, "tasks.summarise.fast", false},
		{"worker-1", access.KindSubscribe, "tasks", false},
		{"coord", access.KindSendTo, "worker-2", true},
		{"worker-1", access.KindSendTo, "worker-2", false},
		{"worker-1", access.KindSendTo, "coord", true},
	} {
		if got := policy.Grant(tc.who).Allows(tc.kind, tc.target); got != tc.want {
			t.Errorf("%s %s %s: %v, want %v", tc.who, tc.kind, tc.target, got, tc.want)
		}
	}
}

// TestIdentitiesReloadOnSignal: SIGHUP (here, the channel it arrives on)
// reloads the identities file even when nothing watched it change.
func TestIdentitiesReloadOnSignal(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "identities.yaml")
	writeRoles(t, file, nil)
	f, err := loadIdentities(file)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := gateway.NewServer(gateway.Config{Auth: &gateway.AuthConfig{Identities: f.Identities, Roles: f.Roles}})
	if err != nil {
		t.Fatal(err)
	}
	var log testutil.SyncBuffer
	r := &identitiesReloader{file: file, srv: srv, log: slog.New(slog.NewTextHandler(&log, nil)), digest: f.Digest}
	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 1)
	done := make(chan struct{})
	go func() { defer close(done); reloadOnSignal(ctx, signals, nil, r) }()
	defer func() { cancel(); <-done }()

	writeRoles(t, file, func(s string) string { return strings.Replace(s, "  auditor:\n", "  spare: {}\n  auditor:\n", 1) })
	signals <- syscall.SIGHUP
	testutil.Eventually(t, "the reload", func() bool { return strings.Contains(log.String(), "roles=4") })
	if !strings.Contains(log.String(), `msg="Identities reloaded"`) {
		t.Fatal(log.String())
	}
}
