package delivery

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/secureagentmessaging/samgw/gateway"
)

// box is what this node knows of one identity's mailbox while connections
// of it are attached here or acks wait to be applied: the highest acked
// seq (acks are cumulative and shared by every connection of the
// identity), and how far the store has been purged.
type box struct {
	identity string
	subject  string

	mu       sync.Mutex
	acked    uint64        // everything up to here is done
	applied  uint64        // the store has been purged up to here
	failing  bool          // the last purge failed (said once in the log)
	attached int           // sessions attached on this node
	changed  chan struct{} // closed and replaced when acked moves
}

// advance records an ack and wakes the sessions waiting for room.
func (b *box) advance(seq uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if seq <= b.acked {
		return false
	}
	b.acked = seq
	close(b.changed)
	b.changed = make(chan struct{})
	return true
}

// floor returns the acked seq and the channel closed when it moves.
func (b *box) floor() (uint64, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.acked, b.changed
}

// Attach implements gateway.Mailboxes: it returns a session that delivers
// identity's mailbox to r once started, and how many messages wait.
func (m *Mailboxes) Attach(identity string, r gateway.MailboxReceiver) (gateway.Mailbox, uint64, error) {
	b, err := m.hold(identity)
	if err != nil {
		return nil, 0, err
	}
	// Acks this node has taken but not applied yet would be counted (and
	// read again below, then skipped): apply them first.
	m.applyBox(b)
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.Timeout)
	defer cancel()
	pending, err := m.count(identity)
	if err == nil {
		var cons jetstream.Consumer
		cons, err = m.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{b.subject},
			DeliverPolicy:  jetstream.DeliverAllPolicy,
		})
		if err == nil {
			return &session{m: m, box: b, to: r, cons: cons, stop: make(chan struct{}), done: make(chan struct{})}, pending, nil
		}
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	m.release(b)
	return nil, 0, err
}

// hold returns identity's box, counting one more session on it.
func (m *Mailboxes) hold(identity string) (*box, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("%w: closed", ErrUnavailable)
	}
	b := m.boxes[identity]
	if b == nil {
		b = &box{identity: identity, subject: subject(identity), changed: make(chan struct{})}
		m.boxes[identity] = b
	}
	b.mu.Lock()
	b.attached++
	b.mu.Unlock()
	return b, nil
}

// release counts one session fewer on b; the acks it took are applied soon
// (by applyAcks), and then the box is forgotten.
func (m *Mailboxes) release(b *box) {
	b.mu.Lock()
	b.attached--
	b.mu.Unlock()
	m.wakeApplier()
}

func (m *Mailboxes) wakeApplier() {
	select {
	case m.flushNow <- struct{}{}:
	default:
	}
}

// applyAcks purges acked messages from the store every AckFlush (and at
// once when a session ends), until Close.
func (m *Mailboxes) applyAcks() {
	defer close(m.done)
	tick := time.NewTicker(m.cfg.AckFlush)
	defer tick.Stop()
	for {
		select {
		case <-m.stop:
			m.applyAll()
			return
		case <-tick.C:
		case <-m.flushNow:
		}
		m.applyAll()
	}
}

// applyAll applies the acks of every box and forgets the boxes no session
// holds whose acks are all applied.
func (m *Mailboxes) applyAll() {
	m.mu.Lock()
	boxes := make([]*box, 0, len(m.boxes))
	for _, b := range m.boxes {
		boxes = append(boxes, b)
	}
	m.mu.Unlock()
	for _, b := range boxes {
		m.applyBox(b)
	}
	m.mu.Lock()
	for id, b := range m.boxes {
		b.mu.Lock()
		idle := b.attached == 0 && b.applied >= b.acked
		b.mu.Unlock()
		if idle {
			delete(m.boxes, id)
		}
	}
	m.mu.Unlock()
}

// applyBox purges b's subject up to its acked seq. A purge that fails is
// tried again at the next round; meanwhile the acked messages would be
// delivered again after a reconnect (at least once).
func (m *Mailboxes) applyBox(b *box) {
	b.mu.Lock()
	acked, applied := b.acked, b.applied
	b.mu.Unlock()
	if acked <= applied {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.Timeout)
	defer cancel()
	err := m.stream.Purge(ctx, jetstream.WithPurgeSubject(b.subject), jetstream.WithPurgeSequence(acked+1))
	b.mu.Lock()
	failing := b.failing
	b.failing = err != nil
	if err == nil {
		b.applied = max(b.applied, acked)
	}
	b.mu.Unlock()
	switch {
	case err != nil && !failing: // said once, not at every retry
		m.cfg.Logger.Warn("Mailbox acks not applied yet; retrying", "identity", b.identity, "acked", acked, "error", err)
	case err == nil && failing:
		m.cfg.Logger.Info("Mailbox acks applied", "identity", b.identity, "acked", acked)
	}
}

// pullBatch is how many messages a session's consumer asks JetStream for
// at a time (it asks for more when half are taken): what the process holds
// per resuming connection beyond what was sent to it.
const pullBatch = 128

// session delivers one connection's mailbox: it reads the identity's
// subject from its first message with an ordered consumer and pushes each
// message not yet acked to the connection, at most MaxInFlight ahead of
// the acks. Its goroutine is started by Start and stopped by Close.
type session struct {
	m    *Mailboxes
	box  *box
	to   gateway.MailboxReceiver
	cons jetstream.Consumer

	once    sync.Once
	started bool
	stop    chan struct{}
	done    chan struct{}
	iterMu  sync.Mutex
	iter    jetstream.MessagesContext
	closing bool
}

// Start implements gateway.Mailbox.
func (s *session) Start() {
	s.iterMu.Lock()
	defer s.iterMu.Unlock()
	if s.started || s.closing {
		return
	}
	s.started = true
	go s.run()
}

// Ack implements gateway.Mailbox: everything up to seq is done, for every
// connection of the identity.
func (s *session) Ack(seq uint64) {
	s.box.advance(seq) // applied to the store by applyAcks within AckFlush
}

// Close implements gateway.Mailbox.
func (s *session) Close() {
	s.once.Do(func() {
		s.iterMu.Lock()
		s.closing = true
		started := s.started
		if s.iter != nil {
			s.iter.Stop()
		}
		s.iterMu.Unlock()
		close(s.stop)
		if started {
			<-s.done
		}
		s.m.release(s.box)
	})
}

// run is the session's goroutine.
func (s *session) run() {
	defer close(s.done)
	iter, err := s.cons.Messages(jetstream.PullMaxMessages(min(s.m.cfg.MaxInFlight, pullBatch)))
	if err != nil {
		s.m.cfg.Logger.Warn("Mailbox delivery could not start: closing the connection so that it resumes again", "identity", s.box.identity, "error", err)
		s.to.Close("mailbox unavailable")
		return
	}
	s.iterMu.Lock()
	if s.closing {
		s.iterMu.Unlock()
		iter.Stop()
		return
	}
	s.iter = iter
	s.iterMu.Unlock()
	var sent []uint64 // seqs pushed and not acked, oldest first
	for {
		floor, changed := s.box.floor()
		for len(sent) > 0 && sent[0] <= floor {
			sent = sent[1:]
		}
		if len(sent) >= s.m.cfg.MaxInFlight {
			select {
			case <-changed:
				continue
			case <-s.stop:
				return
			}
		}
		msg, err := iter.Next()
		if err != nil {
			if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				s.m.cfg.Logger.Warn("Mailbox delivery stopped: closing the connection so that it resumes again", "identity", s.box.identity, "error", err)
				s.to.Close("mailbox unavailable")
			}
			return
		}
		meta, err := msg.Metadata()
		if err != nil {
			continue
		}
		seq := meta.Sequence.Stream
		if floor, _ := s.box.floor(); seq <= floor {
			continue // acked meanwhile (by another connection of the identity)
		}
		var id, route string
		if h := msg.Headers(); h != nil {
			id, route = h.Get(headerID), h.Get(headerRoute)
		}
		if id == "" {
			id = "m-" + strconv.FormatUint(seq, 10)
		}
		if err := s.to.Deliver(seq, id, route, msg.Data()); err != nil {
			return // the connection is gone; what it did not ack waits
		}
		sent = append(sent, seq)
	}
}
