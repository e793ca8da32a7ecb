package gateway

import (
	"sync/atomic"

	"github.com/secureagentmessaging/samgw/protocol"
)

// FrameTypes are the frame types Stats counts, in a fixed order.
var FrameTypes = [...]protocol.Type{
	protocol.TypeData, protocol.TypePing, protocol.TypePong, protocol.TypeKeepAlive,
	protocol.TypeClose, protocol.TypeError, protocol.TypeAuth, protocol.TypeAck,
	protocol.TypeNack, protocol.TypeProgress,
}

// typeIndex is t's position in FrameTypes.
func typeIndex(t protocol.Type) int {
	switch t {
	case protocol.TypeData:
		return 0
	case protocol.TypePing:
		return 1
	case protocol.TypePong:
		return 2
	case protocol.TypeKeepAlive:
		return 3
	case protocol.TypeClose:
		return 4
	case protocol.TypeError:
		return 5
	case protocol.TypeAuth:
		return 6
	case protocol.TypeNack:
		return 8
	case protocol.TypeProgress:
		return 9
	}
	return 7
}

// frameCounts counts frames by type.
type frameCounts [len(FrameTypes)]atomic.Uint64

// Stats are a server's counters since it started, for metrics.
type Stats struct {
	ConnectionsOpen  int
	ConnectionsTotal uint64
	// ConnectionsRefused counts connections turned away: server full or
	// too many from one address.
	ConnectionsRefused uint64
	// UnauthenticatedEvicted counts connections closed before they
	// authenticated to admit newer ones (MaxUnauthenticated).
	UnauthenticatedEvicted uint64
	// FramesIn and FramesOut count frames by type, indexed like FrameTypes.
	FramesIn, FramesOut [len(FrameTypes)]uint64
	// InvalidFrames counts frames that did not decode (answered with error).
	InvalidFrames     uint64
	BytesIn, BytesOut uint64
	KeepAliveTimeouts uint64
	SlowConsumers     uint64
	AuthFailures      uint64
	Forbidden         uint64
	BadSignatures     uint64
	Replays           uint64
	RateLimited       uint64
	// PendingBytes is what the connections hold waiting to be written, as
	// counted against MaxPendingBytes (each counts what it holds beyond a
	// small floor); OutboundShed counts the connections closed to keep it
	// under that bound (also counted in SlowConsumers).
	PendingBytes int64
	OutboundShed uint64
}

// serverCounters are the event counters of a server.
type serverCounters struct {
	connsTotal, refused, invalid              atomic.Uint64
	keepAliveTimeouts, slowConsumers          atomic.Uint64
	authFailures, forbidden, badSigs, replays atomic.Uint64
	rateLimited, unauthEvicted                atomic.Uint64
	closedIn, closedOut                       frameCounts // of connections already gone
	closedBytesIn, closedBytesOut             atomic.Uint64
}

// fold adds a closing connection's counts to the server's totals.
func (s *serverCounters) fold(w *wire) {
	for i := range w.in {
		s.closedIn[i].Add(w.in[i].Load())
		s.closedOut[i].Add(w.out[i].Load())
	}
	s.closedBytesIn.Add(w.bytesIn.Load())
	s.closedBytesOut.Add(w.bytesOut.Load())
}

// Stats returns the server's counters: those of closed connections plus
// those of the open ones.
func (s *Server) Stats() Stats {
	c := &s.counters
	st := Stats{
		ConnectionsTotal:       c.connsTotal.Load(),
		ConnectionsRefused:     c.refused.Load(),
		InvalidFrames:          c.invalid.Load(),
		KeepAliveTimeouts:      c.keepAliveTimeouts.Load(),
		SlowConsumers:          c.slowConsumers.Load(),
		AuthFailures:           c.authFailures.Load(),
		Forbidden:              c.forbidden.Load(),
		BadSignatures:          c.badSigs.Load(),
		Replays:                c.replays.Load(),
		RateLimited:            c.rateLimited.Load(),
		UnauthenticatedEvicted: c.unauthEvicted.Load(),
		PendingBytes:           s.wcfg.budget.total.Load(),
		OutboundShed:           s.wcfg.budget.closed.Load(),
	}
	s.mu.Lock()
	st.ConnectionsOpen = len(s.conns)
	for i := range st.FramesIn {
		st.FramesIn[i] = c.closedIn[i].Load()
		st.FramesOut[i] = c.closedOut[i].Load()
	}
	st.BytesIn, st.BytesOut = c.closedBytesIn.Load(), c.closedBytesOut.Load()
	for _, conn := range s.conns {
		for i := range st.FramesIn {
			st.FramesIn[i] += conn.w.in[i].Load()
			st.FramesOut[i] += conn.w.out[i].Load()
		}
		st.BytesIn += conn.w.bytesIn.Load()
		st.BytesOut += conn.w.bytesOut.Load()
	}
	s.mu.Unlock()
	return st
}

// Listening reports whether the server is accepting connections.
func (s *Server) Listening() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed && len(s.listeners) > 0
}
