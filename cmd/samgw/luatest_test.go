package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLuaTestCommand(t *testing.T) {
	t.Run("the shipped tests pass", func(t *testing.T) {
		for _, dir := range []string{"../../scripts", "../../scripts/examples"} {
			code, out, errOut := runSamgw(t, "", "test", dir)
			if code != 0 || !strings.HasSuffix(out, " passed, 0 failed\n") {
				t.Fatalf("%s: exit %d, out %q, stderr %q", dir, code, out, errOut)
			}
		}
	})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "echo.lua"), []byte("function on_data(msg) return msg.payload end\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "echo_test.lua"), []byte(`test("echoes", function() assert_eq(call("echo", 1), 1) end)
test("is wrong", function()
  assert_eq(call("echo", "a"), "b")
end)
`), 0o644)
	t.Run("a failure exits 1 and names its line", func(t *testing.T) {
		code, out, errOut := runSamgw(t, "", "test", dir)
		want := "--- FAIL: echo_test.lua: is wrong\n    echo_test.lua:3: got \"a\", want \"b\"\n1 passed, 1 failed\n"
		if code != 1 || out != want || errOut != "samgw: tests failed\n" {
			t.Fatalf("exit %d, out %q, stderr %q; want exit 1 and %q", code, out, errOut, want)
		}
	})
	t.Run("--run picks tests, -v lists them", func(t *testing.T) {
		code, out, _ := runSamgw(t, "", "test", "--run", "echoes", "-v", dir)
		if code != 0 || !strings.HasPrefix(out, "--- PASS: echo_test.lua: echoes (") || !strings.HasSuffix(out, "s)\n1 passed, 0 failed\n") || strings.Count(out, "\n") != 2 {
			t.Fatalf("exit %d, out %q", code, out)
		}
	})
}
