package delivery

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/secureagentmessaging/samgw/protocol"
)

func TestAbsentAgentGetsEverythingInOrderOnce(t *testing.T) {
	f := newFixture(t, Config{MaxInFlight: 1000})
	seqs := f.deliver("alice", 500)
	p, reply := f.connect("alice", true)
	if resumed, pending := protocol.ParseAuthReplyResume(reply); !resumed || pending != 500 {
		t.Fatalf("auth reply %s: want resume true, pending 500", reply)
	}
	got := p.data(500)
	for i, m := range got {
		if m.Seq != seqs[i] || string(m.Payload) != fmt.Sprintf(`{"n":%d}`, i+1) || m.Route != "inbox" || m.ID != fmt.Sprintf("m-%d", seqs[i]) {
			t.Fatalf("message %d: seq %d id %q route %q payload %s; want seq %d, {\"n\":%d}", i+1, m.Seq, m.ID, m.Route, m.Payload, seqs[i], i+1)
		}
	}
	p.ack(seqs[499])
	p.pingPong()
	f.waitApplied("alice", 0)
	p.nc.Close()

	// Acked messages never come back: the first data frame after a
	// reconnect is the next message stored.
	p, reply = f.connect("alice", true)
	if _, pending := protocol.ParseAuthReplyResume(reply); pending != 0 {
		t.Fatalf("after acking all, auth reply %s", reply)
	}
	next := f.deliver("alice", 1)
	if m := p.data(1)[0]; m.Seq != next[0] {
		t.Fatalf("after reconnect got seq %d, want only the new %d", m.Seq, next[0])
	}
}

func TestUnackedMessagesComeBackAfterAReconnect(t *testing.T) {
	f := newFixture(t, Config{})
	seqs := f.deliver("bob", 10)
	p, _ := f.connect("bob", true)
	p.data(10)
	p.ack(seqs[4]) // 1..5 done
	p.pingPong()
	f.waitApplied("bob", 5)
	p.nc.Close()

	p, reply := f.connect("bob", true)
	if _, pending := protocol.ParseAuthReplyResume(reply); pending != 5 {
		t.Fatalf("auth reply %s, want pending 5", reply)
	}
	for i, m := range p.data(5) {
		if m.Seq != seqs[5+i] {
			t.Fatalf("redelivered %d: seq %d, want %d", i, m.Seq, seqs[5+i])
		}
	}
	// Exactly those: the next data frame is a new message.
	next := f.deliver("bob", 1)
	if m := p.data(1)[0]; m.Seq != next[0] {
		t.Fatalf("got seq %d after the five, want the new %d", m.Seq, next[0])
	}
}

func TestLiveDeliveryAndConnectionsThatDoNotResume(t *testing.T) {
	f := newFixture(t, Config{})
	live, _ := f.connect("carol", true)
	plain, reply := f.connect("carol", false)
	if strings.Contains(string(reply), "resume") {
		t.Fatalf("a client that did not ask got %s", reply)
	}
	seqs := f.deliver("carol", 3)
	for i, m := range live.data(3) {
		if m.Seq != seqs[i] {
			t.Fatalf("live %d: seq %d want %d", i, m.Seq, seqs[i])
		}
	}
	// The seed's kind of client is served as before: no mailbox frames.
	plain.pingPong()
	plain.send(&protocol.Message{Type: protocol.TypeData, ID: "d1", Payload: []byte(`"echo"`)})
	if m := plain.next(); m.Type != protocol.TypeData || m.Seq != 0 || string(m.Payload) != `"echo"` {
		t.Fatalf("plain connection got %s seq %d %s", m.Type, m.Seq, m.Payload)
	}
}

func TestEveryResumingConnectionOfAnIdentityGetsEachMessage(t *testing.T) {
	f := newFixture(t, Config{})
	a, _ := f.connect("alice", true)
	b, _ := f.connect("alice", true)
	seqs := f.deliver("alice", 4)
	for _, p := range []*peer{a, b} {
		for i, m := range p.data(4) {
			if m.Seq != seqs[i] {
				t.Fatalf("seq %d want %d", m.Seq, seqs[i])
			}
		}
	}
	// An ack is the identity's: b's ack of all four is a's too.
	b.ack(seqs[3])
	b.pingPong()
	f.waitApplied("alice", 0)
	a.nc.Close()
	c, reply := f.connect("alice", true)
	if _, pending := protocol.ParseAuthReplyResume(reply); pending != 0 {
		t.Fatalf("auth reply %s after the other connection acked", reply)
	}
	c.pingPong()
}

func TestHostileAcksGetAnErrorAndTheConnectionStaysUsable(t *testing.T) {
	f := newFixture(t, Config{})
	seqs := f.deliver("alice", 2)
	p, _ := f.connect("alice", true)
	p.data(2)
	for _, tc := range []struct{ name, frame, want string }{
		{"no payload", `{"type":"ack","id":"h"}`, "payload"},
		{"no seq", `{"type":"ack","id":"h","payload":{}}`, "payload"},
		{"payload not an object", `{"type":"ack","id":"h","payload":[1]}`, "payload"},
		{"seq a string", `{"type":"ack","id":"h","payload":{"seq":"1"}}`, "positive integer"},
		{"seq a fraction", `{"type":"ack","id":"h","payload":{"seq":1.5}}`, "positive integer"},
		{"seq an exponent", `{"type":"ack","id":"h","payload":{"seq":1e3}}`, "positive integer"},
		{"seq negative", `{"type":"ack","id":"h","payload":{"seq":-1}}`, "positive integer"},
		{"seq zero", `{"type":"ack","id":"h","payload":{"seq":0}}`, "positive integer"},
		{"seq past int64", `{"type":"ack","id":"h","payload":{"seq":99999999999999999999}}`, "positive integer"},
		{"seq null", `{"type":"ack","id":"h","payload":{"seq":null}}`, "positive integer"},
		{"future seq", fmt.Sprintf(`{"type":"ack","id":"h","payload":{"seq":%d}}`, seqs[1]+1), "was not delivered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.sendRaw(tc.frame)
			m := p.next()
			pe := protocol.ParseError(m.Payload)
			if m.Type != protocol.TypeError || m.ID != "h" || pe.Code != protocol.CodeInvalidMessage || !strings.Contains(pe.Message, tc.want) {
				t.Fatalf("got %s %s, want invalid_message containing %q", m.Type, m.Payload, tc.want)
			}
			p.pingPong()
		})
	}
	// Nothing was acked by any of them.
	if n, err := f.boxes.Pending("alice"); err != nil || n != 2 {
		t.Fatalf("pending %d %v after hostile acks, want 2", n, err)
	}
	// A connection that did not resume has nothing to ack.
	plain, _ := f.connect("alice", false)
	plain.sendRaw(`{"type":"ack","id":"x","payload":{"seq":1}}`)
	if m := plain.next(); m.Type != protocol.TypeError || !strings.Contains(string(m.Payload), "no mailbox") {
		t.Fatalf("ack without a mailbox: %s %s", m.Type, m.Payload)
	}
	plain.pingPong()
}

func TestAClientThatNeverAcksGetsAtMostMaxInFlight(t *testing.T) {
	f := newFixture(t, Config{MaxInFlight: 8})
	seqs := f.deliver("alice", 100)
	p, _ := f.connect("alice", true)
	p.data(8)
	// The ninth waits for an ack: the next frame is the pong.
	p.pingPong()
	p.ack(seqs[7])
	for i, m := range p.data(8) {
		if m.Seq != seqs[8+i] {
			t.Fatalf("seq %d want %d", m.Seq, seqs[8+i])
		}
	}
	p.pingPong()
}

func TestDeliverRefusals(t *testing.T) {
	f := newFixture(t, Config{MaxMessages: 3})
	f.deliver("alice", 3)
	_, err := f.boxes.Deliver(t.Context(), "alice", []byte(`4`), DeliverOptions{})
	if !errors.Is(err, ErrMailboxFull) {
		t.Fatalf("fourth message to a mailbox of 3: %v, want ErrMailboxFull", err)
	}
	if n, _ := f.boxes.Pending("alice"); n != 3 {
		t.Fatalf("full mailbox holds %d, want the first 3 kept", n)
	}
	if _, err := f.boxes.Deliver(t.Context(), "mallory", []byte(`1`), DeliverOptions{}); !errors.Is(err, ErrUnknownIdentity) {
		t.Fatalf("unknown identity: %v", err)
	}
	if _, err := f.boxes.Deliver(t.Context(), "", []byte(`1`), DeliverOptions{}); !errors.Is(err, ErrUnknownIdentity) {
		t.Fatalf("empty identity: %v", err)
	}
	// Another mailbox is not affected by alice's being full.
	f.deliver("bob", 1)
}

func TestDiscardOldDropsTheOldest(t *testing.T) {
	f := newFixture(t, Config{MaxMessages: 3, DiscardOld: true})
	seqs := f.deliver("alice", 5)
	p, reply := f.connect("alice", true)
	if _, pending := protocol.ParseAuthReplyResume(reply); pending != 3 {
		t.Fatalf("auth reply %s", reply)
	}
	for i, m := range p.data(3) {
		if m.Seq != seqs[2+i] {
			t.Fatalf("seq %d want %d", m.Seq, seqs[2+i])
		}
	}
}

func TestSameIDIsStoredOnce(t *testing.T) {
	f := newFixture(t, Config{})
	first, err := f.boxes.Deliver(t.Context(), "alice", []byte(`1`), DeliverOptions{ID: "job-1"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := f.boxes.Deliver(t.Context(), "alice", []byte(`1`), DeliverOptions{ID: "job-1"})
	if err != nil || again != first {
		t.Fatalf("same id again: seq %d %v, want %d", again, err, first)
	}
	// The same id to another identity is another message.
	other, err := f.boxes.Deliver(t.Context(), "bob", []byte(`1`), DeliverOptions{ID: "job-1"})
	if err != nil || other == first {
		t.Fatalf("same id to bob: seq %d %v", other, err)
	}
	p, reply := f.connect("alice", true)
	if _, pending := protocol.ParseAuthReplyResume(reply); pending != 1 {
		t.Fatalf("auth reply %s", reply)
	}
	if m := p.data(1)[0]; m.ID != "job-1" {
		t.Fatalf("id %q, want the caller's", m.ID)
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{Replicas: 9, MaxMessages: -1, AckFlush: -1}.Validate()
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Validate: %v", err)
	}
	want := []string{"Conn is required", "Replicas 9", "MaxMessages -1", "AckFlush -1ns"}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("Validate said %q, want %d problems in field order", lines, len(want))
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Fatalf("problem %d: %q, want %q", i+1, lines[i], w)
		}
	}
}
