package delivery

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// batches routes the answers of batched direct gets to the reads that
// asked: one wildcard subscription for all of them, not one per read (a
// subscription made and dropped per read is two protocol operations and a
// change to the server's subscription index each time: a recovery herd of
// thousands stalled on them).
type batches struct {
	prefix string // of the reply subjects: a fresh inbox and a dot
	sub    *nats.Subscription
	next   atomic.Uint64

	mu      sync.Mutex
	waiting map[string]chan *nats.Msg // reply token → its read's answers
}

func newBatches(nc *nats.Conn) (*batches, error) {
	b := &batches{prefix: nats.NewInbox() + ".", waiting: map[string]chan *nats.Msg{}}
	sub, err := nc.Subscribe(b.prefix+"*", b.route)
	if err != nil {
		return nil, fmt.Errorf("%w: topic history: %w", ErrUnavailable, err)
	}
	b.sub = sub
	return b, nil
}

// route hands an answer to its read; one nobody waits for (the read gave
// up) is dropped.
func (b *batches) route(m *nats.Msg) {
	b.mu.Lock()
	ch := b.waiting[m.Subject[len(b.prefix):]]
	b.mu.Unlock()
	if ch != nil {
		select {
		case ch <- m:
		default: // more than the batch asked for: cannot happen, and never blocks the others
		}
	}
}

// read sends a direct get for up to batch messages of subject from seq to
// stream and returns them, oldest first, until the end of the batch.
func (b *batches) read(ctx context.Context, nc *nats.Conn, stream, subject string, seq uint64, batch int) ([]*nats.Msg, error) {
	token := strconv.FormatUint(b.next.Add(1), 36)
	ch := make(chan *nats.Msg, batch+2) // the messages, then the end of the batch (or a 404)
	b.mu.Lock()
	b.waiting[token] = ch
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.waiting, token)
		b.mu.Unlock()
	}()
	req := fmt.Appendf(nil, `{"seq":%d,"next_by_subj":%q,"batch":%d}`, seq, subject, batch)
	if err := nc.PublishRequest("$JS.API.DIRECT.GET."+stream, b.prefix+token, req); err != nil {
		return nil, err
	}
	var out []*nats.Msg
	for {
		select {
		case m := <-ch:
			switch m.Header.Get(headerStatus) {
			case "":
				out = append(out, m)
			case statusNotFound, statusEndBatch:
				return out, nil
			case statusNoResponders:
				return out, nats.ErrNoResponders // no stream: deleted
			default:
				return out, fmt.Errorf("direct get answered %s %s", m.Header.Get(headerStatus), m.Header.Get("Description"))
			}
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
}

func (b *batches) close() { b.sub.Unsubscribe() } //nolint:errcheck // closing
