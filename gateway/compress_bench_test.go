package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/protocol"
)

// words is a vocabulary for synthetic prose; wordAt draws from it with a
// Zipf-like skew (the first words the most), as English text does.
var words = strings.Fields(`the of and to a in is that for it as with was on be by this are or from at
which an not have has but were can all their more one will would there been other also into its our
about than these only when them some could may what new time two first such after most data model agent
tool result report contract vendor revenue cost team review meeting customer request response error
retry queue message server client order invoice payment account user system service network latency
memory storage cluster node deploy release version change test build failure success summary analysis
recommend consider suggest because however therefore although while before during within between next
quarter month week year today tomorrow budget forecast risk issue action owner deadline priority status`)

func wordAt(r *rand.Rand) string {
	return words[int(float64(len(words))*r.Float64()*r.Float64())]
}

// agentPayloads are agent-like messages, each different as real ones are
// (seeded, so every run sends the same): prose an LLM wrote, and a JSON
// tool result (records).
var agentPayloads = map[string]func(r *rand.Rand) any{
	"llm-text": func(r *rand.Rand) any {
		var b strings.Builder
		for b.Len() < 1500 {
			n := 6 + r.IntN(14)
			for k := range n {
				w := wordAt(r)
				if k == 0 {
					w = strings.ToUpper(w[:1]) + w[1:]
				}
				b.WriteString(w)
				if k < n-1 {
					b.WriteByte(' ')
				}
			}
			b.WriteString(". ")
		}
		return map[string]any{"role": "assistant", "content": b.String(), "model": "large-2026-11", "tokens": 180 + r.IntN(200)}
	},
	"tool-result": func(r *rand.Rand) any {
		rows := make([]map[string]any, 24)
		for k := range rows {
			rows[k] = map[string]any{"id": fmt.Sprintf("doc-%06d", r.IntN(1_000_000)), "title": wordAt(r) + " " + wordAt(r) + " " + wordAt(r),
				"owner": wordAt(r), "score": float64(r.IntN(1000)) / 1000, "updated": 1_764_000_000 + r.IntN(10_000_000)}
		}
		return map[string]any{"tool": "search", "query": wordAt(r) + " " + wordAt(r), "results": rows}
	},
}

// BenchmarkCompressedEcho: agent-like payloads echoed by the Go client
// over TCP, plain and with "compress": "deflate", 8 clients with one call
// in flight each, in one process. It reports the bytes on the wire per
// call both ways and the ratio to the frames' own size.
func BenchmarkCompressedEcho(b *testing.B) {
	for _, kind := range []string{"llm-text", "tool-result"} {
		for _, compress := range []bool{false, true} {
			name := kind + "/plain"
			if compress {
				name = kind + "/deflate"
			}
			b.Run(name, func(b *testing.B) { benchCompressedEcho(b, agentPayloads[kind], compress) })
		}
	}
}

func benchCompressedEcho(b *testing.B, payload func(*rand.Rand) any, compress bool) {
	srv, ln := benchEchoServer(b)
	r := rand.New(rand.NewPCG(1, 2))
	payloads := make([]json.RawMessage, 1024)
	for i := range payloads {
		payloads[i], _ = json.Marshal(payload(r))
	}
	const clients = 8
	cs := make([]*Client, clients)
	for i := range cs {
		var err error
		cs[i], err = NewClient(ClientConfig{Addr: ln.Addr().String(), Compress: compress, Logger: quietLogger(), KeepAliveInterval: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		if err := cs[i].Connect(context.Background()); err != nil {
			b.Fatal(err)
		}
		defer cs[i].Disconnect("done") //nolint:errcheck // the benchmark is over
	}
	wireBefore := wireBytes(srv)
	var next atomic.Int64
	var plainBytes atomic.Int64
	b.SetParallelism(clients) // at least one goroutine per client
	b.ResetTimer()
	var clientSeq atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		c := cs[int(clientSeq.Add(1)-1)%clients]
		for pb.Next() {
			p := payloads[next.Add(1)%int64(len(payloads))]
			reply, err := c.Request(context.Background(), p)
			if err != nil {
				b.Error(err)
				return
			}
			// The frames both ways as they are without compression.
			plainBytes.Add(int64(len(protocol.AppendFrame(nil, &protocol.Message{Type: protocol.TypeData, ID: reply.ID, Payload: p})) +
				len(protocol.AppendFrame(nil, reply))))
		}
	})
	b.StopTimer()
	wire := wireBytes(srv) - wireBefore
	b.ReportMetric(float64(wire)/float64(b.N), "wire-B/call")
	b.ReportMetric(float64(plainBytes.Load())/float64(wire), "ratio")
}

// wireBytes is what the server's connections have read and written.
func wireBytes(srv *Server) uint64 {
	var n uint64
	for _, c := range srv.Connections() {
		n += c.BytesIn + c.BytesOut
	}
	return n
}
