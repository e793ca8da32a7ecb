// Package scenario runs client scenarios: Lua files that drive one gateway
// connection each from top to bottom (send, request, ping, expect, sleep,
// callbacks with on), as `samgw client` does. It runs on gateway.Client and
// the sandbox of internal/luabox; Run runs one copy, RunMany several at
// once with a summary and a latency histogram.
package scenario

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/histogram"
	"github.com/secureagentmessaging/samgw/internal/luabox"
	"github.com/secureagentmessaging/samgw/protocol"
)

// DefaultWaitTimeout bounds expect, request and ping when the script gives
// no timeout (before time scaling).
const DefaultWaitTimeout = 5 * time.Second

// maxUnclaimed bounds the messages kept for a later expect.
const maxUnclaimed = 1024

// Config describes a client scenario: a Lua file that drives one
// connection from top to bottom.
type Config struct {
	// Name is the file's name, used in error messages (file:line: message).
	Name string
	// Source is the Lua source.
	Source []byte
	// Client configures the connection; Addr at least. Its OnMessage,
	// OnConnect and OnDisconnect are taken by the scenario.
	Client gateway.ClientConfig
	// Tokens, when set, give the copies of RunMany tokens of their own:
	// copy i authenticates with Tokens[i % len(Tokens)] (Client.Token is
	// then not used).
	Tokens []string
	// Args are the script's `args` table (from --arg k=v).
	Args map[string]string
	// TimeScale multiplies every sleep and timeout, and the client's
	// keep-alive timings; zero means 1.
	TimeScale float64
	// Out receives what log(...) prints, one line per call.
	Out io.Writer
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger
}

// Result is the outcome of one scenario run.
type Result struct {
	// Err is why the scenario failed (file:line: message), or nil.
	Err error
	// Refused is the server's error when it refused the connection itself
	// (unauthorized, tls_required): the scenario stops at once, and a
	// caller can say what to change.
	Refused *protocol.Error
	// Requests holds the round-trip time of every request and ping.
	Requests histogram.Histogram
}

// Summary is the outcome of several copies of a scenario.
type Summary struct {
	Passed, Failed int
	// Errors are the first few failures, prefixed with the client's id.
	Errors []string
	// Requests merges the round trips of every copy.
	Requests histogram.Histogram
}

// RunMany runs n copies of a scenario at once, each on its own
// connection and Lua state; `client.id` is 1..n. With n == 1 the output is
// the script's alone; with more each line is prefixed with [id]. A
// comma-separated Client.Addr spreads the copies over those servers.
func RunMany(ctx context.Context, cfg Config, n int) Summary {
	proto, err := compileScenario(cfg)
	var sum Summary
	if err != nil {
		sum.Failed = n
		sum.Errors = []string{err.Error()}
		return sum
	}
	out := &lineWriter{w: cfg.Out}
	results := make([]Result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prefix := ""
			if n > 1 {
				prefix = fmt.Sprintf("[%d] ", i+1)
			}
			results[i] = runScenario(ctx, withAddr(cfg, i), proto, i+1, out, prefix)
		}()
	}
	wg.Wait()
	for i, r := range results {
		sum.Requests.Merge(&r.Requests)
		if r.Err == nil {
			sum.Passed++
			continue
		}
		sum.Failed++
		if len(sum.Errors) < 5 {
			msg := r.Err.Error()
			if n > 1 {
				msg = fmt.Sprintf("client %d: %s", i+1, msg)
			}
			sum.Errors = append(sum.Errors, msg)
		}
	}
	return sum
}

// Run runs one copy of the scenario as client 1.
func Run(ctx context.Context, cfg Config) Result {
	proto, err := compileScenario(cfg)
	if err != nil {
		return Result{Err: err}
	}
	return runScenario(ctx, withAddr(cfg, 0), proto, 1, &lineWriter{w: cfg.Out}, "")
}

// withAddr starts copy i at its own server when Client.Addr lists
// several, comma-separated: the copies are spread over them in turn, as
// over the nodes of a cluster, and each fails over to the others; with
// Tokens, copy i authenticates with the i-th (in turn).
func withAddr(cfg Config, i int) Config {
	if len(cfg.Tokens) > 0 {
		cfg.Client.Token = cfg.Tokens[i%len(cfg.Tokens)]
	}
	addrs := strings.Split(cfg.Client.Addr, ",")
	k := i % len(addrs)
	cfg.Client.Addr = strings.Join(append(addrs[k:len(addrs):len(addrs)], addrs[:k]...), ",")
	return cfg
}

func compileScenario(cfg Config) (*lua.FunctionProto, error) {
	name := cmp.Or(cfg.Name, "scenario.lua")
	chunk, err := parse.Parse(strings.NewReader(string(cfg.Source)), name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	luabox.BoundConcat(chunk)
	proto, err := lua.Compile(chunk, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return proto, nil
}

// lineWriter serialises whole lines from several scenario copies.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) line(s string) {
	if l.w == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	io.WriteString(l.w, s+"\n") //nolint:errcheck // output is best effort
}
