// Package protocol defines the samgw wire format: one UTF-8 JSON object per
// line, each a Message with a type, an optional payload, a timestamp in Unix
// milliseconds and an optional id.
//
// The package is pure data and framing: no goroutines, sockets or logging.
//
//   - Message is one decoded frame; its Payload is the raw JSON of the payload,
//     never re-encoded, so it can be echoed or handed on byte for byte.
//   - Reader splits a byte stream into frames with a hard size limit.
//   - Decode validates a frame (JSON syntax, UTF-8, nesting depth, field types)
//     in a single non-recursive pass and extracts the top-level fields.
//   - AppendFrame encodes a Message into a caller's buffer, allocation-free.
//   - Error is the typed error behind every `error` frame, with a Code.
package protocol

// Type is the kind of a message, the "type" field of a frame.
type Type string

// The message types. The values are the wire strings and must never change.
const (
	// TypeData carries application data; the server routes it to a handler.
	TypeData Type = "data"
	// TypePing asks the peer for a TypePong with the same id.
	TypePing Type = "ping"
	// TypePong answers a TypePing.
	TypePong Type = "pong"
	// TypeKeepAlive is a heartbeat; the server answers a client's with its own.
	TypeKeepAlive Type = "keepalive"
	// TypeClose announces a graceful disconnect, with a reason.
	TypeClose Type = "close"
	// TypeError is the server's answer to input it could not accept.
	TypeError Type = "error"
	// TypeAuth carries a bearer token from the client, and the server's
	// answer.
	TypeAuth Type = "auth"
	// TypeAck is a resuming client's receipt for its mailbox's messages: its
	// payload's seq says everything up to that number is done. With a job
	// instead ({"job": ID}), a worker says that job is done.
	TypeAck Type = "ack"
	// TypeNack is a worker's refusal of a job ({"job": ID}): it goes back
	// to its queue for another delivery.
	TypeNack Type = "nack"
	// TypeProgress is a worker's word that a job ({"job": ID}) is still
	// being worked on: its lease starts again.
	TypeProgress Type = "progress"
)

// MaxJobLen bounds a job id.
const MaxJobLen = 256

// MaxTopicLen bounds a topic name; MaxEpochLen bounds a history's epoch.
const (
	MaxTopicLen = 128
	MaxEpochLen = 64
)

// Default limits, used when a Limits field is zero.
const (
	// DefaultMaxFrameSize is the largest frame accepted, not counting the
	// line ending.
	DefaultMaxFrameSize = 1 << 20
	// DefaultMaxDepth is how deeply arrays and objects may nest in a frame.
	DefaultMaxDepth = 64
	// MaxDepthLimit is the largest nesting depth a Limits may allow; deeper
	// settings are clamped to it.
	MaxDepthLimit = 1024
)

// Limits bound what Decode and Reader accept. The zero value means the
// defaults.
type Limits struct {
	// MaxFrameSize is the largest frame in bytes, not counting "\n" or
	// "\r\n". Zero means DefaultMaxFrameSize.
	MaxFrameSize int
	// MaxDepth is the deepest nesting of arrays and objects, the top-level
	// object counting as 1. Zero means DefaultMaxDepth.
	MaxDepth int
}

func (l Limits) maxFrameSize() int {
	if l.MaxFrameSize <= 0 {
		return DefaultMaxFrameSize
	}
	return l.MaxFrameSize
}

func (l Limits) maxDepth() int {
	switch {
	case l.MaxDepth <= 0:
		return DefaultMaxDepth
	case l.MaxDepth > MaxDepthLimit:
		return MaxDepthLimit
	}
	return l.MaxDepth
}
