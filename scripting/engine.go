package scripting

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/protocol"
)

// defaultRoute is the route of data messages without one, and the file
// (default.lua) whose on_connect and on_close hooks are used.
const defaultRoute = "default"

// Defaults for zero Config fields.
const (
	DefaultTimeout = time.Second
)

// DefaultMaxStates bounds the Lua states of a generation: how many calls can
// run at once. A call that finds none free waits, within its deadline.
// It is generous because a call waiting on an upstream holds its state:
// 256 slow calls can wait while other routes keep being served.
var DefaultMaxStates = max(256, 32*runtime.GOMAXPROCS(0))

// Config configures an Engine. Zero fields take their defaults.
type Config struct {
	// Dir is a scripts directory on disk, watched by Watch. When empty, FS
	// is used.
	Dir string
	// FS holds the scripts when Dir is empty (the embedded defaults).
	FS fs.FS
	// ConfigFile, when set, is a YAML or JSON file of settings for the
	// scripts, which see it as the read-only table `config`. It is read at
	// every load, so a reload picks up its changes; a file that does not
	// parse fails the reload like a script error.
	ConfigFile string
	// Timeout bounds each call into a script (and the loading of a file).
	Timeout time.Duration
	// RouteTimeouts bounds the calls of the routes it names instead of
	// Timeout (a route that waits on a slow tool, say); each at most
	// MaxRouteTimeout.
	RouteTimeouts map[string]time.Duration
	// RouteConcurrency lets the routes it names handle up to N messages of
	// one connection at once (2 to MaxRouteConcurrency), each answering by
	// itself with its message's id; other routes handle a connection's
	// messages one at a time, in order.
	RouteConcurrency map[string]int
	// MaxStates bounds the Lua states of a generation.
	MaxStates int
	// MaxTimers bounds the pending timers of the scripts (timer.after,
	// timer.every); zero means DefaultMaxTimers.
	MaxTimers int
	// MaxTimersPerConn bounds the pending timers made by the calls of one
	// connection (on_start's and timers' own count only against
	// MaxTimers); zero means DefaultMaxTimersPerConn.
	MaxTimersPerConn int
	// ConnStateMaxBytes bounds each connection's conn.state, as JSON; zero
	// means DefaultConnStateMaxBytes.
	ConnStateMaxBytes int
	// MemoryLimit is the Go heap size (bytes) past which running handler
	// calls are stopped with handler_error; zero means DefaultMemoryLimit.
	MemoryLimit uint64
	// Store is the shared key-value store; nil means a new one of
	// StoreMaxBytes.
	Store *Store
	// StoreMaxBytes bounds the store made when Store is nil (keys, values
	// and a per-entry overhead); zero means DefaultStoreMaxBytes.
	StoreMaxBytes int64
	// KV, when set, replaces Store behind the `store` module (the cluster's
	// shared bucket).
	KV KV
	// Cluster, when set, extends the gateway module to every node and
	// enables the nats module.
	Cluster Cluster
	// Metrics receives metrics.inc, set and observe; nil drops them.
	Metrics ScriptMetrics
	// Mailboxes keeps the messages of gateway.deliver until their identity
	// takes them; nil turns gateway.deliver into an error.
	Mailboxes Mailboxes
	// Queues are the work queues of the queue module (nil: it raises).
	Queues Queues
	// History keeps the last publications of the topics it names, so a
	// subscriber can resume (gateway.subscribe with since); nil: none does.
	History History
	// Logger receives script logs and reload reports; nil means
	// slog.Default().
	Logger *slog.Logger
	// Audit, if set, receives scripts_reloaded and script_error events.
	Audit gateway.Auditor
	// Upstream configures the http and upstream modules; nil allows no
	// outbound destination and names no upstream.
	Upstream *UpstreamConfig
	// ObserveCall, if set, is told the duration and outcome ("ok",
	// "error" or "timeout") of every on_data call, for metrics.
	ObserveCall func(route string, d time.Duration, outcome string)
}

// Engine runs the Lua handlers: it implements gateway.Handler (and its
// connect and close hooks) by routing each data message to the on_data of
// the route's file, and reloads the files when they change.
type Engine struct {
	fsys             fs.FS
	dir              string
	timeout          time.Duration
	routeTimeouts    map[string]time.Duration // per-route bounds in place of timeout
	routeConcurrency map[string]int           // routes whose calls of one connection may overlap
	maxStates        int
	store            *Store
	log              *slog.Logger
	audit            gateway.Auditor
	observe          func(route string, d time.Duration, outcome string)
	upstreams        *upstreams
	kv               KV
	cluster          Cluster
	mailboxes        Mailboxes
	queues           Queues
	metrics          ScriptMetrics
	watch            *watchdog
	topics           *topics
	clock            timerClock
	maxTimers        int
	maxConnTimers    int
	maxState         int // bytes of one connection's conn.state, as JSON

	served  atomic.Pointer[gateway.Server] // set by OnServe: the server timers and on_start act on
	stopped bool                           // the server stopped serving; guarded by reloadMu

	configFile               string
	reloadsOK, reloadsFailed atomic.Uint64
	failure                  atomic.Pointer[reloadFailure] // the last reload's, while it failed

	current  atomic.Pointer[generation]
	reloadMu sync.Mutex // one reload at a time
	nextGen  uint64     // guarded by reloadMu
}

// New loads the scripts and returns the Engine serving them. It fails when
// they do not load.
func New(cfg Config) (*Engine, error) {
	e, err := newEngine(cfg)
	if err != nil {
		return nil, err
	}
	if err := e.Reload(); err != nil {
		return nil, err
	}
	return e, nil
}

// newEngine is New without the first load.
func newEngine(cfg Config) (*Engine, error) {
	e := &Engine{
		configFile:       cfg.ConfigFile,
		dir:              cfg.Dir,
		fsys:             cfg.FS,
		timeout:          cmp.Or(cfg.Timeout, DefaultTimeout),
		routeTimeouts:    maps.Clone(cfg.RouteTimeouts),
		routeConcurrency: maps.Clone(cfg.RouteConcurrency),
		maxStates:        cmp.Or(cfg.MaxStates, DefaultMaxStates),
		store:            cfg.Store,
		log:              cfg.Logger,
		audit:            cfg.Audit,
		observe:          cfg.ObserveCall,
		watch:            newWatchdog(cmp.Or(cfg.MemoryLimit, DefaultMemoryLimit)),
		clock:            realClock{},
		maxTimers:        cmp.Or(cfg.MaxTimers, DefaultMaxTimers),
		maxConnTimers:    cmp.Or(cfg.MaxTimersPerConn, DefaultMaxTimersPerConn),
		maxState:         cmp.Or(cfg.ConnStateMaxBytes, DefaultConnStateMaxBytes),
	}
	if e.maxState < 0 {
		return nil, fmt.Errorf("scripting: ConnStateMaxBytes %d: want zero (the default) or more", e.maxState)
	}
	if e.maxTimers < 0 {
		return nil, fmt.Errorf("scripting: MaxTimers %d: want zero (the default) or more", e.maxTimers)
	}
	if err := CheckRouteTimeouts(e.routeTimeouts); err != nil {
		return nil, err
	}
	if err := CheckRouteConcurrency(e.routeConcurrency); err != nil {
		return nil, err
	}
	if e.maxConnTimers < 0 {
		return nil, fmt.Errorf("scripting: MaxTimersPerConn %d: want zero (the default) or more", e.maxConnTimers)
	}
	if e.dir != "" {
		info, err := os.Stat(e.dir)
		if err != nil {
			return nil, fmt.Errorf("scripts directory: %w", err)
		}
		if !info.IsDir() {
			return nil, fmt.Errorf("scripts directory %s: not a directory", e.dir)
		}
		e.fsys = confinedFS{e.dir}
	}
	if e.fsys == nil {
		return nil, errors.New("scripting: no scripts: set Dir or FS")
	}
	ups, err := newUpstreams(cfg.Upstream)
	if err != nil {
		return nil, err
	}
	e.upstreams = ups
	if e.store == nil {
		e.store = NewStore(cfg.StoreMaxBytes)
	}
	e.kv, e.cluster, e.mailboxes, e.metrics = cfg.KV, cfg.Cluster, cfg.Mailboxes, cfg.Metrics
	e.queues = cfg.Queues
	if e.log == nil {
		e.log = slog.Default()
	}
	e.topics = newTopics(cfg.History, e.log)
	if e.cluster != nil {
		e.cluster.DeliverTopics(e.topics.publish)
	}
	if e.kv == nil {
		e.kv = localKV{e.store}
	}
	return e, nil
}

// Reload compiles the scripts into a new generation and swaps it in. If any
// file fails to compile or load, the current generation keeps serving and
// the error (naming the file and line) is returned and logged.
func (e *Engine) Reload() error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	e.nextGen++
	gen, err := compileGeneration(e, e.fsys, e.nextGen, e.maxStates)
	if err != nil {
		e.reloadsFailed.Add(1)
		e.nextGen--
		if errors.Is(err, errTimeout) {
			err = fmt.Errorf("loading the scripts took longer than %v: %w", e.timeout, err)
		}
		e.report(gateway.AuditEvent{Event: gateway.AuditScriptError, Reason: "reload failed: " + err.Error()})
		if e.current.Load() == nil {
			// Nothing to keep: the caller (New) fails, and says why.
			return fmt.Errorf("the scripts cannot be loaded, so the server cannot start: %w", err)
		}
		e.log.Error("Scripts not reloaded: keeping the previous version", "error", err)
		e.failure.Store(&reloadFailure{file: failingFile(err), text: err.Error()})
		return fmt.Errorf("reload scripts: %w", err)
	}
	e.failure.Store(nil)
	e.reloadsOK.Add(1)
	if old := e.current.Swap(gen); old != nil {
		old.retire()
	}
	switch {
	case e.stopped:
		gen.timers.stop()
	case e.served.Load() != nil:
		e.runStart(gen) // the new on_start sets up its timers
	}
	msg := "Scripts reloaded"
	if gen.number == 1 {
		msg = "Scripts loaded"
	}
	e.report(gateway.AuditEvent{Event: gateway.AuditScriptsReloaded, Reason: fmt.Sprintf("generation %d, %d handlers", gen.number, len(gen.routes))})
	e.log.Info(msg, "generation", gen.number, "handlers", len(gen.routes), "routes", gen.routeNames(), "modules", len(gen.libs))
	return nil
}

// Close stops the scripts' timers and releases the engine's outbound
// connections (named upstreams, idle HTTP connections). Handlers must not
// run after it.
func (e *Engine) Close() error {
	e.stopServing()
	e.upstreams.close()
	return nil
}

// OnServe runs default.lua's on_start, if any, once the server serves, and
// again after every reload: it is where scripts set up their timers. When
// ctx ends (the server is shutting down) every timer stops.
func (e *Engine) OnServe(ctx context.Context, srv *gateway.Server) {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	if e.stopped {
		return
	}
	e.served.Store(srv)
	e.runStart(e.current.Load())
	context.AfterFunc(ctx, e.stopServing)
}

// stopServing stops every timer for good.
func (e *Engine) stopServing() {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	e.stopped = true
	if gen := e.current.Load(); gen != nil {
		gen.timers.stop()
	}
}

// runStart runs gen's on_start on one of its states (whose timers then live
// there); a failure is logged.
func (e *Engine) runStart(gen *generation) {
	if !gen.hasOnStart || gen.retired.Load() {
		return
	}
	st, err := gen.get(0, e.timeout)
	if err != nil {
		e.log.Error("on_start did not run: no Lua state was free", "script", "default.lua", "generation", gen.number, "error", err)
		return
	}
	st.call = callInfo{script: "default.lua", background: true}
	st.ranStart = true
	err = st.run(st.routes[defaultRoute].onStart, 0)
	st.end()
	gen.put(0, st)
	if err != nil {
		e.log.Error("on_start failed", "script", "default.lua", "generation", gen.number, "error", timerErrorText(err))
		e.report(gateway.AuditEvent{Event: gateway.AuditScriptError, Route: defaultRoute, Reason: "default.lua: on_start failed"})
	}
}

// NodeDown runs default.lua's on_node_down(node, conn_ids), if any: another
// node of the cluster went down with these connections (cluster.OnNodeDown
// calls it on one node). A failure is logged.
func (e *Engine) NodeDown(node string, connIDs []string) {
	gen := e.current.Load()
	if !gen.hasOnNodeDown || gen.retired.Load() {
		return
	}
	st, err := gen.get(0, e.timeout)
	if err != nil {
		e.log.Error("on_node_down did not run: no Lua state was free", "script", "default.lua", "node", node, "error", err)
		return
	}
	st.call = callInfo{script: "default.lua", background: true}
	ids := st.L.CreateTable(len(connIDs), 0)
	for _, id := range connIDs {
		ids.Append(lua.LString(id))
	}
	err = st.run(st.routes[defaultRoute].onNodeDown, 0, lua.LString(node), ids)
	st.end()
	gen.put(0, st)
	if err != nil {
		e.log.Error("on_node_down failed", "script", "default.lua", "node", node, "error", timerErrorText(err))
		e.report(gateway.AuditEvent{Event: gateway.AuditScriptError, Route: defaultRoute, Reason: "default.lua: on_node_down failed"})
	}
}

// report sends an audit event if auditing is on.
func (e *Engine) report(ev gateway.AuditEvent) {
	if e.audit != nil {
		e.audit.Audit(ev)
	}
}

// reloadFailure is why the last reload failed, while it is the last one.
type reloadFailure struct {
	file string // the file that stopped it, if one did
	text string
}

// failingFile is the file that stopped a load, if one did.
func failingFile(err error) string {
	var fe *FileError
	if errors.As(err, &fe) {
		return fe.File
	}
	return ""
}

// Subscriptions lists the topics connection c is subscribed to on this
// node, sorted (for listings such as /connz).
func (e *Engine) Subscriptions(c *gateway.Conn) []string { return e.topics.of(c) }

// ReloadError is why the last reload failed ("" when it succeeded): the
// previous version of the scripts serves meanwhile.
func (e *Engine) ReloadError() string {
	if f := e.failure.Load(); f != nil {
		return f.text
	}
	return ""
}

// Reloads returns how many loads of the scripts succeeded (the first one
// included) and failed.
func (e *Engine) Reloads() (ok, failed uint64) { return e.reloadsOK.Load(), e.reloadsFailed.Load() }

// Generation returns the number of the generation serving now (1 after
// New, one more after each successful reload).
func (e *Engine) Generation() uint64 { return e.current.Load().number }

// Routes returns the routes served now, sorted.
func (e *Engine) Routes() []string { return e.current.Load().routeNames() }

// Store returns the engine's shared store.
func (e *Engine) Store() *Store { return e.store }

// connData is what the engine keeps per connection, Go-side so it survives
// pooling and reloads: conn.state, as JSON.
type connData struct {
	hint uint64 // which shard of the state pools this connection uses

	// mu guards what calls of a concurrent route (RouteConcurrency) share:
	// the rest of the fields.
	mu        sync.Mutex
	state     []byte
	refusedAt time.Time // when its last audited refusal was reported
	refusals  uint64    // audited refusals since (reported with the next)

	slots map[string]chan struct{} // per concurrent route: its calls in flight; reader goroutine only
	calls sync.WaitGroup           // calls of concurrent routes running: OnClose waits for them
}

// connHints spreads connections over the pools' shards.
var connHints atomic.Uint64

func dataOf(c *gateway.Conn) *connData {
	if d, ok := c.Value().(*connData); ok {
		return d
	}
	d := &connData{hint: connHints.Add(1)}
	c.SetValue(d)
	return d
}

// HandleData routes msg to the on_data of its route's file.
func (e *Engine) HandleData(ctx context.Context, c *gateway.Conn, msg *protocol.Message) error {
	route := cmp.Or(msg.Route, defaultRoute) // protocol.Decode has checked its syntax
	gen := e.current.Load()
	if _, ok := gen.routes[route]; !ok {
		if route == defaultRoute {
			return c.Reply(msg, msg.Payload) // no default.lua: the built-in echo
		}
		if f := e.failure.Load(); f != nil && f.file == route+".lua" {
			// Why it failed stays with the operator (the log, /readyz,
			// samgw check): a parse error quotes the file.
			return protocol.Errorf(protocol.CodeNoRoute, "no handler for route %q: %s failed to load, so the scripts were not reloaded (the server log says why)", route, f.file)
		}
		return protocol.Errorf(protocol.CodeNoRoute, "no handler for route %q", route)
	}
	if n := e.routeConcurrency[route]; n > 1 {
		e.handleConcurrently(gen, route, n, c, msg)
		return nil
	}
	return e.handle(gen, route, c, msg, false)
}

// handleConcurrently runs a call of a concurrent route on a goroutine of
// its own, at most n at a time per connection: the reader waits for a free
// slot (so a client cannot have more in flight), then goes on to its next
// frame. The call answers by itself, with the message's id.
func (e *Engine) handleConcurrently(gen *generation, route string, n int, c *gateway.Conn, msg *protocol.Message) {
	d := dataOf(c)
	slots := d.slots[route]
	if slots == nil {
		if d.slots == nil {
			d.slots = make(map[string]chan struct{})
		}
		slots = make(chan struct{}, n)
		d.slots[route] = slots
	}
	slots <- struct{}{}
	m := msg.Clone() // the reader reuses msg for its next frame
	d.calls.Add(1)
	go func() {
		defer d.calls.Done()
		defer func() { <-slots }()
		if err := e.handle(gen, route, c, m, true); err != nil {
			c.ReplyErrorNow(m.ID, err) //nolint:errcheck // the connection is gone
		}
	}()
}

// handle runs the route's on_data for msg; now: it answers from a goroutine
// of its own (a concurrent route).
func (e *Engine) handle(gen *generation, route string, c *gateway.Conn, msg *protocol.Message, now bool) error {
	var start time.Time
	if e.observe != nil {
		start = time.Now()
	}
	hint := dataOf(c).hint
	timeout := e.timeoutOf(route)
	st, err := gen.get(hint, timeout)
	if err == nil {
		err = st.callData(route, c, msg, timeout, now)
		gen.put(hint, st)
	}
	if e.observe != nil {
		outcome := "ok"
		switch {
		case errors.Is(err, errTimeout):
			outcome = "timeout"
		case err != nil:
			outcome = "error"
		}
		e.observe(route, time.Since(start), outcome)
	}
	if err != nil {
		return e.callFailed(gen, route, c, msg.ID, err)
	}
	return nil
}

// timeoutOf is how long a call of route may run: its RouteTimeouts entry,
// else Timeout.
func (e *Engine) timeoutOf(route string) time.Duration {
	if d, ok := e.routeTimeouts[route]; ok {
		return d
	}
	return e.timeout
}

// MaxRouteTimeout is the longest a route's calls may be given.
const MaxRouteTimeout = 10 * time.Minute

// ErrInvalidRouteTimeout is wrapped by the error of a RouteTimeouts entry
// that names no valid route or gives no valid duration.
var ErrInvalidRouteTimeout = errors.New("scripting: invalid route timeout")

// CheckRouteTimeouts validates RouteTimeouts, in route order (New does; a
// command line can check its flags with it first).
func CheckRouteTimeouts(m map[string]time.Duration) error {
	routes := make([]string, 0, len(m))
	for r := range m {
		routes = append(routes, r)
	}
	slices.Sort(routes)
	for _, r := range routes {
		if !validName.MatchString(r) || len(r) > 128 {
			return fmt.Errorf("%w: %q is not a route name", ErrInvalidRouteTimeout, r)
		}
		if d := m[r]; d <= 0 || d > MaxRouteTimeout {
			return fmt.Errorf("%w: route %q: %v: want more than 0 and at most %v", ErrInvalidRouteTimeout, r, d, MaxRouteTimeout)
		}
	}
	return nil
}

// MaxRouteConcurrency bounds how many calls of one connection a
// concurrent route may run at once.
const MaxRouteConcurrency = 256

// ErrInvalidRouteConcurrency is wrapped by the error of a RouteConcurrency
// entry that names no valid route or gives no valid count.
var ErrInvalidRouteConcurrency = errors.New("scripting: invalid route concurrency")

// CheckRouteConcurrency validates RouteConcurrency, in route order.
func CheckRouteConcurrency(m map[string]int) error {
	routes := slices.Sorted(maps.Keys(m))
	for _, r := range routes {
		if !validName.MatchString(r) || len(r) > 128 {
			return fmt.Errorf("%w: %q is not a route name", ErrInvalidRouteConcurrency, r)
		}
		if n := m[r]; n < 1 || n > MaxRouteConcurrency {
			return fmt.Errorf("%w: route %q: %d: want 1 to %d", ErrInvalidRouteConcurrency, r, n, MaxRouteConcurrency)
		}
	}
	return nil
}

// callFailed turns a failed call into the error frame the peer gets, and
// logs it.
func (e *Engine) callFailed(gen *generation, route string, c *gateway.Conn, id string, err error) error {
	script := route + ".lua"
	// Every line names the script, the connection, the message and its
	// route, so one failing request can be found in the log.
	attrs := []any{"script", script, "generation", gen.number, "conn", c.ID(), "id", id, "route", route}
	var se *scriptError
	switch {
	case errors.Is(err, errTimeout):
		e.report(gateway.AuditEvent{Event: gateway.AuditScriptError, Conn: c.ID(), Route: route, Reason: script + ": timed out"})
		timeout := e.timeoutOf(route)
		e.log.Warn("Handler timed out", append(attrs, "timeout", timeout.String())...)
		return protocol.Errorf(protocol.CodeHandlerTimeout, "handler did not finish within %v", timeout)
	case errors.As(err, &se) && se.code != "":
		// The application's own answer (error{code = …}): a refusal, not a
		// failure of the handler.
		text := gen.redacted(se.text)
		e.log.Info("Handler refused", append(attrs, "code", string(se.code), "message", text)...)
		if se.audit {
			e.auditRefusal(c, route, string(se.code)+": "+text)
		}
		return protocol.Errorf(se.code, "%s", text)
	case errors.As(err, &se):
		text := gen.redacted(se.text)
		e.report(gateway.AuditEvent{Event: gateway.AuditScriptError, Conn: c.ID(), Route: route, Reason: script + ": raised an error"}) // not the text: it may quote a payload
		e.log.Warn("Handler failed", append(attrs, "error", text)...)
		return protocol.Errorf(protocol.CodeHandlerError, "%s", text)
	}
	var pe *protocol.Error
	if errors.As(err, &pe) {
		pe = &protocol.Error{Code: pe.Code, Message: gen.redacted(pe.Message)}
		e.log.Warn("Handler failed", append(attrs, "error", pe)...)
		return pe
	}
	e.log.Error("Handler failed", append(attrs, "error", err)...)
	return protocol.Errorf(protocol.CodeHandlerError, "handler failed")
}

// refusalAuditInterval is how often one connection's audited refusals are
// written: a client that makes a handler refuse in a loop is one event a
// second (with the count), not one audit line per frame.
const refusalAuditInterval = time.Second

// auditRefusal reports a refusal the script marked audit = true. It runs
// on c's reader goroutine, as does everything that touches c's connData.
func (e *Engine) auditRefusal(c *gateway.Conn, route, reason string) {
	d := dataOf(c)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.refusals++
	if now := time.Now(); now.Sub(d.refusedAt) >= refusalAuditInterval {
		e.report(gateway.AuditEvent{Event: gateway.AuditHandlerRefused, Conn: c.ID(), Remote: c.RemoteAddr(), Identity: c.Identity(),
			Route: cmp.Or(route, defaultRoute), Reason: reason, Count: d.refusals})
		d.refusedAt, d.refusals = now, 0
	}
}

// OnConnect runs default.lua's on_connect, if any. An error raised in it,
// or a false result, rejects the connection; a second result is the reason.
func (e *Engine) OnConnect(_ context.Context, c *gateway.Conn) error {
	if e.cluster != nil {
		e.cluster.Announce()
	}
	gen := e.current.Load()
	if !gen.hasOnConnect {
		return nil
	}
	st, err := gen.get(dataOf(c).hint, e.timeout)
	if err != nil {
		return e.callFailed(gen, defaultRoute, c, "", err)
	}
	reason, err := st.callConnect(c)
	gen.put(dataOf(c).hint, st)
	if err != nil {
		return e.callFailed(gen, defaultRoute, c, "", err)
	}
	if reason != "" {
		return protocol.Errorf(protocol.CodeHandlerError, "%s", reason)
	}
	return nil
}

// OnClose runs default.lua's on_close, if any.
func (e *Engine) OnClose(c *gateway.Conn, reason string) {
	e.topics.drop(c)
	if d, ok := c.Value().(*connData); ok {
		d.calls.Wait()      // its concurrent calls end first: on_close sees their conn.state
		if d.refusals > 0 { // the ones the last event did not count
			e.report(gateway.AuditEvent{Event: gateway.AuditHandlerRefused, Conn: c.ID(), Remote: c.RemoteAddr(), Identity: c.Identity(),
				Reason: "refusals since the last event", Count: d.refusals})
		}
	}
	if e.cluster != nil {
		e.cluster.Announce()
	}
	gen := e.current.Load()
	if !gen.hasOnClose {
		return
	}
	st, err := gen.get(dataOf(c).hint, e.timeout)
	if err != nil {
		e.callFailed(gen, defaultRoute, c, "", err) //nolint:errcheck // logged
		return
	}
	err = st.callClose(c, reason)
	gen.put(dataOf(c).hint, st)
	if err != nil {
		e.callFailed(gen, defaultRoute, c, "", err) //nolint:errcheck // logged
	}
}

// callData runs the route's on_data(msg, conn) and sends its result.
func (st *luaState) callData(route string, c *gateway.Conn, msg *protocol.Message, timeout time.Duration, async bool) error {
	funcs := st.routes[route]
	L := st.L
	payload := lua.LValue(lua.LNil)
	if msg.Payload != nil {
		var err error
		if payload, err = st.conv.Decode(msg.Payload); err != nil {
			return protocol.Errorf(protocol.CodeInvalidMessage, "payload: %s", err)
		}
	}
	m := st.newMsg(msg, payload)
	st.begin(c, funcs.script)
	st.call.timeout, st.call.message = timeout, true
	defer st.end()
	reply := c.Reply
	if async {
		reply = c.ReplyNow
	}
	var err error
	if funcs.dataConn {
		err = st.run(funcs.onData, 1, m, st.connObject(c))
	} else {
		err = st.run(funcs.onData, 1, m)
	}
	if err != nil {
		var se *scriptError
		if code := st.call.upstream; code != "" && errors.As(err, &se) && se.code == "" {
			// The script let an upstream failure escape: say so, briefly.
			return protocol.Errorf(code, "%s", truncate(se.text, 200))
		}
		return err
	}
	ret := L.Get(-1)
	L.Pop(1)
	if err := st.saveState(); err != nil {
		return err
	}
	if ret == lua.LNil {
		return nil
	}
	out, err := st.conv.Encode(st.buf[:0], ret)
	st.buf = out[:0]
	if err != nil {
		return &scriptError{text: "on_data returned a value that is not JSON: " + err.Error()}
	}
	return reply(msg, out)
}

// callConnect runs on_connect(conn); a non-empty reason rejects.
func (st *luaState) callConnect(c *gateway.Conn) (reason string, err error) {
	funcs := st.routes[defaultRoute]
	st.begin(c, funcs.script)
	defer st.end()
	if err := st.run(funcs.onConnect, 2, st.connObject(c)); err != nil {
		return "", err
	}
	ok, why := st.L.Get(-2), st.L.Get(-1)
	st.L.Pop(2)
	if err := st.saveState(); err != nil {
		return "", err
	}
	if ok == lua.LFalse {
		if s, isString := why.(lua.LString); isString && s != "" {
			return string(s), nil
		}
		return "rejected by on_connect", nil
	}
	return "", nil
}

// callClose runs on_close(conn, reason).
func (st *luaState) callClose(c *gateway.Conn, reason string) error {
	funcs := st.routes[defaultRoute]
	st.begin(c, funcs.script)
	defer st.end()
	return st.run(funcs.onClose, 0, st.connObject(c), lua.LString(reason))
}

// begin sets up a call for connection c.
func (st *luaState) begin(c *gateway.Conn, script string) {
	st.call = callInfo{conn: c, peer: c, script: script, data: dataOf(c)}
}

// connObject is the conn object of a call for c: a userdata whose fields
// (id, remote, identity, state) are read through the state's conn
// metatable, cheaper to make per call than a table.
func (st *luaState) connObject(c *gateway.Conn) *lua.LUserData {
	ud := st.L.NewUserData()
	ud.Value = c
	ud.Metatable = st.connMeta
	return ud
}

func (st *luaState) end() { st.call = callInfo{} }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// SubscriptionCount is how many topic subscriptions this node's
// connections hold (for the status page).
func (e *Engine) SubscriptionCount() int { return e.topics.count() }
