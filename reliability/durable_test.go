package reliability

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
)

// durableSetup writes a scripts directory whose route "put" stores its
// payload in the mailbox of payload.to and answers with the seq, and an
// identities file of "sender" and "alice" (token: the name).
func durableSetup(t *testing.T) (scripts, identities string) {
	dir := t.TempDir()
	scripts = filepath.Join(dir, "handlers")
	if err := os.MkdirAll(scripts, 0o755); err != nil {
		t.Fatal(err)
	}
	put := `function on_data(msg)
  return gateway.deliver(msg.payload.to, msg.payload, {id = "n" .. msg.payload.n, route = "inbox"})
end
`
	if err := os.WriteFile(filepath.Join(scripts, "put.lua"), []byte(put), 0o644); err != nil {
		t.Fatal(err)
	}
	yaml := "identities:\n"
	for _, name := range []string{"sender", "alice"} {
		sum := sha256.Sum256([]byte(name))
		yaml += fmt.Sprintf("  - name: %s\n    token_sha256: %s\n", name, hex.EncodeToString(sum[:]))
	}
	identities = filepath.Join(dir, "identities.yaml")
	if err := os.WriteFile(identities, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return scripts, identities
}

// putPipelined sends total puts for alice through w without waiting,
// numbered from first, and returns what was answered (n → seq) until the
// connection ends or all are answered; kill, when set, runs once after
// killAt answers.
func putPipelined(t *testing.T, w *wire, first, total, killAt int, kill func()) map[int]uint64 {
	t.Helper()
	go func() { // requests keep going out while the process is killed
		var buf []byte
		for i := first; i < first+total; i++ {
			buf = protocol.AppendFrame(buf[:0], &protocol.Message{Type: protocol.TypeData, Route: "put", ID: "p" + strconv.Itoa(i),
				Payload: fmt.Appendf(nil, `{"to":"alice","n":%d}`, i)})
			if _, err := w.nc.Write(buf); err != nil {
				return
			}
		}
	}()
	stored := map[int]uint64{}
	for len(stored) < total {
		m, err := w.read()
		if err != nil {
			break // the process is gone
		}
		if m.Type != protocol.TypeData {
			t.Fatalf("put answered %s %s", m.Type, m.Payload)
		}
		n, _ := strconv.Atoi(m.ID[1:])
		seq, err := strconv.ParseUint(string(m.Payload), 10, 64)
		if err != nil {
			t.Fatalf("put %d answered %s, want a seq", n, m.Payload)
		}
		stored[n] = seq
		if kill != nil && len(stored) == killAt {
			kill()
		}
	}
	return stored
}

// takeAll reads pending mailbox messages, checking their order, ids and
// route and that none comes twice, acking each; it returns n → seq.
func takeAll(t *testing.T, w *wire, pending uint64) map[int]uint64 {
	t.Helper()
	got := map[int]uint64{}
	var last uint64
	for range pending {
		m, err := w.read()
		if err != nil {
			t.Fatalf("after %d of %d: %v", len(got), pending, err)
		}
		var body struct{ N int }
		if m.Type != protocol.TypeData || json.Unmarshal(m.Payload, &body) != nil || m.Seq <= last || m.ID != "n"+strconv.Itoa(body.N) || m.Route != "inbox" {
			t.Fatalf("after seq %d: %s seq %d id %q route %q %s", last, m.Type, m.Seq, m.ID, m.Route, m.Payload)
		}
		if _, dup := got[body.N]; dup {
			t.Fatalf("message %d delivered twice", body.N)
		}
		last, got[body.N] = m.Seq, m.Seq
		w.write(protocol.AppendFrame(nil, &protocol.Message{Type: protocol.TypeAck, Payload: protocol.AppendAckPayload(nil, m.Seq)}))
	}
	return got
}

// resumeAndCheck connects as alice with resume, takes every waiting
// message and fails the test if one of stored (n → seq, answered before a
// node died) is not among them, as stored.
func resumeAndCheck(t *testing.T, addr string, stored map[int]uint64, where string) *wire {
	t.Helper()
	agent, reply := dialAs(t, addr, "alice", true)
	resumed, pending := protocol.ParseAuthReplyResume(reply)
	if !resumed || pending < uint64(len(stored)) {
		t.Fatalf("%s: %s; want resume with at least the %d stored", where, reply, len(stored))
	}
	got := takeAll(t, agent, pending)
	lost := lostOf(stored, got)
	t.Logf("%s: answered before kill -9: %d; delivered: %d; lost: %d", where, len(stored), len(got), lost)
	if lost != 0 {
		t.Fatalf("%s: %d messages whose deliver returned were lost", where, lost)
	}
	return agent
}

// lostOf counts the stored messages (n → seq) not delivered as stored.
func lostOf(stored, got map[int]uint64) int {
	lost := 0
	for n, seq := range stored {
		if got[n] != seq {
			lost++
		}
	}
	return lost
}

// wire is a raw protocol connection of a test.
type wire struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

// dialAs connects and authenticates with token, asking to resume when
// resume is set; it returns the auth reply's payload.
func dialAs(t *testing.T, addr, token string, resume bool) (*wire, []byte) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	w := &wire{t: t, nc: nc, r: bufio.NewReaderSize(nc, 1<<20)}
	payload := protocol.AppendAuthPayload(nil, token)
	if resume {
		payload = protocol.AppendResumeAuthPayload(nil, token)
	}
	w.write(protocol.AppendFrame(nil, &protocol.Message{Type: protocol.TypeAuth, ID: "auth", Payload: payload}))
	m, err := w.read()
	if err != nil || m.Type != protocol.TypeAuth {
		t.Fatalf("auth: %v %v", m, err)
	}
	return w, m.Payload
}

func (w *wire) write(b []byte) {
	w.t.Helper()
	if _, err := w.nc.Write(b); err != nil {
		w.t.Fatal(err)
	}
}

// read returns the next frame that is not a keepalive.
func (w *wire) read() (*protocol.Message, error) {
	for {
		w.nc.SetReadDeadline(time.Now().Add(testutil.WaitTimeout))
		line, err := w.r.ReadBytes('\n')
		if err != nil {
			return nil, err
		}
		var m protocol.Message
		if err := protocol.Decode(line[:len(line)-1], &m, protocol.Limits{}); err != nil {
			return nil, err
		}
		if m.Type != protocol.TypeKeepAlive {
			return m.Clone(), nil
		}
	}
}

// TestKillNineLosesNoStoredMessage delivers to an absent agent through a
// real samgw process, kills it with SIGKILL while deliveries are still
// being made, restarts it on the same data directory, and checks that
// every message whose deliver had returned (its seq was answered) reaches
// the agent, in seq order, each once.
func TestKillNineLosesNoStoredMessage(t *testing.T) {
	skipIfShort(t)
	bin := buildSamgw(t)
	scripts, identities := durableSetup(t)
	data := filepath.Join(t.TempDir(), "data")
	args := []string{"--data-dir", data, "--scripts", scripts, "--identities", identities}
	p := startProcess(t, bin, args...)

	sender, _ := dialAs(t, p.addr, "sender", false)
	const killAfter = 1000
	stored := putPipelined(t, sender, 1, 5000, killAfter, func() {
		if err := p.cmd.Process.Kill(); err != nil { // SIGKILL: no shutdown, no flush
			t.Fatal(err)
		}
	})
	p.cmd.Wait()
	if len(stored) < killAfter {
		t.Fatalf("only %d deliveries answered before the process ended", len(stored))
	}

	p = startProcess(t, bin, args...)
	resumeAndCheck(t, p.addr, stored, "after the restart")
}
