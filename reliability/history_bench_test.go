package reliability

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/secureagentmessaging/samgw/protocol"
)

// BenchmarkTopicRecovery: 10,000 subscribers of 100 topics with history
// (100 each) come back after the node was killed with SIGKILL and
// restarted on its data directory while 5 publications of each topic were
// made; each resubscribes with since (its last offset) and epoch. It
// reports the time from the first reconnect until every subscriber has its
// 5 missed publications (catch-up-ms), and the recoveries per second.
// Run with -benchtime=1x: each iteration restarts the node.
func BenchmarkTopicRecovery(b *testing.B) {
	const subscribers, topics, missed, workers = 10_000, 100, 5, 100
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if lim.Cur < subscribers+1000 {
		lim.Cur = min(lim.Max, 3*subscribers)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < subscribers+1000 {
			b.Fatalf("need %d file descriptors, the limit is %d (%v)", subscribers+1000, lim.Cur, err)
		}
	}
	bin := buildSamgw(b)
	data := filepath.Join(b.TempDir(), "data")
	args := []string{"--data-dir", data, "--scripts", pubsubScripts(b), "--topic-history", "room.*=100", "--max-conns", "20000"}
	p := startProcess(b, bin, args...)

	// Where each topic stands before the node goes away.
	type position struct {
		offset uint64
		epoch  string
	}
	last := make([]position, topics)
	publishAll := func(addr string, round int) {
		pub := dialPlainTB(b, addr)
		defer pub.nc.Close()
		for i := range topics {
			reply := pub.call("pubsub", "p", fmt.Sprintf(`{"publish":"room.%d","message":%d}`, i, round), nil)
			var r struct{ Offset uint64 }
			if err := json.Unmarshal(reply, &r); err != nil || r.Offset == 0 {
				b.Fatalf("publish answered %s", reply)
			}
		}
	}
	publishAll(p.addr, -1) // one publication each: a position to resume from
	positions := func(addr string) {
		sub := dialPlainTB(b, addr)
		defer sub.nc.Close()
		for i := range topics {
			var r struct {
				Offset uint64
				Epoch  string
			}
			if err := json.Unmarshal(sub.call("pubsub", "s", fmt.Sprintf(`{"subscribe":"room.%d"}`, i), nil), &r); err != nil || r.Epoch == "" {
				b.Fatalf("no position of room.%d: %+v %v", i, r, err)
			}
			last[i] = position{r.Offset, r.Epoch}
			sub.call("pubsub", "u", fmt.Sprintf(`{"unsubscribe":"room.%d"}`, i), nil)
		}
	}
	positions(p.addr)

	var total time.Duration
	b.ResetTimer()
	for iter := range b.N {
		b.StopTimer()
		p.cmd.Process.Kill()
		p.cmd.Wait()
		p = startProcess(b, bin, args...)
		for round := range missed {
			publishAll(p.addr, iter*missed+round)
		}
		b.StartTimer()
		start := time.Now()
		conns := make([][]net.Conn, workers)
		inWorkers(b, workers, func(w int) error {
			per := subscribers / workers
			readers := make([]*bufio.Reader, 0, per)
			for i := range per {
				nc, err := net.DialTimeout("tcp", p.addr, 10*time.Second)
				if err != nil {
					return fmt.Errorf("dial: %w", err)
				}
				conns[w] = append(conns[w], nc)
				topic := (w*per + i) % topics
				frame := protocol.AppendFrame(nil, &protocol.Message{Type: protocol.TypeData, ID: "r", Route: "pubsub",
					Payload: fmt.Appendf(nil, `{"subscribe":"room.%d","since":%d,"epoch":%q}`, topic, last[topic].offset, last[topic].epoch)})
				if _, err := nc.Write(frame); err != nil {
					return err
				}
				readers = append(readers, bufio.NewReaderSize(nc, 4096))
			}
			for i, r := range readers {
				conns[w][i].SetReadDeadline(time.Now().Add(60 * time.Second))
				got, answered := 0, false
				for got < missed || !answered {
					line, err := r.ReadSlice('\n')
					if err != nil {
						return fmt.Errorf("subscriber %d after %d publications: %w", w*per+i, got, err)
					}
					var m protocol.Message
					if err := protocol.Decode(line[:len(line)-1], &m, protocol.Limits{}); err != nil {
						return err
					}
					switch {
					case m.ID == "r":
						var rec struct{ Recovered bool }
						json.Unmarshal(m.Payload, &rec) //nolint:errcheck // checked below
						if !rec.Recovered {
							return fmt.Errorf("subscriber %d not recovered: %s", w*per+i, m.Payload)
						}
						answered = true
					case m.Offset != 0:
						got++
					}
				}
			}
			return nil
		})
		elapsed := time.Since(start)
		total += elapsed
		b.StopTimer()
		for _, g := range conns {
			for _, nc := range g {
				nc.Close()
			}
		}
		// The next round resumes from where this one left off.
		positions(p.addr)
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "catch-up-ms")
	b.ReportMetric(float64(subscribers*b.N)/total.Seconds(), "recoveries/s")
	b.ReportMetric(float64(subscribers*missed*b.N)/total.Seconds(), "publications/s")
}
