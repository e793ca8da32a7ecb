package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckCommand(t *testing.T) {
	t.Run("errors exit 1 and are listed with file and line", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "default.lua"), []byte("function on_data(msg) return msg.payload end\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "a.lua"), []byte("function on_data()\n  x(\nend\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "b.lua"), []byte("error('boom')\n"), 0o644)
		code, out, errOut := runSamgw(t, "", "check", dir)
		want := "a.lua:3: error: near 'end': syntax error\nb.lua:1: error: boom\n" + dir + ": 2 errors, 0 warnings\n"
		if code != 1 || out != want {
			t.Fatalf("exit %d, out %q (stderr %q), want exit 1 and %q", code, out, errOut, want)
		}
	})
	t.Run("warnings alone exit 0", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "chat.lua"), []byte("function on_data() end\nfunction on_close(conn) end\n"), 0o644)
		code, out, _ := runSamgw(t, "", "check", dir)
		want := "chat.lua:2: warning: on_close is never called here: the connection and start hooks run only from default.lua\n" + dir + ": 0 errors, 1 warnings\n"
		if code != 0 || out != want {
			t.Fatalf("exit %d, out %q, want exit 0 and %q", code, out, want)
		}
	})
	t.Run("the shipped handlers are clean", func(t *testing.T) {
		if code, out, _ := runSamgw(t, "", "check", "../../scripts/examples"); code != 0 {
			t.Fatalf("exit %d: %s", code, out)
		}
	})
}

func TestLuaTypesCommand(t *testing.T) {
	code, out, _ := runSamgw(t, "", "lua-types")
	if code != 0 || !strings.HasPrefix(out, "---@meta samgw") || !strings.Contains(out, "function store.cas(") {
		t.Fatalf("exit %d, output starts %q", code, out[:min(len(out), 80)])
	}
	code, out, _ = runSamgw(t, "", "lua-types", "--test")
	if code != 0 || !strings.HasPrefix(out, "---@meta samgw_test") || !strings.Contains(out, "function clock.advance(") {
		t.Fatalf("exit %d, output starts %q", code, out[:min(len(out), 80)])
	}
}

// TestCheckWithTypeStubsBeside: `samgw lua-types` saved beside a handler,
// as the editor guide says, leaves `samgw check` clean.
func TestCheckWithTypeStubsBeside(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "default.lua"), []byte("function on_data(msg) return msg.payload end\n"), 0o644)
	_, stubs, _ := runSamgw(t, "", "lua-types")
	os.WriteFile(filepath.Join(dir, "samgw.d.lua"), []byte(stubs), 0o644)
	_, testStubs, _ := runSamgw(t, "", "lua-types", "--test")
	os.WriteFile(filepath.Join(dir, "samgw_test.d.lua"), []byte(testStubs), 0o644)
	code, out, errOut := runSamgw(t, "", "check", dir)
	if code != 0 || out != dir+": 0 errors, 0 warnings\n" {
		t.Fatalf("exit %d, out %q, stderr %q", code, out, errOut)
	}
}
