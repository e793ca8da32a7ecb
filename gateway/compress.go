package gateway

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/klauspost/compress/flate"

	"github.com/secureagentmessaging/samgw/protocol"
)

// Stream compression (protocol.CompressDeflate) on a wire: one raw DEFLATE
// stream each way, flushed at every write.
//
// The sending side keeps no compressor between writes: each batch is
// compressed on its own (flate.StatelessDeflate), with the last
// deflateWindow bytes sent before it as its dictionary, so repeated keys
// and phrases across frames still shrink while a quiet connection holds
// that window and nothing else (a stateful compressor holds about 800 KiB).
// The receiving side needs the 32 KiB window the format allows.

// deflateWindow is how much of the plaintext already sent a batch may
// refer back to: the most flate.StatelessDeflate takes.
const deflateWindow = 8 << 10

// ErrBadCompression ends a connection whose compressed input is not a
// DEFLATE stream, or inflates to more than frames can explain (an empty
// line bomb: the frame limit bounds a frame, not the blank lines between).
var ErrBadCompression = errors.New("gateway: invalid compressed stream")

// deflater compresses a wire's outbound batches; only the flusher uses it.
type deflater struct {
	window []byte // the tail of what was compressed so far, at most deflateWindow
}

// compress appends the compressed form of plain to dst.
func (d *deflater) compress(dst, plain []byte) ([]byte, error) {
	out := appendWriter{buf: dst}
	if err := flate.StatelessDeflate(&out, plain, false, d.window); err != nil {
		return dst, err
	}
	if len(plain) >= deflateWindow {
		d.window = append(d.window[:0], plain[len(plain)-deflateWindow:]...)
	} else {
		if keep := deflateWindow - len(plain); len(d.window) > keep {
			d.window = append(d.window[:0], d.window[len(d.window)-keep:]...)
		}
		d.window = append(d.window, plain...)
	}
	return out.buf, nil
}

// appendWriter is an io.Writer appending to a slice.
type appendWriter struct{ buf []byte }

func (a *appendWriter) Write(p []byte) (int, error) {
	a.buf = append(a.buf, p...)
	return len(p), nil
}

// inflater is the decompressing source of a wire's frame reader. It counts
// what it inflates since the last frame and fails past a bound no frame
// stream reaches.
type inflater struct {
	z     io.Reader
	src   *bufio.Reader // the compressed bytes read but not yet inflated
	since int           // bytes inflated since the last frame
	bound int
}

func (in *inflater) Read(p []byte) (int, error) {
	n, err := in.z.Read(p)
	in.since += n
	if in.since > in.bound {
		return n, ErrBadCompression
	}
	var corrupt flate.CorruptInputError
	var internal flate.InternalError
	if errors.As(err, &corrupt) || errors.As(err, &internal) {
		return n, fmt.Errorf("%w: %w", ErrBadCompression, err)
	}
	return n, err // the socket's own errors pass through the flate reader as they are
}

// inflateInput makes the rest of the input, from the end of the frame just
// read, a DEFLATE stream. The reader goroutine calls it.
func (w *wire) inflateInput() {
	w.compressed.Store(true)
	w.reader.Switch(func(rest io.Reader) io.Reader {
		src := bufio.NewReaderSize(rest, 4<<10)
		w.inflate = &inflater{
			z:     flate.NewReader(src),
			src:   src,
			bound: 2*(w.cfg.limits.MaxFrameSize+2) + 64<<10,
		}
		return w.inflate
	})
}

// deflateOutput queues m and compresses everything queued after it: m
// (the auth reply, or the client's auth) is the last frame sent as it is.
func (w *wire) deflateOutput(m *protocol.Message) error {
	encode := func(dst []byte) []byte { return protocol.AppendFrame(dst, m) }
	return w.queueThen(m.Type, encode, false, func() {
		w.deflate = &deflater{}
		w.plainPrefix = len(w.pending)
	})
}

// compressionRefused says why the connection cannot have the stream
// compression algo ("" when it can).
func (c *Conn) compressionRefused(algo string) string {
	switch {
	case algo != protocol.CompressDeflate:
		return ReasonCompressionUnsupported + ": " + strconv.Quote(algo)
	case c.transport == TransportWebSocket || c.transport == TransportHTTP:
		return ReasonCompressionUnsupported + " on " + c.transport + " (WebSocket has permessage-deflate)"
	}
	return ""
}

// refuseCompression answers an auth frame (with id) whose compression the
// server cannot agree to, and returns the cause the connection closes with:
// the peer's bytes after that frame are compressed already, so nothing it
// sends next can be read.
func (c *Conn) refuseCompression(id, why string) CloseCause {
	c.w.enqueueError(id, protocol.Errorf(protocol.CodeInvalidMessage, "%s", why)) //nolint:errcheck // closing
	c.logger().Info("Compression refused", "reason", why)
	return CloseCause{Kind: CloseRequested, Detail: ReasonCompressionUnsupported}
}

// compressAfterAuth answers an auth frame that asks for compression on a
// connection that was open without one (no identities, or a client
// certificate): only as the connection's first frame, and with a token
// only if it names the connection's identity (a server without identities
// has no use for a token and ignores it).
func (c *Conn) compressAfterAuth(m *protocol.Message, algo string, first bool) {
	why := c.compressionRefused(algo)
	if why == "" && !first {
		why = "compression is agreed in the connection's first frame"
	}
	if why != "" {
		c.w.requestClose(c.refuseCompression(m.ID, why))
		return
	}
	if protocol.ParseAuthToken(m.Payload) != "" && c.srv.auth != nil && c.refuseForeignToken(m) {
		// Its bytes after this frame are compressed: nothing more can be read.
		c.w.requestClose(CloseCause{Kind: CloseUnauthorized, Detail: "token does not match"})
		return
	}
	c.w.inflateInput()
	payload := protocol.AppendCompressOption(protocol.AppendAuthReply(nil, c.Identity()), algo)
	c.w.deflateOutput(&protocol.Message{Type: protocol.TypeAuth, ID: m.ID, Payload: payload}) //nolint:errcheck // closing
}
