package gateway

import (
	"bytes"
	"cmp"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

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
// socket, the outbound buffer and the writer goroutine.
//
// Concurrency: any goroutine may enqueue frames and request a close; only the
// reader goroutine (the owner, which calls readFrame and finish) reads the
// socket; only the writer goroutine (writeLoop) writes it.
type wire struct {
	nc     net.Conn
	cfg    wireConfig
	reader *protocol.Reader

	mu      sync.Mutex
	pending []byte     // encoded frames not yet handed to the writer
	closing bool       // no more frames are accepted; the writer exits once pending is written
	aborted bool       // the socket was closed outright; pending is discarded
	cause   CloseCause // why the connection closes; the first cause wins

	wake       chan struct{} // wakes the writer; capacity 1
	writerDone chan struct{} // closed when writeLoop returns

	closeRequested atomic.Bool
	requested      atomic.Pointer[CloseCause]
	noLinger       atomic.Bool  // close right after the last frame is out, without draining the peer
	lastFrame      atomic.Int64 // Unix nanoseconds of the last inbound frame (or of the connect)
	keepAliveOut   atomic.Int64 // Unix nanoseconds a keepalive frame was last queued
	lastWrite      time.Time    // when the last frame was written, with framePacing; writer only
	deadlineFor    int64        // lastFrame value the read deadline was last set from; reader only

	in, out           frameCounts // frames by type
	bytesIn, bytesOut atomic.Uint64
}

func newWire(nc net.Conn, cfg wireConfig) *wire {
	w := &wire{
		nc:         nc,
		cfg:        cfg,
		wake:       make(chan struct{}, 1),
		writerDone: make(chan struct{}),
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
	w := d.w
	if w.cfg.keepAliveTimeout > 0 {
		if last := w.lastFrame.Load(); last != w.deadlineFor {
			w.deadlineFor = last
			if err := w.nc.SetReadDeadline(time.Unix(0, last).Add(w.cfg.keepAliveTimeout)); err != nil {
				return 0, err
			}
		}
	}
	// Checked after setting the deadline: requestClose sets the flag before
	// it moves the deadline into the past, so either we see the flag here or
	// its deadline overrides ours and the read returns at once.
	if w.closeRequested.Load() {
		return 0, errCloseRequested
	}
	n, err := w.nc.Read(p)
	w.bytesIn.Add(uint64(n))
	return n, err
}

// readFrame returns the next frame and records its arrival.
func (w *wire) readFrame() ([]byte, error) {
	frame, err := w.reader.ReadFrame()
	if err != nil {
		if w.closeRequested.Load() {
			return nil, errCloseRequested
		}
		return nil, err
	}
	w.lastFrame.Store(time.Now().UnixNano())
	return frame, nil
}

// requestClose asks the reader to stop after the frames it already has and
// close for cause. It does not block.
func (w *wire) requestClose(cause CloseCause) {
	w.requested.CompareAndSwap(nil, &cause)
	w.closeRequested.Store(true)
	w.nc.SetReadDeadline(time.Unix(1, 0)) //nolint:errcheck // a closed socket needs no waking
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
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		return ErrConnClosed
	}
	w.pending = encode(w.pending)
	w.out[typeIndex(t)].Add(1)
	if t == protocol.TypeKeepAlive {
		w.keepAliveOut.Store(time.Now().UnixNano())
	}
	if len(w.pending) > w.cfg.maxQueueBytes {
		w.mu.Unlock()
		w.abort(causeSlowConsumer)
		return ErrSlowConsumer
	}
	w.mu.Unlock()
	w.signal()
	return nil
}

// enqueueMessage encodes m into the outbound buffer.
func (w *wire) enqueueMessage(m *protocol.Message) error {
	return w.enqueue(m.Type, func(dst []byte) []byte { return protocol.AppendFrame(dst, m) })
}

// enqueueError queues an `error` frame answering the message with id.
func (w *wire) enqueueError(id string, err error) error {
	return w.enqueue(protocol.TypeError, func(dst []byte) []byte { return protocol.AppendErrorFrame(dst, id, err) })
}

func (w *wire) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
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
	w.mu.Unlock()
	w.signal()
}

func appendCloseFrame(dst []byte, key, text string) []byte {
	var buf [128]byte
	payload := protocol.AppendReasonPayload(buf[:0], key, text)
	return protocol.AppendFrame(dst, &protocol.Message{Type: protocol.TypeClose, Payload: payload})
}

// abort closes the socket at once, discarding whatever is queued. Both
// goroutines then fail out of their blocking calls.
func (w *wire) abort(cause CloseCause) {
	w.mu.Lock()
	if !w.closing {
		w.closing = true
		w.cause = cause
	}
	already := w.aborted
	w.aborted = true
	w.pending = nil
	w.mu.Unlock()
	if !already {
		w.nc.Close()
	}
	w.signal()
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

// writeLoop is the writer goroutine. It writes the outbound buffer in
// batches (one write for everything queued since the last one), sends a
// keepalive frame every interval (the one keep-alive loop of server and
// client connections), and once the connection is closing and everything is
// written, half-closes the socket so the peer sees the end after the last
// frame.
func (w *wire) writeLoop() {
	defer close(w.writerDone)
	var tick <-chan time.Time
	if w.cfg.keepAliveInterval > 0 {
		t := time.NewTicker(w.cfg.keepAliveInterval)
		defer t.Stop()
		tick = t.C
	}
	var spare []byte
	for {
		select {
		case <-w.wake:
		case <-tick:
			if w.cfg.framePacing > 0 && time.Since(time.Unix(0, w.keepAliveOut.Load())) < w.cfg.keepAliveInterval/2 {
				// One frame per write: a keepalive (the answer to the peer's)
				// just went out; a second one now would fall due with it.
				break
			}
			w.enqueue(protocol.TypeKeepAlive, appendKeepAlive) //nolint:errcheck // closing or slow: the loop below sees it
		}
		for {
			w.mu.Lock()
			batch, closing, aborted := w.pending, w.closing, w.aborted
			w.pending = spare[:0]
			w.mu.Unlock()
			if aborted {
				return
			}
			if len(batch) == 0 {
				spare = batch
				if closing {
					w.finishWrites()
					return
				}
				break
			}
			if err := w.write(batch); err != nil {
				cause := CloseCause{Kind: CloseWriteFailed, Detail: err.Error()}
				if errors.Is(err, net.ErrClosed) {
					cause = causePeerGone
				} else if isTimeout(err) {
					cause = causeSlowConsumer
				}
				w.abort(cause)
				return
			}
			if cap(batch) <= spareBufferLimit {
				spare = batch[:0]
			} else {
				spare = nil
			}
		}
	}
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

func (w *wire) writeOnce(b []byte) error {
	w.nc.SetWriteDeadline(time.Now().Add(w.cfg.writeTimeout)) //nolint:errcheck // Write reports it
	n, err := w.nc.Write(b)
	w.bytesOut.Add(uint64(n))
	return err
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
	if !w.noLinger.Load() {
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
