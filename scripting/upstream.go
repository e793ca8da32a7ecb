package scripting

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/protocol"
)

// DefaultUpstreamMaxBody caps the response bodies http.request reads.
const DefaultUpstreamMaxBody = 4 << 20

// UpstreamConfig lets handlers call out: HTTP to allowed destinations, and
// named samgw-protocol services over pooled connections.
type UpstreamConfig struct {
	// Allow lists the destinations http.request may reach (see Allow).
	Allow []string
	// MaxBody caps response bodies; zero means DefaultUpstreamMaxBody.
	MaxBody int64
	// Named are the upstreams of upstream.request, by name: each a
	// gateway.Client (reconnect, backoff, id correlation, many requests in
	// flight on one connection). Its Addr, TLS and Token are the operator's.
	Named map[string]gateway.ClientConfig
}

// upstreams is the engine's outbound side.
type upstreams struct {
	http    *http.Client
	maxBody int64
	named   map[string]*namedUpstream // fixed after newUpstreams
}

// namedUpstream is one named upstream. Its own mutex guards its client, so
// a slow connection to one upstream never holds up calls to the others
// (upstream.all calls them at once).
type namedUpstream struct {
	cfg    gateway.ClientConfig
	mu     sync.Mutex
	client *gateway.Client // nil until first used, replaced if it stopped
}

func newUpstreams(cfg *UpstreamConfig) (*upstreams, error) {
	if cfg == nil {
		cfg = &UpstreamConfig{}
	}
	allow, err := ParseAllow(cfg.Allow)
	if err != nil {
		return nil, err
	}
	u := &upstreams{http: newHTTPClient(allow), maxBody: cmp.Or(cfg.MaxBody, DefaultUpstreamMaxBody), named: make(map[string]*namedUpstream)}
	for name, c := range cfg.Named {
		if !validName.MatchString(name) {
			return nil, fmt.Errorf("upstream name %q: want [A-Za-z0-9_.-]+", name)
		}
		u.named[name] = &namedUpstream{cfg: c}
	}
	return u, nil
}

// client returns the named upstream's connected client, connecting (again)
// when needed.
func (u *upstreams) client(ctx context.Context, name string) (*gateway.Client, error) {
	n, ok := u.named[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrNoUpstream, name)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.client != nil {
		select {
		case <-n.client.Done():
		default:
			return n.client, nil
		}
	}
	c, err := gateway.NewClient(n.cfg)
	if err != nil {
		return nil, err
	}
	if err := c.Connect(ctx); err != nil {
		return nil, err
	}
	n.client = c
	return c, nil
}

// close disconnects the named upstreams and drops idle HTTP connections.
func (u *upstreams) close() {
	for _, n := range u.named {
		n.mu.Lock()
		if n.client != nil {
			n.client.Disconnect("gateway stopping")
			n.client = nil
		}
		n.mu.Unlock()
	}
	u.http.CloseIdleConnections()
}

// callContext is the context of an outbound call: the handler's deadline,
// shortened by the script's timeout_ms if it gave one.
func (st *luaState) callContext(timeoutMs lua.LValue) (context.Context, context.CancelFunc) {
	if ms, ok := timeoutMs.(lua.LNumber); ok && ms > 0 {
		return context.WithTimeout(st.deadline, time.Duration(float64(ms)*float64(time.Millisecond)))
	}
	return context.WithCancel(st.deadline)
}

// outboundFailure returns nil, short reason to the script, and remembers
// the failure so that an error the script then raises is reported as
// upstream_error or upstream_timeout.
func (st *luaState) outboundFailure(ctx context.Context, err error) int {
	st.L.Push(lua.LNil)
	st.L.Push(lua.LString(st.outboundReason(ctx, err)))
	return 2
}

// outboundReason words an outbound call's failure for the script and
// remembers its kind (see outboundFailure).
func (st *luaState) outboundReason(ctx context.Context, err error) string {
	reason := "upstream error: " + errorCause(err)
	switch {
	case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded):
		reason = "timeout"
	case errors.Is(err, ErrDenied):
		reason = "destination not allowed"
	case errors.Is(err, errBodyTooLarge):
		reason = fmt.Sprintf("response body larger than %d bytes", st.gen.engine.upstreams.maxBody)
	case errors.Is(err, gateway.ErrConnectionLost), errors.Is(err, gateway.ErrClientClosed):
		reason = "upstream connection lost"
	default:
		var pe *protocol.Error
		if errors.As(err, &pe) {
			reason = "upstream answered " + string(pe.Code) + ": " + pe.Message
		}
	}
	if reason == "timeout" {
		st.call.upstream = protocol.CodeUpstreamTimeout
	} else {
		st.call.upstream = protocol.CodeUpstreamError
	}
	st.gen.engine.log.Debug("Upstream call failed", "script", st.call.script, "error", st.gen.redacted(withoutURLSecrets(err)))
	return reason
}

var errBodyTooLarge = errors.New("response body too large")

// withoutURLSecrets is err's text with the URL of a *url.Error cut to its
// scheme, host and path: its query and user information (where keys go)
// never reach the log.
func withoutURLSecrets(err error) string {
	var ue *neturl.Error
	if !errors.As(err, &ue) {
		return err.Error()
	}
	where := "?"
	if u, perr := neturl.Parse(ue.URL); perr == nil {
		where = (&neturl.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	}
	return ue.Op + " " + where + ": " + ue.Err.Error()
}

// ErrNoUpstream is the error for an upstream name --upstream did not give.
var ErrNoUpstream = errors.New("no upstream named")

// errUnsupportedScheme refuses URLs other than http and https.
var errUnsupportedScheme = errors.New("unsupported URL scheme: want http or https")

// errorCause is the short cause of an outbound failure a script may see:
// what went wrong, never the addresses or internals around it.
func errorCause(err error) string {
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.Is(err, errUnsupportedScheme):
		return errUnsupportedScheme.Error()
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "no route to the host"
	case errors.As(err, &dnsErr):
		if dnsErr.IsNotFound {
			return "host not found"
		}
		return "DNS lookup failed"
	case errors.As(err, &certErr):
		return "TLS certificate not trusted"
	case errors.As(err, &recordErr):
		return "TLS expected, the peer does not speak it"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "the connection closed early"
	}
	return "request failed"
}

// registerUpstreamAPI installs http and upstream.
func (st *luaState) registerUpstreamAPI() {
	L := st.L
	L.SetGlobal("http", st.httpModule(st.httpRequest))
	L.SetGlobal("upstream", st.module(map[string]lua.LGFunction{"request": st.upstreamRequest, "all": st.upstreamAll}))
}

// httpModule is the http module over request, which does http.request:
// get and post are request with the method and body filled in.
func (st *luaState) httpModule(request func(opts *lua.LTable) int) *lua.LTable {
	return st.module(map[string]lua.LGFunction{
		"request": func(L *lua.LState) int { return request(L.CheckTable(1)) },
		"get": func(L *lua.LState) int {
			opts := L.OptTable(2, L.NewTable())
			opts.RawSetString("url", L.Get(1))
			opts.RawSetString("method", lua.LString("GET"))
			return request(opts)
		},
		"post": func(L *lua.LState) int {
			opts := L.OptTable(3, L.NewTable())
			opts.RawSetString("url", L.Get(1))
			opts.RawSetString("body", L.Get(2))
			opts.RawSetString("method", lua.LString("POST"))
			return request(opts)
		},
	})
}

// http.request{method=, url=, headers=, body=, timeout_ms=} →
// {status=, headers=, body=} or nil, err
func (st *luaState) httpRequest(opts *lua.LTable) int {
	L := st.L
	url, ok := opts.RawGetString("url").(lua.LString)
	if !ok || url == "" {
		L.RaiseError("http.request: url is required")
	}
	method := strings.ToUpper(cmp.Or(lua.LVAsString(opts.RawGetString("method")), "GET"))
	var body io.Reader
	contentType := ""
	switch b := opts.RawGetString("body").(type) {
	case lua.LString:
		body = strings.NewReader(string(b))
	case *lua.LTable, *lua.LUserData, lua.LNumber, lua.LBool:
		out, err := st.conv.Encode(nil, b)
		if err != nil {
			L.RaiseError("http.request: body: %s", err)
		}
		body, contentType = strings.NewReader(string(out)), "application/json"
	}
	ctx, cancel := st.callContext(opts.RawGetString("timeout_ms"))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, string(url), body)
	if err == nil && req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		err = fmt.Errorf("%w (%q)", errUnsupportedScheme, req.URL.Scheme)
	}
	if err != nil {
		// Never the URL itself: a handler builds it from settings, and its
		// query often holds a key.
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = fmt.Errorf("invalid URL: %w", ue.Err)
		}
		L.RaiseError("http.request: %s", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if h, ok := opts.RawGetString("headers").(*lua.LTable); ok {
		h.ForEach(func(k, v lua.LValue) { req.Header.Set(k.String(), v.String()) })
	}
	u := st.gen.engine.upstreams
	resp, err := u.http.Do(req)
	if err != nil {
		return st.outboundFailure(ctx, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, u.maxBody+1))
	if err == nil && int64(len(data)) > u.maxBody {
		err = errBodyTooLarge
	}
	if err != nil {
		return st.outboundFailure(ctx, err)
	}
	res := L.CreateTable(0, 3)
	res.RawSetString("status", lua.LNumber(resp.StatusCode))
	headers := L.CreateTable(0, len(resp.Header))
	for k, v := range resp.Header {
		headers.RawSetString(strings.ToLower(k), lua.LString(strings.Join(v, ", ")))
	}
	res.RawSetString("headers", headers)
	res.RawSetString("body", lua.LString(data))
	L.Push(res)
	return 1
}

// upstream.request(name, payload[, route][, timeout_ms]) → payload or nil, err
func (st *luaState) upstreamRequest(L *lua.LState) int {
	name := L.CheckString(1)
	payload := st.payloadArg(2)
	route, timeoutArg := "", lua.LValue(lua.LNil)
	switch v := L.Get(3).(type) {
	case lua.LString:
		route = string(v)
		timeoutArg = L.Get(4)
	case lua.LNumber:
		timeoutArg = v
	}
	ctx, cancel := st.callContext(timeoutArg)
	defer cancel()
	client, err := st.gen.engine.upstreams.client(ctx, name)
	if err != nil {
		if errors.Is(err, ErrNoUpstream) {
			L.RaiseError("upstream.request: %s", err)
		}
		return st.outboundFailure(ctx, err)
	}
	reply, err := client.RequestMessage(ctx, protocol.Message{Type: protocol.TypeData, Route: route, Payload: payload})
	if err != nil {
		return st.outboundFailure(ctx, err)
	}
	if reply.Payload == nil {
		L.Push(lua.LNil)
		return 1
	}
	v, err := st.conv.Decode(reply.Payload)
	if err != nil {
		return st.outboundFailure(ctx, err)
	}
	L.Push(v)
	return 1
}

// MaxParallelCalls bounds the calls of one upstream.all.
const MaxParallelCalls = 64

// parallelCall is one call of upstream.all.
type parallelCall struct {
	name, route string
	payload     []byte
	timeout     lua.LValue
	ctx         context.Context
	cancel      context.CancelFunc
	reply       *protocol.Message
	err         error
}

// upstream.all{ {name, payload[, route][, timeout_ms]}, … } → an array, in
// the same order, of {reply = value} or {error = reason}. The calls run at
// once, so the slowest bounds the wait, not their sum; each has its own
// timeout, within the handler's.
func (st *luaState) upstreamAll(L *lua.LState) int {
	specs := L.CheckTable(1)
	n := specs.Len()
	if n > MaxParallelCalls {
		L.ArgError(1, fmt.Sprintf("at most %d calls", MaxParallelCalls))
	}
	calls := make([]parallelCall, n)
	for i := range calls {
		spec, ok := specs.RawGetInt(i + 1).(*lua.LTable)
		if !ok {
			L.ArgError(1, fmt.Sprintf("call %d: a table {name, payload[, route][, timeout_ms]} expected", i+1))
		}
		c := &calls[i]
		name, ok := spec.RawGetInt(1).(lua.LString)
		if !ok {
			L.ArgError(1, fmt.Sprintf("call %d: the upstream's name expected", i+1))
		}
		c.name = string(name)
		payload, err := st.conv.Encode(nil, spec.RawGetInt(2))
		if err != nil {
			L.ArgError(1, fmt.Sprintf("call %d: payload: %v", i+1, err))
		}
		c.payload = payload
		timeoutArg := spec.RawGetInt(3)
		if route, ok := timeoutArg.(lua.LString); ok {
			if !protocol.ValidRoute(string(route)) {
				L.ArgError(1, fmt.Sprintf("call %d: invalid route name", i+1))
			}
			c.route, timeoutArg = string(route), spec.RawGetInt(4)
		}
		c.timeout = timeoutArg
	}
	var wg sync.WaitGroup
	for i := range calls { // every call checked: no argument error from here on
		c := &calls[i]
		c.ctx, c.cancel = st.callContext(c.timeout)
		wg.Add(1)
		go func() { // Go only: the Lua state stays on this goroutine
			defer wg.Done()
			client, err := st.gen.engine.upstreams.client(c.ctx, c.name)
			if err != nil {
				c.err = err
				return
			}
			c.reply, c.err = client.RequestMessage(c.ctx, protocol.Message{Type: protocol.TypeData, Route: c.route, Payload: c.payload})
		}()
	}
	wg.Wait()
	results := L.CreateTable(n, 0)
	for i := range calls {
		c := &calls[i]
		r := L.NewTable()
		switch {
		case errors.Is(c.err, ErrNoUpstream):
			r.RawSetString("error", lua.LString(c.err.Error()))
		case c.err != nil:
			r.RawSetString("error", lua.LString(st.outboundReason(c.ctx, c.err)))
		case c.reply.Payload != nil:
			v, err := st.conv.Decode(c.reply.Payload)
			if err != nil {
				r.RawSetString("error", lua.LString(st.outboundReason(c.ctx, err)))
			} else {
				r.RawSetString("reply", v)
			}
		}
		c.cancel()
		results.RawSetInt(i+1, r)
	}
	L.Push(results)
	return 1
}
