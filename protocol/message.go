package protocol

import (
	"strconv"

	"github.com/secureagentmessaging/samgw/internal/clock"
)

// Message is one frame: {"type", "payload", "timestamp", "id", "route",
// "seq", "job", "sig"}.
//
// A Message filled by Decode aliases the frame it was decoded from: Payload
// points into that buffer and is valid only as long as the buffer is. Copy
// it (see Clone) to keep it.
type Message struct {
	// Type is the message type; Decode only produces the known types.
	Type Type
	// ID identifies the message; replies carry the id of their request.
	// Empty means absent.
	ID string
	// Route names the handler for a data message. Empty means the default.
	Route string
	// Timestamp is the sender's clock in Unix milliseconds; 0 means absent.
	Timestamp int64
	// Payload is the raw JSON of the payload, exactly as sent. Nil means
	// absent; a JSON null is the 4 bytes "null".
	Payload []byte
	// Seq is the mailbox sequence number of a message delivered from a
	// mailbox (per identity, increasing); 0 means absent. The client acks it
	// with an ack frame.
	Seq uint64
	// Job is the id of a work queue's job delivered to a worker; empty
	// means absent. The worker answers with an ack, nack or progress frame
	// whose payload names it.
	Job string
	// Topic, Offset and Epoch mark a publication of a topic that keeps
	// history (see --topic-history): Offset numbers it (per topic,
	// increasing; 0 means absent) and Epoch names the history the offset
	// belongs to, so a subscriber can resume from its last offset and tell
	// when that history was lost and begun anew.
	Topic  string
	Offset uint64
	Epoch  string
	// Sig is the base64 Ed25519 signature of a signed message (see
	// AppendSigned); empty means unsigned.
	Sig string
}

// Clone returns a copy of m that shares no memory with the frame it was
// decoded from.
func (m *Message) Clone() *Message {
	c := *m
	if m.Payload != nil {
		c.Payload = append([]byte(nil), m.Payload...)
	}
	return &c
}

// Now returns the current time in Unix milliseconds, the unit of Timestamp
// (one clock read: see internal/clock).
func Now() int64 { return clock.UnixMilli() }

// SignatureContext opens the bytes a message signature covers.
const SignatureContext = "samgw-sig-v1\n"

// AppendSigned appends the bytes a signature of m covers:
//
//	"samgw-sig-v1\n" + id + "\n" + timestamp + "\n" + route + "\n" + payload
//
// with the timestamp in decimal and the payload exactly as sent (empty when
// absent). Verifiers use the raw payload bytes, never a re-encoding.
func AppendSigned(dst []byte, m *Message) []byte {
	dst = append(dst, SignatureContext...)
	dst = append(dst, m.ID...)
	dst = append(dst, '\n')
	dst = strconv.AppendInt(dst, m.Timestamp, 10)
	dst = append(dst, '\n')
	dst = append(dst, m.Route...)
	dst = append(dst, '\n')
	return append(dst, m.Payload...)
}
