package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/secureagentmessaging/samgw/internal/testutil"
)

// TestHTTPListener: serve --http-listen takes WebSockets and route calls
// to the same Lua handlers (which see the transport), refuses a foreign
// Origin, and cuts off peers that drip their headers or body.
func TestHTTPListener(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "transport.lua"), `function on_data(msg, conn) return {transport = conn.transport, got = msg.payload} end`)
	_, log, _ := startServe(t, "--scripts", dir, "--http-listen", "127.0.0.1:0", "--ws-origins", "https://app.example.com",
		"--http-header-timeout", "300ms", "--http-read-timeout", "500ms")
	var addr string
	testutil.Eventually(t, "the HTTP listener", func() bool {
		m := regexp.MustCompile(`msg="HTTP listening" addr=(\S+)`).FindStringSubmatch(log.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), testutil.WaitTimeout)
	defer cancel()

	t.Run("a WebSocket reaches the handler as ws", func(t *testing.T) {
		ws, _, err := websocket.Dial(ctx, "ws://"+addr+"/v1/ws", &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://app.example.com"}}})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"data","id":"1","route":"transport","payload":7}`)); err != nil {
			t.Fatal(err)
		}
		_, data, err := ws.Read(ctx)
		var f struct {
			Payload struct {
				Transport string
				Got       int
			}
		}
		if err != nil || json.Unmarshal(data, &f) != nil || f.Payload.Transport != "ws" || f.Payload.Got != 7 {
			t.Fatalf("answered %s, %v", data, err)
		}
	})
	t.Run("an HTTP call reaches the handler as http", func(t *testing.T) {
		resp, err := http.Post("http://"+addr+"/v1/routes/transport", "application/json", strings.NewReader(`{"a":1}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var got struct {
			Transport string
			Got       map[string]int
		}
		if resp.StatusCode != 200 || json.Unmarshal(body, &got) != nil || got.Transport != "http" || got.Got["a"] != 1 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	})
	t.Run("a foreign Origin gets 403", func(t *testing.T) {
		_, resp, err := websocket.Dial(ctx, "ws://"+addr+"/v1/ws", &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("dial from a foreign origin: %v %v", resp, err)
		}
	})
	// A peer that drips: the connection ends within the timeout (and a
	// bound well under the test's), not when the peer pleases.
	for _, tt := range []struct{ name, start string }{
		{"headers dripped", "GET /v1/ws HTTP/1.1\r\nHost: x\r\n"},
		{"a body dripped", "POST /v1/routes/transport HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"a\":"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			start := time.Now()
			if _, err := io.WriteString(nc, tt.start); err != nil {
				t.Fatal(err)
			}
			nc.SetReadDeadline(time.Now().Add(testutil.WaitTimeout))
			io.Copy(io.Discard, nc) //nolint:errcheck // until the server ends it
			if took := time.Since(start); took > 3*time.Second {
				t.Fatalf("the server held a dripping peer for %v", took)
			} else {
				t.Logf("cut off after %v", took.Round(time.Millisecond))
			}
		})
	}
}
