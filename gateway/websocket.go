package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/secureagentmessaging/samgw/protocol"
)

// WebSocketConfig configures the WebSocket transport (Server.WebSocket).
type WebSocketConfig struct {
	// Origins are the browser origins allowed to connect: patterns
	// matched (path.Match, case-insensitively) against the Origin header,
	// "https://app.example.com" or "https://*.example.com". A request
	// without Origin (not a browser) is allowed; one whose Origin matches
	// none is refused with 403, the same origin as the server included.
	Origins []string
	// Compression negotiates permessage-deflate when the client offers it.
	Compression bool
	// CompressionThreshold: messages shorter than this many bytes go
	// uncompressed (0: 512).
	CompressionThreshold int
}

// Validate reports every problem of cfg.
func (cfg WebSocketConfig) Validate() error {
	var errs []error
	for _, o := range cfg.Origins {
		if _, err := path.Match(o, ""); err != nil || o == "" {
			errs = append(errs, fmt.Errorf("gateway: WebSocket origin pattern %q: not a pattern", o))
		}
	}
	if cfg.CompressionThreshold < 0 {
		errs = append(errs, fmt.Errorf("gateway: WebSocket CompressionThreshold %d: want 0 or more", cfg.CompressionThreshold))
	}
	return errors.Join(errs...)
}

// allows reports whether a request from origin may connect.
func (cfg WebSocketConfig) allows(origin string) bool {
	if origin == "" {
		return true // not a browser: Origin is what browsers send
	}
	origin = strings.ToLower(origin)
	for _, o := range cfg.Origins {
		if ok, _ := path.Match(strings.ToLower(o), origin); ok {
			return true
		}
	}
	return false
}

// WebSocket returns the handler of GET /v1/ws: it upgrades the request
// (RFC 6455, github.com/coder/websocket) and serves the connection like
// one of the TCP listener's, one protocol frame per text message both
// ways. Authentication is the first frame, as on TCP, or an
// "Authorization: Bearer TOKEN" header on the upgrade request (never a
// token in the URL): then the server's first frame is the auth reply, with
// the id "bearer". A binary message closes the connection with 1003.
func (s *Server) WebSocket(cfg WebSocketConfig) (http.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := &websocket.AcceptOptions{
		InsecureSkipVerify:   true, // the Origin was checked before: against cfg.Origins only
		CompressionMode:      websocket.CompressionDisabled,
		CompressionThreshold: cfg.CompressionThreshold,
	}
	if opts.CompressionThreshold == 0 {
		opts.CompressionThreshold = 512
	}
	if cfg.Compression {
		opts.CompressionMode = websocket.CompressionNoContextTakeover // flate state per message, pooled: a quiet connection holds none
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			http.Error(w, "a WebSocket upgrade is a GET", http.StatusMethodNotAllowed)
			return
		}
		if !cfg.allows(r.Header.Get("Origin")) {
			s.log.Warn("WebSocket refused: origin not allowed", "origin", truncateField(r.Header.Get("Origin"), 128), "remote", r.RemoteAddr)
			http.Error(w, "origin not allowed", http.StatusForbidden)
			return
		}
		var first []byte
		if auth := r.Header.Get("Authorization"); auth != "" {
			token, ok := strings.CutPrefix(auth, "Bearer ")
			if !ok || token == "" || len(token) > maxBearerLen {
				http.Error(w, "Authorization: want Bearer TOKEN", http.StatusUnauthorized)
				return
			}
			first = protocol.AppendFrame(nil, &protocol.Message{Type: protocol.TypeAuth, ID: "bearer", Payload: protocol.AppendAuthPayload(nil, token)})
		}
		// The server's read and write timeouts are for requests: a WebSocket
		// lives on, under the wire's own keep-alive and write deadlines.
		rc := http.NewResponseController(w)
		rc.SetReadDeadline(time.Time{})  //nolint:errcheck // a server conn takes deadlines
		rc.SetWriteDeadline(time.Time{}) //nolint:errcheck // as above
		batch := &writeBatch{}
		ws, err := websocket.Accept(batchingHijacker{w, batch}, r, opts)
		if err != nil {
			return // Accept answered the request (400 for a bad upgrade)
		}
		// The frame limits are the wire's (smaller before authentication):
		// it reads a message only as far as a frame may go, so neither a
		// long message nor one that inflates without end is read whole.
		ws.SetReadLimit(-1)
		var certs = r.TLS
		nc := newWSConn(ws, r, first)
		nc.batch = batch
		copts := ConnOptions{Transport: TransportWebSocket}
		if certs != nil && len(certs.PeerCertificates) > 0 && len(certs.VerifiedChains) > 0 {
			copts.PeerCertificates = certs.PeerCertificates
		}
		s.ServeConn(nc, copts)
	}), nil
}

// maxBearerLen bounds a bearer token (a token frame's limit applies too).
const maxBearerLen = 4096

// wsConn is a WebSocket connection as the net.Conn the wire reads and
// writes: each text message read is a frame and ends with a newline (a
// newline inside one, white space in JSON, becomes a space, so one message
// is never two frames); each frame written is a message. Deadlines, as the
// wire uses them (a keep-alive timeout, a wake-up before closing), end
// the connection when they pass: a timer closes the WebSocket, which ends
// a read or write under way (no context per message: a context and its
// watch per message were a tenth of the transport's cost).
type wsConn struct {
	ws     *websocket.Conn
	local  net.Addr
	remote net.Addr

	// The reader's (one goroutine at a time: the wire's reader).
	first   []byte    // a frame to read before the first message (a bearer's auth)
	msg     io.Reader // the message being read; nil between messages
	newline bool      // msg ended: a newline is owed

	deadlines [2]wsDeadline // read, write
	expired   atomic.Bool   // a deadline closed the WebSocket
	closeOnce sync.Once
	batch     *writeBatch // under the WebSocket's writes: one socket write a batch of frames
}

// wsDeadline is a deadline as a timer that ends the connection.
type wsDeadline struct {
	mu    sync.Mutex
	at    int64 // Unix nanoseconds; 0: none
	timer *time.Timer
}

const (
	readDeadline = iota
	writeDeadline
)

func newWSConn(ws *websocket.Conn, r *http.Request, first []byte) *wsConn {
	c := &wsConn{ws: ws, first: first, remote: addrOf(r.RemoteAddr), local: wsAddr("local")}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		c.local = a
	}
	return c
}

// set moves deadline d to t (zero: none); one that passes ends c.
func (c *wsConn) set(d *wsDeadline, t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if t.IsZero() {
		d.at = 0
		if d.timer != nil {
			d.timer.Stop()
		}
		return
	}
	d.at = t.UnixNano()
	wait := time.Until(t)
	if wait <= 0 {
		c.expire()
		return
	}
	if d.timer == nil {
		d.timer = time.AfterFunc(wait, c.expire)
		return
	}
	d.timer.Reset(wait)
}

// expire ends the connection for a deadline that passed.
func (c *wsConn) expire() {
	c.expired.Store(true)
	c.ws.CloseNow() //nolint:errcheck // ending
}

// failure is err as the wire expects it: os.ErrDeadlineExceeded (a
// net.Error timeout, as a socket's) when a deadline ended the connection.
func (c *wsConn) failure(err error) error {
	if c.expired.Load() {
		return fmt.Errorf("%w: %w", os.ErrDeadlineExceeded, err)
	}
	return err
}

func (c *wsConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(c.first) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	if c.newline {
		c.newline = false
		p[0] = '\n'
		return 1, nil
	}
	if c.msg == nil {
		typ, rd, err := c.ws.Reader(context.Background()) // deadlines: see set
		if err != nil {
			if s := websocket.CloseStatus(err); s == websocket.StatusNormalClosure || s == websocket.StatusGoingAway {
				return 0, io.EOF
			}
			return 0, c.failure(err)
		}
		if typ != websocket.MessageText {
			c.ws.Close(websocket.StatusUnsupportedData, "binary messages are not protocol frames: send text") //nolint:errcheck // ending
			return 0, errBinaryMessage
		}
		c.msg = rd
	}
	n, err := c.msg.Read(p)
	if err != nil && err != io.EOF {
		err = c.failure(fmt.Errorf("read a WebSocket message: %w", err))
	}
	if i := bytes.IndexByte(p[:n], '\n'); i >= 0 {
		for j := i; j < n; j++ {
			if p[j] == '\n' {
				p[j] = ' '
			}
		}
	}
	if err == io.EOF {
		c.msg = nil
		if n == 0 {
			p[0] = '\n'
			return 1, nil
		}
		c.newline = true
		return n, nil
	}
	return n, err
}

// Buffered reports whether input is at hand without waiting: the rest of a
// message, or bytes of the next read from the socket already. Called by
// the wire's reader goroutine, the one that reads.
func (c *wsConn) Buffered() bool {
	return c.newline || c.msg != nil || len(c.first) > 0 || c.batch != nil && c.batch.in != nil && c.batch.in.Buffered() > 0
}

// errBinaryMessage ends a connection that sent a binary message.
var errBinaryMessage = errors.New("gateway: a binary WebSocket message")

// Write sends each frame of p (one or more, each ending in a newline) as
// a text message of its own, all of them in one socket write.
func (c *wsConn) Write(p []byte) (int, error) {
	if c.batch != nil {
		c.batch.begin()
	}
	total := len(p)
	for len(p) > 0 {
		frame := p
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			frame = p[:i]
			p = p[i+1:]
		} else {
			p = nil
		}
		if len(frame) > 0 {
			if err := c.ws.Write(context.Background(), websocket.MessageText, frame); err != nil { // deadlines: see set
				if c.batch != nil {
					c.batch.end() //nolint:errcheck // failing already
				}
				return 0, c.failure(err)
			}
		}
	}
	if c.batch != nil {
		if err := c.batch.end(); err != nil {
			c.ws.CloseNow() //nolint:errcheck // the socket failed
			return 0, c.failure(err)
		}
	}
	return total, nil
}

// Close closes the WebSocket at once: the protocol's own close frame, if
// any, was written before.
func (c *wsConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		for i := range c.deadlines {
			c.set(&c.deadlines[i], time.Time{})
		}
		err = c.ws.CloseNow()
	})
	return err
}

func (c *wsConn) LocalAddr() net.Addr  { return c.local }
func (c *wsConn) RemoteAddr() net.Addr { return c.remote }

func (c *wsConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)  //nolint:errcheck // never fails
	c.SetWriteDeadline(t) //nolint:errcheck // never fails
	return nil
}

func (c *wsConn) SetReadDeadline(t time.Time) error {
	c.set(&c.deadlines[readDeadline], t)
	return nil
}

func (c *wsConn) SetWriteDeadline(t time.Time) error {
	c.set(&c.deadlines[writeDeadline], t)
	return nil
}

// wsAddr is an address that is only a name.
type wsAddr string

func (a wsAddr) Network() string { return "websocket" }
func (a wsAddr) String() string  { return string(a) }

// addrOf parses host:port into a TCP address (the remote IP counts for
// --max-conns-per-ip), or keeps it as a name.
func addrOf(hostport string) net.Addr {
	if ap, err := net.ResolveTCPAddr("tcp", hostport); err == nil {
		return ap
	}
	return wsAddr(hostport)
}

// writeBatch sits under a WebSocket's buffered writer: while a batch is
// open, what the WebSocket flushes (a message each) is gathered, and the
// batch goes to the socket in one write when it ends, as the TCP
// transport writes a batch of frames. Outside a batch (a pong, the close
// frame) writes go straight through.
type writeBatch struct {
	mu       sync.Mutex
	nc       net.Conn
	in       *bufio.Reader // the WebSocket's reader of nc (the wire's reader goroutine reads it)
	batching bool
	buf      []byte
}

func (b *writeBatch) Write(p []byte) (int, error) {
	b.mu.Lock()
	if b.batching {
		b.buf = append(b.buf, p...)
		b.mu.Unlock()
		return len(p), nil
	}
	b.mu.Unlock()
	return b.nc.Write(p)
}

func (b *writeBatch) begin() {
	b.mu.Lock()
	b.batching = true
	b.mu.Unlock()
}

// end writes what the batch gathered (a write deadline that passes
// closes the socket: see wsConn.set).
func (b *writeBatch) end() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batching = false
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.nc.Write(b.buf)
	if cap(b.buf) > maxBatchKeep {
		b.buf = nil
	} else {
		b.buf = b.buf[:0]
	}
	return err
}

// maxBatchKeep bounds the batch buffer a quiet WebSocket keeps.
const maxBatchKeep = 64 << 10

// batchingHijacker hands coder/websocket a connection whose writes go
// through a writeBatch.
type batchingHijacker struct {
	http.ResponseWriter
	batch *writeBatch
}

func (h batchingHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("gateway: the response cannot be hijacked")
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil {
		nc.Close()
		return nil, nil, err
	}
	h.batch.nc, h.batch.in = nc, brw.Reader
	return nc, bufio.NewReadWriter(brw.Reader, bufio.NewWriterSize(h.batch, 4096)), nil
}
