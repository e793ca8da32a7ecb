package gateway

import (
	"bytes"
	"cmp"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/secureagentmessaging/samgw/internal/clock"
	"github.com/secureagentmessaging/samgw/protocol"
)

// wireConfig is what the shared connection machinery needs from a Config or
// ClientConfig; newWireConfig builds it for both.
type wireConfig struct {
	limits            protocol.Limits
	keepAliveInterval time.Duration // 0: no periodic keepalive frames
	keepAliveTimeout  time.Duration // 0: no read deadline
	writeTimeout      time.Duration
	lingerTimeout     time.Duration
	maxQueueBytes     int
	closeFrames       bool // send the close frame a cause calls for (the server's side)
	// framePacing, when set, writes every frame in a write of its own,
	// this long after the previous one (see Config.OneFramePerWrite).
	framePacing time.Duration
	// budget bounds the outbound bytes of all the server's connections
	// together; nil on a client.
	budget *pendingBudget
}

// DefaultFramePacing is the gap between two writes with OneFramePerWrite:
// long enough that a peer reading at once sees each frame in a read of
// its own, short enough not to matter to an agent's request rate.
const DefaultFramePacing = 5 * time.Millisecond

// oneFramePerWrite returns cfg writing one frame per write when on.
func (cfg wireConfig) oneFramePerWrite(on bool, pacing time.Duration) wireConfig {
	if on {
		cfg.framePacing = cmp.Or(pacing, DefaultFramePacing)
	}
	return cfg
}

// newWireConfig builds the wire settings of a connection. The outbound
// queue always holds two maximal frames and then some, so one maximal reply
// never makes a peer a slow consumer by itself.
func newWireConfig(limits protocol.Limits, keepAliveInterval, keepAliveTimeout, writeTimeout, linger time.Duration, maxQueue int, closeFrames bool) wireConfig {
	return wireConfig{
		limits:            limits,
		keepAliveInterval: keepAliveInterval,
		keepAliveTimeout:  keepAliveTimeout,
		writeTimeout:      writeTimeout,
		lingerTimeout:     linger,
		maxQueueBytes:     max(cmp.Or(maxQueue, DefaultMaxQueueBytes), 2*limits.MaxFrameSize+4096),
		closeFrames:       closeFrames,
	}
}

// errCloseRequested is what the reader sees once another goroutine asked the
// connection to close: it stops reading and closes from its own goroutine, so
// the close frame follows every reply already produced.
var errCloseRequested = errors.New("gateway: close requested")

// spareBufferLimit is the largest write buffer kept for reuse between
// batches; a larger one (after a burst) is dropped so idle connections stay
// small.
const spareBufferLimit = 256 << 10

// wire is one framed connection, shared by Server and Client: it owns the
// socket and the outbound buffer.
//
// Concurrency: any goroutine may enqueue frames and request a close; only the
// reader goroutine (the owner, which calls readFrame and finish) reads the
// socket; only the flusher writes it. There is no writer goroutine while
// there is nothing to write: the enqueue that finds no flusher running
// starts one, and it exits when the buffer is empty, handing its buffers
// back to a pool, so a quiet connection holds one goroutine (its reader)
// and no write buffer.
type wire struct {
	nc     net.Conn
	raw    syscall.RawConn // nc's socket when it is plain TCP: reads wait for data without a buffer
	rawRd  rawRead         // the state of ReadReady's read, kept here so a read allocates nothing
	rawWr  rawWrite        // the state of a raw write, likewise
	cfg    *wireConfig     // shared by the connections of a server (or a client)
	reader *protocol.Reader

	mu        sync.Mutex
	pending   []byte     // encoded frames not yet handed to the socket
	spare     []byte     // the flusher's last written batch, reused for pending
	inflight  int        // bytes of the batch being written now
	accounted int64      // what this connection counts against cfg.budget now
	writing   bool       // a flusher runs (or has finished for good)
	closing   bool       // no more frames are accepted; the flusher ends once pending is written
	aborted   bool       // ended at once: pending is discarded and nothing more is written (the reader closes the socket)
	cause     CloseCause // why the connection closes; the first cause wins

	writerDone chan struct{} // closed when writing has ended for good
	doneOnce   sync.Once

	// the reader is dispatching a frame: the answers it queues meanwhile
	// wait for endDispatch, which writes them without a goroutine of their
	// own. Set without w.mu (a queue that sees it set only waits for
	// endDispatch), cleared under it (so a queue that saw it set has its
	// frame in pending by the time endDispatch looks).
	dispatching    atomic.Bool
	closeRequested atomic.Bool
	fd             int          // the socket's fd when the server may park it, else -1
	parked         atomic.Bool  // no reader goroutine: the socket waits in the parker
	dead           atomic.Bool  // aborted: a parked connection must wake to end
	onUnpark       func()       // starts a reader for a parked connection
	onClosing      func()       // told once, outside w.mu, when the connection starts closing (nil: nobody)
	parkSeq        uint64       // parks so far; guarded by the parker's mutex
	inEpoll        bool         // registered with the parker; guarded by the parker's mutex
	reparkable     atomic.Bool  // the reader is in its frame loop and can move to a fresh goroutine
	reparkAsked    atomic.Bool  // repark was asked and the reader has not answered yet
	parkedSince    atomic.Int64 // lastFrame value when the reader last moved to a fresh goroutine
	requested      atomic.Pointer[CloseCause]
	noLinger       atomic.Bool  // close right after the last frame is out, without draining the peer
	lastFrame      atomic.Int64 // Unix nanoseconds of the last inbound frame (or of the connect)
	keepAliveOut   atomic.Int64 // Unix nanoseconds a keepalive frame was last queued
	nextKeepAlive  int64        // Unix nanoseconds the periodic keepalive is due; keep-alive scheduler only
	lastWrite      time.Time    // when the last frame was written, with framePacing; writer only
	deadlineFor    int64        // lastFrame value the read deadline was last set from; reader only
	writeDeadline  int64        // Unix nanoseconds of the write deadline set last; writer only

	// Stream compression (see compress.go): compressed is set by the
	// reader when its input turns into a DEFLATE stream (inflate is then
	// its source); deflate and plainPrefix (the bytes of pending still sent
	// as they are) are set under mu and used by the flusher.
	compressed  atomic.Bool
	inflate     *inflater
	deflate     *deflater
	plainPrefix int

	in, out           frameCounts // frames by type
	bytesIn, bytesOut atomic.Uint64
}

func newWire(nc net.Conn, cfg *wireConfig) *wire {
	w := &wire{
		nc:         nc,
		cfg:        cfg,
		fd:         -1,
		writerDone: make(chan struct{}),
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		w.raw, _ = tc.SyscallConn() // nil on error: plain reads then
		w.rawRd.try = w.rawRd.read
		w.rawWr.try = w.rawWr.write
	}
	w.lastFrame.Store(time.Now().UnixNano())
	w.reader = protocol.NewReader(deadlineReader{w}, cfg.limits)
	return w
}

// deadlineReader reads the socket for protocol.Reader. Before each read it
// moves the read deadline to the last frame's time plus the keep-alive
// timeout, so a peer is dropped exactly when it has sent no complete frame
// for that long, however it trickles bytes.
type deadlineReader struct{ w *wire }

func (d deadlineReader) Read(p []byte) (int, error) {
	for {
		if err := d.beforeRead(); err != nil {
			return 0, err
		}
		n, err := d.w.nc.Read(p)
		d.w.bytesIn.Add(uint64(n))
		if n == 0 && err != nil && d.w.compressed.Load() && d.w.earlyTimeout(err) {
			// Below a DEFLATE reader, which keeps the first error it sees
			// for good: the deadline is set again here, not by readFrame.
			d.w.deadlineFor = 0
			continue
		}
		return n, err
	}
}

// ReadReady is Read for a Reader with nothing buffered: on a plain TCP
// socket it waits for data holding no buffer and takes one (buf) only to
// read what arrived, so a quiet connection costs no read buffer. Elsewhere
// (TLS) it is Read.
func (d deadlineReader) ReadReady(buf func() []byte, release func()) (int, error) {
	w := d.w
	if w.raw == nil {
		return d.Read(buf())
	}
	if err := d.beforeRead(); err != nil {
		return 0, err
	}
	rd := &w.rawRd
	rd.buf, rd.release = buf, release
	err := w.raw.Read(rd.try)
	n, rerr := max(rd.n, 0), rd.err
	rd.buf, rd.release, rd.n, rd.err = nil, nil, 0, nil
	w.bytesIn.Add(uint64(n))
	switch {
	case err != nil: // deadline, closed socket
		return n, err
	case rerr != nil:
		return n, &net.OpError{Op: "read", Net: "tcp", Source: w.nc.LocalAddr(), Addr: w.nc.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// rawRead is the callback of a raw socket read: it reads what is there
// into a buffer taken only then, and gives the buffer back to wait when
// nothing is (so waiting holds none).
type rawRead struct {
	try     func(fd uintptr) bool // read, as a func value made once
	buf     func() []byte
	release func()
	n       int
	err     error
}

func (rd *rawRead) read(fd uintptr) bool {
	for {
		rd.n, rd.err = readNonblocking(fd, rd.buf())
		if rd.err != syscall.EINTR {
			break
		}
	}
	if rd.err == syscall.EAGAIN {
		rd.release() // nothing yet: wait (deadlines apply) without the buffer
		return false
	}
	return true
}

// beforeRead moves the read deadline for the keep-alive timeout and fails
// once a close was requested.
func (d deadlineReader) beforeRead() error {
	w := d.w
	if w.cfg.keepAliveTimeout > 0 {
		// The deadline moves only when it lags the last frame by more than
		// a sixteenth of the timeout: moving it costs a runtime timer
		// update, once a message otherwise. A deadline that then fires
		// early is set again (see earlyTimeout).
		if last := w.lastFrame.Load(); w.deadlineFor == 0 || last-w.deadlineFor > int64(w.cfg.keepAliveTimeout/16) {
			w.deadlineFor = last
			if err := w.nc.SetReadDeadline(time.Unix(0, last).Add(w.cfg.keepAliveTimeout)); err != nil {
				return err
			}
		}
	}
	// Checked after setting the deadline: requestClose sets the flag before
	// it moves the deadline into the past, so either we see the flag here or
	// its deadline overrides ours and the read returns at once.
	if w.closeRequested.Load() {
		return errCloseRequested
	}
	return nil
}

// errRepark is what the reader sees when it was asked to continue on a
// fresh goroutine (see repark).
var errRepark = errors.New("gateway: repark requested")

// repark asks a reader that has been waiting since its last frame to wake
// and continue on a fresh goroutine. A goroutine's stack grows while it
// handles frames (and logs, and runs Lua) and shrinks only slowly at GC, so
// a quiet connection would keep a grown stack while it waits; a fresh one
// waits on the smallest stack. It is asked for at most once per quiet spell.
// It reports whether it asked.
func (w *wire) repark() bool {
	last := w.lastFrame.Load()
	if !w.reparkable.Load() || w.compressed.Load() || w.parkedSince.Load() == last || !w.reparkAsked.CompareAndSwap(false, true) {
		return false
	}
	w.parkedSince.Store(last)
	w.nc.SetReadDeadline(time.Unix(1, 0)) //nolint:errcheck // a closed socket needs no waking
	return true
}

// readFrame returns the next frame and records its arrival.
func (w *wire) readFrame() ([]byte, error) {
	frame, err := w.reader.ReadFrame()
	for err != nil && w.earlyTimeout(err) {
		w.deadlineFor = 0
		w.reader.Resume()
		frame, err = w.reader.ReadFrame()
	}
	if err != nil {
		if w.closeRequested.Load() {
			return nil, errCloseRequested
		}
		if isTimeout(err) && w.reparkAsked.CompareAndSwap(true, false) {
			// Our own wake-up: the keep-alive deadline is set again by the
			// next read (and fires at once if it has passed meanwhile).
			w.deadlineFor = 0
			w.reader.Resume()
			return nil, errRepark
		}
		return nil, err
	}
	w.lastFrame.Store(clock.UnixNano())
	if w.inflate != nil {
		w.inflate.since = 0
	}
	return frame, nil
}

// earlyTimeout reports whether err is a keep-alive deadline that fired
// before the keep-alive timeout since the last frame had passed: set from
// an earlier frame (see beforeRead), it only needs setting again.
func (w *wire) earlyTimeout(err error) bool {
	if !isTimeout(err) || w.cfg.keepAliveTimeout <= 0 || w.closeRequested.Load() || w.reparkAsked.Load() {
		return false
	}
	w.mu.Lock()
	closing := w.closing
	w.mu.Unlock()
	return !closing && time.Since(time.Unix(0, w.lastFrame.Load())) < w.cfg.keepAliveTimeout
}

// requestClose asks the reader to stop after the frames it already has and
// close for cause. It does not block.
func (w *wire) requestClose(cause CloseCause) {
	w.requested.CompareAndSwap(nil, &cause)
	w.closeRequested.Store(true)
	w.nc.SetReadDeadline(time.Unix(1, 0)) //nolint:errcheck // a closed socket needs no waking
	w.unpark()
}

// unpark gives a parked connection its reader goroutine back (once, however
// many wake it).
func (w *wire) unpark() {
	if w.parked.CompareAndSwap(true, false) {
		w.onUnpark()
	}
}

// requestCloseNow is requestClose for a peer owed no lingering: once the
// close frame is written the socket is closed, without waiting for the peer
// to read it and hang up.
func (w *wire) requestCloseNow(cause CloseCause) {
	w.noLinger.Store(true)
	w.requestClose(cause)
}

// requestedCause is the cause given to the first requestClose.
func (w *wire) requestedCause() CloseCause {
	if c := w.requested.Load(); c != nil {
		return *c
	}
	return CloseCause{}
}

// enqueue appends a frame of type t with encode and wakes the writer. It
// fails with ErrConnClosed once the connection is closing, and closes the
// connection as a slow consumer when the outbound buffer overflows.
func (w *wire) enqueue(t protocol.Type, encode func(dst []byte) []byte) error {
	return w.queue(t, encode, false)
}

// answer is enqueue for the reader's answers to the frame it dispatches
// (replies, errors, pongs): while it dispatches, no writer is woken for
// them; endDispatch writes them.
func (w *wire) answer(t protocol.Type, encode func(dst []byte) []byte) error {
	return w.queue(t, encode, true)
}

func (w *wire) queue(t protocol.Type, encode func(dst []byte) []byte, answer bool) error {
	return w.queueThen(t, encode, answer, nil)
}

// queueThen is queue, calling then (when not nil) under w.mu right after
// the frame is in pending.
func (w *wire) queueThen(t protocol.Type, encode func(dst []byte) []byte, answer bool, then func()) error {
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		return ErrConnClosed
	}
	if w.pending == nil {
		w.pending = writeBuffers.get()
	}
	w.pending = encode(w.pending)
	if then != nil {
		then()
	}
	w.out[typeIndex(t)].Add(1)
	if t == protocol.TypeKeepAlive {
		w.keepAliveOut.Store(time.Now().UnixNano())
	}
	if len(w.pending) > w.cfg.maxQueueBytes {
		w.mu.Unlock()
		w.abort(causeSlowConsumer)
		return ErrSlowConsumer
	}
	over := w.reaccountLocked()
	if over && w.overGuardLocked() {
		// The server's outbound memory is full and this queue is among the
		// large ones: close it now, then let the shed pick the others.
		w.mu.Unlock()
		w.abort(causeOutboundFull)
		w.cfg.budget.closed.Add(1)
		w.cfg.budget.overrun()
		return ErrSlowConsumer
	}
	start := !(answer && w.dispatching.Load()) && w.claimFlusherLocked()
	w.mu.Unlock()
	if start {
		go w.flush()
	}
	if over {
		w.cfg.budget.overrun()
	}
	return nil
}

// beginDispatch marks the reader's handling of a frame (see answer).
func (w *wire) beginDispatch() { w.dispatching.Store(true) }

// endDispatch writes the answers queued while the reader handled a frame.
// With more input buffered, a flusher writes them while the reader goes on
// (and picks up the answers to the next frames as it goes). Otherwise the
// reader writes them itself: it is about to wait for the peer anyway, and a
// round trip then costs no goroutine to start and stop.
// bufferedConn is a connection that holds input of its own beyond what
// the reader has (a WebSocket's, read a message at a time).
type bufferedConn interface{ Buffered() bool }

// moreBuffered reports whether more input is at hand without waiting: then
// the answers so far are written by a flusher of their own while the next
// frames are handled, and a batch of frames gets one write.
func (w *wire) moreBuffered() bool {
	if w.reader.Buffered() > 0 || w.inflate != nil && w.inflate.src.Buffered() > 0 {
		return true
	}
	bc, ok := w.nc.(bufferedConn)
	return ok && bc.Buffered()
}

func (w *wire) endDispatch(moreBuffered bool) {
	w.mu.Lock()
	w.dispatching.Store(false)
	start := len(w.pending) > 0 && w.claimFlusherLocked()
	w.mu.Unlock()
	switch {
	case !start:
	case moreBuffered:
		go w.flush()
	default:
		w.flush()
	}
}

// claimFlusherLocked reports whether the caller must start the flusher
// (none runs); w.mu is held.
func (w *wire) claimFlusherLocked() bool {
	if w.writing {
		return false
	}
	w.writing = true
	return true
}

// enqueueMessage encodes m into the outbound buffer.
func (w *wire) enqueueMessage(m *protocol.Message) error {
	return w.enqueue(m.Type, func(dst []byte) []byte { return protocol.AppendFrame(dst, m) })
}

// answerMessage is enqueueMessage for the reader's answers (see answer).
func (w *wire) answerMessage(m *protocol.Message) error {
	return w.answer(m.Type, func(dst []byte) []byte { return protocol.AppendFrame(dst, m) })
}

// enqueueError queues an `error` frame answering the message with id; the
// reader queues it as an answer (see answer).
func (w *wire) enqueueError(id string, err error) error {
	return w.answer(protocol.TypeError, func(dst []byte) []byte { return protocol.AppendErrorFrame(dst, id, err) })
}

// beginClose stops accepting frames, queues the close frame cause calls
// for (if any), and lets the writer finish. The first cause wins; later
// calls do nothing.
func (w *wire) beginClose(cause CloseCause) {
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		return
	}
	w.closing = true
	w.cause = cause
	if key, text := cause.frame(); key != "" && w.cfg.closeFrames && !w.aborted {
		w.pending = appendCloseFrame(w.pending, key, text)
		w.out[typeIndex(protocol.TypeClose)].Add(1)
	}
	start := w.claimFlusherLocked()
	w.mu.Unlock()
	w.closingStarted()
	if start {
		go w.flush() // writes what is left, then half-closes
	}
}

// closingStarted tells onClosing that the connection is closing; the one
// that set w.closing calls it, after releasing w.mu.
func (w *wire) closingStarted() {
	if w.onClosing != nil {
		w.onClosing()
	}
}

func appendCloseFrame(dst []byte, key, text string) []byte {
	var buf [128]byte
	payload := protocol.AppendReasonPayload(buf[:0], key, text)
	return protocol.AppendFrame(dst, &protocol.Message{Type: protocol.TypeClose, Payload: payload})
}

// abort ends the connection at once, from any goroutine: whatever is
// queued is discarded, nothing more is written, and the reader and a
// blocked writer fail out of their calls (the deadlines move into the
// past). It does not close the socket: the reader owns it and closes it
// when it ends (wire.finish), after every registration of it is removed,
// so the descriptor number cannot be reused while another part of the
// server still holds it as this connection's.
func (w *wire) abort(cause CloseCause) {
	w.mu.Lock()
	started := !w.closing
	if started {
		w.closing = true
		w.cause = cause
	}
	already := w.aborted
	w.aborted = true
	w.pending = nil
	w.reaccountLocked()            // an aborted connection holds nothing
	idle := w.claimFlusherLocked() // no flusher will see the abort
	w.mu.Unlock()
	if started {
		w.closingStarted()
	}
	if !already {
		w.dead.Store(true) // before the deadlines: a writer that moves its own checks it after
		w.requested.CompareAndSwap(nil, &cause)
		w.closeRequested.Store(true)
		w.nc.SetDeadline(time.Unix(1, 0)) //nolint:errcheck // a closed socket needs no waking
	}
	if idle {
		w.writingEnded()
	}
	w.unpark() // its reader ends it
}

// closeCause is why the connection closed or is closing.
func (w *wire) closeCause() CloseCause {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cause
}

// takePending removes and returns the frames that were queued but never
// handed to the socket, for a client to send again on its next connection.
func (w *wire) takePending() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.pending
	w.pending = nil
	return p
}

// keepAlivePayload is the payload of the periodic keepalive frame, the
// same from server and client.
var keepAlivePayload = []byte(`{"message":"keepalive"}`)

// appendKeepAlive appends the periodic keepalive frame.
func appendKeepAlive(dst []byte) []byte {
	return protocol.AppendFrame(dst, &protocol.Message{Type: protocol.TypeKeepAlive, Payload: keepAlivePayload})
}

// periodicKeepAlive queues the keepalive frame sent every keep-alive
// interval (the prototype sends it to busy connections too). With one frame
// per write it is skipped when a keepalive (an answer to the peer's) went
// out within half an interval: a second one now would fall due with it. It
// fails once the connection is closing.
func (w *wire) periodicKeepAlive() error {
	if w.cfg.framePacing > 0 && time.Since(time.Unix(0, w.keepAliveOut.Load())) < w.cfg.keepAliveInterval/2 {
		return nil
	}
	return w.enqueue(protocol.TypeKeepAlive, appendKeepAlive)
}

// keepAliveLoop sends the periodic keepalives of a client's connection until
// writing ends; a server's connections share one keepAliveScheduler.
func (w *wire) keepAliveLoop() {
	if w.cfg.keepAliveInterval <= 0 {
		return
	}
	t := time.NewTicker(w.cfg.keepAliveInterval)
	defer t.Stop()
	for {
		select {
		case <-w.writerDone:
			return
		case <-t.C:
			if w.periodicKeepAlive() != nil {
				return
			}
		}
	}
}

// flush is the flusher: it writes the outbound buffer in batches (one write
// for everything queued since the last one) until it is empty, then exits,
// returning its buffers to the pool. Once the connection is closing and
// everything is written, it half-closes the socket so the peer sees the end
// after the last frame, and ends writing for good.
func (w *wire) flush() {
	for {
		w.mu.Lock()
		w.inflight = 0 // the last batch is written
		batch, closing, aborted := w.pending, w.closing, w.aborted
		if aborted {
			w.mu.Unlock()
			w.writingEnded()
			return
		}
		if len(batch) == 0 {
			if closing {
				w.mu.Unlock()
				w.finishWrites()
				w.writingEnded()
				return
			}
			// Idle: the buffers go back to the pool; the next enqueue
			// takes one and starts a flusher again.
			spare := w.spare
			w.pending, w.spare = nil, nil
			w.writing = false
			w.reaccountLocked()
			w.mu.Unlock()
			writeBuffers.put(batch)
			writeBuffers.put(spare)
			return
		}
		w.pending, w.spare = w.spare, nil
		w.inflight = len(batch)
		z, plain := w.deflate, w.plainPrefix
		w.plainPrefix = 0
		w.reaccountLocked() // the same bytes, held by the write now
		w.mu.Unlock()
		if err := w.writeBatch(batch, z, plain); err != nil {
			cause := CloseCause{Kind: CloseWriteFailed, Detail: err.Error()}
			if errors.Is(err, net.ErrClosed) {
				cause = causePeerGone
			} else if isTimeout(err) {
				cause = causeSlowConsumer
			}
			w.abort(cause) // finds this flusher running: ending the writing is ours
			w.writingEnded()
			return
		}
		if cap(batch) <= spareBufferLimit {
			w.mu.Lock()
			w.spare = batch[:0]
			w.mu.Unlock()
		}
	}
}

// writingEnded marks the end of all writing on w.
func (w *wire) writingEnded() {
	w.doneOnce.Do(func() { close(w.writerDone) })
}

// writeBatch writes a batch of frames, compressed by z (when not nil)
// after its first plain bytes.
func (w *wire) writeBatch(batch []byte, z *deflater, plain int) error {
	if z == nil {
		return w.write(batch)
	}
	if plain > 0 {
		if err := w.write(batch[:plain]); err != nil {
			return err
		}
		batch = batch[plain:]
	}
	if len(batch) == 0 {
		return nil
	}
	out := writeBuffers.get()
	out, err := z.compress(out, batch)
	if err == nil {
		err = w.writeOnce(out) // pacing is by frame, and the frames are in the stream now
	}
	writeBuffers.put(out)
	return err
}

// write writes a batch of frames: in one write, or with framePacing in one
// write per frame, each at least framePacing after the one before (in this
// batch or the last).
func (w *wire) write(batch []byte) error {
	if w.cfg.framePacing == 0 {
		return w.writeOnce(batch)
	}
	for len(batch) > 0 {
		if wait := w.cfg.framePacing - time.Since(w.lastWrite); wait > 0 {
			time.Sleep(wait) // the writer's own pace; an abort closes the socket under it
		}
		end := bytes.IndexByte(batch, '\n') + 1 // every frame ends in its only newline
		if err := w.writeOnce(batch[:end]); err != nil {
			return err
		}
		w.lastWrite = time.Now()
		batch = batch[end:]
	}
	return nil
}

// writeOnce writes b within the write timeout: a write that makes no
// progress for between half the timeout and the timeout fails. The
// deadline is moved only when less than half the timeout is left, not at
// every write (a runtime timer update each time).
func (w *wire) writeOnce(b []byte) error {
	if now := clock.UnixNano(); w.writeDeadline-now < int64(w.cfg.writeTimeout/2) {
		w.writeDeadline = now + int64(w.cfg.writeTimeout)
		w.nc.SetWriteDeadline(time.Unix(0, w.writeDeadline)) //nolint:errcheck // Write reports it
	}
	if w.dead.Load() {
		// Aborted: abort moved the deadline into the past before or after
		// ours; either way nothing more is written.
		return net.ErrClosed
	}
	if w.raw == nil {
		n, err := w.nc.Write(b)
		w.bytesOut.Add(uint64(n))
		return err
	}
	wr := &w.rawWr
	wr.b, wr.n, wr.err = b, 0, nil
	err := w.raw.Write(wr.try)
	w.bytesOut.Add(uint64(wr.n))
	wr.b = nil
	if err == nil && wr.err != nil {
		err = os.NewSyscallError("write", wr.err)
	}
	if err != nil { // as net.Conn's Write reports it
		err = &net.OpError{Op: "write", Net: "tcp", Source: w.nc.LocalAddr(), Addr: w.nc.RemoteAddr(), Err: err}
	}
	return err
}

// rawWrite is the callback of a raw socket write: it writes what it can
// and asks to wait for room (the write deadline applies) when the socket's
// buffer is full.
type rawWrite struct {
	try func(fd uintptr) bool // write, as a func value made once
	b   []byte
	n   int
	err error
}

func (wr *rawWrite) write(fd uintptr) bool {
	for wr.n < len(wr.b) {
		n, err := writeNonblocking(fd, wr.b[wr.n:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return false
		case err != nil:
			wr.err = err
			return true
		}
		wr.n += n
	}
	return true
}

// finishWrites ends our half of the connection once the last frame is out,
// and bounds how long the reader waits for the peer to hang up.
func (w *wire) finishWrites() {
	if cw, ok := w.nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite() //nolint:errcheck // best effort: the socket is closed soon anyway
	}
	w.nc.SetReadDeadline(time.Now().Add(w.cfg.lingerTimeout)) //nolint:errcheck // closed sockets need no deadline
}

// drain discards what the peer still sends after we decided to close, so the
// peer reads our last frames instead of a reset, bounded by the linger
// timeout and by limit bytes.
func (w *wire) drain(limit int) {
	w.nc.SetReadDeadline(time.Now().Add(w.cfg.lingerTimeout)) //nolint:errcheck // a failed read ends the drain
	var buf [4096]byte
	for limit > 0 {
		n, err := w.nc.Read(buf[:])
		limit -= n
		if err != nil {
			return
		}
	}
}

// finish is called by the reader goroutine when it stops reading: it lets
// the writer flush (bounded by the write timeout), drains the peer and closes
// the socket. cause is used if nothing else started the close first.
func (w *wire) finish(cause CloseCause) {
	w.beginClose(cause)
	<-w.writerDone
	if !w.noLinger.Load() && !w.dead.Load() {
		w.drain(max(w.cfg.limits.MaxFrameSize, 64<<10))
	}
	w.nc.Close()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isEOF reports whether err means the peer ended the stream cleanly.
func isEOF(err error) bool { return errors.Is(err, io.EOF) }

// writeBuffers recycles the outbound buffers of connections that went
// quiet. Buffers that grew past spareBufferLimit (after a burst) are let go.
var writeBuffers bufferPool

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) get() []byte {
	if buf, ok := b.p.Get().(*[]byte); ok {
		return (*buf)[:0]
	}
	return make([]byte, 0, 512)
}

func (b *bufferPool) put(buf []byte) {
	if cap(buf) == 0 || cap(buf) > spareBufferLimit {
		return
	}
	buf = buf[:0]
	b.p.Put(&buf)
}
