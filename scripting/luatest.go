package scripting

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"regexp"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/secureagentmessaging/samgw/internal/luabox"
)

// DefaultTestTimeout bounds each test of `samgw test`.
const DefaultTestTimeout = 10 * time.Second

// ErrTestsFailed is returned by RunTests when a test failed.
var ErrTestsFailed = errors.New("scripting: tests failed")

// TestConfig configures RunTests.
type TestConfig struct {
	// Dir is the scripts directory; when empty, FS is used.
	Dir string
	FS  fs.FS
	// ConfigFile is the scripts' settings (see Config.ConfigFile).
	ConfigFile string
	// Run, when set, runs only the tests whose "file: name" it matches (a
	// regular expression).
	Run string
	// Timeout bounds each test; zero means DefaultTestTimeout.
	Timeout time.Duration
	// Out receives a line for each failed test (each test with Verbose),
	// with the reasons, and the summary line.
	Out     io.Writer
	Verbose bool
	// Logger receives the scripts' logs; nil discards them.
	Logger *slog.Logger
}

// TestReport is what RunTests ran.
type TestReport struct {
	Passed, Failed int
	// Failures are "file: name: reason", in the order they ran.
	Failures []string
}

// RunTests runs the *_test.lua files beside the handlers of a scripts
// directory, each test in a fresh Lua state that has every route loaded as
// serve would load it, with an in-memory store, a clock the test moves, and
// test doubles of the gateway, http, upstream and nats modules (see
// docs/cli.md, "samgw test"). It returns ErrTestsFailed when a test
// failed; other errors mean the tests could not run at all.
func RunTests(cfg TestConfig) (TestReport, error) {
	var report TestReport
	var filter *regexp.Regexp
	if cfg.Run != "" {
		var err error
		if filter, err = regexp.Compile(cfg.Run); err != nil {
			return report, fmt.Errorf("--run: %w", err)
		}
	}
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	logger := cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	timeout := cmp.Or(cfg.Timeout, DefaultTestTimeout)
	e, err := newEngine(Config{Dir: cfg.Dir, FS: cfg.FS, ConfigFile: cfg.ConfigFile, Timeout: timeout, Logger: logger})
	if err != nil {
		return report, err
	}
	defer e.Close()
	_, files, err := listScripts(e.fsys)
	if err != nil {
		return report, err
	}
	gen, err := compileGeneration(e, e.fsys, 1, 1)
	if err != nil {
		return report, fmt.Errorf("the scripts do not load, so no test can run: %w", err)
	}
	defer gen.retire()
	for _, file := range files {
		proto, err := compileFile(e.fsys, file)
		var names []string
		if err == nil {
			names, err = testNames(gen, file, proto)
		}
		if err != nil {
			// A file that does not load fails, unless --run leaves it out.
			if filter == nil || filter.MatchString(file) {
				report.fail(out, file, "", err.Error())
			}
			continue
		}
		for _, name := range names {
			if filter != nil && !filter.MatchString(file+": "+name) {
				continue
			}
			start := time.Now()
			if err := runTest(gen, file, proto, name); err != nil {
				report.fail(out, file, name, err.Error())
				continue
			}
			report.Passed++
			if cfg.Verbose {
				fmt.Fprintf(out, "--- PASS: %s: %s (%.2fs)\n", file, name, time.Since(start).Seconds())
			}
		}
	}
	if report.Passed+report.Failed == 0 && filter != nil {
		fmt.Fprintf(out, "no test matches --run %q\n", cfg.Run)
	}
	fmt.Fprintf(out, "%d passed, %d failed\n", report.Passed, report.Failed)
	if report.Failed > 0 {
		return report, ErrTestsFailed
	}
	return report, nil
}

func (r *TestReport) fail(out io.Writer, file, name, reason string) {
	r.Failed++
	what := file
	if name != "" {
		what += ": " + name
	}
	r.Failures = append(r.Failures, what+": "+reason)
	fmt.Fprintf(out, "--- FAIL: %s\n    %s\n", what, strings.ReplaceAll(reason, "\n", "\n    "))
}

// testNames loads a test file once to list the tests it declares, in
// order.
func testNames(gen *generation, file string, proto *lua.FunctionProto) ([]string, error) {
	h := newHarness()
	st, err := h.state(gen)
	if err != nil {
		return nil, err
	}
	defer st.close()
	if err := h.load(st, file, proto); err != nil {
		return nil, err
	}
	if len(h.tests) == 0 {
		return nil, fmt.Errorf("declares no test: call test(name, function() … end)")
	}
	names := make([]string, len(h.tests))
	for i, t := range h.tests {
		names[i] = t.name
	}
	return names, nil
}

// runTest runs the test called name of file in a fresh state.
func runTest(gen *generation, file string, proto *lua.FunctionProto, name string) error {
	h := newHarness()
	st, err := h.state(gen)
	if err != nil {
		return err
	}
	defer st.close()
	if err := h.load(st, file, proto); err != nil {
		return err
	}
	for _, t := range h.tests {
		if t.name == name {
			st.call = callInfo{script: file, background: true}
			defer st.end()
			if err := st.run(t.fn, 0); err != nil {
				if errors.Is(err, errTimeout) {
					return fmt.Errorf("did not finish within %v", gen.engine.timeout)
				}
				return err
			}
			return h.timerFailure()
		}
	}
	return fmt.Errorf("test %q is declared only sometimes", name)
}

// load runs a test file, which declares its tests with test(name, fn).
func (h *harness) load(st *luaState, file string, proto *lua.FunctionProto) error {
	fn := st.L.NewFunctionFromProto(proto)
	fn.Env = luabox.NewEnv(st.L)
	st.call = callInfo{script: file, background: true}
	defer st.end()
	h.loading = true
	defer func() { h.loading = false }()
	if err := st.run(fn, 0); err != nil {
		return err
	}
	return nil
}
