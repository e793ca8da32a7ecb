package delivery

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers a mailbox message carries besides its payload.
const (
	headerRoute = "Samgw-Route" // the route its data frame carries
	headerID    = "Samgw-Id"    // its id as the caller gave it
)

// JetStream error codes Deliver tells apart (nats-server's JSStreamStoreFailedF:
// a limit of the stream refused the message; JSMessageTTLInvalidErr).
const (
	codeStoreFailed       jetstream.ErrorCode = 10077
	codeMessageTTLInvalid jetstream.ErrorCode = 10165
)

// DeliverOptions are the optional parts of a mailbox message.
type DeliverOptions struct {
	// Route is the route its data frame carries ("" for none).
	Route string
	// ID is its id: a second Deliver of the same id to the same identity
	// within the dedupe window stores nothing and returns the first seq.
	// Without one, the frame's id is "m-" and the seq.
	ID string
	// TTL makes it expire unread that long after it is stored (whole
	// seconds, at least one; 0: the mailbox's age limit only).
	TTL time.Duration
}

// subject is the JetStream subject of identity's mailbox: the identity in
// unpadded base64url, so any name is one subject token.
func subject(identity string) string {
	return subjectPrefix + base64.RawURLEncoding.EncodeToString([]byte(identity))
}

// Deliver appends payload (JSON) to identity's mailbox and returns its
// seq once the store has it (with file storage, it survives the process
// being killed). A connection of identity that resumed gets it at once;
// otherwise it waits for one.
func (m *Mailboxes) Deliver(ctx context.Context, identity string, payload []byte, opts DeliverOptions) (uint64, error) {
	if identity == "" || (m.cfg.Known != nil && !m.cfg.Known(identity)) {
		return 0, fmt.Errorf("%w: %q", ErrUnknownIdentity, identity)
	}
	if opts.TTL < 0 {
		return 0, fmt.Errorf("%w: ttl %v", ErrInvalid, opts.TTL)
	}
	if !m.cfg.Conn.IsConnected() {
		// nats.go would keep the message to send after a reconnect and wait
		// for its ack until ctx ends: say at once that it is not stored.
		return 0, fmt.Errorf("%w: not connected to NATS (%s)", ErrUnavailable, m.cfg.Conn.Status())
	}
	msg := nats.NewMsg(subject(identity))
	msg.Data = payload
	var popts []jetstream.PublishOpt
	if opts.Route != "" {
		msg.Header.Set(headerRoute, opts.Route)
	}
	if opts.ID != "" {
		msg.Header.Set(headerID, opts.ID)
		// The dedupe window is the stream's: the id is made the identity's own.
		popts = append(popts, jetstream.WithMsgID(strconv.Itoa(len(identity))+":"+identity+":"+opts.ID))
	}
	if opts.TTL > 0 {
		popts = append(popts, jetstream.WithMsgTTL(max(time.Second, opts.TTL.Round(time.Second))))
	}
	ack, err := m.js.PublishMsg(ctx, msg, popts...)
	if err != nil {
		return 0, m.publishFailed(identity, err)
	}
	return ack.Sequence, nil
}

// publishFailed says why a message was not stored. JetStream reports each
// limit of a stream with the same code, so a refusal is told apart by
// looking at the mailbox: at its most messages, it is full; otherwise the
// store is.
func (m *Mailboxes) publishFailed(identity string, err error) error {
	var api *jetstream.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode {
		case codeStoreFailed:
			if n, cerr := m.count(identity); cerr == nil && n >= uint64(m.cfg.MaxMessages) {
				return fmt.Errorf("%w: %q holds %d messages", ErrMailboxFull, identity, n)
			}
			return fmt.Errorf("%w: %w", ErrStoreFull, err)
		case jetstream.JSErrCodeStreamMessageExceedsMaximum:
			return fmt.Errorf("%w: larger than the store takes: %w", ErrInvalid, err)
		case codeMessageTTLInvalid:
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// count returns how many messages wait in identity's mailbox.
func (m *Mailboxes) count(identity string) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.Timeout)
	defer cancel()
	subj := subject(identity)
	info, err := m.stream.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return info.State.Subjects[subj], nil
}

// Pending returns how many messages wait in identity's mailbox, acked or
// not yet applied acks aside.
func (m *Mailboxes) Pending(identity string) (uint64, error) { return m.count(identity) }
