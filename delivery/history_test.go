package delivery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func newHistory(t testing.TB, emb *Embedded, rules ...HistoryRule) *History {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := NewHistory(ctx, HistoryConfig{Conn: connectTo(t, emb, "history"), Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func appendN(t *testing.T, h *History, topic string, n int) []Entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []Entry
	for i := range n {
		e, err := h.Append(ctx, topic, fmt.Appendf(nil, `{"n":%d}`, i), "news", nil)
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		out = append(out, e)
	}
	return out
}

func TestHistoryRecover(t *testing.T) {
	emb := startEmbedded(t)
	h := newHistory(t, emb, HistoryRule{Pattern: "news.*", Keep: 5}, HistoryRule{Pattern: "news.>", Keep: 2})
	ctx := context.Background()

	eu := appendN(t, h, "news.eu", 3)
	appendN(t, h, "news.us", 2) // interleaved topics of one stream
	eu = append(eu, appendN(t, h, "news.eu", 2)...)
	for i := 1; i < len(eu); i++ {
		if eu[i].Offset <= eu[i-1].Offset || eu[i].Prev != eu[i-1].Offset {
			t.Fatalf("entry %d: offset %d prev %d after offset %d", i, eu[i].Offset, eu[i].Prev, eu[i-1].Offset)
		}
	}
	if eu[0].Prev != 0 || eu[0].Epoch == "" {
		t.Fatalf("first entry %+v: want prev 0 and an epoch", eu[0])
	}

	t.Run("missed within the kept count", func(t *testing.T) {
		rec, err := h.Recover(ctx, "news.eu", eu[1].Offset, eu[0].Epoch)
		if err != nil {
			t.Fatal(err)
		}
		if !rec.Recovered || len(rec.Entries) != 3 || rec.Position.Offset != eu[4].Offset {
			t.Fatalf("recovery %+v: want 3 entries, recovered, at %d", rec, eu[4].Offset)
		}
		for i, e := range rec.Entries {
			if e.Offset != eu[i+2].Offset || string(e.Payload) != string(eu[i+2].Payload) || e.Route != "news" {
				t.Fatalf("entry %d = %+v, want %+v", i, e, eu[i+2])
			}
		}
	})
	t.Run("from the beginning", func(t *testing.T) {
		rec, err := h.Recover(ctx, "news.eu", 0, "")
		if err != nil || !rec.Recovered || len(rec.Entries) != 5 {
			t.Fatalf("recovery %+v, %v: want all 5, recovered", rec, err)
		}
	})
	t.Run("up to date", func(t *testing.T) {
		rec, err := h.Recover(ctx, "news.eu", eu[4].Offset, "")
		if err != nil || !rec.Recovered || len(rec.Entries) != 0 {
			t.Fatalf("recovery %+v, %v: want nothing, recovered", rec, err)
		}
	})
	t.Run("past the kept count", func(t *testing.T) {
		more := appendN(t, h, "news.eu", 3) // 8 in all, 5 kept
		rec, err := h.Recover(ctx, "news.eu", eu[1].Offset, "")
		if err != nil {
			t.Fatal(err)
		}
		if rec.Recovered || len(rec.Entries) != 5 || rec.Entries[4].Offset != more[2].Offset {
			t.Fatalf("recovery %+v: want the 5 kept, not recovered", rec)
		}
	})
	t.Run("another epoch", func(t *testing.T) {
		rec, err := h.Recover(ctx, "news.eu", eu[1].Offset, "other")
		if err != nil || rec.Recovered || len(rec.Entries) != 0 || rec.Position.Epoch != eu[0].Epoch {
			t.Fatalf("recovery %+v, %v: want nothing, not recovered, the current epoch", rec, err)
		}
	})
	t.Run("first rule that matches applies", func(t *testing.T) {
		appendN(t, h, "news.eu.fr", 4) // news.> keeps 2
		rec, err := h.Recover(ctx, "news.eu.fr", 0, "")
		if err != nil || rec.Recovered || len(rec.Entries) != 2 {
			t.Fatalf("recovery %+v, %v: want 2 kept, not recovered", rec, err)
		}
	})
	t.Run("topic without history", func(t *testing.T) {
		if _, err := h.Append(ctx, "chat.1", []byte(`1`), "", nil); !errors.Is(err, ErrInvalid) {
			t.Fatalf("append to a topic without history: %v, want ErrInvalid", err)
		}
	})
}

// TestHistoryConcurrentAppends: publishers on two connections (two nodes)
// append to one topic at once; every publication names the one before it,
// so the chain has no hole and no fork.
func TestHistoryConcurrentAppends(t *testing.T) {
	emb := startEmbedded(t)
	a := newHistory(t, emb, HistoryRule{Pattern: "t", Keep: 1000})
	b := newHistory(t, emb, HistoryRule{Pattern: "t", Keep: 1000})
	const each = 100
	var wg sync.WaitGroup
	errs := make(chan error, 4*each)
	for _, h := range []*History{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := h.Append(context.Background(), "t", []byte(`1`), "", nil); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	entries, err := a.Read(context.Background(), "t", 0, 0)
	if err != nil || len(entries) != 4*each {
		t.Fatalf("read %d entries, %v: want %d", len(entries), err, 4*each)
	}
	for i, e := range entries {
		want := uint64(0)
		if i > 0 {
			want = entries[i-1].Offset
		}
		if e.Prev != want {
			t.Fatalf("entry %d (offset %d) names %d before it, want %d", i, e.Offset, e.Prev, want)
		}
	}
}

// TestHistoryEpoch: the epoch stays across a restart on the same data
// directory and changes when the history is made anew.
func TestHistoryEpoch(t *testing.T) {
	dir := t.TempDir()
	rule := HistoryRule{Pattern: "news.*", Keep: 10}
	open := func() (*Embedded, *History) {
		emb, err := StartEmbedded(EmbeddedConfig{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		nc, err := emb.Connect("history")
		if err != nil {
			t.Fatal(err)
		}
		h, err := NewHistory(context.Background(), HistoryConfig{Conn: nc, Rules: []HistoryRule{rule}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close(); emb.Shutdown() })
		return emb, h
	}
	emb, h := open()
	first := appendN(t, h, "news.eu", 3)
	emb.Shutdown()

	_, h = open()
	rec, err := h.Recover(context.Background(), "news.eu", first[0].Offset, first[0].Epoch)
	if err != nil || !rec.Recovered || len(rec.Entries) != 2 || rec.Position.Epoch != first[0].Epoch {
		t.Fatalf("after a restart: %+v, %v: want the 2 after the first, same epoch", rec, err)
	}

	// An operator deletes the stream: the next append makes it anew.
	js, err := jetstream.New(h.cfg.Conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(context.Background(), h.rules[0].name); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rec, err = h.Recover(ctx, "news.eu", first[0].Offset, first[0].Epoch)
	if err != nil || rec.Recovered || rec.Position.Epoch == first[0].Epoch {
		t.Fatalf("recovery once the stream was deleted: %+v, %v: want not recovered, a new epoch, at once", rec, err)
	}
	if err := js.DeleteStream(context.Background(), h.rules[0].name); err != nil {
		t.Fatal(err)
	}
	e, err := h.Append(context.Background(), "news.eu", []byte(`1`), "", nil)
	if err != nil {
		t.Fatalf("append after the stream was deleted: %v", err)
	}
	if e.Epoch == first[0].Epoch || e.Prev != 0 {
		t.Fatalf("after a reset: %+v: want a new epoch and no previous publication", e)
	}
	rec, err = h.Recover(context.Background(), "news.eu", first[2].Offset, first[0].Epoch)
	if err != nil || rec.Recovered || rec.Position.Epoch != e.Epoch {
		t.Fatalf("recovery across a reset: %+v, %v: want not recovered, the new epoch", rec, err)
	}
}

func TestHistoryConfig(t *testing.T) {
	for _, s := range []string{"news", "news.*=", "news.*=0", "news.*=1001", "news..x=5", "=5", "news.>.x=5"} {
		if _, err := ParseHistoryRule(s); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("ParseHistoryRule(%q) = %v, want ErrInvalidConfig", s, err)
		}
	}
	r, err := ParseHistoryRule("news.*=50")
	if err != nil || r != (HistoryRule{Pattern: "news.*", Keep: 50}) {
		t.Fatalf("ParseHistoryRule(news.*=50) = %+v, %v", r, err)
	}
	err = HistoryConfig{Rules: []HistoryRule{r, r}}.Validate()
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Validate of a config without Conn and a rule twice: %v", err)
	}
}

// BenchmarkHistoryRecover: recoveries of 5 missed publications, 256 at
// once, on the embedded store.
func BenchmarkHistoryRecover(b *testing.B) {
	h := newHistory(b, startEmbedded(b), HistoryRule{Pattern: "room.*", Keep: 100})
	var since [100]uint64
	for i := range 100 {
		for n := range 6 {
			e, err := h.Append(context.Background(), fmt.Sprint("room.", i), []byte(`{"text":"a message of some length"}`), "pubsub", nil)
			if err != nil {
				b.Fatal(err)
			}
			if n == 0 {
				since[i] = e.Offset
			}
		}
	}
	b.SetParallelism(128)
	b.ResetTimer()
	var i atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := i.Add(1) % 100
			rec, err := h.Recover(context.Background(), fmt.Sprint("room.", k), since[k], "")
			if err != nil || len(rec.Entries) != 5 {
				b.Errorf("recovery: %d entries, %v", len(rec.Entries), err)
				return
			}
		}
	})
}

// BenchmarkHistoryAppend: publications appended to one topic's history
// (with their predecessor checked) against plain JetStream publishes of
// the same bytes to a stream of the same shape, one publisher each.
func BenchmarkHistoryAppend(b *testing.B) {
	emb := startEmbedded(b)
	nc := connectTo(b, emb, "bench")
	ctx := context.Background()
	payload := []byte(`{"topic":"room.1","from":"c1","message":"a message of some length"}`)
	b.Run("history", func(b *testing.B) {
		h := newHistory(b, emb, HistoryRule{Pattern: "room.*", Keep: 100})
		for b.Loop() {
			if _, err := h.Append(ctx, "room.1", payload, "pubsub", nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("jetstream", func(b *testing.B) {
		js, err := jetstream.New(nc)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "PLAIN", Subjects: []string{"plain.>"},
			Storage: jetstream.FileStorage, MaxMsgsPerSubject: 100, Discard: jetstream.DiscardOld}); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := js.Publish(ctx, "plain.room.1", payload); err != nil {
				b.Fatal(err)
			}
		}
	})
}
