package cluster

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/gatewaytest"
	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
)

// rawSigner is a hand-driven connection of the signing identity, so the
// very same signed frame can be sent to two nodes.
type rawSigner struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dialSigner(t *testing.T, addr string) *rawSigner {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, testutil.WaitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	s := &rawSigner{t: t, nc: nc, r: bufio.NewReader(nc)}
	s.send([]byte(`{"type":"auth","payload":{"token":"s"},"id":"auth"}` + "\n"))
	if m := s.next(); m.Type != protocol.TypeAuth {
		t.Fatalf("auth answered with %s", m.Type)
	}
	return s
}

func (s *rawSigner) send(frame []byte) {
	s.t.Helper()
	if _, err := s.nc.Write(frame); err != nil {
		s.t.Fatal(err)
	}
}

// next returns the next frame that is not a periodic keepalive.
func (s *rawSigner) next() protocol.Message {
	s.t.Helper()
	for {
		s.nc.SetReadDeadline(time.Now().Add(testutil.WaitTimeout))
		line, err := s.r.ReadBytes('\n')
		if err != nil {
			s.t.Fatalf("reading: %v", err)
		}
		var m protocol.Message
		if err := protocol.Decode(line[:len(line)-1], &m, protocol.Limits{}); err != nil {
			s.t.Fatalf("decoding %q: %v", line, err)
		}
		if m.Type == protocol.TypeKeepAlive && m.ID == "" {
			continue
		}
		return *m.Clone()
	}
}

// errorCode is the code of an error frame, "" for any other frame.
func errorCode(m protocol.Message) protocol.Code {
	if m.Type != protocol.TypeError {
		return ""
	}
	var e struct{ Code protocol.Code }
	json.Unmarshal(m.Payload, &e)
	return e.Code
}

// TestSignedFrameIsAcceptedOnceByTheCluster: the same signed frame sent to
// two nodes is accepted by the first only; while NATS is down the check
// cannot be made and signed frames are refused (fail closed) with
// cluster_unavailable.
func TestSignedFrameIsAcceptedOnceByTheCluster(t *testing.T) {
	ns := natsServer(t, -1, t.TempDir())
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	ids := []gateway.Identity{{Name: "signer", TokenSHA256: hash("s"), PublicKey: base64.StdEncoding.EncodeToString(pub)}}
	var addrs []string
	for _, name := range []string{"n1", "n2"} {
		c, err := Connect(context.Background(), Config{URLs: ns.ClientURL(), Node: name, ReplayWindow: 4 * time.Minute, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_, addr := gatewaytest.Serve(t, "", gateway.Config{IDPrefix: c.IDPrefix(), Auth: &gateway.AuthConfig{Identities: ids, Replay: c}})
		addrs = append(addrs, addr)
	}
	frame := func(id string) []byte {
		m := protocol.Message{Type: protocol.TypeData, ID: id, Timestamp: protocol.Now(), Payload: []byte(`"transfer 100"`)}
		m.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(priv, protocol.AppendSigned(nil, &m)))
		return protocol.AppendFrame(nil, &m)
	}
	one, two := dialSigner(t, addrs[0]), dialSigner(t, addrs[1])
	f := frame("pay-1")
	one.send(f)
	if m := one.next(); m.Type != protocol.TypeData || string(m.Payload) != `"transfer 100"` {
		t.Fatalf("first node: %s %s", m.Type, m.Payload)
	}
	two.send(f)
	if m := two.next(); errorCode(m) != protocol.CodeReplay {
		t.Fatalf("second node answered the replayed frame with %s %s", m.Type, m.Payload)
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	one.send(frame("pay-2"))
	if m := one.next(); errorCode(m) != protocol.CodeClusterUnavailable {
		t.Fatalf("with NATS down: %s %s", m.Type, m.Payload)
	}
}

// TestConnectNamesMissingJetStream: a NATS server without JetStream is
// refused at once, saying what is missing and how to fix it.
func TestConnectNamesMissingJetStream(t *testing.T) {
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(testutil.WaitTimeout) {
		t.Fatal("NATS did not start")
	}
	defer ns.Shutdown()
	_, err = Connect(context.Background(), Config{URLs: ns.ClientURL(), Node: "n1", Logger: slog.New(slog.DiscardHandler)})
	if !errors.Is(err, ErrNoJetStream) || !strings.Contains(err.Error(), "start nats-server with -js") {
		t.Fatalf("Connect to NATS without JetStream: %v", err)
	}
}

func TestNATSVersionFloor(t *testing.T) {
	for _, tc := range []struct {
		version string
		ok      bool
	}{
		{"2.9.0", true}, {"2.9.10", true}, {"2.10.4", true}, {"2.15.2", true}, {"3.0.0", true},
		{"2.11.0-dev", true}, {"v2.12.1", true},
		{"2.8.4", false}, {"2.2.0", false}, {"1.4.1", false},
		{"unknown", true}, {"", true}, // unreadable: let through, the bucket calls speak then
	} {
		err := checkNATSVersion(tc.version)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err = %v, want ok=%v", tc.version, err, tc.ok)
		}
		if err != nil && (!errors.Is(err, ErrNATSVersion) || !strings.Contains(err.Error(), MinNATSVersion)) {
			t.Errorf("%q: %v does not name the version required", tc.version, err)
		}
	}
}

func TestSendEnvelopeIsJSON(t *testing.T) {
	for _, tc := range []struct{ conn, route, payload string }{
		{"n2.c7", "", `{"a":1}`},
		{"n2.c7", "chat.room-1", `"text"`},
		{"n2.c\u00e9\n\"7", "r\u2028\x01", `[1,2,{"x":null}]`},
		{"n2.c7", "r", ``},
	} {
		raw := appendEnvelope(nil, tc.conn, tc.route, []byte(tc.payload))
		var e envelope
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if e.Conn != tc.conn || e.Route != tc.route || string(e.Payload) != tc.payload {
			t.Errorf("%s decoded as %+v", raw, e)
		}
	}
}
