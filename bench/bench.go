// Package bench generates load against a samgw-protocol server and measures
// it, like nats bench or redis-benchmark: many connections, each keeping a
// number of data frames in flight, every reply checked (same id, same
// payload) and its latency recorded in a histogram.
//
// It speaks the protocol with raw sockets and pre-encoded frames rather than
// through gateway.Client, so the load generator costs as little as possible
// and measures the server, not itself.
package bench

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/secureagentmessaging/samgw/internal/histogram"
	"github.com/secureagentmessaging/samgw/protocol"
)

// Config describes one run. Zero fields take their defaults.
type Config struct {
	// Addr is the server; default 127.0.0.1:4000.
	Addr string
	// Conns is the number of connections; default 16.
	Conns int
	// Pipeline is the frames in flight per connection; default 1.
	Pipeline int
	// Duration bounds the run; default 10 s unless Messages is set.
	Duration time.Duration
	// Messages, if set, ends the run after that many replies in all.
	Messages int
	// Size is the payload size in bytes; default 128.
	Size int
	// Route, if set, is put in every frame.
	Route string
	// Rate, when positive, sends open-loop at this many frames per second in
	// all (spread over the connections) whatever the replies do. A frame
	// held up by a write the server did not take counts its latency from
	// when it was due, so a server that falls behind shows it (no
	// coordinated omission); one only delayed by the generator's own
	// timer counts from when it was sent (see latencyStart). Pipeline is
	// then ignored.
	Rate float64
	// Dial opens connections; nil means a net.Dialer. TLS plugs in here.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Token, when set, authenticates every connection before the load.
	Token string
	// SignKey, when set, signs every frame (the cost is part of the load).
	SignKey ed25519.PrivateKey
	// Progress, if set, is called about once a second with the totals so
	// far.
	Progress func(Progress)
}

// Progress is a running total.
type Progress struct {
	Elapsed  time.Duration
	Received uint64
	Errors   uint64
}

// Result is the outcome of a run.
type Result struct {
	Conns        int           `json:"conns"`
	Pipeline     int           `json:"pipeline"`
	Size         int           `json:"size"`
	Rate         float64       `json:"target_rate,omitempty"`
	Elapsed      time.Duration `json:"-"`
	Sent         uint64        `json:"sent"`
	Received     uint64        `json:"received"`
	Errors       uint64        `json:"errors"`
	FramesPerSec float64       `json:"frames_per_sec"`
	MBPerSec     float64       `json:"mb_per_sec"`
	P50          float64       `json:"p50_ms"`
	P90          float64       `json:"p90_ms"`
	P99          float64       `json:"p99_ms"`
	P999         float64       `json:"p999_ms"`
	Max          float64       `json:"max_ms"`
	ElapsedSec   float64       `json:"elapsed_sec"`
	FirstError   string        `json:"first_error,omitempty"`
}

// ErrNoReplies is returned when a run received nothing at all.
var ErrNoReplies = errors.New("bench: no replies")

// ErrInvalidConfig is wrapped by the error of a Config field that makes
// no sense.
var ErrInvalidConfig = errors.New("bench: invalid config")

// Validate reports the first field of c that makes no sense; zero values
// mean the defaults. Run calls it.
func (c Config) Validate() error {
	for _, f := range []struct {
		name string
		bad  bool
	}{
		{"Conns", c.Conns < 0}, {"Pipeline", c.Pipeline < 0}, {"Size", c.Size < 0}, {"Messages", c.Messages < 0},
		{"Duration", c.Duration < 0}, {"Rate", c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0)},
	} {
		if f.bad {
			return fmt.Errorf("%w: %s must not be negative (zero means the default)", ErrInvalidConfig, f.name)
		}
	}
	return nil
}

// Run runs the load until the duration passes, the message count is
// reached, or ctx ends.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &runState{cfg: cfg, payload: makePayload(cfg.Size), cancel: cancel}
	if cfg.Messages > 0 {
		r.budget.Store(int64(cfg.Messages))
	} else {
		r.budget.Store(1 << 62)
	}
	workers, err := r.connect(ctx)
	if err != nil {
		return Result{}, err
	}
	start := time.Now()
	if cfg.Duration > 0 { // counted from here: connecting is not part of the run
		var stop context.CancelFunc
		ctx, stop = context.WithDeadline(ctx, start.Add(cfg.Duration))
		defer stop()
	}
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx)
		}()
	}
	progressDone := r.reportProgress(ctx, start)
	wg.Wait()
	cancel()
	<-progressDone
	res := r.result(workers, time.Since(start))
	if res.Received == 0 {
		return res, ErrNoReplies
	}
	return res, nil
}

func (c Config) withDefaults() Config {
	c.Addr = cmp.Or(c.Addr, "127.0.0.1:4000")
	c.Conns = max(cmp.Or(c.Conns, 16), 1)
	c.Pipeline = max(cmp.Or(c.Pipeline, 1), 1)
	c.Size = max(cmp.Or(c.Size, 128), 2)
	if c.Duration <= 0 && c.Messages <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Dial == nil {
		d := &net.Dialer{Timeout: 5 * time.Second}
		c.Dial = d.DialContext
	}
	return c
}

// connect opens (and authenticates) every connection, or none.
func (r *runState) connect(ctx context.Context) ([]*worker, error) {
	cfg := r.cfg
	conns := make([]net.Conn, 0, cfg.Conns)
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	for range cfg.Conns {
		nc, err := cfg.Dial(ctx, "tcp", cfg.Addr)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("bench: connect to %s: %w", cfg.Addr, err)
		}
		conns = append(conns, nc)
	}
	workers := make([]*worker, cfg.Conns)
	for i, nc := range conns {
		workers[i] = newWorker(r, i, nc)
		if cfg.Token != "" {
			if err := workers[i].authenticate(cfg.Token); err != nil {
				closeAll()
				return nil, err
			}
		}
	}
	return workers, nil
}

// reportProgress calls cfg.Progress about once a second until ctx ends; the
// returned channel is closed when it has stopped.
func (r *runState) reportProgress(ctx context.Context, start time.Time) <-chan struct{} {
	done := make(chan struct{})
	if r.cfg.Progress == nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				r.cfg.Progress(Progress{Elapsed: time.Since(start), Received: r.received.Load(), Errors: r.errors.Load()})
			}
		}
	}()
	return done
}

// result sums up the workers' counts and latencies.
func (r *runState) result(workers []*worker, elapsed time.Duration) Result {
	cfg := r.cfg
	var hist histogram.Histogram
	res := Result{Conns: cfg.Conns, Pipeline: cfg.Pipeline, Size: cfg.Size, Rate: cfg.Rate, Elapsed: elapsed, ElapsedSec: elapsed.Seconds()}
	for _, w := range workers {
		hist.Merge(&w.hist)
		res.Sent += w.sent
	}
	res.Received = r.received.Load()
	res.Errors = r.errors.Load()
	if e := r.firstErr.Load(); e != nil {
		res.FirstError = *e
	}
	secs := elapsed.Seconds()
	res.FramesPerSec = float64(res.Received) / secs
	res.MBPerSec = float64(res.Received) * float64(len(r.payload)) / secs / 1e6
	res.P50 = ms(hist.Quantile(0.50))
	res.P90 = ms(hist.Quantile(0.90))
	res.P99 = ms(hist.Quantile(0.99))
	res.P999 = ms(hist.Quantile(0.999))
	res.Max = ms(hist.Max())
	return res
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// makePayload returns a JSON object of exactly size bytes (at least
// {"d":""}, 8 bytes).
func makePayload(size int) []byte {
	const frame = `{"d":""}`
	n := max(size-len(frame), 0)
	return []byte(`{"d":"` + string(bytes.Repeat([]byte("x"), n)) + `"}`)
}

// runState is shared by the workers of a run.
type runState struct {
	cfg      Config
	payload  []byte
	cancel   context.CancelFunc
	budget   atomic.Int64 // frames left to send
	received atomic.Uint64
	errors   atomic.Uint64
	firstErr atomic.Pointer[string]
}

func (r *runState) fail(format string, args ...any) {
	r.errors.Add(1)
	msg := fmt.Sprintf(format, args...)
	r.firstErr.CompareAndSwap(nil, &msg)
}

// worker drives one connection. Closed loop (the default), one goroutine
// keeps Pipeline frames in flight: every batch of replies one read brings
// is checked and answered by as many new frames in one write. Open loop
// (Rate), a writer sends on schedule and a reader checks the replies.
type worker struct {
	r           *runState
	index       int
	nc          net.Conn
	prefix      []byte // {"type":"data",..."id":"<index>-
	suffix      []byte // "}\n
	idBase      []byte // <index>-
	want        []byte // the id check expects, kept to be reused
	writerDone  atomic.Bool
	conn        *batchConn // nc as fr reads it
	fr          *protocol.Reader
	sentAt      chan time.Time // open loop: send times of frames in flight, oldest first
	written     atomic.Int64   // open loop: frames wholly written
	answered    atomic.Int64   // open loop: replies taken
	writesCut   atomic.Bool    // open loop: the run is over and a blocked write must fail
	sent        uint64         // frames sent (open loop: written, once the writer is done)
	deadlineSet int64          // conn.clock() when the write deadline was last set
	hist        histogram.Histogram
}

// writeTimeout bounds a write to a server that stopped reading.
const writeTimeout = 10 * time.Second

func newWorker(r *runState, index int, nc net.Conn) *worker {
	prefix := []byte(`{"type":"data","payload":`)
	prefix = append(prefix, r.payload...)
	if r.cfg.Route != "" {
		prefix = append(prefix, `,"route":`...)
		prefix = protocol.AppendString(prefix, r.cfg.Route)
	}
	prefix = append(prefix, `,"id":"`...)
	prefix = strconv.AppendInt(prefix, int64(index), 10)
	prefix = append(prefix, '-')
	conn := &batchConn{Conn: nc, start: time.Now()}
	w := &worker{r: r, index: index, nc: nc, prefix: prefix, suffix: []byte("\"}\n"),
		idBase: strconv.AppendInt(nil, int64(index), 10), conn: conn,
		fr: protocol.NewReader(conn, replyLimits)}
	if r.cfg.Rate > 0 {
		w.sentAt = make(chan time.Time, maxOpenLoopInFlight)
	}
	return w
}

// replyLimits bound the replies the load generator reads.
var replyLimits = protocol.Limits{MaxFrameSize: 16 << 20, MaxDepth: protocol.MaxDepthLimit}

// authenticate sends an auth frame and waits for its answer.
func (w *worker) authenticate(token string) error {
	payload := protocol.AppendString([]byte(`{"token":`), token)
	payload = append(payload, '}')
	w.nc.SetDeadline(time.Now().Add(10 * time.Second))
	defer w.nc.SetDeadline(time.Time{})
	if _, err := w.nc.Write(protocol.AppendFrame(nil, &protocol.Message{Type: protocol.TypeAuth, ID: "auth", Payload: payload})); err != nil {
		return fmt.Errorf("bench: authenticate: %w", err)
	}
	for {
		frame, err := w.fr.ReadFrame()
		if err != nil {
			return fmt.Errorf("bench: authenticate: %w", err)
		}
		var m protocol.Message
		if protocol.Decode(frame, &m, protocol.Limits{}) != nil {
			continue
		}
		switch m.Type {
		case protocol.TypeAuth:
			return nil
		case protocol.TypeError:
			return fmt.Errorf("bench: authenticate: %s", m.Payload)
		}
	}
}

func (w *worker) run(ctx context.Context) {
	if w.r.cfg.Rate <= 0 {
		w.closedLoop(ctx)
		w.nc.Close()
		return
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		w.read()
	}()
	// At the end of the run a write still blocked on a server that stopped
	// reading fails at once, so the run ends on time (and then drains).
	stop := context.AfterFunc(ctx, func() {
		w.writesCut.Store(true)
		w.nc.SetWriteDeadline(time.Unix(1, 0))
	})
	w.writeOpenLoop(ctx)
	stop()
	w.sent = uint64(w.written.Load())
	// Let the frames in flight come back (bounded), then hang up.
	w.writerDone.Store(true)
	if w.written.Load() <= w.answered.Load() {
		w.nc.SetReadDeadline(time.Now())
	} else {
		w.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	}
	<-readerDone
	w.nc.Close()
}

// maxOpenLoopInFlight bounds the unanswered frames of one connection in
// open-loop mode; beyond it frames are counted as errors instead of sent.
const maxOpenLoopInFlight = 1 << 16

// maxOpenLoopBatch bounds the frames of one open-loop write: a writer that
// fell behind catches up in writes of this many, and sees the end of the
// run between them.
const maxOpenLoopBatch = 256

// writeOpenLoop sends frames on a fixed schedule: the connection's share of
// the rate, each frame recorded with the time it was due.
func (w *worker) writeOpenLoop(ctx context.Context) {
	interval := time.Duration(float64(time.Second) * float64(w.r.cfg.Conns) / w.r.cfg.Rate)
	// Stagger the connections over one interval.
	due := time.Now().Add(interval * time.Duration(w.index) / time.Duration(w.r.cfg.Conns))
	timer := time.NewTimer(time.Until(due))
	defer timer.Stop()
	buf := make([]byte, 0, 64<<10)
	var seq int64
	busyUntil := time.Now() // when the last write returned
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if ctx.Err() != nil {
			return // the timer was ready too: the end of the run wins
		}
		buf = buf[:0]
		frames := 0
		now := time.Now()
		for frames < maxOpenLoopBatch && !due.After(now) {
			if w.r.budget.Add(-1) < 0 {
				break
			}
			if len(w.sentAt) == cap(w.sentAt) {
				w.r.fail("conn %d: more than %d frames unanswered", w.index, cap(w.sentAt))
			} else {
				buf = w.appendFrame(buf, seq)
				seq++
				frames++
				w.sentAt <- latencyStart(due, busyUntil, now)
			}
			due = due.Add(interval)
		}
		if frames > 0 {
			n, ok := w.send(ctx, buf)
			if !ok {
				// Cut off: only the frames wholly written await replies
				// (the send times of the others are never taken).
				frames = bytes.Count(buf[:n], []byte{'\n'})
			}
			w.written.Add(int64(frames))
			if !ok {
				return
			}
			busyUntil = time.Now()
		}
		if w.r.budget.Load() < 0 {
			return
		}
		timer.Reset(time.Until(due))
	}
}

// latencyStart is when the latency of an open-loop frame starts counting.
// A frame that fell due while the last write was still blocked (the server
// was not reading) counts from when it was due: the server held it up, and
// leaving that wait out would hide exactly the stall the open loop exists
// to show. A frame that fell due while the writer waited on its timer
// counts from when it went out (sent): a timer wakes up to a millisecond
// late on an idle process (the runtime's poller sleeps in whole
// milliseconds), and that lag is the generator's, not the server's. At
// 1,000 frames/s it put 0.6 ms into a p50 whose server part was 0.05 ms.
func latencyStart(due, busyUntil, sent time.Time) time.Time {
	if due.After(busyUntil) {
		return sent
	}
	return due
}

// appendFrame appends frame seq, signed when a key is set.
func (w *worker) appendFrame(buf []byte, seq int64) []byte {
	if w.r.cfg.SignKey != nil {
		return w.appendSigned(buf, seq)
	}
	buf = append(buf, w.prefix...)
	buf = strconv.AppendInt(buf, seq, 10)
	return append(buf, w.suffix...)
}

// drainTimeout bounds how long a run waits for the replies still in flight
// after it stopped sending.
const drainTimeout = 2 * time.Second

// closedLoop keeps Pipeline frames in flight until ctx ends or the message
// budget is spent, then waits (at most drainTimeout) for the replies still
// due. Frames go out right before each socket read (see batchConn): by then
// every reply the last read brought has been checked, so each read's batch
// of replies is answered with as many new frames in one write. Send times
// wait in a ring (replies come in order), and the clock is read once per
// write and once per read, not once per frame: the generator should
// measure the server, not itself.
func (w *worker) closedLoop(ctx context.Context) {
	var stopping atomic.Bool
	stop := context.AfterFunc(ctx, func() {
		stopping.Store(true)
		w.nc.SetReadDeadline(time.Now().Add(drainTimeout)) // wakes a read only if replies are late
	})
	defer stop()
	pipeline := int64(w.r.cfg.Pipeline)
	ring := make([]int64, pipeline) // send time of frame seq, at seq % pipeline
	buf := make([]byte, 0, 64<<10)
	var next, answered int64 // frames sent, replies taken
	w.conn.beforeRead = func() error {
		if !stopping.Load() {
			if n := w.r.take(int(pipeline - (next - answered))); n > 0 {
				buf = buf[:0]
				sent := w.conn.clock()
				for range n {
					ring[next%pipeline] = sent
					buf = w.appendFrame(buf, next)
					next++
				}
				w.sent += uint64(n)
				if _, ok := w.send(ctx, buf); !ok {
					return errRunOver
				}
			}
		}
		if answered == next {
			return errRunOver // nothing in flight: stopping, or the budget is spent
		}
		return nil
	}
	var m protocol.Message
	for {
		frame, err := w.fr.ReadFrame()
		if err != nil {
			if !errors.Is(err, errRunOver) {
				w.r.fail("conn %d: %d replies missing: %v", w.index, next-answered, err)
			}
			return
		}
		if !w.decodeReply(frame, &m) {
			continue
		}
		if answered == next {
			w.r.fail("conn %d: unexpected %s frame", w.index, m.Type)
			continue
		}
		w.hist.Record(time.Duration(w.conn.readAt - ring[answered%pipeline]))
		w.check(&m, answered)
		answered++
	}
}

// errRunOver ends a closed loop's reads: nothing is in flight and nothing
// more is to be sent.
var errRunOver = errors.New("bench: run over")

// batchConn is a worker's connection as its frame reader sees it. Right
// before the reader reads the socket (it has returned every complete frame
// it had) it calls beforeRead, if set, and right after it notes the time:
// the arrival of every frame that read completes.
type batchConn struct {
	net.Conn
	beforeRead func() error
	start      time.Time
	readAt     int64 // clock() after the last read
}

// clock is the time since the connection's start, in nanoseconds.
func (c *batchConn) clock() int64 { return int64(time.Since(c.start)) }

func (c *batchConn) Read(p []byte) (int, error) {
	if c.beforeRead != nil {
		if err := c.beforeRead(); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Read(p)
	c.readAt = c.clock()
	return n, err
}

// take reserves up to n frames of the message budget and returns how many
// it got.
func (r *runState) take(n int) int {
	left := r.budget.Add(-int64(n))
	if left >= 0 {
		return n
	}
	return max(n+int(left), 0)
}

// decodeReply decodes frame into m and reports whether it is a reply to
// check: an invalid frame is counted as an error, and keepalives and pongs
// are passed over.
func (w *worker) decodeReply(frame []byte, m *protocol.Message) bool {
	if err := protocol.Decode(frame, m, replyLimits); err != nil {
		w.r.fail("conn %d: invalid reply: %v", w.index, err)
		return false
	}
	return m.Type != protocol.TypeKeepAlive && m.Type != protocol.TypePong
}

// check counts reply m to frame seq as received, or as an error when it is
// not that frame's echo.
func (w *worker) check(m *protocol.Message, seq int64) {
	want := strconv.AppendInt(append(append(w.want[:0], w.idBase...), '-'), seq, 10)
	w.want = want
	switch {
	case m.Type != protocol.TypeData:
		w.r.fail("conn %d: %s reply: %s", w.index, m.Type, m.Payload)
	case m.ID != string(want):
		w.r.fail("conn %d: reply id %q, want %q", w.index, m.ID, want)
	case !bytes.Equal(m.Payload, w.r.payload):
		w.r.fail("conn %d: reply payload differs", w.index)
	default:
		w.r.received.Add(1)
	}
}

// send writes a batch of frames; false means the connection is done (an
// error is counted unless the run was ending anyway).
func (w *worker) send(ctx context.Context, buf []byte) (written int, ok bool) {
	// The deadline moves once a second, not with every write (a runtime
	// timer update each time).
	if now := w.conn.clock(); now-w.deadlineSet > int64(time.Second) || w.deadlineSet == 0 {
		w.deadlineSet = now
		w.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if w.writesCut.Load() {
			// The run ended meanwhile: keep its deadline in the past.
			w.nc.SetWriteDeadline(time.Unix(1, 0))
		}
	}
	n, err := w.nc.Write(buf)
	if err != nil {
		if ctx.Err() == nil {
			w.r.fail("conn %d: write: %v", w.index, err)
		}
		return n, false
	}
	return n, true
}

// appendSigned appends frame seq, signed.
func (w *worker) appendSigned(buf []byte, seq int64) []byte {
	m := protocol.Message{Type: protocol.TypeData, ID: string(strconv.AppendInt(append(append([]byte(nil), w.idBase...), '-'), seq, 10)),
		Route: w.r.cfg.Route, Timestamp: protocol.Now(), Payload: w.r.payload}
	protocol.Sign(w.r.cfg.SignKey, &m)
	return protocol.AppendFrame(buf, &m)
}

// read checks each reply of the open loop against the frame it answers and
// records its latency from when that frame was due.
func (w *worker) read() {
	fr := w.fr
	var m protocol.Message
	var seq int64
	for {
		if w.writerDone.Load() && w.answered.Load() >= w.written.Load() {
			return
		}
		frame, err := fr.ReadFrame()
		if err != nil {
			if missing := w.written.Load() - w.answered.Load(); missing > 0 {
				w.r.fail("conn %d: %d replies missing: %v", w.index, missing, err)
			}
			return
		}
		if !w.decodeReply(frame, &m) {
			continue
		}
		var sentAt time.Time
		select {
		case sentAt = <-w.sentAt:
		default:
			w.r.fail("conn %d: unexpected %s frame", w.index, m.Type)
			continue
		}
		w.hist.Record(time.Since(sentAt))
		w.check(&m, seq)
		seq++
		w.answered.Add(1)
	}
}
