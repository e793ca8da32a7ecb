package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// DialWebSocket returns a Config.Dial that opens WebSocket connections to
// url (ws://host:port/v1/ws): the load goes over the server's WebSocket
// transport, one frame per text message, a batch of frames in one socket
// write as over TCP (so the generator measures the server, not its own
// writes). compress asks for permessage-deflate.
func DialWebSocket(url string, compress bool) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		var sock *batchedConn
		dialer := &net.Dialer{Timeout: 5 * time.Second}
		client := &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				nc, err := dialer.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				sock = &batchedConn{Conn: nc}
				return sock, nil
			},
		}}
		mode := websocket.CompressionDisabled
		if compress {
			mode = websocket.CompressionNoContextTakeover
		}
		ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: client, CompressionMode: mode})
		if err != nil {
			return nil, fmt.Errorf("bench: WebSocket %s: %w", url, err)
		}
		ws.SetReadLimit(-1)
		return &wsLoad{ws: ws, sock: sock}, nil
	}
}

// batchedConn gathers writes while a batch is open and writes them in one.
type batchedConn struct {
	net.Conn
	mu       sync.Mutex
	batching bool
	buf      []byte
}

func (c *batchedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.batching {
		c.buf = append(c.buf, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *batchedConn) begin() {
	c.mu.Lock()
	c.batching = true
	c.mu.Unlock()
}

func (c *batchedConn) end() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batching = false
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}

// wsLoad is a load connection over a WebSocket, as a net.Conn of
// newline-ended frames: each frame written is a message, each message
// read ends with a newline.
type wsLoad struct {
	ws      *websocket.Conn
	sock    *batchedConn
	msg     io.Reader
	newline bool
}

func (c *wsLoad) Write(p []byte) (int, error) {
	c.sock.begin()
	total := len(p)
	for len(p) > 0 {
		frame := p
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			frame, p = p[:i], p[i+1:]
		} else {
			p = nil
		}
		if len(frame) > 0 {
			if err := c.ws.Write(context.Background(), websocket.MessageText, frame); err != nil {
				c.sock.end() //nolint:errcheck // failing already
				return 0, err
			}
		}
	}
	if err := c.sock.end(); err != nil {
		return 0, err
	}
	return total, nil
}

func (c *wsLoad) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.newline {
		c.newline = false
		p[0] = '\n'
		return 1, nil
	}
	if c.msg == nil {
		_, rd, err := c.ws.Reader(context.Background())
		if err != nil {
			return 0, err
		}
		c.msg = rd
	}
	n, err := c.msg.Read(p)
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

func (c *wsLoad) Close() error                       { return c.ws.CloseNow() }
func (c *wsLoad) LocalAddr() net.Addr                { return c.sock.LocalAddr() }
func (c *wsLoad) RemoteAddr() net.Addr               { return c.sock.RemoteAddr() }
func (c *wsLoad) SetDeadline(t time.Time) error      { return c.sock.SetDeadline(t) }
func (c *wsLoad) SetReadDeadline(t time.Time) error  { return c.sock.SetReadDeadline(t) }
func (c *wsLoad) SetWriteDeadline(t time.Time) error { return c.sock.SetWriteDeadline(t) }
