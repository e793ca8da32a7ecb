package reliability

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/secureagentmessaging/samgw/protocol"
)

// subscribeReply is pubsub.lua's answer to a subscribe.
type subscribeReply struct {
	Subscribed bool   `json:"subscribed"`
	Recovered  *bool  `json:"recovered"`
	Offset     uint64 `json:"offset"`
	Epoch      string `json:"epoch"`
}

// call sends a data frame on route and returns the reply's payload,
// collecting the pushes that come before it.
func (w *wire) call(route, id, payload string, pushes *[]*protocol.Message) []byte {
	w.t.Helper()
	w.write(protocol.AppendFrame(nil, &protocol.Message{Type: protocol.TypeData, ID: id, Route: route, Payload: []byte(payload)}))
	for {
		m, err := w.read()
		if err != nil {
			w.t.Fatalf("waiting for the answer to %s: %v", id, err)
		}
		switch {
		case m.ID == id && m.Type == protocol.TypeData:
			return m.Payload
		case m.ID == id:
			w.t.Fatalf("%s answered %s %s", id, m.Type, m.Payload)
		case pushes != nil && m.Type == protocol.TypeData:
			*pushes = append(*pushes, m)
		default:
			w.t.Fatalf("unexpected frame %s %s %s", m.Type, m.ID, m.Payload)
		}
	}
}

// subscribe subscribes to topic, resuming after since (of epoch) unless
// since is negative.
func (w *wire) subscribe(topic string, since int64, epoch string) (subscribeReply, []*protocol.Message) {
	w.t.Helper()
	var pushes []*protocol.Message
	req := fmt.Sprintf(`{"subscribe":%q}`, topic)
	if since >= 0 {
		req = fmt.Sprintf(`{"subscribe":%q,"since":%d,"epoch":%q}`, topic, since, epoch)
	}
	var r subscribeReply
	if err := json.Unmarshal(w.call("pubsub", "sub", req, &pushes), &r); err != nil || !r.Subscribed {
		w.t.Fatalf("subscribe %s: %+v %v", topic, r, err)
	}
	return r, pushes
}

// publish publishes n messages numbered from first and returns their
// offsets.
func (w *wire) publish(topic string, first, n int) []uint64 {
	w.t.Helper()
	var offsets []uint64
	for i := first; i < first+n; i++ {
		var r struct{ Offset uint64 }
		if err := json.Unmarshal(w.call("pubsub", "pub", fmt.Sprintf(`{"publish":%q,"message":%d}`, topic, i), nil), &r); err != nil || r.Offset == 0 {
			w.t.Fatalf("publish %d: offset %d, %v", i, r.Offset, err)
		}
		offsets = append(offsets, r.Offset)
	}
	return offsets
}

// expectPublications reads n pushes and checks they are messages first..
// at the given offsets, in order.
func expectPublications(t *testing.T, got []*protocol.Message, topic string, first int, offsets []uint64, epoch string) {
	t.Helper()
	if len(got) != len(offsets) {
		t.Fatalf("%d publications, want %d", len(got), len(offsets))
	}
	for i, m := range got {
		var p struct{ Message int }
		json.Unmarshal(m.Payload, &p) //nolint:errcheck // compared below
		if m.Topic != topic || m.Offset != offsets[i] || m.Epoch != epoch || p.Message != first+i {
			t.Fatalf("publication %d: topic %q offset %d epoch %q message %d; want %q %d %q %d", i, m.Topic, m.Offset, m.Epoch, p.Message, topic, offsets[i], epoch, first+i)
		}
	}
}

func readPushes(t *testing.T, w *wire, n int) []*protocol.Message {
	t.Helper()
	var out []*protocol.Message
	for len(out) < n {
		m, err := w.read()
		if err != nil {
			t.Fatalf("after %d of %d pushes: %v", len(out), n, err)
		}
		out = append(out, m)
	}
	return out
}

// dialPlain connects to a server without identities.
func dialPlain(t *testing.T, addr string) *wire { return dialPlainTB(t, addr) }

// dialPlainTB is dialPlain for tests and benchmarks.
func dialPlainTB(t testing.TB, addr string) *wire {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &wire{t: t, nc: nc, r: bufio.NewReaderSize(nc, 1<<20)}
}

func pubsubScripts(t testing.TB) string {
	t.Helper()
	src, err := os.ReadFile("../scripts/examples/pubsub.lua")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "handlers")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pubsub.lua"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestTopicHistoryAcrossKillNine: a subscriber that was away gets the 5
// publications it missed, in order, then live ones, none twice; after the
// process is killed with SIGKILL and restarted on the same data
// directory, the history and its epoch are still there; past the kept
// count the recovery says recovered = false; on a new data directory the
// epoch changes.
func TestTopicHistoryAcrossKillNine(t *testing.T) {
	skipIfShort(t)
	bin := buildSamgw(t)
	data := filepath.Join(t.TempDir(), "data")
	args := []string{"--data-dir", data, "--scripts", pubsubScripts(t), "--topic-history", "room.*=8"}
	p := startProcess(t, bin, args...)

	pub, sub := dialPlain(t, p.addr), dialPlain(t, p.addr)
	if r, _ := sub.subscribe("room.1", -1, ""); r.Recovered != nil {
		t.Fatalf("a plain subscribe answered %+v", r)
	}
	first := pub.publish("room.1", 1, 3)
	live := readPushes(t, sub, 3)
	epoch := live[0].Epoch
	if epoch == "" {
		t.Fatal("a publication of a topic with history carries no epoch")
	}
	expectPublications(t, live, "room.1", 1, first, epoch)
	sub.nc.Close()

	missed := pub.publish("room.1", 4, 5)
	sub = dialPlain(t, p.addr)
	r, got := sub.subscribe("room.1", int64(first[2]), epoch)
	if !*r.Recovered || r.Offset != missed[4] || r.Epoch != epoch {
		t.Fatalf("resubscribe answered %+v, want recovered at %d in %s", r, missed[4], epoch)
	}
	expectPublications(t, got, "room.1", 4, missed, epoch)
	next := pub.publish("room.1", 9, 1)
	expectPublications(t, readPushes(t, sub, 1), "room.1", 9, next, epoch)

	// kill -9 and a restart on the same data directory keep the history.
	p.cmd.Process.Kill()
	p.cmd.Wait()
	p = startProcess(t, bin, args...)
	sub = dialPlain(t, p.addr)
	r, got = sub.subscribe("room.1", int64(missed[2]), epoch)
	if !*r.Recovered || r.Epoch != epoch {
		t.Fatalf("after kill -9: %+v, want recovered in epoch %s", r, epoch)
	}
	expectPublications(t, got, "room.1", 7, append(missed[3:], next...), epoch)
	sub.nc.Close()

	// Past the kept count (8): not recovered, the 8 kept are sent.
	pub = dialPlain(t, p.addr)
	more := pub.publish("room.1", 10, 8)
	sub = dialPlain(t, p.addr)
	r, got = sub.subscribe("room.1", int64(next[0]-1), epoch)
	if *r.Recovered {
		t.Fatalf("a recovery past the kept count answered %+v", r)
	}
	expectPublications(t, got, "room.1", 10, more, epoch)

	// A new data directory is a new history: a new epoch.
	p.stop()
	args[1] = filepath.Join(t.TempDir(), "fresh")
	p = startProcess(t, bin, args...)
	pub = dialPlain(t, p.addr)
	fresh := pub.publish("room.1", 100, 1)
	sub = dialPlain(t, p.addr)
	r, got = sub.subscribe("room.1", int64(more[7]), epoch)
	if *r.Recovered || r.Epoch == epoch || r.Offset != fresh[0] || len(got) != 0 {
		t.Fatalf("a recovery from another epoch answered %+v with %d publications", r, len(got))
	}
}

// publishPipelined sends n publishes numbered from first without waiting
// and then reads their n answers.
func (w *wire) publishPipelined(topic string, first, n int) error {
	var buf []byte
	for i := first; i < first+n; i++ {
		buf = protocol.AppendFrame(buf, &protocol.Message{Type: protocol.TypeData, ID: fmt.Sprint("p", i), Route: "pubsub",
			Payload: fmt.Appendf(nil, `{"publish":%q,"message":%d}`, topic, i)})
	}
	if _, err := w.nc.Write(buf); err != nil {
		return err
	}
	for range n {
		m, err := w.read()
		if err != nil {
			return err
		}
		if m.Type != protocol.TypeData {
			return fmt.Errorf("publish answered %s %s", m.Type, m.Payload)
		}
	}
	return nil
}

// checkStream reads publications until it has every message of want,
// failing on a duplicate, an offset out of order, or an unknown message.
func checkStream(t *testing.T, who string, got []*protocol.Message, w *wire, want int) {
	t.Helper()
	seen := map[int]bool{}
	var last uint64
	check := func(m *protocol.Message) {
		var p struct{ Message int }
		if err := json.Unmarshal(m.Payload, &p); err != nil || m.Offset == 0 {
			t.Fatalf("%s: not a publication: %s %s", who, m.Type, m.Payload)
		}
		if m.Offset <= last || seen[p.Message] {
			t.Fatalf("%s: message %d at offset %d after offset %d (seen before: %v)", who, p.Message, m.Offset, last, seen[p.Message])
		}
		last = m.Offset
		seen[p.Message] = true
	}
	for _, m := range got {
		check(m)
	}
	for len(seen) < want {
		m, err := w.read()
		if err != nil {
			t.Fatalf("%s: after %d of %d: %v", who, len(seen), want, err)
		}
		check(m)
	}
}

// TestTopicHistoryNoGapNoDuplicate: two nodes publish to one topic at
// once while subscribers on both nodes resume from the beginning in the
// middle of it: each gets every publication once, in offset order, with no
// gap between what the store sent and what came live.
func TestTopicHistoryNoGapNoDuplicate(t *testing.T) {
	skipIfShort(t)
	bin := buildSamgw(t)
	scripts := pubsubScripts(t)
	ns := startJetStream(t)
	node := func(name string) *process {
		return startProcess(t, bin, "--nats", ns.ClientURL(), "--node", name, "--scripts", scripts, "--topic-history", "room.*=1000")
	}
	a, b := node("alpha"), node("beta")
	early := dialPlain(t, a.addr)
	early.subscribe("room.1", -1, "")

	const each = 400
	pubA, pubB := dialPlain(t, a.addr), dialPlain(t, b.addr)
	started := make(chan struct{})
	errs := make(chan error, 2)
	go func() { errs <- pubA.publishPipelined("room.1", 0, each) }()
	go func() {
		close(started)
		errs <- pubB.publishPipelined("room.1", each, each)
	}()
	<-started
	// Resume from the beginning while both publish.
	var late []*wire
	var recovered [][]*protocol.Message
	for _, addr := range []string{a.addr, b.addr, b.addr} {
		w := dialPlain(t, addr)
		r, got := w.subscribe("room.1", 0, "")
		if !*r.Recovered {
			t.Fatalf("resume from 0 of a topic keeping 1000: %+v", r)
		}
		late = append(late, w)
		recovered = append(recovered, got)
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	checkStream(t, "subscribed first", nil, early, 2*each)
	for i, w := range late {
		t.Logf("resumed %d: %d publications from the store, the rest live", i, len(recovered[i]))
		checkStream(t, fmt.Sprint("resumed ", i), recovered[i], w, 2*each)
	}
}
