package scripting

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/secureagentmessaging/samgw/access"
	"github.com/secureagentmessaging/samgw/delivery"
	"github.com/secureagentmessaging/samgw/gateway"
)

// Queues are the work queues behind the queue module (delivery.Queues).
type Queues interface {
	Push(ctx context.Context, name string, payload []byte, opts delivery.PushOptions) (string, error)
	Join(ctx context.Context, w gateway.JobWorker, name string, prefetch int) error
	LeaveQueue(w gateway.JobWorker, name string) bool
	Stats(ctx context.Context, name string) (delivery.QueueStats, error)
}

// ErrNoQueues is raised by the queue module when the engine has none.
var ErrNoQueues = errors.New("work queues are off on this server")

func (st *luaState) registerQueueAPI() {
	st.L.SetGlobal("queue", st.module(map[string]lua.LGFunction{
		"push":  st.apiQueuePush,
		"join":  st.apiQueueJoin,
		"leave": st.apiQueueLeave,
		"stats": st.apiQueueStats,
	}))
}

// queues returns the engine's queues or raises.
func (st *luaState) queues(what string) Queues {
	q := st.gen.engine.queues
	if q == nil {
		st.L.RaiseError("%s: %s", what, ErrNoQueues)
	}
	return q
}

// queueArg reads a queue name at argument n.
func (st *luaState) queueArg(n int) string {
	name := st.L.CheckString(n)
	if !delivery.ValidQueue(name) {
		st.L.ArgError(n, fmt.Sprintf("invalid queue name %q: want dot-separated words of [A-Za-z0-9_-], at most %d bytes", truncate(name, 64), delivery.MaxQueueName))
	}
	return name
}

// msOption reads a duration in milliseconds from t[key], within (0, max].
func (st *luaState) msOption(t *lua.LTable, n int, key string, limit time.Duration) time.Duration {
	v := t.RawGetString(key)
	if v == lua.LNil {
		return 0
	}
	ms, ok := v.(lua.LNumber)
	if !ok || ms <= 0 || math.IsNaN(float64(ms)) || time.Duration(ms)*time.Millisecond > limit {
		st.L.ArgError(n, fmt.Sprintf("%s must be a positive number of milliseconds, at most %v", key, limit))
	}
	return time.Duration(ms) * time.Millisecond
}

// pushOptions reads queue.push's optional table.
func (st *luaState) pushOptions(n int) delivery.PushOptions {
	L := st.L
	var opts delivery.PushOptions
	if L.Get(n) == lua.LNil {
		return opts
	}
	t := L.CheckTable(n)
	if v := t.RawGetString("id"); v != lua.LNil {
		s, ok := v.(lua.LString)
		if !ok || len(s) == 0 || len(s) > 256 {
			L.ArgError(n, "id must be a string of 1 to 256 bytes")
		}
		opts.ID = string(s)
	}
	opts.Lease = st.msOption(t, n, "lease_ms", delivery.MaxLease)
	opts.Delay = st.msOption(t, n, "delay_ms", delivery.MaxDelay)
	if v := t.RawGetString("max_deliveries"); v != lua.LNil {
		k, ok := v.(lua.LNumber)
		if !ok || k < 1 || k > delivery.MaxDeliveriesLimit || k != lua.LNumber(math.Trunc(float64(k))) {
			L.ArgError(n, fmt.Sprintf("max_deliveries must be an integer from 1 to %d", delivery.MaxDeliveriesLimit))
		}
		opts.MaxDeliveries = int(k)
	}
	return opts
}

// storeContext gives a store call most of what is left of the call, so a
// store that does not answer fails it with cluster_unavailable, not a
// timeout.
func (st *luaState) storeContext() (context.Context, context.CancelFunc) {
	ctx := context.Context(st.deadline)
	if dl, ok := st.deadline.Deadline(); ok {
		return context.WithDeadline(ctx, dl.Add(-time.Until(dl)/8))
	}
	return ctx, func() {}
}

// queueFailure raises the error of a failed queue call.
func (st *luaState) queueFailure(what string, err error) {
	if errors.Is(err, delivery.ErrUnavailable) {
		st.clusterFailure(what)
	}
	st.L.RaiseError("%s: %s", what, err)
}

// queue.push(name, payload[, {id, lease_ms, max_deliveries, delay_ms}]) → job id
func (st *luaState) apiQueuePush(L *lua.LState) int {
	name := st.queueArg(1)
	payload := st.payloadArg(2)
	opts := st.pushOptions(3)
	st.check("queue.push", st.actor(), access.KindPush, name)
	q := st.queues("queue.push")
	ctx, cancel := st.storeContext()
	defer cancel()
	id, err := q.Push(ctx, name, payload, opts)
	if err != nil {
		st.queueFailure("queue.push", err)
	}
	L.Push(lua.LString(id))
	return 1
}

// queue.join(conn_id, name[, {prefetch = n}]) → false when the connection
// is not on this node
func (st *luaState) apiQueueJoin(L *lua.LState) int {
	id, name := L.CheckString(1), st.queueArg(2)
	prefetch := 0
	if L.Get(3) != lua.LNil {
		if v := L.CheckTable(3).RawGetString("prefetch"); v != lua.LNil {
			k, ok := v.(lua.LNumber)
			if !ok || k < 1 || k > delivery.MaxPrefetch || k != lua.LNumber(math.Trunc(float64(k))) {
				L.ArgError(3, fmt.Sprintf("prefetch must be an integer from 1 to %d", delivery.MaxPrefetch))
			}
			prefetch = int(k)
		}
	}
	q := st.queues("queue.join")
	c := st.server().Conn(id)
	if c == nil {
		L.Push(lua.LFalse)
		return 1
	}
	if st.actor() != nil {
		st.check("queue.join", c, access.KindJoin, name) // the worker's roles
	}
	ctx, cancel := st.storeContext()
	defer cancel()
	if err := q.Join(ctx, c, name, prefetch); err != nil {
		st.queueFailure("queue.join", err)
	}
	L.Push(lua.LTrue)
	return 1
}

// queue.leave(conn_id, name) → whether it was a worker of the queue
func (st *luaState) apiQueueLeave(L *lua.LState) int {
	id, name := L.CheckString(1), st.queueArg(2)
	q := st.queues("queue.leave")
	c := st.server().Conn(id)
	L.Push(lua.LBool(c != nil && q.LeaveQueue(c, name)))
	return 1
}

// queue.stats(name) → {pending = n, in_flight = n, dead = n}
func (st *luaState) apiQueueStats(L *lua.LState) int {
	name := st.queueArg(1)
	q := st.queues("queue.stats")
	ctx, cancel := st.storeContext()
	defer cancel()
	s, err := q.Stats(ctx, name)
	if err != nil {
		st.queueFailure("queue.stats", err)
	}
	L.Push(queueStatsTable(L, s))
	return 1
}

func queueStatsTable(L *lua.LState, s delivery.QueueStats) *lua.LTable {
	t := L.CreateTable(0, 3)
	t.RawSetString("pending", lua.LNumber(s.Pending))
	t.RawSetString("in_flight", lua.LNumber(s.InFlight))
	t.RawSetString("dead", lua.LNumber(s.Dead))
	return t
}

// JobEvent runs default.lua's on_job(event, job), if any: a job was acked,
// nacked, expired or moved to its dead queue (delivery.QueueConfig.OnEvent
// calls it). It runs as the server, like a timer; a failure is logged.
func (e *Engine) JobEvent(ev delivery.JobEvent) {
	gen := e.current.Load()
	if !gen.hasOnJob || gen.retired.Load() {
		return
	}
	st, err := gen.get(0, e.timeout)
	if err != nil {
		e.log.Error("on_job did not run: no Lua state was free", "script", "default.lua", "job", ev.Job, "error", err)
		return
	}
	st.call = callInfo{script: "default.lua", background: true}
	job := st.L.CreateTable(0, 4)
	job.RawSetString("queue", lua.LString(ev.Queue))
	job.RawSetString("id", lua.LString(ev.Job))
	if ev.Worker != "" {
		job.RawSetString("worker", lua.LString(ev.Worker))
	}
	job.RawSetString("deliveries", lua.LNumber(ev.Deliveries))
	err = st.run(st.routes[defaultRoute].onJob, 0, lua.LString(ev.Event), job)
	st.end()
	gen.put(0, st)
	if err != nil {
		e.log.Error("on_job failed", "script", "default.lua", "job", ev.Job, "event", ev.Event, "error", timerErrorText(err))
		e.report(gateway.AuditEvent{Event: gateway.AuditScriptError, Route: defaultRoute, Reason: "default.lua: on_job failed"})
	}
}
