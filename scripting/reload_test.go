package scripting

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/protocol"

	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/scripts"
)

// watch runs the engine's watcher for the test.
func (f *fixture) watch(debounce time.Duration) {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.engine.Watch(ctx, debounce) }()
	testutil.Eventually(f.t, "the watcher to start", func() bool { return strings.Contains(f.logs.String(), "Watching scripts") })
	f.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			f.t.Errorf("Watch: %v", err)
		}
	})
}

// waitGeneration waits until the engine serves generation n.
func (f *fixture) waitGeneration(n uint64) {
	f.t.Helper()
	testutil.Eventually(f.t, fmt.Sprintf("generation %d", n), func() bool { return f.engine.Generation() >= n })
	if g := f.engine.Generation(); g != n {
		f.t.Fatalf("generation %d, want %d", g, n)
	}
}

func reply(text string) string {
	return fmt.Sprintf("function on_data(msg) return %q end", text)
}

func TestHotReload(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": reply("v1"), "extra.lua": reply("extra")}, Config{})
	f.watch(20 * time.Millisecond)
	c, _ := f.client()
	mustReply(t, c, "", `0`, `"v1"`)

	// An edit in place.
	writeScripts(t, f.dir, map[string]string{"default.lua": reply("v2")})
	f.waitGeneration(2)
	mustReply(t, c, "", `0`, `"v2"`)

	// Write-and-rename, as editors save.
	tmp := filepath.Join(f.dir, ".default.lua.swp")
	if err := os.WriteFile(tmp, []byte(reply("v3")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(f.dir, "default.lua")); err != nil {
		t.Fatal(err)
	}
	f.waitGeneration(3)
	mustReply(t, c, "", `0`, `"v3"`)

	// A new route, then its deletion.
	writeScripts(t, f.dir, map[string]string{"fresh.lua": reply("fresh")})
	f.waitGeneration(4)
	mustReply(t, c, "fresh", `0`, `"fresh"`)
	if err := os.Remove(filepath.Join(f.dir, "extra.lua")); err != nil {
		t.Fatal(err)
	}
	f.waitGeneration(5)
	mustFail(t, c, "extra", `0`, protocol.CodeNoRoute, "extra")

	// A broken edit keeps the previous version serving, and says where.
	writeScripts(t, f.dir, map[string]string{"default.lua": "function on_data(msg)\n  return ((\nend\n"})
	testutil.Eventually(t, "the failed reload to be logged", func() bool { return strings.Contains(f.logs.String(), "Scripts not reloaded") })
	if !strings.Contains(f.logs.String(), "default.lua line:") && !strings.Contains(f.logs.String(), "default.lua:") {
		t.Fatalf("the error does not name the file:\n%s", f.logs.String())
	}
	if f.engine.Generation() != 5 {
		t.Fatalf("a broken file replaced generation 5: %d", f.engine.Generation())
	}
	mustReply(t, c, "", `0`, `"v3"`)
	mustReply(t, c, "fresh", `0`, `"fresh"`)

	// Fixed again.
	writeScripts(t, f.dir, map[string]string{"default.lua": reply("v6")})
	f.waitGeneration(6)
	mustReply(t, c, "", `0`, `"v6"`)
	if !strings.Contains(f.logs.String(), `msg="Scripts reloaded" generation=6 handlers=2`) {
		t.Fatalf("reload not logged with generation and handler count:\n%s", f.logs.String())
	}
}

func TestReloadOfModules(t *testing.T) {
	f := newFixture(t, map[string]string{
		"default.lua":  `local util = require("util"); function on_data(msg) return util.value end`,
		"lib/util.lua": `return {value = "one"}`,
	}, Config{})
	f.watch(20 * time.Millisecond)
	c, _ := f.client()
	mustReply(t, c, "", `0`, `"one"`)
	writeScripts(t, f.dir, map[string]string{"lib/util.lua": `return {value = "two"}`})
	f.waitGeneration(2)
	mustReply(t, c, "", `0`, `"two"`)
}

func TestLibDirectoryCreatedLater(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": reply("plain")}, Config{})
	f.watch(20 * time.Millisecond)
	if err := os.Mkdir(filepath.Join(f.dir, "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.waitGeneration(2)
	writeScripts(t, f.dir, map[string]string{"lib/m.lua": `return "from lib"`})
	f.waitGeneration(3)
	writeScripts(t, f.dir, map[string]string{"default.lua": `function on_data() return require("m") end`})
	f.waitGeneration(4)
	c, _ := f.client()
	mustReply(t, c, "", `0`, `"from lib"`)
}

func TestBurstOfWritesReloadsOnce(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": reply("start")}, Config{})
	f.watch(300 * time.Millisecond)
	for i := range 10 {
		writeScripts(t, f.dir, map[string]string{"default.lua": reply(fmt.Sprint("burst", i))})
	}
	f.waitGeneration(2)
	c, _ := f.client()
	mustReply(t, c, "", `0`, `"burst9"`)
	// Nothing else is pending: a later change is generation 3.
	writeScripts(t, f.dir, map[string]string{"default.lua": reply("after")})
	f.waitGeneration(3)
}

// TestRewritesUnderLoad keeps 100 connections sending while the handler is
// rewritten 20 times: every message is answered, by the old handler or the
// new one, and none is lost or answered with an error.
func TestRewritesUnderLoad(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": `function on_data(msg) return {v = 0, echo = msg.payload} end`}, Config{})
	f.watch(10 * time.Millisecond)
	const clients = 100
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var answered, failures atomic.Int64
	var firstFailure atomic.Pointer[string]
	fail := func(format string, args ...any) {
		failures.Add(1)
		msg := fmt.Sprintf(format, args...)
		firstFailure.CompareAndSwap(nil, &msg)
	}
	for i := range clients {
		c, err := gateway.NewClient(gateway.ClientConfig{Addr: f.addr, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Connect(t.Context()); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Disconnect("done")
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				payload := fmt.Sprintf(`"%d-%d"`, i, n)
				r, err := c.Request(ctx, json.RawMessage(payload))
				cancel()
				if err != nil {
					fail("client %d message %d: %v", i, n, err)
					return
				}
				if !strings.Contains(string(r.Payload), `"echo":`+payload) {
					fail("client %d message %d: reply %s", i, n, r.Payload)
					return
				}
				answered.Add(1)
			}
		}()
	}
	for v := 1; v <= 20; v++ {
		before := answered.Load()
		writeScripts(t, f.dir, map[string]string{"default.lua": fmt.Sprintf(`function on_data(msg) return {v = %d, echo = msg.payload} end`, v)})
		// At least: under load the watcher may see one write as two
		// changes (its truncation, then its data) and load it twice.
		testutil.Eventually(t, fmt.Sprintf("generation %d", v+1), func() bool { return f.engine.Generation() >= uint64(v+1) })
		testutil.Eventually(t, "traffic on the new generation", func() bool { return answered.Load() > before+clients || failures.Load() > 0 })
	}
	close(stop)
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d failures; first: %s", n, *firstFailure.Load())
	}
	t.Logf("%d messages answered across 20 rewrites", answered.Load())
}

// A route whose new file failed to load is answered with no_route that
// says so, until a reload succeeds; ReloadError says why (the client is not
// told: a parse error quotes the file).
func TestFailedRouteIsNamedInNoRoute(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": echo}, Config{})
	f.watch(10 * time.Millisecond)
	c, _ := f.client()
	writeScripts(t, f.dir, map[string]string{"orders.lua": "function on_data(msg)\n  return {\nend\n"})
	testutil.Eventually(t, "the failed reload", func() bool { return f.engine.ReloadError() != "" })
	mustFail(t, c, "orders", `1`, protocol.CodeNoRoute, `no handler for route "orders": orders.lua failed to load, so the scripts were not reloaded (the server log says why)`)
	if got := f.engine.ReloadError(); !strings.Contains(got, "orders.lua:3") {
		t.Fatalf("ReloadError %q does not say where", got)
	}
	mustFail(t, c, "other", `1`, protocol.CodeNoRoute, `no handler for route "other"`)
	writeScripts(t, f.dir, map[string]string{"orders.lua": "function on_data(msg) return 'ok' end\n"})
	f.waitGeneration(2)
	if got := f.engine.ReloadError(); got != "" {
		t.Fatalf("ReloadError after a good reload: %q", got)
	}
	mustReply(t, c, "orders", `1`, `"ok"`)
}

// TestTypeStubsBesideHandlersAreNotRoutes: the output of `samgw lua-types`
// saved in the scripts directory (as samgw.d.lua, or under any name, since
// it opens with ---@meta) declares globals without on_data; loading it as a
// route would fail every reload. It is passed over, and reloads go on.
func TestTypeStubsBesideHandlersAreNotRoutes(t *testing.T) {
	stubs := string(scripts.Types())
	f := newFixture(t, map[string]string{
		"default.lua":       reply("v1"),
		"samgw.d.lua":       stubs,
		"editor_types.lua":  stubs,
		"lib/helpers.d.lua": "---@meta\nfunction helper() end\n",
	}, Config{})
	f.watch(20 * time.Millisecond)
	c, _ := f.client()
	mustReply(t, c, "", `0`, `"v1"`)
	mustFail(t, c, "editor_types", `0`, protocol.CodeNoRoute, "editor_types")
	mustFail(t, c, "samgw.d", `0`, protocol.CodeNoRoute, "samgw.d")
	writeScripts(t, f.dir, map[string]string{"default.lua": reply("v2"), "samgw.d.lua": stubs + "\n-- saved again\n"})
	f.waitGeneration(2)
	mustReply(t, c, "", `0`, `"v2"`)
	if strings.Contains(f.logs.String(), "Scripts not reloaded") {
		t.Fatalf("a stub failed a reload:\n%s", f.logs.String())
	}
}

// TestSymlinksOutOfTheScriptsDirectoryAreRefused: a symbolic link in the
// scripts directory to a .lua file elsewhere was loaded and served, and one
// to a file that is not Lua leaked a fragment of it in no_route replies.
// Both now fail the reload with a clear error (and the previous version
// serves); a link within the directory still works.
func TestSymlinksOutOfTheScriptsDirectoryAreRefused(t *testing.T) {
	outside := t.TempDir()
	writeScripts(t, outside, map[string]string{
		"elsewhere.lua": reply("from outside"),
		"secret.txt":    "root:x:0:0:secret-password-hash\n",
	})
	f := newFixture(t, map[string]string{"default.lua": reply("v1"), "impl/inner.lua": reply("inner")}, Config{})
	f.watch(10 * time.Millisecond)
	c, _ := f.client()
	if err := os.Symlink(filepath.Join("impl", "inner.lua"), filepath.Join(f.dir, "inside.lua")); err != nil {
		t.Fatal(err)
	}
	f.waitGeneration(2)
	mustReply(t, c, "inside", `0`, `"inner"`)

	for name, target := range map[string]string{"stolen.lua": "elsewhere.lua", "secret.lua": "secret.txt"} {
		logged := strings.Count(f.logs.String(), "Scripts not reloaded")
		if err := os.Symlink(filepath.Join(outside, target), filepath.Join(f.dir, name)); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, "the reload to fail", func() bool { return strings.Count(f.logs.String(), "Scripts not reloaded") > logged })
		if got := f.engine.ReloadError(); !strings.Contains(got, name) || !strings.Contains(got, "outside the scripts directory") {
			t.Fatalf("reload error %q", got)
		}
		route := strings.TrimSuffix(name, ".lua")
		_, err := request(t, c, route, `0`)
		var pe *protocol.Error
		if !errors.As(err, &pe) || pe.Code != protocol.CodeNoRoute || strings.Contains(pe.Message, "password") || strings.Contains(pe.Message, "root:") {
			t.Fatalf("route %s: %v", route, err)
		}
		if err := os.Remove(filepath.Join(f.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if f.engine.Generation() != 2 {
		t.Fatalf("generation %d: a refused link replaced generation 2", f.engine.Generation())
	}
	mustReply(t, c, "", `0`, `"v1"`)
}
