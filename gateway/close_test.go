package gateway

import (
	"errors"
	"io"
	"testing"

	"github.com/secureagentmessaging/samgw/protocol"
)

// TestCloseCauses pins what each cause logs and what its close frame says:
// peers and log readers depend on these texts.
func TestCloseCauses(t *testing.T) {
	tests := []struct {
		cause     CloseCause
		text      string
		key, what string
	}{
		{causePeerGone, "peer closed the connection", "", ""},
		{causeByPeer, "closed by client", "message", "Connection closed by client"},
		{CloseCause{Kind: CloseByServer, Detail: "server shutdown"}, "closed by server: server shutdown", "", ""},
		{CloseCause{Kind: CloseRequested, Detail: "bye"}, "bye", "reason", "bye"},
		{causeKeepAliveTimeout, "keepalive timeout", "reason", "keepalive timeout"},
		{causeFrameTooLarge, "frame too large", "reason", "frame too large"},
		{causeSlowConsumer, "slow consumer", "", ""},
		{causeServerShutdown, "server shutdown", "reason", "server shutdown"},
		{CloseCause{Kind: CloseServerFull}, "server full", "reason", "server full"},
		{CloseCause{Kind: CloseTooManyFromAddress}, "too many connections from this address", "reason", "too many connections from this address"},
		{causeEvicted, "too many unauthenticated connections", "reason", "too many unauthenticated connections"},
		{CloseCause{Kind: CloseUnauthorized, Detail: "invalid token"}, "unauthorized: invalid token", "reason", "unauthorized"},
		{CloseCause{Kind: CloseRejected, Detail: "full"}, "rejected: full", "reason", "full"},
		{CloseCause{Kind: CloseReadFailed, Detail: "boom"}, "read failed: boom", "", ""},
		{CloseCause{Kind: CloseWriteFailed, Detail: "boom"}, "write failed: boom", "", ""},
		{CloseCause{Kind: CloseTimedOut, Detail: "shutdown timed out"}, "shutdown timed out", "", ""},
		{causeInternal, "internal error", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			if got := tt.cause.String(); got != tt.text {
				t.Errorf("String() = %q, want %q", got, tt.text)
			}
			if key, what := tt.cause.frame(); key != tt.key || what != tt.what {
				t.Errorf("frame() = %q %q, want %q %q", key, what, tt.key, tt.what)
			}
		})
	}
}

// TestReadCause: the one mapping of read errors to causes, for Conn and
// Client.
func TestReadCause(t *testing.T) {
	requested := CloseCause{Kind: CloseRequested, Detail: "asked"}
	tests := []struct {
		err  error
		want CloseKind
	}{
		{errCloseRequested, CloseRequested},
		{protocol.Errorf(protocol.CodeFrameTooLarge, "too big"), CloseFrameTooLarge},
		{io.EOF, ClosePeerGone},
		{errors.New("reset"), CloseReadFailed},
	}
	for _, tt := range tests {
		if got := readCause(tt.err, requested); got.Kind != tt.want {
			t.Errorf("readCause(%v) = %+v, want kind %d", tt.err, got, tt.want)
		}
	}
}
