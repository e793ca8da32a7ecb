package gateway

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/secureagentmessaging/samgw/protocol"
)

// fakeMailboxes records attachments and acks; Attach fails when failing.
type fakeMailboxes struct {
	mu       sync.Mutex
	failing  bool
	attached []string
	acks     []uint64
	started  chan MailboxReceiver
}

type fakeMailbox struct {
	f *fakeMailboxes
	r MailboxReceiver
}

func (f *fakeMailboxes) Attach(identity string, r MailboxReceiver) (Mailbox, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failing {
		return nil, 0, errors.New("store down")
	}
	f.attached = append(f.attached, identity)
	return &fakeMailbox{f: f, r: r}, 7, nil
}

func (b *fakeMailbox) Start() { b.f.started <- b.r }
func (b *fakeMailbox) Ack(seq uint64) {
	b.f.mu.Lock()
	b.f.acks = append(b.f.acks, seq)
	b.f.mu.Unlock()
}
func (b *fakeMailbox) Close() {}

func TestResumeAndAcks(t *testing.T) {
	boxes := &fakeMailboxes{started: make(chan MailboxReceiver, 4)}
	_, addr := startServer(t, Config{Auth: authConfig(nil), Mailboxes: boxes})

	p := dialPeer(t, addr)
	p.send(`{"type":"auth","payload":{"token":"token-a","resume":true},"id":"a1"}` + "\n")
	expectFrame(t, p.nextSkipping(), "auth", "a1", `{"ok":true,"identity":"agent-a","resume":true,"pending":7}`)
	r := <-boxes.started // started only after the reply went out
	if err := r.Deliver(5, "m-5", "inbox", []byte(`{"x":1}`)); err != nil {
		t.Fatal(err)
	}
	if f := p.nextSkipping(); f.Type != "data" || f.ID != "m-5" || f.Route != "inbox" || f.Seq != 5 || string(f.Payload) != `{"x":1}` {
		t.Fatalf("delivered frame %+v", f)
	}
	p.send(`{"type":"ack","payload":{"seq":6}}` + "\n") // never delivered
	expectError(t, p.nextSkipping(), protocol.CodeInvalidMessage, "")
	p.send(`{"type":"ack","payload":{"seq":5}}` + "\n")
	p.send(`{"type":"ping","id":"p"}` + "\n")
	expectFrame(t, p.nextSkipping(), "pong", "p", `{"message":"pong"}`)
	boxes.mu.Lock()
	acks := boxes.acks
	boxes.mu.Unlock()
	if len(acks) != 1 || acks[0] != 5 {
		t.Fatalf("acks %v, want [5]", acks)
	}

	// Without "resume": the reply as before, no mailbox, acks refused.
	q := dialPeer(t, addr)
	q.send(`{"type":"auth","payload":{"token":"token-b"},"id":"a2"}` + "\n")
	expectFrame(t, q.nextSkipping(), "auth", "a2", `{"ok":true,"identity":"agent-b"}`)
	q.send(`{"type":"ack","payload":{"seq":1},"id":"k"}` + "\n")
	expectError(t, q.nextSkipping(), protocol.CodeInvalidMessage, "k")

	// The store cannot be reached: served without the mailbox, and told so.
	boxes.mu.Lock()
	boxes.failing = true
	boxes.mu.Unlock()
	d := dialPeer(t, addr)
	d.send(`{"type":"auth","payload":{"token":"token-a","resume":true},"id":"a3"}` + "\n")
	expectFrame(t, d.nextSkipping(), "auth", "a3", `{"ok":true,"identity":"agent-a","resume":false}`)
	d.send(`{"type":"data","payload":2,"id":"d"}` + "\n")
	expectFrame(t, d.nextSkipping(), "data", "d", `2`)
}

func TestResumeWithoutMailboxes(t *testing.T) {
	_, addr := startServer(t, Config{Auth: authConfig(nil)})
	p := dialPeer(t, addr)
	p.send(`{"type":"auth","payload":{"token":"token-a","resume":true},"id":"a1"}` + "\n")
	expectFrame(t, p.nextSkipping(), "auth", "a1", `{"ok":true,"identity":"agent-a","resume":false}`)
	p.send(`{"type":"ack","payload":{"seq":1},"id":"k"}` + "\n")
	f := p.nextSkipping()
	expectError(t, f, protocol.CodeInvalidMessage, "k")
	if !strings.Contains(string(f.Payload), "no mailbox") {
		t.Fatalf("ack without mailboxes: %s", f.Payload)
	}
}
