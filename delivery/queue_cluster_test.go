package delivery

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/gatewaytest"
	"github.com/secureagentmessaging/samgw/internal/testutil"
	"github.com/secureagentmessaging/samgw/protocol"
)

// TestQueueSharedByThreeNodes: three gateways (nodes) on one JetStream
// serve one queue, each with a worker: every job is handled once, and
// every node's worker gets work.
func TestQueueSharedByThreeNodes(t *testing.T) {
	emb := startEmbedded(t)
	nodes := make([]*queueFixture, 3)
	for i := range nodes {
		q, err := NewQueues(t.Context(), QueueConfig{Conn: connectTo(t, emb, fmt.Sprint("node-", i))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(q.Close)
		f := &queueFixture{t: t, q: q, events: make(chan JobEvent, 1)}
		f.srv, f.addr = gatewaytest.Serve(t, "", gateway.Config{Auth: testAuth(), Jobs: q})
		nodes[i] = f
	}
	const n = 300
	var mu sync.Mutex
	handledBy := map[string][]int{}
	var all sync.WaitGroup
	all.Add(n)
	var readers sync.WaitGroup
	var workers []*peer
	for i, f := range nodes {
		p, _ := f.worker(testIdentities[i], "shared", 4)
		workers = append(workers, p)
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				p.nc.SetReadDeadline(time.Now().Add(testutil.WaitTimeout))
				line, err := p.r.ReadBytes('\n')
				if err != nil {
					return
				}
				var m protocol.Message
				if protocol.Decode(line[:len(line)-1], &m, protocol.Limits{}) != nil || m.Job == "" {
					continue
				}
				mu.Lock()
				handledBy[m.Job] = append(handledBy[m.Job], i)
				first := len(handledBy[m.Job]) == 1
				mu.Unlock()
				if _, err := p.nc.Write(protocol.AppendFrame(nil, &protocol.Message{Type: protocol.TypeAck, Payload: protocol.AppendJobPayload(nil, m.Job)})); err != nil {
					return
				}
				if first {
					all.Done()
				}
			}
		}()
	}
	nodes[0].push("shared", n, PushOptions{ID: "s-"})
	all.Wait()
	for _, p := range workers {
		p.nc.Close()
	}
	readers.Wait()
	per := make([]int, len(nodes))
	for id, by := range handledBy {
		if len(by) != 1 {
			t.Errorf("job %s was handled %d times (nodes %v)", id, len(by), by)
		}
		per[by[0]]++
	}
	for i, k := range per {
		if k == 0 {
			t.Errorf("node %d's worker got no job: %v", i, per)
		}
	}
	t.Logf("jobs per node: %v", per)
}
