package gateway

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/secureagentmessaging/samgw/protocol"
)

// wireConfig is what the shared connection machinery needs from a Config or
// ClientConfig.
type wireConfig struct {
	limits            protocol.Limits
	keepAliveInterval time.Duration // 0: no periodic keepalive frames
	keepAliveTimeout  time.Duration // 0: no read deadline
	writeTimeout      time.Duration
	lingerTimeout     time.Duration
	maxQueueBytes     int
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
	pending []byte // encoded frames not yet handed to the writer
	closing bool   // no more frames are accepted; the writer exits once pending is written
	aborted bool   // the socket was closed outright; pending is discarded
	reason  string // why the connection closes; the first reason wins

	wake       chan struct{} // wakes the writer; capacity 1
	writerDone chan struct{} // closed when writeLoop returns

	closeRequested atomic.Bool
	requestReason  atomic.Pointer[string]
	noLinger       atomic.Bool  // close right after the last frame is out, without draining the peer
	lastFrame      atomic.Int64 // Unix nanoseconds of the last inbound frame (or of the connect)
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
// close with reason. It does not block.
func (w *wire) requestClose(reason string) {
	w.requestReason.CompareAndSwap(nil, &reason)
	w.closeRequested.Store(true)
	w.nc.SetReadDeadline(time.Unix(1, 0)) //nolint:errcheck // a closed socket needs no waking
}

// requestCloseNow is requestClose for a peer owed no lingering: once the
// close frame is written the socket is closed, without waiting for the peer
// to read it and hang up.
func (w *wire) requestCloseNow(reason string) {
	w.noLinger.Store(true)
	w.requestClose(reason)
}

// requestedReason is the reason given to the first requestClose.
func (w *wire) requestedReason() string {
	if r := w.requestReason.Load(); r != nil {
		return *r
	}
	return ""
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
	if len(w.pending) > w.cfg.maxQueueBytes {
		w.mu.Unlock()
		w.abort(ReasonSlowConsumer)
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

// beginClose stops accepting frames, queues a final close frame with payload
// {key: text} when key is not empty, and lets the writer finish. The first
// reason wins; later calls do nothing.
func (w *wire) beginClose(reason, key, text string) {
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		return
	}
	w.closing = true
	w.reason = reason
	if key != "" && !w.aborted {
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
func (w *wire) abort(reason string) {
	w.mu.Lock()
	if !w.closing {
		w.closing = true
		w.reason = reason
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

// closeReason is the reason the connection closed or is closing.
func (w *wire) closeReason() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reason
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

// writeLoop is the writer goroutine. It writes the outbound buffer in
// batches (one write for everything queued since the last one), sends a
// keepalive frame every interval, and once the connection is closing and
// everything is written, half-closes the socket so the peer sees the end
// after the last frame.
func (w *wire) writeLoop(keepalive func(dst []byte) []byte) {
	defer close(w.writerDone)
	var tick <-chan time.Time
	if w.cfg.keepAliveInterval > 0 && keepalive != nil {
		t := time.NewTicker(w.cfg.keepAliveInterval)
		defer t.Stop()
		tick = t.C
	}
	var spare []byte
	for {
		select {
		case <-w.wake:
		case <-tick:
			w.enqueue(protocol.TypeKeepAlive, keepalive) //nolint:errcheck // closing or slow: the loop below sees it
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
			w.nc.SetWriteDeadline(time.Now().Add(w.cfg.writeTimeout)) //nolint:errcheck // Write reports it
			n, err := w.nc.Write(batch)
			w.bytesOut.Add(uint64(n))
			if err != nil {
				reason := "write failed: " + err.Error()
				if errors.Is(err, net.ErrClosed) {
					reason = ReasonPeerClosed
				} else if isTimeout(err) {
					reason = ReasonSlowConsumer
				}
				w.abort(reason)
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
// the socket. reason and closeKey/closeText are used if nothing else started
// the close first.
func (w *wire) finish(reason, closeKey, closeText string) {
	w.beginClose(reason, closeKey, closeText)
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
