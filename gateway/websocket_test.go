package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
)

// serveHTTP runs srv's WebSocket and route handlers on a test HTTP server.
func serveHTTP(t *testing.T, srv *Server, cfg WebSocketConfig) string {
	t.Helper()
	ws, err := srv.WebSocket(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/ws", ws)
	mux.Handle("/v1/routes/", srv.Routes(5*time.Second))
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return hs.URL
}

// wsPeer is a test client on a WebSocket.
type wsPeer struct {
	t  *testing.T
	ws *websocket.Conn
}

func dialWS(t *testing.T, url string, opts *websocket.DialOptions) *wsPeer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, strings.Replace(url, "http://", "ws://", 1)+"/v1/ws", opts)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (status %d)", err, status)
	}
	ws.SetReadLimit(-1)
	t.Cleanup(func() { ws.CloseNow() })
	return &wsPeer{t: t, ws: ws}
}

func (p *wsPeer) send(s string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := p.ws.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		p.t.Fatalf("write: %v", err)
	}
}

// next reads the next message that is not a periodic keepalive and
// checks it is one frame.
func (p *wsPeer) next() frame {
	p.t.Helper()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		typ, data, err := p.ws.Read(ctx)
		cancel()
		if err != nil {
			p.t.Fatalf("read: %v", err)
		}
		if typ != websocket.MessageText || bytes.IndexByte(data, '\n') >= 0 {
			p.t.Fatalf("a message of type %v that is not one frame: %q", typ, data)
		}
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			p.t.Fatalf("not a frame: %q", data)
		}
		f.raw = string(data)
		if f.Type == "keepalive" && f.ID == "" {
			continue
		}
		return f
	}
}

// closed waits for the WebSocket to end and returns its close status.
func (p *wsPeer) closed() websocket.StatusCode {
	p.t.Helper()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		_, _, err := p.ws.Read(ctx)
		cancel()
		if err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

func TestWebSocketEchoAndFraming(t *testing.T) {
	srv, _ := startServer(t, Config{KeepAliveInterval: time.Hour})
	url := serveHTTP(t, srv, WebSocketConfig{})
	p := dialWS(t, url, nil)

	// One frame per message both ways, many in flight.
	for i := range 20 {
		p.send(`{"type":"data","id":"m` + string(rune('a'+i)) + `","payload":{"n":` + string(rune('0'+i%10)) + `}}`)
	}
	for i := range 20 {
		f := p.next()
		if f.Type != "data" || f.ID != "m"+string(rune('a'+i)) {
			t.Fatalf("reply %d: %s", i, f.raw)
		}
	}
	// A frame in three fragments is one frame; a newline inside a
	// message (white space in JSON) does not split it.
	ctx := context.Background()
	w, err := p.ws.Writer(ctx, websocket.MessageText)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{`{"type":"data",`, "\n" + `"id":"frag",`, `"payload":"x"}`} {
		if _, err := w.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	if f := p.next(); f.ID != "frag" || string(f.Payload) != `"x"` {
		t.Fatalf("fragmented frame answered %s", f.raw)
	}
	var info ConnInfo
	for _, c := range srv.Connections() {
		info = c
	}
	if info.Transport != TransportWebSocket {
		t.Fatalf("transport %q, want %q", info.Transport, TransportWebSocket)
	}
}

func TestWebSocketRefusals(t *testing.T) {
	srv, _ := startServer(t, Config{MaxFrameSize: 4096})
	url := serveHTTP(t, srv, WebSocketConfig{Origins: []string{"https://app.example.com", "https://*.agents.example"}})
	get := func(origin string, header map[string]string) int {
		req, _ := http.NewRequest(http.MethodGet, url+"/v1/ws", nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		for k, v := range header {
			if v == "" {
				req.Header.Del(k)
			} else {
				req.Header.Set(k, v)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tt := range []struct {
		name   string
		origin string
		header map[string]string
		want   int
	}{
		{"no Origin: not a browser", "", nil, http.StatusSwitchingProtocols},
		{"a listed origin", "https://app.example.com", nil, http.StatusSwitchingProtocols},
		{"a pattern", "https://eu.agents.example", nil, http.StatusSwitchingProtocols},
		{"cross-site hijacking: a foreign origin with a cookie", "https://evil.example", map[string]string{"Cookie": "session=1"}, http.StatusForbidden},
		{"the server's own origin is not listed", strings.Replace(url, "http://", "http://", 1), nil, http.StatusForbidden},
		{"no Upgrade header", "", map[string]string{"Upgrade": ""}, http.StatusUpgradeRequired},
		{"a wrong version", "", map[string]string{"Sec-WebSocket-Version": "8"}, http.StatusBadRequest},
		{"no key", "", map[string]string{"Sec-WebSocket-Key": ""}, http.StatusBadRequest},
		{"a bearer without a token", "", map[string]string{"Authorization": "Bearer "}, http.StatusUnauthorized},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := get(tt.origin, tt.header); got != tt.want {
				t.Fatalf("status %d, want %d", got, tt.want)
			}
		})
	}
	t.Run("a POST is not an upgrade", func(t *testing.T) {
		resp, err := http.Post(url+"/v1/ws", "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("a binary message is refused with 1003", func(t *testing.T) {
		p := dialWS(t, url, nil)
		if err := p.ws.Write(context.Background(), websocket.MessageBinary, []byte(`{"type":"ping"}`)); err != nil {
			t.Fatal(err)
		}
		if s := p.closed(); s != websocket.StatusUnsupportedData {
			t.Fatalf("close status %v, want 1003", s)
		}
	})
	t.Run("a message over the frame limit: frame_too_large, then the end", func(t *testing.T) {
		p := dialWS(t, url, nil)
		p.send(`{"type":"data","payload":"` + strings.Repeat("x", 8000) + `"}`)
		if f := p.next(); f.Type != "error" || !strings.Contains(string(f.Payload), "frame_too_large") {
			t.Fatalf("got %s", f.raw)
		}
		p.closed()
	})
	t.Run("a compression bomb is not inflated whole", func(t *testing.T) {
		p := dialWS(t, url, &websocket.DialOptions{CompressionMode: websocket.CompressionContextTakeover})
		before := srv.Stats().BytesIn
		bomb := `{"type":"data","payload":"` + strings.Repeat("0", 64<<20) + `"}` // 64 MiB, ~64 KiB deflated
		wrote := make(chan error, 1)
		go func() { wrote <- p.ws.Write(context.Background(), websocket.MessageText, []byte(bomb)) }()
		p.closed() // an error frame (frame_too_large), then the end; or the end at once
		<-wrote    // done or failed: the server stopped reading
		testutil.Eventually(t, "the connection to end", func() bool { return srv.ConnectionCount() == 0 })
		if read := srv.Stats().BytesIn - before; read > 1<<20 {
			t.Fatalf("the server inflated %d bytes of a 64 MiB message; its frame limit is 4 KiB", read)
		} else {
			t.Logf("the server inflated %d bytes of it", read)
		}
	})
}

func TestWebSocketAuthentication(t *testing.T) {
	srv, _ := startServer(t, Config{Auth: &AuthConfig{Identities: []Identity{{Name: "agent", TokenSHA256: tokenHash("agent-token")}}}})
	url := serveHTTP(t, srv, WebSocketConfig{})
	t.Run("Authorization: Bearer on the upgrade", func(t *testing.T) {
		p := dialWS(t, url, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer agent-token"}}})
		if f := p.next(); f.Type != "auth" || f.ID != "bearer" || !strings.Contains(string(f.Payload), `"identity":"agent"`) {
			t.Fatalf("first frame %s", f.raw)
		}
		p.send(`{"type":"data","id":"1","payload":1}`)
		if f := p.next(); f.ID != "1" || f.Type != "data" {
			t.Fatalf("got %s", f.raw)
		}
	})
	t.Run("the first frame, as on TCP", func(t *testing.T) {
		p := dialWS(t, url, nil)
		p.send(`{"type":"auth","id":"a","payload":{"token":"agent-token"}}`)
		if f := p.next(); f.Type != "auth" || f.ID != "a" {
			t.Fatalf("got %s", f.raw)
		}
	})
	t.Run("a forged bearer", func(t *testing.T) {
		p := dialWS(t, url, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer forged"}}})
		if f := p.next(); f.Type != "error" || !strings.Contains(string(f.Payload), "unauthorized") {
			t.Fatalf("got %s", f.raw)
		}
		p.closed()
	})
	t.Run("a token in the URL is not read", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		ws, _, err := websocket.Dial(ctx, strings.Replace(url, "http://", "ws://", 1)+"/v1/ws?token=agent-token", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		ws.Write(ctx, websocket.MessageText, []byte(`{"type":"data","id":"1","payload":1}`)) //nolint:errcheck // read below
		_, data, err := ws.Read(ctx)
		if err != nil || !strings.Contains(string(data), "unauthorized") {
			t.Fatalf("a data frame without auth answered %s, %v", data, err)
		}
	})
}

func TestRoutesOverHTTP(t *testing.T) {
	h := HandlerFunc(func(ctx context.Context, c *Conn, m *protocol.Message) error {
		switch m.Route {
		case "echo":
			return c.Reply(m, m.Payload)
		case "transport":
			return c.Reply(m, []byte(`"`+c.Transport()+`"`))
		case "push":
			c.Send([]byte(`"pushed"`), "push") //nolint:errcheck // before the reply: dropped
			return c.Reply(m, []byte(`"after a push"`))
		}
		return protocol.Errorf(protocol.CodeNoRoute, "no route %q", m.Route)
	})
	srv, _ := startServer(t, Config{Handler: h, MaxFrameSize: 4096,
		Auth: &AuthConfig{Identities: []Identity{{Name: "agent", TokenSHA256: tokenHash("agent-token"), Routes: []string{"echo", "transport", "push", "nothing"}}}}})
	url := serveHTTP(t, srv, WebSocketConfig{})
	post := func(route, body string, header map[string]string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, url+"/v1/routes/"+route, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer agent-token")
		for k, v := range header {
			if v == "" {
				req.Header.Del(k)
			} else {
				req.Header.Set(k, v)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tt := range []struct {
		name, route, body string
		header            map[string]string
		status            int
		want              string // in the body
	}{
		{"the reply is the body", "echo", `{"a":[1,2]}`, nil, 200, `{"a":[1,2]}`},
		{"the handler sees http", "transport", `1`, nil, 200, `"http"`},
		{"a push before the reply goes nowhere", "push", `1`, nil, 200, `"after a push"`},
		{"invalid JSON", "echo", `{"a":`, nil, 400, "invalid_json"},
		{"no token", "echo", `1`, map[string]string{"Authorization": ""}, 401, "unauthorized"},
		{"a forged token", "echo", `1`, map[string]string{"Authorization": "Bearer forged"}, 401, "unauthorized"},
		{"a route the identity may not use", "secret", `1`, nil, 403, "forbidden"},
		{"no such route", "nothing", `1`, nil, 404, "no_route"},
		{"a body over the frame limit", "echo", `"` + strings.Repeat("x", 5000) + `"`, nil, 413, "frame_too_large"},
		{"an invalid route name", "a%20b", `1`, nil, 404, "no_route"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, body := post(tt.route, tt.body, tt.header)
			if status != tt.status || !strings.Contains(body, tt.want) {
				t.Fatalf("%d %s, want %d with %s", status, body, tt.status, tt.want)
			}
		})
	}
	t.Run("a GET is not a call", func(t *testing.T) {
		resp, err := http.Get(url + "/v1/routes/echo")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("request smuggling: Content-Length with Transfer-Encoding", func(t *testing.T) {
		nc, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		io.WriteString(nc, "POST /v1/routes/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer agent-token\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"+
			"0\r\n\r\nPOST /v1/routes/secret HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n1") //nolint:errcheck // read below
		nc.SetReadDeadline(time.Now().Add(waitTimeout))
		rd := bufio.NewReader(nc)
		resp, err := http.ReadResponse(rd, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusLengthRequired {
			t.Fatalf("a request with both Content-Length and Transfer-Encoding answered %d, want 411", resp.StatusCode)
		}
		if next, err := http.ReadResponse(rd, nil); err == nil {
			t.Fatalf("the smuggled request was served too: %d", next.StatusCode)
		}
	})
	// Each call's connection ends with its answer (its socket closes at
	// once; the server takes it out of its count as the close is seen).
	testutil.Eventually(t, "the calls' connections to end", func() bool { return srv.ConnectionCount() == 0 })
}
