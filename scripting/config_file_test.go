package scripting

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestScriptConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "settings.yaml")
	write := func(src string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("upstream:\n  url: http://127.0.0.1:8081/\n  timeout_ms: 2000\nrooms: [lobby, ops]\n")
	f := newFixture(t, map[string]string{
		"default.lua": `function on_data(msg) return {url = config.upstream.url, t = config.upstream.timeout_ms, room = config.rooms[2]} end`,
		"write.lua":   `function on_data(msg) config.upstream.url = "http://evil/" return "written" end`,
		"rooms.lua": `function on_data(msg)
  local all = {}
  for i, r in ipairs(config.rooms) do all[i] = r end
  local keys = 0
  for _ in pairs(config) do keys = keys + 1 end
  return {n = #config.rooms, all = all, keys = keys}
end`,
	}, Config{ConfigFile: file})
	c, _ := f.client()
	// Lists are sequences: #, ipairs and pairs see them.
	mustReply(t, c, "rooms", `1`, `{"n":2,"all":["lobby","ops"],"keys":2}`)
	mustReply(t, c, "", `1`, `{"url":"http://127.0.0.1:8081/","t":2000,"room":"ops"}`)
	// Read-only: a script cannot change what the others see.
	got, err := request(t, c, "write", `1`)
	if err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("writing config: %s, %v; want a read-only error", got, err)
	}
	mustReply(t, c, "", `1`, `{"url":"http://127.0.0.1:8081/","t":2000,"room":"ops"}`)
	// A reload reads the file again; a file that does not parse fails it.
	write("upstream:\n  url: http://127.0.0.1:9999/\n  timeout_ms: 500\nrooms: [a, b]\n")
	if err := f.engine.Reload(); err != nil {
		t.Fatal(err)
	}
	mustReply(t, c, "", `1`, `{"url":"http://127.0.0.1:9999/","t":500,"room":"b"}`)
	write("upstream: [unclosed\n")
	if err := f.engine.Reload(); err == nil || !strings.Contains(err.Error(), "settings.yaml") {
		t.Fatalf("reload with a broken config: %v", err)
	}
	mustReply(t, c, "", `1`, `{"url":"http://127.0.0.1:9999/","t":500,"room":"b"}`)
	write("- just\n- a list\n")
	if err := f.engine.Reload(); err == nil || !strings.Contains(err.Error(), "mapping") {
		t.Fatalf("reload with a list config: %v", err)
	}
}

func TestScriptConfigJSONKeepsBigIntegers(t *testing.T) {
	file := filepath.Join(t.TempDir(), "settings.json")
	os.WriteFile(file, []byte(`{"tenant": 12345678901234567890}`), 0o644)
	f := newFixture(t, map[string]string{"default.lua": `function on_data(msg) return config.tenant end`}, Config{ConfigFile: file})
	c, _ := f.client()
	mustReply(t, c, "", `1`, `12345678901234567890`)
}
