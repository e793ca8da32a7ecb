package scripting

import (
	"errors"
	"regexp"
	"sort"
	"strconv"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// Problem is one thing Check found in a scripts directory.
type Problem struct {
	File    string // relative to the directory, e.g. "chat.lua" or "lib/util.lua"
	Line    int    // 0 when unknown
	Warning bool   // a warning: the scripts load, but something will not do what it seems to
	Message string
}

// String words the problem as editors and compilers do: file:line: kind: message.
func (p Problem) String() string {
	kind := "error"
	if p.Warning {
		kind = "warning"
	}
	where := p.File
	if p.Line > 0 {
		where += ":" + strconv.Itoa(p.Line)
	}
	return where + ": " + kind + ": " + p.Message
}

// Check compiles and loads every file of the scripts in cfg as a reload
// would, each route in a state of its own so that one broken file does not
// hide the next, and returns every problem found, errors and warnings,
// sorted by file and line. Scripts with no error load (a reload would
// succeed). The error is for a directory that cannot be read at all.
func Check(cfg Config) ([]Problem, error) {
	e, err := newEngine(cfg)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	var problems []Problem
	routes := make(map[string]*lua.FunctionProto)
	libs := make(map[string]*lua.FunctionProto)
	files, _, err := listScripts(e.fsys)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if !validName.MatchString(f.name) {
			problems = append(problems, Problem{File: f.path, Message: errBadScriptName.Error() + ": the file would stop every reload"})
			continue
		}
		proto, err := compileFile(e.fsys, f.path)
		if err != nil {
			problems = append(problems, problemOf(f.path, err.Error()))
			continue
		}
		if f.module {
			libs[f.name] = proto
		} else {
			routes[f.name] = proto
		}
	}
	names := make([]string, 0, len(routes))
	for name := range routes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		problems = append(problems, e.checkRoute(name, routes[name], libs)...)
	}
	sort.SliceStable(problems, func(i, j int) bool {
		if problems[i].File != problems[j].File {
			return problems[i].File < problems[j].File
		}
		return problems[i].Line < problems[j].Line
	})
	return problems, nil
}

// checkRoute loads one route's file, with every module, in a state of its
// own.
func (e *Engine) checkRoute(name string, proto *lua.FunctionProto, libs map[string]*lua.FunctionProto) []Problem {
	file := name + ".lua"
	g := &generation{engine: e, routes: map[string]*lua.FunctionProto{name: proto}, libs: libs, pool: newStatePool(1)}
	st, err := newState(g)
	if err != nil {
		text := strings.TrimPrefix(err.Error(), file+": ")
		if errors.Is(err, ErrNoOnData) {
			text = "defines no on_data function: every message to route " + strconv.Quote(name) + " would fail"
		}
		return []Problem{problemOf(file, text)}
	}
	defer st.close()
	var problems []Problem
	if f := st.routes[name]; f != nil && name != defaultRoute {
		hooks := []struct {
			name string
			fn   *lua.LFunction
		}{{"on_connect", f.onConnect}, {"on_close", f.onClose}, {"on_start", f.onStart}, {"on_node_down", f.onNodeDown}, {"on_job", f.onJob}}
		for _, h := range hooks {
			if h.fn != nil {
				problems = append(problems, Problem{File: file, Line: h.fn.Proto.LineDefined, Warning: true,
					Message: h.name + " is never called here: the connection and start hooks run only from default.lua"})
			}
		}
	}
	return problems
}

// fileLine matches the "file.lua:12:" that Lua puts before its messages.
var fileLine = regexp.MustCompile(`^([\w./-]+\.lua):(\d+):\s*(.*)$`)

// column matches the column a syntax error adds after the line.
var column = regexp.MustCompile(`^\d+:\s*(.*)$`)

// problemOf makes a Problem of an error text, taking its file and line
// when the text starts with them.
func problemOf(file, text string) Problem {
	if m := fileLine.FindStringSubmatch(text); m != nil {
		line, _ := strconv.Atoi(m[2])
		msg := m[3]
		if c := column.FindStringSubmatch(msg); c != nil {
			msg = c[1] // file:line:column: message
		}
		return Problem{File: m[1], Line: line, Message: msg}
	}
	return Problem{File: file, Message: text}
}
