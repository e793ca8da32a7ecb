package gateway

import "fmt"

// connState is where a server connection is in its life. It decides what
// may reach the connection: only an open one is addressable (Server.Conn,
// Range, Connections, and through them broadcast, send_to, topics,
// presence and every listing), so a peer that has proven nothing never
// receives a push, and a closing one is no longer offered to senders.
//
//	accepted ──► handshaking ──► authenticating ──► open ──► closing ──► closed
//	    │             │                 │                       ▲
//	    └─────────────┴─────────────────┴───────────────────────┘
//
// A connection without TLS skips handshaking; one without identities (or
// proven by its client certificate) skips authenticating. Any state before
// closing may go to closing. Every change goes through Conn.advance, which
// keeps the server's set of open connections in step under the server's
// mutex.
type connState uint8

const (
	stateAccepted       connState = iota // registered and counted; nothing proven yet
	stateHandshaking                     // in its TLS handshake
	stateAuthenticating                  // waiting for its auth frame
	stateOpen                            // authenticated, or served without authentication: addressable
	stateClosing                         // its end is decided: no longer addressable, frames still drain
	stateClosed                          // gone: its socket is closed and it left the server
)

var stateNames = [...]string{"accepted", "handshaking", "authenticating", "open", "closing", "closed"}

func (s connState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("connState(%d)", s)
}

// legal reports whether a connection in state from may move to to. States
// only move forward; closing and closed are reached from any earlier
// state, and a state is never entered twice.
func (from connState) legal(to connState) bool {
	switch to {
	case stateHandshaking:
		return from == stateAccepted
	case stateAuthenticating:
		return from == stateAccepted || from == stateHandshaking
	case stateOpen:
		return from < stateOpen
	case stateClosing:
		return from < stateClosing
	case stateClosed:
		return from == stateClosing
	}
	return false
}

// advance moves c to state to, if that is a legal step from where it is,
// and reports whether it moved. Entering open makes c addressable;
// leaving it (for closing) withdraws it before anything else of the close
// happens. It is the one place a connection's state changes.
func (c *Conn) advance(to connState) bool {
	c.srv.mu.Lock()
	defer c.srv.mu.Unlock()
	return c.advanceLocked(to)
}

// advanceLocked is advance with the server's mutex held.
func (c *Conn) advanceLocked(to connState) bool {
	s := c.srv
	from := c.state
	if !from.legal(to) {
		return false
	}
	c.state = to
	switch {
	case to == stateOpen:
		if _, registered := s.conns[c.id]; registered {
			s.open[c.id] = c
		}
	case from == stateOpen:
		delete(s.open, c.id)
	}
	return true
}

// State returns the connection's state by name ("open", "closing", …), for
// listings and logs.
func (c *Conn) State() string {
	c.srv.mu.Lock()
	defer c.srv.mu.Unlock()
	return c.state.String()
}
