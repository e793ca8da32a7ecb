package gateway

import (
	"bufio"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/secureagentmessaging/samgw/protocol"
)

// Audit event names.
const (
	AuditConnect         = "connect"
	AuditAuthOK          = "auth_ok"
	AuditAuthFailed      = "auth_failed"
	AuditForbidden       = "forbidden"
	AuditBadSignature    = "bad_signature"
	AuditReplay          = "replay"
	AuditRateLimited     = "rate_limited"
	AuditDisconnect      = "disconnect"
	AuditSlowConsumer    = "slow_consumer"
	AuditScriptsReloaded = "scripts_reloaded"
	AuditScriptError     = "script_error"
	// AuditHandlerRefused: a handler refused a message with
	// error{code = …, audit = true}, a security decision of the
	// application's (at most one event a second per connection, with the
	// count of the refusals it stands for).
	AuditHandlerRefused = "handler_refused"
)

// AuditEvent is one security-relevant event. It never carries a token, a
// key or a payload, and the log writes its fields truncated (see
// maxAuditField), so a peer cannot turn its input into disk I/O.
type AuditEvent struct {
	Time     time.Time
	Event    string
	Conn     string
	Remote   string
	Identity string
	Route    string
	Reason   string
	// Count, when not zero, is how many occurrences the event stands for
	// (rate_limited is reported once a second per connection).
	Count uint64
	// Roles, Kind and Target describe a refusal by roles: the identity's
	// roles, what it tried (route, publish, subscribe, send_to) and on
	// what.
	Roles  []string
	Kind   string
	Target string
}

// Bounds of the fields an AuditLog writes, in bytes: longer ones are cut
// and end in "…".
const (
	maxAuditField  = 128
	maxAuditReason = 256
	maxAuditRoles  = 16 // role names written of an event's Roles
)

// Auditor receives audit events. Audit must not block for long: it is
// called on connection goroutines.
type Auditor interface {
	Audit(AuditEvent)
}

// DefaultAuditQueue is how many events an AuditLog buffers before it drops.
const DefaultAuditQueue = 4096

// AuditLog writes audit events as JSON lines. Events are queued and written
// by one goroutine, so message handling never waits for the disk; when the
// queue overflows, events are dropped, counted, and the count is written as
// an "audit_dropped" event once there is room again.
type AuditLog struct {
	events  chan AuditEvent
	out     io.Writer
	w       *bufio.Writer
	dropped atomic.Uint64
	done    chan struct{}
	once    sync.Once
	mu      sync.RWMutex // guards closed against Audit racing Close
	closed  bool
}

// NewAuditLog starts an AuditLog writing to w, queueing up to queue events
// (zero: DefaultAuditQueue). Close stops it.
func NewAuditLog(w io.Writer, queue int) *AuditLog {
	if queue <= 0 {
		queue = DefaultAuditQueue
	}
	l := &AuditLog{events: make(chan AuditEvent, queue), out: w, w: bufio.NewWriter(w), done: make(chan struct{})}
	go l.run()
	return l
}

// Audit queues an event without blocking.
func (l *AuditLog) Audit(e AuditEvent) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return
	}
	select {
	case l.events <- e:
	default:
		l.dropped.Add(1)
	}
}

// Dropped returns how many events were dropped so far.
func (l *AuditLog) Dropped() uint64 { return l.dropped.Load() }

// Close writes what is queued, stops the writer and closes the underlying
// writer if it is an io.Closer. Events audited after Close are dropped.
func (l *AuditLog) Close() error {
	var err error
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.events)
		l.mu.Unlock()
		<-l.done
		if c, ok := l.out.(io.Closer); ok {
			err = c.Close()
		}
	})
	<-l.done
	return err
}

func (l *AuditLog) run() {
	defer close(l.done)
	var buf []byte
	var reported uint64
	for e := range l.events {
		buf = appendAuditEvent(buf[:0], &e)
		if d := l.dropped.Load(); d != reported {
			buf = appendAuditEvent(buf, &AuditEvent{Time: time.Now(), Event: "audit_dropped", Reason: strconv.FormatUint(d-reported, 10) + " events dropped"})
			reported = d
		}
		l.w.Write(buf) //nolint:errcheck // an audit log that cannot be written must not stop the gateway
		if len(l.events) == 0 {
			l.w.Flush() //nolint:errcheck // as above
		}
	}
	l.w.Flush() //nolint:errcheck // as above
}

func appendAuditEvent(dst []byte, e *AuditEvent) []byte {
	dst = append(dst, `{"time":`...)
	dst = protocol.AppendString(dst, e.Time.UTC().Format(time.RFC3339Nano))
	dst = append(dst, `,"event":`...)
	dst = protocol.AppendString(dst, e.Event)
	for _, f := range []struct {
		k, v string
		max  int
	}{{"conn", e.Conn, maxAuditField}, {"remote", e.Remote, maxAuditField}, {"identity", e.Identity, maxAuditField},
		{"route", e.Route, maxAuditField}, {"kind", e.Kind, maxAuditField}, {"target", e.Target, maxAuditField}, {"reason", e.Reason, maxAuditReason}} {
		if f.v != "" {
			dst = append(dst, ',', '"')
			dst = append(dst, f.k...)
			dst = append(dst, '"', ':')
			dst = protocol.AppendString(dst, truncateField(f.v, f.max))
		}
	}
	if e.Roles != nil {
		dst = append(dst, `,"roles":[`...)
		for i, r := range e.Roles[:min(len(e.Roles), maxAuditRoles)] {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = protocol.AppendString(dst, truncateField(r, maxAuditField))
		}
		dst = append(dst, ']')
	}
	if e.Count != 0 {
		dst = append(dst, `,"count":`...)
		dst = strconv.AppendUint(dst, e.Count, 10)
	}
	return append(dst, '}', '\n')
}

// truncateField cuts s to at most n bytes (on a UTF-8 boundary), marking
// the cut with "…".
func truncateField(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
