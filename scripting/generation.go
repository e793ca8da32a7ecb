package scripting

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"

	"github.com/secureagentmessaging/samgw/internal/luabox"
)

// ErrNoOnData is the load error of a handler file that defines no on_data.
var ErrNoOnData = errors.New("scripting: the file defines no on_data function")

// generation is one compiled version of the scripts directory: every file
// compiled once, and a pool of states that have them loaded. A reload
// builds a new generation and swaps it in whole; calls in flight finish on
// the one they started on.
type generation struct {
	engine *Engine
	number uint64
	routes map[string]*lua.FunctionProto // route name → its file, compiled
	libs   map[string]*lua.FunctionProto // module name → lib/<name>.lua, compiled
	config []byte                        // the scripts' settings (JSON), or nil
	redact *strings.Replacer             // hides the settings' values in error texts; nil: none

	// hooks from default.lua, known once the first state loaded
	hasOnConnect, hasOnClose, hasOnStart, hasOnNodeDown, hasOnJob bool

	timers *timerSet // made by this generation's scripts

	pool    *statePool  // ready states, and the count of all of them
	retired atomic.Bool // replaced by a newer generation
}

// redacted is text without the values of the scripts' settings: what an
// error says to a client or the log never carries a key from the config.
func (g *generation) redacted(text string) string {
	if g.redact == nil {
		return text
	}
	return g.redact.Replace(text)
}

// compileGeneration compiles the handler files (*.lua) and modules
// (lib/*.lua) of fsys, then loads them into a first state, so a generation
// that does not load is never served. maxStates bounds its pool.
func compileGeneration(e *Engine, fsys fs.FS, number uint64, maxStates int) (*generation, error) {
	g := &generation{
		engine: e,
		number: number,
		routes: make(map[string]*lua.FunctionProto),
		libs:   make(map[string]*lua.FunctionProto),
		pool:   newStatePool(maxStates),
	}
	g.timers = newTimerSet(g, e.clock, e.maxTimers, e.maxConnTimers)
	if e.configFile != "" {
		config, values, err := readScriptConfigValues(e.configFile)
		if err != nil {
			return nil, err
		}
		g.config, g.redact = config, newRedactor(values)
	}
	files, _, err := listScripts(fsys)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if !validName.MatchString(f.name) {
			return nil, &FileError{File: f.path, Err: fmt.Errorf("%s: %w", f.path, errBadScriptName)}
		}
		proto, err := compileFile(fsys, f.path)
		if err != nil {
			return nil, &FileError{File: f.path, Err: err}
		}
		if f.module {
			g.libs[f.name] = proto
		} else {
			g.routes[f.name] = proto
		}
	}
	if len(g.routes) == 0 {
		return g, nil
	}
	g.pool.reserve()
	st, err := newState(g)
	if err != nil {
		return nil, err
	}
	if d := st.routes[defaultRoute]; d != nil {
		g.hasOnConnect, g.hasOnClose, g.hasOnStart = d.onConnect != nil, d.onClose != nil, d.onStart != nil
		g.hasOnNodeDown, g.hasOnJob = d.onNodeDown != nil, d.onJob != nil
	}
	g.pool.give(0, st)
	return g, nil
}

// FileError is why one file of a scripts directory stopped a load: File is
// its path within the directory (e.g. "orders.lua", "lib/util.lua"); the
// message names it already.
type FileError struct {
	File string
	Err  error
}

func (e *FileError) Error() string { return e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// errBadScriptName is the complaint about a file named outside the route
// and module name syntax.
var errBadScriptName = errors.New("the name is not a valid route or module name ([A-Za-z0-9_.-]+)")

// scriptFile is one Lua file of a scripts directory: a route's handler
// (top level) or a module (lib/).
type scriptFile struct {
	name, path string
	module     bool
}

// listScripts lists the handler files and modules of fsys (*.lua at the
// top and in lib/) and, apart, the test files of `samgw test` (*_test.lua
// at the top, sorted), which are never handlers; hidden files and
// directories are left out.
func listScripts(fsys fs.FS) (files []scriptFile, tests []string, err error) {
	for _, dir := range []string{".", "lib"} {
		entries, err := fs.ReadDir(fsys, dir)
		if err != nil {
			if dir == "lib" && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, nil, fmt.Errorf("read scripts: %w", err)
		}
		for _, entry := range entries { // sorted by name
			name, ok := strings.CutSuffix(entry.Name(), ".lua")
			switch {
			case !ok || entry.IsDir() || strings.HasPrefix(name, "."):
			case isTypeStub(fsys, path.Join(dir, entry.Name())):
			case strings.HasSuffix(name, testSuffix):
				if dir == "." {
					tests = append(tests, entry.Name())
				}
			default:
				files = append(files, scriptFile{name: name, path: path.Join(dir, entry.Name()), module: dir == "lib"})
			}
		}
	}
	return files, tests, nil
}

// testSuffix ends the names of test files (before .lua): never routes.
const testSuffix = "_test"

// isTypeStub reports whether file is an editor's type stub rather than
// Lua to run: a *.d.lua file, or one whose first line is LuaLS's
// "---@meta [name]" (the output of `samgw lua-types` is both). Stubs declare
// globals without defining on_data, so loading one as a route would fail
// every reload of the directory it is saved in.
func isTypeStub(fsys fs.FS, file string) bool {
	if strings.HasSuffix(file, ".d.lua") {
		return true
	}
	f, err := fsys.Open(file)
	if err != nil {
		return false // the compile step reports it
	}
	defer f.Close()
	head := make([]byte, 256)
	n, _ := io.ReadFull(f, head)
	first, _, _ := strings.Cut(string(head[:n]), "\n")
	first = strings.TrimRight(first, " \t\r")
	return first == metaMarker || strings.HasPrefix(first, metaMarker+" ")
}

// metaMarker opens a LuaLS definition file.
const metaMarker = "---@meta"

// compileFile parses and compiles one file; errors name the file and line.
func compileFile(fsys fs.FS, file string) (*lua.FunctionProto, error) {
	src, err := fs.ReadFile(fsys, file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	chunk, err := parse.Parse(strings.NewReader(string(src)), file)
	if err != nil {
		return nil, fmt.Errorf("%s", syntaxErrorText(file, err))
	}
	luabox.BoundConcat(chunk)
	proto, err := lua.Compile(chunk, file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return proto, nil
}

// gopherSyntaxError matches gopher-lua's "NAME line:L(column:C) near 'X': msg".
var gopherSyntaxError = regexp.MustCompile(`^(.*) line:(\d+)\(column:(\d+)\) (.*)$`)

// syntaxErrorText words a parse error as file:line:column: message, the
// form editors and compilers use.
func syntaxErrorText(file string, err error) string {
	text := strings.TrimSpace(err.Error())
	if m := gopherSyntaxError.FindStringSubmatch(text); m != nil {
		return fmt.Sprintf("%s:%s:%s: %s", file, m[2], m[3], strings.Join(strings.Fields(m[4]), " "))
	}
	return file + ": " + text
}

// routeNames lists the routes, sorted, for logs.
func (g *generation) routeNames() []string {
	names := make([]string, 0, len(g.routes))
	for name := range g.routes {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// get returns a ready state, locked for a call: an idle one, a new one
// while the pool is below its bound, or the first one returned within
// timeout. put gives it back.
func (g *generation) get(hint uint64, timeout time.Duration) (*luaState, error) {
	for {
		st, err := g.take(hint, timeout)
		if err != nil {
			return nil, err
		}
		st.mu.Lock()
		if !st.broken {
			return st, nil
		}
		// A timer's run overran its deadline on st while it sat idle.
		st.mu.Unlock()
		g.discard(st)
	}
}

func (g *generation) take(hint uint64, timeout time.Duration) (*luaState, error) {
	if st := g.pool.take(hint); st != nil {
		return st, nil
	}
	if g.pool.reserve() {
		return g.newState()
	}
	st, mayMake := g.pool.wait(hint, timeout)
	switch {
	case st != nil:
		return st, nil
	case mayMake:
		return g.newState()
	}
	return nil, errTimeout
}

// newState builds a state in a place already reserved.
func (g *generation) newState() (*luaState, error) {
	st, err := newState(g)
	if err != nil {
		g.pool.release()
		return nil, err
	}
	return st, nil
}

// put returns a state after a call. A broken state (a call overran its
// deadline) or one of a retired generation is closed instead.
func (g *generation) put(hint uint64, st *luaState) {
	broken := st.broken // a timer may break it later: get checks again
	st.mu.Unlock()
	if broken || g.retired.Load() {
		g.discard(st)
		return
	}
	g.pool.give(hint, st)
	if g.retired.Load() { // retired meanwhile: what retire drained may not include st
		for _, st := range g.pool.drain() {
			g.discard(st)
		}
	}
}

func (g *generation) discard(st *luaState) {
	g.abandon(st)
	st.close()
	g.pool.release()
}

// abandon cancels the timers of a state that broke (a call or timer run on
// it overran its deadline): their functions go with it. When on_start ran
// on it, on_start runs again on another state, so the timers it sets up
// keep running.
func (g *generation) abandon(st *luaState) {
	if st.abandoned.Swap(true) {
		return
	}
	gone := g.timers.cancelState(st)
	for _, t := range gone {
		g.engine.log.Warn("Timer cancelled: a call on its Lua state ran out of time, so the state was discarded", "timer", t.where, "generation", g.number)
	}
	if st.ranStart && !g.retired.Load() {
		g.engine.log.Warn("Running on_start again: the Lua state its timers lived in was discarded", "generation", g.number)
		g.engine.runStart(g)
	}
}

// retire stops the timers of a generation that was replaced and closes its
// idle states; states still in calls are closed when they come back.
func (g *generation) retire() {
	g.retired.Store(true)
	g.timers.stop()
	for _, st := range g.pool.drain() {
		g.discard(st)
	}
}
