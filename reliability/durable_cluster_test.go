package reliability

import (
	"path/filepath"
	"testing"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
)

// startJetStream runs a NATS server with JetStream on a loopback port for
// the test: the cluster's store.
func startJetStream(t *testing.T) *natsserver.Server {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(testutil.WaitTimeout) {
		t.Fatal("NATS did not start")
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// TestClusterMailboxesSurviveANode runs three samgw processes on one
// JetStream (--nats): deliveries made through node A reach the agent on
// node B, node A killed with SIGKILL mid-stream loses nothing whose
// deliver had returned, and a delivery through node C reaches the agent on
// B at once.
func TestClusterMailboxesSurviveANode(t *testing.T) {
	skipIfShort(t)
	bin := buildSamgw(t)
	scripts, identities := durableSetup(t)
	ns := startJetStream(t)
	node := func(name string) *process {
		return startProcess(t, bin, "--nats", ns.ClientURL(), "--node", name, "--scripts", scripts, "--identities", identities)
	}
	a, b, c := node("alpha"), node("beta"), node("gamma")

	sender, _ := dialAs(t, a.addr, "sender", false)
	stored := putPipelined(t, sender, 1, 5000, 1000, func() { a.cmd.Process.Kill() })
	a.cmd.Wait()
	if len(stored) < 1000 {
		t.Fatalf("only %d answered before node A died", len(stored))
	}

	agent := resumeAndCheck(t, b.addr, stored, "on node B")

	// Live: a delivery through node C reaches the agent on node B.
	other, _ := dialAs(t, c.addr, "sender", false)
	live := putPipelined(t, other, 10_000, 1, 0, nil)
	m, err := agent.read()
	if err != nil || m.Seq != live[10_000] {
		t.Fatalf("live delivery across nodes: %v %v, want seq %d", m, err, live[10_000])
	}
	agent.write(protocol.AppendFrame(nil, &protocol.Message{Type: protocol.TypeAck, Payload: protocol.AppendAckPayload(nil, m.Seq)}))
	agent.nc.Close()

	// Acked on node B: nothing waits when the agent comes to node C.
	testutil.Eventually(t, "the acks applied", func() bool {
		w, reply := dialAs(t, c.addr, "alice", true)
		defer w.nc.Close()
		_, pending := protocol.ParseAuthReplyResume(reply)
		return pending == 0
	})
}

// TestDeliverWithNATSDown stops the cluster's NATS: gateway.deliver fails
// with cluster_unavailable within the handler's deadline, and the
// connections keep working.
func TestDeliverWithNATSDown(t *testing.T) {
	skipIfShort(t)
	bin := buildSamgw(t)
	scripts, identities := durableSetup(t)
	ns := startJetStream(t)
	p := startProcess(t, bin, "--nats", ns.ClientURL(), "--node", "alpha", "--scripts", scripts, "--identities", identities,
		"--script-timeout", "500ms", "--data-dir", filepath.Join(t.TempDir(), "unused"))
	sender, _ := dialAs(t, p.addr, "sender", false)
	if stored := putPipelined(t, sender, 1, 1, 0, nil); len(stored) != 1 {
		t.Fatal("no delivery with NATS up")
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	sender.write(protocol.AppendFrame(nil, &protocol.Message{Type: protocol.TypeData, Route: "put", ID: "down", Payload: []byte(`{"to":"alice","n":2}`)}))
	m, err := sender.read()
	if err != nil || m.Type != protocol.TypeError || protocol.ParseError(m.Payload).Code != protocol.CodeClusterUnavailable {
		t.Fatalf("deliver with NATS down: %v %v, want error cluster_unavailable", m, err)
	}
	sender.write(protocol.AppendFrame(nil, &protocol.Message{Type: protocol.TypePing, ID: "still"}))
	if m, err := sender.read(); err != nil || m.Type != protocol.TypePong {
		t.Fatalf("ping after the failure: %v %v", m, err)
	}
}
