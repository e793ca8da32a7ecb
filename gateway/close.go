package gateway

import (
	"errors"

	"github.com/secureagentmessaging/samgw/protocol"
)

// CloseKind is why a connection ended, as a closed set: counters, audit
// events and log lines switch on it, never on text.
type CloseKind uint8

// The ways a connection ends. The comments say what close frame the peer
// gets ({"reason": ...} unless noted), if any.
const (
	// ClosePeerGone: the peer hung up or vanished; no frame.
	ClosePeerGone CloseKind = iota + 1
	// CloseByPeer: the peer sent close; the server answers
	// {"message": "Connection closed by client"}.
	CloseByPeer
	// CloseByServer: (client side) the server sent close; Detail is its
	// reason.
	CloseByServer
	// CloseRequested: Conn.Close or Client.Disconnect with Detail as the
	// reason.
	CloseRequested
	CloseKeepAliveTimeout
	CloseFrameTooLarge
	// CloseSlowConsumer: the peer did not take its frames; no frame (the
	// socket is cut).
	CloseSlowConsumer
	CloseServerShutdown
	CloseServerFull
	CloseTooManyFromAddress
	CloseUnauthenticatedEvicted
	// CloseUnauthorized: authentication failed (Detail says how); the frame
	// says "unauthorized".
	CloseUnauthorized
	// CloseAuthTimeout: the auth deadline passed (it ends as
	// CloseUnauthorized once the reader sees it).
	CloseAuthTimeout
	// CloseRejected: OnConnect refused; Detail is its reason.
	CloseRejected
	// CloseReadFailed, CloseWriteFailed: the socket failed; Detail is the
	// error; no frame.
	CloseReadFailed
	CloseWriteFailed
	// CloseTimedOut: a shutdown or disconnect took too long and the socket
	// was cut; Detail says which; no frame.
	CloseTimedOut
	// CloseInternal: a panic outside a handler; no frame.
	CloseInternal
	// CloseBadCompression: the compressed input is not a DEFLATE stream or
	// inflates past what frames explain (ErrBadCompression).
	CloseBadCompression
)

// CloseCause says why a connection ended: what its close frame says, what
// is logged and passed to OnClose/OnDisconnect, and what is counted. The
// first cause of a connection wins.
type CloseCause struct {
	Kind   CloseKind
	Detail string
}

// closeTexts are the fixed texts of the kinds that carry no detail: logged,
// and sent as the close frame's reason.
var closeTexts = map[CloseKind]string{
	ClosePeerGone:               ReasonPeerClosed,
	CloseByPeer:                 ReasonClosedByClient,
	CloseKeepAliveTimeout:       ReasonKeepAliveTimeout,
	CloseFrameTooLarge:          ReasonFrameTooLarge,
	CloseSlowConsumer:           ReasonSlowConsumer,
	CloseServerShutdown:         ReasonServerShutdown,
	CloseServerFull:             ReasonServerFull,
	CloseTooManyFromAddress:     ReasonTooManyFromAddress,
	CloseUnauthenticatedEvicted: ReasonUnauthenticatedEvicted,
	CloseAuthTimeout:            ReasonAuthTimeout,
	CloseInternal:               "internal error",
	CloseBadCompression:         ReasonBadCompression,
}

// String is the cause as logs and callbacks see it: "keepalive timeout",
// "unauthorized: invalid token", "rejected: full", "read failed: …".
func (c CloseCause) String() string {
	switch c.Kind {
	case CloseRequested, CloseTimedOut:
		return c.Detail
	case CloseUnauthorized:
		return ReasonUnauthorized + ": " + c.Detail
	case CloseRejected:
		return "rejected: " + c.Detail
	case CloseByServer:
		return "closed by server: " + c.Detail
	case CloseReadFailed:
		return "read failed: " + c.Detail
	case CloseWriteFailed:
		return "write failed: " + c.Detail
	case CloseSlowConsumer, CloseBadCompression:
		if c.Detail != "" {
			return closeTexts[c.Kind] + ": " + c.Detail
		}
	}
	return closeTexts[c.Kind]
}

// frame is what the close frame for this cause says: its payload key and
// text, or "" when no frame is sent.
func (c CloseCause) frame() (key, text string) {
	switch c.Kind {
	case ClosePeerGone, CloseByServer, CloseReadFailed, CloseWriteFailed, CloseTimedOut, CloseInternal, CloseSlowConsumer:
		return "", ""
	case CloseByPeer:
		return "message", "Connection closed by client"
	case CloseUnauthorized:
		return "reason", ReasonUnauthorized
	case CloseRequested, CloseRejected:
		return "reason", c.Detail
	}
	return "reason", closeTexts[c.Kind]
}

// Shorthands for the causes without detail.
var (
	causePeerGone         = CloseCause{Kind: ClosePeerGone}
	causeByPeer           = CloseCause{Kind: CloseByPeer}
	causeKeepAliveTimeout = CloseCause{Kind: CloseKeepAliveTimeout}
	causeFrameTooLarge    = CloseCause{Kind: CloseFrameTooLarge}
	causeSlowConsumer     = CloseCause{Kind: CloseSlowConsumer}
	causeServerShutdown   = CloseCause{Kind: CloseServerShutdown}
	causeAuthTimeout      = CloseCause{Kind: CloseAuthTimeout}
	causeEvicted          = CloseCause{Kind: CloseUnauthenticatedEvicted}
	causeInternal         = CloseCause{Kind: CloseInternal}
)

// readCause maps the error that ended reading to a cause, for Conn and
// Client alike; requested is the cause given to requestClose, if any.
func readCause(err error, requested CloseCause) CloseCause {
	switch {
	case errors.Is(err, errCloseRequested):
		return requested
	case errors.Is(err, protocol.ErrFrameTooLarge):
		return causeFrameTooLarge
	case errors.Is(err, ErrBadCompression):
		return CloseCause{Kind: CloseBadCompression}
	case isTimeout(err):
		return causeKeepAliveTimeout
	case isEOF(err):
		return causePeerGone
	}
	return CloseCause{Kind: CloseReadFailed, Detail: err.Error()}
}
