package scripting

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/secureagentmessaging/samgw/scripts"
)

func TestCheckReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "lib"), 0o755)
	for name, src := range map[string]string{
		"default.lua":  "function on_data(msg) return msg.payload end\nfunction on_connect(conn) end\n",
		"broken.lua":   "function on_data(msg)\n  return {\nend\n",
		"crash.lua":    "local x = nil\nx.y = 1\nfunction on_data() end\n",
		"hooks.lua":    "function on_data() end\nfunction on_connect() end\nfunction on_close() end\nfunction on_start() end\n",
		"nodata.lua":   "local t = 1\n",
		"fine.lua":     "local util = require('util')\nfunction on_data(msg) return util.twice(msg.payload) end\n",
		"bad name.lua": "function on_data() end\n",
		"lib/util.lua": "local M = {}\nfunction M.twice(x) return x end\nreturn M\n",
		"lib/bad.lua":  "function on_data( end\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	problems, err := Check(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range problems {
		got = append(got, p.String())
	}
	want := []string{
		"bad name.lua: error: the name is not a valid route or module name ([A-Za-z0-9_.-]+): the file would stop every reload",
		"broken.lua:3: error: near 'end': syntax error",
		"crash.lua:2: error: attempt to index a non-table object(nil) with key 'y'",
		"hooks.lua:2: warning: on_connect is never called here: the connection and start hooks run only from default.lua",
		"hooks.lua:3: warning: on_close is never called here: the connection and start hooks run only from default.lua",
		"hooks.lua:4: warning: on_start is never called here: the connection and start hooks run only from default.lua",
		"lib/bad.lua:1: error: near 'end': syntax error",
		`nodata.lua: error: defines no on_data function: every message to route "nodata" would fail`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", join(got), join(want))
	}
}

func TestCheckFindsNothingInTheShippedHandlers(t *testing.T) {
	for _, dir := range []string{"../scripts", "../scripts/examples"} {
		problems, err := Check(Config{Dir: dir})
		if err != nil || len(problems) != 0 {
			t.Errorf("%s: %v %v", dir, problems, err)
		}
	}
}

// TestCheckPassesOverTypeStubs: a handler and the stubs of `samgw
// lua-types` beside it (under the suggested name and another) check clean.
func TestCheckPassesOverTypeStubs(t *testing.T) {
	dir := t.TempDir()
	for name, src := range map[string]string{
		"default.lua":   "function on_data(msg) return msg.payload end\n",
		"samgw.d.lua":   string(scripts.Types()),
		"types.lua":     string(scripts.TestTypes()),
		"notmeta.d.lua": "this is not Lua at all",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	problems, err := Check(Config{Dir: dir})
	if err != nil || len(problems) != 0 {
		t.Fatalf("problems %v, error %v", problems, err)
	}
}

func join(lines []string) string {
	s := ""
	for _, l := range lines {
		s += "  " + l + "\n"
	}
	return s
}
