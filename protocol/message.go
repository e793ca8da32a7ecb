package protocol

import "time"

// Message is one frame: {"type", "payload", "timestamp", "id", "route"}.
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

// Now returns the current time in Unix milliseconds, the unit of Timestamp.
func Now() int64 { return time.Now().UnixMilli() }
