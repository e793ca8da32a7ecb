package delivery

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/secureagentmessaging/samgw/access"
)

// Bounds and defaults of topic history.
const (
	// MaxHistoryKeep bounds what a rule keeps per topic: a recovery sends
	// up to that many publications to a connection at once.
	MaxHistoryKeep = 1000
	// MaxHistoryRules bounds the rules (a stream each).
	MaxHistoryRules = 64
	// DefaultHistoryBytes is the most one rule keeps for all its topics
	// together; past it the oldest publications go first.
	DefaultHistoryBytes = 256 << 20
	// historyPrefix opens the subjects of every rule's stream.
	historyPrefix = "samgw.history."
	// headerPrev is the offset of the topic's previous publication when
	// this one was appended: what a recovery compares to tell a gap.
	headerPrev = "Samgw-Prev"
	// maxCachedTopics bounds the topics whose last offset is remembered.
	maxCachedTopics = 100_000
	// topicStripes is how many locks the topics of a History share.
	topicStripes = 256
	// readTimeout bounds one read of the store (shared by its waiters).
	readTimeout = 5 * time.Second
)

// HistoryRule keeps the last Keep publications of each topic Pattern
// matches ("*" one word, a last ">" one or more).
type HistoryRule struct {
	Pattern string
	Keep    int
}

// ParseHistoryRule reads a rule written PATTERN=N (news.*=50).
func ParseHistoryRule(s string) (HistoryRule, error) {
	pattern, n, ok := strings.Cut(s, "=")
	if !ok {
		return HistoryRule{}, fmt.Errorf("%w: %q: want PATTERN=N, like news.*=50", ErrInvalidConfig, s)
	}
	keep, err := strconv.Atoi(n)
	if err != nil {
		return HistoryRule{}, fmt.Errorf("%w: %q: N is not a number", ErrInvalidConfig, s)
	}
	r := HistoryRule{Pattern: pattern, Keep: keep}
	return r, r.validate()
}

func (r HistoryRule) validate() error {
	if err := access.CheckPattern(r.Pattern); err != nil {
		return fmt.Errorf("%w: topic history %q: %w", ErrInvalidConfig, r.Pattern, err)
	}
	if r.Keep < 1 || r.Keep > MaxHistoryKeep {
		return fmt.Errorf("%w: topic history %q keeps %d: want 1 to %d", ErrInvalidConfig, r.Pattern, r.Keep, MaxHistoryKeep)
	}
	return nil
}

// CheckHistoryRules reports every problem of a list of rules: 1 to
// MaxHistoryRules of them, each valid, no pattern twice.
func CheckHistoryRules(rules []HistoryRule) error {
	var errs []error
	if len(rules) == 0 || len(rules) > MaxHistoryRules {
		errs = append(errs, fmt.Errorf("%w: %d topic history rules: want 1 to %d", ErrInvalidConfig, len(rules), MaxHistoryRules))
	}
	seen := map[string]bool{}
	for _, r := range rules {
		if err := r.validate(); err != nil {
			errs = append(errs, err)
		}
		if seen[r.Pattern] {
			errs = append(errs, fmt.Errorf("%w: topic history %q given twice", ErrInvalidConfig, r.Pattern))
		}
		seen[r.Pattern] = true
	}
	return errors.Join(errs...)
}

// HistoryConfig configures History.
type HistoryConfig struct {
	// Conn reaches JetStream (as Config.Conn). Required.
	Conn *nats.Conn
	// Rules say which topics keep history; the first that matches a topic
	// applies. Required: History without rules keeps nothing.
	Rules []HistoryRule
	// Replicas is how many servers of a JetStream cluster keep each
	// publication (1 with the embedded server).
	Replicas int
	// MaxBytes is the most one rule keeps for all its topics (0: 256 MiB).
	MaxBytes int64
	// MaxPayload is the largest payload kept (0: the server's limit).
	MaxPayload int32
	Logger     *slog.Logger
}

// Validate reports every problem of cfg.
func (cfg HistoryConfig) Validate() error {
	var errs []error
	if cfg.Conn == nil {
		errs = append(errs, fmt.Errorf("%w: Conn is required", ErrInvalidConfig))
	}
	if err := CheckHistoryRules(cfg.Rules); err != nil {
		errs = append(errs, err)
	}
	if cfg.Replicas < 0 || cfg.Replicas > 5 {
		errs = append(errs, fmt.Errorf("%w: Replicas %d: want 1 to 5", ErrInvalidConfig, cfg.Replicas))
	}
	if cfg.MaxBytes < 0 || cfg.MaxPayload < 0 {
		errs = append(errs, fmt.Errorf("%w: MaxBytes and MaxPayload: want more than 0 (or 0 for the default)", ErrInvalidConfig))
	}
	return errors.Join(errs...)
}

// History keeps the last publications of the topics its rules name, one
// JetStream stream per rule (MaxMsgsPerSubject does the keeping; one
// subject per topic). A publication's offset is its stream sequence:
// increasing per topic, not contiguous. Each one also stores the offset of
// the topic's previous publication, made exact by appending with
// ExpectLastSequencePerSubject; a reader that finds the first kept
// publication after its offset names an earlier one it never saw knows
// publications were lost. The epoch is the stream's creation time: it
// changes when the history is made anew (a new data directory, a stream
// deleted), when offsets start again.
//
// Its methods are safe for concurrent use.
type History struct {
	cfg   HistoryConfig
	js    jetstream.JetStream
	rules []*historyRule

	locks   [topicStripes]sync.Mutex // appends of a topic, one at a time
	batches *batches                 // the reads' answers
	readsMu sync.Mutex
	reads   map[readKey]*sharedRead // the reads under way

	mu   sync.Mutex
	last map[string]uint64 // topic → its last offset, as this node last saw it
}

// historyRule is one rule and its stream.
type historyRule struct {
	HistoryRule
	name   string // the stream's
	prefix string // of its subjects: samgw.history.<hash>.
	cfg    jetstream.StreamConfig

	ensure sync.Mutex                    // one (re)creation at a time
	stream atomic.Pointer[historyStream] // nil until created
}

type historyStream struct {
	s     jetstream.Stream
	epoch string
}

// Entry is one kept publication.
type Entry struct {
	Topic   string
	Offset  uint64
	Prev    uint64 // the topic's publication before it (0: none)
	Epoch   string
	Route   string
	Payload []byte
}

// NewHistory creates (or updates) a stream per rule.
func NewHistory(ctx context.Context, cfg HistoryConfig) (*History, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Replicas = cmp.Or(cfg.Replicas, 1)
	cfg.MaxBytes = cmp.Or(cfg.MaxBytes, DefaultHistoryBytes)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("delivery: %w", err)
	}
	b, err := newBatches(cfg.Conn)
	if err != nil {
		return nil, err
	}
	h := &History{cfg: cfg, js: js, batches: b, reads: map[readKey]*sharedRead{}, last: map[string]uint64{}}
	for _, r := range cfg.Rules {
		sum := sha256.Sum256([]byte(r.Pattern))
		hash := hex.EncodeToString(sum[:6])
		rule := &historyRule{HistoryRule: r, name: "SAMGW_HISTORY_" + hash, prefix: historyPrefix + hash + "."}
		rule.cfg = jetstream.StreamConfig{
			Name:              rule.name,
			Description:       "samgw topic history of " + r.Pattern,
			Subjects:          []string{rule.prefix + r.Pattern},
			Storage:           jetstream.FileStorage,
			Replicas:          cfg.Replicas,
			Retention:         jetstream.LimitsPolicy,
			MaxMsgsPerSubject: int64(r.Keep),
			MaxBytes:          cfg.MaxBytes,
			MaxMsgSize:        cmp.Or(cfg.MaxPayload, -1),
			Discard:           jetstream.DiscardOld,
			AllowDirect:       true,
		}
		if _, err := rule.open(ctx, js, ""); err != nil {
			b.close()
			return nil, err
		}
		h.rules = append(h.rules, rule)
	}
	return h, nil
}

// open creates or updates the rule's stream unless one newer than the
// epoch stale is in use already, and returns the one in use.
func (r *historyRule) open(ctx context.Context, js jetstream.JetStream, stale string) (*historyStream, error) {
	r.ensure.Lock()
	defer r.ensure.Unlock()
	if cur := r.stream.Load(); cur != nil && cur.epoch != stale {
		return cur, nil
	}
	s, err := js.CreateOrUpdateStream(ctx, r.cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: topic history %q: stream %s: %w", ErrUnavailable, r.Pattern, r.name, err)
	}
	hs := &historyStream{s: s, epoch: strconv.FormatInt(s.CachedInfo().Created.UnixNano(), 36)}
	r.stream.Store(hs)
	return hs, nil
}

// Close stops reading: calls after it fail.
func (h *History) Close() { h.batches.close() }

// rule returns the rule topic falls under, or nil.
func (h *History) rule(topic string) *historyRule {
	for _, r := range h.rules {
		if access.Match(r.Pattern, topic) {
			return r
		}
	}
	return nil
}

// Keeps reports whether topic keeps history.
func (h *History) Keeps(topic string) bool { return h.rule(topic) != nil }

// Rules returns the rules, in the order they apply.
func (h *History) Rules() []HistoryRule {
	rules := make([]HistoryRule, len(h.rules))
	for i, r := range h.rules {
		rules[i] = r.HistoryRule
	}
	return rules
}

// Append stores a publication of topic and returns it with its offset,
// once the store has it. Then, still before any other publication of
// topic on this History is stored, it calls then (if not nil) with it: a
// node hands its own publications to its subscribers in offset order. It
// fails with ErrInvalid for a topic without history or a payload too
// large, and ErrUnavailable when the store cannot be reached.
func (h *History) Append(ctx context.Context, topic string, payload []byte, route string, then func(Entry)) (Entry, error) {
	r := h.rule(topic)
	if r == nil {
		return Entry{}, fmt.Errorf("%w: topic %q keeps no history", ErrInvalid, topic)
	}
	if !h.cfg.Conn.IsConnected() {
		return Entry{}, fmt.Errorf("%w: not connected to NATS (%s)", ErrUnavailable, h.cfg.Conn.Status())
	}
	// One append of a topic at a time on this node: only other nodes race
	// for the next offset.
	lock := &h.locks[topicStripe(topic)]
	lock.Lock()
	defer lock.Unlock()
	hs := r.stream.Load()
	subj := r.prefix + topic
	prev, known := h.cached(topic)
	for try := 0; ; try++ {
		var err error
		if !known {
			prev, err = h.lastOffset(ctx, hs, subj)
			known = err == nil
		}
		if err == nil {
			msg := nats.NewMsg(subj)
			msg.Data = payload
			if route != "" {
				msg.Header.Set(headerRoute, route)
			}
			msg.Header.Set(headerPrev, strconv.FormatUint(prev, 10))
			var ack *jetstream.PubAck
			if ack, err = h.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(prev), jetstream.WithExpectStream(r.name)); err == nil {
				h.remember(topic, ack.Sequence)
				e := Entry{Topic: topic, Offset: ack.Sequence, Prev: prev, Epoch: hs.epoch, Route: route, Payload: payload}
				if then != nil {
					then(e)
				}
				return e, nil
			}
		}
		var api *jetstream.APIError
		switch {
		case errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant):
			// Another node was first: read the last offset again, after a
			// pause that grows, so a node whose retries cost two requests
			// is not starved by one whose appends cost one.
			known = false
			if err := backoff(ctx, try); err != nil {
				return Entry{}, fmt.Errorf("%w: topic %q: other nodes kept appending first: %w", ErrUnavailable, topic, err)
			}
		case errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum:
			return Entry{}, fmt.Errorf("%w: larger than the history takes: %w", ErrInvalid, err)
		case streamGone(err):
			// The stream was deleted: the history begins anew, in a new epoch.
			if hs, err = r.open(ctx, h.js, hs.epoch); err != nil {
				return Entry{}, err
			}
			h.forget()
			known = false
		default:
			return Entry{}, fmt.Errorf("%w: topic history %q: %w", ErrUnavailable, topic, err)
		}
	}
}

// backoff waits a random while of up to 100 µs × 2^try (at most 50 ms)
// or until ctx ends.
func backoff(ctx context.Context, try int) error {
	limit := min(100*time.Microsecond<<min(try, 10), 50*time.Millisecond)
	t := time.NewTimer(rand.N(limit))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// streamGone reports whether err says a stream is not there (deleted, or
// not yet made anew): nothing answers its subjects.
func streamGone(err error) bool {
	var api *jetstream.APIError
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, jetstream.ErrStreamNotFound) || errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamNotFound
}

// topicStripe spreads topics over History.locks (FNV-1a).
func topicStripe(topic string) int {
	h := uint32(2166136261)
	for i := 0; i < len(topic); i++ {
		h = (h ^ uint32(topic[i])) * 16777619
	}
	return int(h % topicStripes)
}

// lastOffset reads the offset of the last publication of subj (0: none).
func (h *History) lastOffset(ctx context.Context, hs *historyStream, subj string) (uint64, error) {
	m, err := hs.s.GetLastMsgForSubject(ctx, subj)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("%w: topic history: %w", ErrUnavailable, err)
	}
	return m.Sequence, nil
}

func (h *History) cached(topic string) (uint64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n, ok := h.last[topic]
	return n, ok
}

func (h *History) remember(topic string, offset uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.last) >= maxCachedTopics {
		clear(h.last) // a hint only: the next append of each reads it again
	}
	if offset > h.last[topic] {
		h.last[topic] = offset
	}
}

func (h *History) forget() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.last)
}

// Position is where a topic's history stands.
type Position struct {
	Offset uint64 // its last publication's (0: none kept)
	Epoch  string
}

// Last returns the offset of topic's last publication and the epoch.
func (h *History) Last(ctx context.Context, topic string) (Position, error) {
	r := h.rule(topic)
	if r == nil {
		return Position{}, fmt.Errorf("%w: topic %q keeps no history", ErrInvalid, topic)
	}
	hs := r.stream.Load()
	off, err := h.lastOffset(ctx, hs, r.prefix+topic)
	if streamGone(err) {
		if hs, err = r.open(ctx, h.js, hs.epoch); err != nil {
			return Position{}, err
		}
		h.forget()
		off, err = h.lastOffset(ctx, hs, r.prefix+topic)
	}
	return Position{Offset: off, Epoch: hs.epoch}, err
}

// Read returns the kept publications of topic after offset after and
// before offset before (0: up to the last), oldest first: at most twice
// the rule's Keep (what is appended while it reads comes too). One batched
// direct get of the stream for the lot, shared by the reads of the same
// topic and offsets that come while it runs (after a restart, the
// subscribers of a topic come back from the same offset): callers must not
// change the entries.
func (h *History) Read(ctx context.Context, topic string, after, before uint64) ([]Entry, error) {
	r := h.rule(topic)
	if r == nil {
		return nil, fmt.Errorf("%w: topic %q keeps no history", ErrInvalid, topic)
	}
	key := readKey{topic, after, before}
	h.readsMu.Lock()
	if c := h.reads[key]; c != nil {
		h.readsMu.Unlock()
		select {
		case <-c.done:
			return c.entries, c.err
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: topic history %q: %w", ErrUnavailable, topic, ctx.Err())
		}
	}
	c := &sharedRead{done: make(chan struct{})}
	h.reads[key] = c
	h.readsMu.Unlock()
	// Not the caller's to cancel: others wait for it too.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readTimeout)
	c.entries, c.err = h.readBatch(rctx, r, r.stream.Load(), topic, after, before)
	cancel()
	if c.err != nil {
		c.err = fmt.Errorf("%w: topic history %q: %w", ErrUnavailable, topic, c.err)
	}
	h.readsMu.Lock()
	delete(h.reads, key)
	h.readsMu.Unlock()
	close(c.done)
	return c.entries, c.err
}

// readKey names the reads that can share one request.
type readKey struct {
	topic         string
	after, before uint64
}

// sharedRead is one read and those that wait for its answer.
type sharedRead struct {
	done    chan struct{}
	entries []Entry
	err     error
}

// Headers of a direct get's answers (nats-server's).
const (
	headerStatus   = "Status"
	headerSequence = "Nats-Sequence"
	statusNotFound = "404"
	statusEndBatch = "204"
	// statusNoResponders is what the server answers a request nothing
	// listens to.
	statusNoResponders = "503"
)

// readBatch reads up to 2×Keep messages of topic's subject from after+1
// in one direct get.
func (h *History) readBatch(ctx context.Context, r *historyRule, hs *historyStream, topic string, after, before uint64) ([]Entry, error) {
	msgs, err := h.batches.read(ctx, h.cfg.Conn, r.name, r.prefix+topic, after+1, 2*r.Keep)
	var out []Entry
	for _, m := range msgs {
		seq, perr := strconv.ParseUint(m.Header.Get(headerSequence), 10, 64)
		if perr != nil {
			return out, fmt.Errorf("direct get: a message without its sequence")
		}
		if before != 0 && seq >= before {
			break
		}
		prev, _ := strconv.ParseUint(m.Header.Get(headerPrev), 10, 64)
		out = append(out, Entry{Topic: topic, Offset: seq, Prev: prev, Epoch: hs.epoch, Route: m.Header.Get(headerRoute), Payload: m.Data})
	}
	return out, err
}

// Recovery is what a subscriber that last saw an offset missed.
type Recovery struct {
	// Entries are the kept publications after that offset, oldest first.
	Entries []Entry
	// Recovered is false when some publications after that offset are no
	// longer kept, or the offset belongs to another epoch: the subscriber
	// must resync by other means.
	Recovered bool
	// Position is where the history stands (the last entry's offset).
	Position Position
}

// Recover reads what a subscriber of topic missed after offset since of
// epoch (empty: the current one): one store request, or two when the
// epoch is another one (then nothing is read, only where the topic stands).
func (h *History) Recover(ctx context.Context, topic string, since uint64, epoch string) (Recovery, error) {
	r := h.rule(topic)
	if r == nil {
		return Recovery{}, fmt.Errorf("%w: topic %q keeps no history", ErrInvalid, topic)
	}
	cur := r.stream.Load().epoch
	if epoch != "" && epoch != cur {
		pos, err := h.Last(ctx, topic)
		return Recovery{Position: pos}, err // offsets of another history mean nothing here
	}
	entries, err := h.Read(ctx, topic, since, 0)
	if streamGone(err) {
		// Deleted since it was last used: a new history, a new epoch.
		pos, err := h.Last(ctx, topic)
		return Recovery{Position: pos}, err
	}
	if err != nil {
		return Recovery{}, err
	}
	rec := Recovery{Entries: entries, Recovered: true, Position: Position{Offset: since, Epoch: cur}}
	if len(entries) > 0 {
		rec.Recovered = entries[0].Prev <= since
		rec.Position.Offset = entries[len(entries)-1].Offset
	}
	return rec, nil
}
