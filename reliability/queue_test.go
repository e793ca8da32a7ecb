package reliability

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/secureagentmessaging/samgw/protocol"
)

// queueScripts writes routes "push" (queue.push of the payload to
// "jobs", id "n" .. n, answered with the id) and "work" (the sender joins
// "jobs" with prefetch 4).
func queueScripts(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "handlers")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]string{
		"push.lua": `function on_data(msg) return queue.push("jobs", msg.payload, {id = "n" .. msg.payload.n}) end`,
		"work.lua": `function on_data(msg, conn) return queue.join(conn.id, "jobs", {prefetch = 4}) end`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestKillNineLosesNoJob pushes jobs through a real samgw process while a
// worker takes and acks them, kills the process with SIGKILL mid-stream,
// restarts it on the same data directory, and checks that every job whose
// push was answered reaches the worker (the ones it held when the process
// died come back after --queue-node-timeout).
func TestKillNineLosesNoJob(t *testing.T) {
	skipIfShort(t)
	bin := buildSamgw(t)
	data := filepath.Join(t.TempDir(), "data")
	_, identities := durableSetup(t)
	args := []string{"--data-dir", data, "--scripts", queueScripts(t), "--identities", identities, "--queue-node-timeout", "2s"}
	p := startProcess(t, bin, args...)

	worker := joinJobs(t, p.addr)
	done := map[string]bool{}
	workerGone := make(chan struct{})
	go func() {
		defer close(workerGone)
		for {
			m, err := worker.read()
			if err != nil {
				return // the process was killed
			}
			if m.Job != "" {
				done[m.Job] = true
				worker.nc.Write(protocol.AppendFrame(nil, &protocol.Message{Type: protocol.TypeAck, Payload: protocol.AppendJobPayload(nil, m.Job)})) //nolint:errcheck // may be killed meanwhile
			}
		}
	}()
	sender, _ := dialAs(t, p.addr, "sender", false)
	const total, killAfter = 2000, 500
	pushed := map[string]bool{}
	go func() {
		var buf []byte
		for i := 1; i <= total; i++ {
			buf = protocol.AppendFrame(buf[:0], &protocol.Message{Type: protocol.TypeData, Route: "push", ID: "p" + strconv.Itoa(i), Payload: fmt.Appendf(nil, `{"n":%d}`, i)})
			if _, err := sender.nc.Write(buf); err != nil {
				return
			}
		}
	}()
	for len(pushed) < total {
		m, err := sender.read()
		if err != nil {
			break // killed
		}
		if m.Type != protocol.TypeData {
			t.Fatalf("push answered %s %s", m.Type, m.Payload)
		}
		pushed[strings.Trim(string(m.Payload), `"`)] = true
		if len(pushed) == killAfter {
			if err := p.cmd.Process.Kill(); err != nil { // SIGKILL: no shutdown, no flush
				t.Fatal(err)
			}
		}
	}
	p.cmd.Wait()
	<-workerGone
	if len(pushed) < killAfter {
		t.Fatalf("only %d pushes answered", len(pushed))
	}
	before := len(done)

	p = startProcess(t, bin, args...)
	worker = joinJobs(t, p.addr)
	missing := 0
	for id := range pushed {
		if !done[id] {
			missing++
		}
	}
	for missing > 0 {
		m, err := worker.read()
		if err != nil {
			t.Fatalf("%d pushed jobs never came back: %v", missing, err)
		}
		if m.Job == "" {
			continue
		}
		if pushed[m.Job] && !done[m.Job] {
			missing--
		}
		done[m.Job] = true
		worker.write(protocol.AppendFrame(nil, &protocol.Message{Type: protocol.TypeAck, Payload: protocol.AppendJobPayload(nil, m.Job)}))
	}
	t.Logf("%d pushes answered before the kill; %d jobs acked before it, %d after the restart; lost: 0", len(pushed), before, len(done)-before)
}

// joinJobs connects a worker of "jobs".
func joinJobs(t *testing.T, addr string) *wire {
	t.Helper()
	w, _ := dialAs(t, addr, "alice", false)
	w.write(protocol.AppendFrame(nil, &protocol.Message{Type: protocol.TypeData, Route: "work", ID: "join", Payload: []byte(`{}`)}))
	for {
		m, err := w.read()
		if err != nil {
			t.Fatal(err)
		}
		if m.ID == "join" {
			if string(m.Payload) != "true" {
				t.Fatalf("join answered %s %s", m.Type, m.Payload)
			}
			return w
		}
	}
}
