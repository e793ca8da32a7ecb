package gateway

import (
	"errors"
	"fmt"

	"github.com/secureagentmessaging/samgw/access"
	"github.com/secureagentmessaging/samgw/protocol"
)

// ReasonRevoked is why a connection closes when a reload of the identities
// removed its identity or changed its token or key.
const ReasonRevoked = "the identity was removed or its credentials changed"

// grant returns the connection's identity as of the last reload of the
// identities, or nil when the server has none (or the connection has not
// authenticated yet). Safe from any goroutine.
func (c *Conn) grant() *principal {
	p := c.principal.Load()
	if p == nil {
		return nil
	}
	if n := p.current(); n != p {
		c.principal.CompareAndSwap(p, n)
		p = n
	}
	return p
}

// Roles returns the names of the connection's roles, sorted: none without
// roles. The slice is shared: do not modify it.
func (c *Conn) Roles() []string {
	if p := c.grant(); p != nil {
		return p.roles()
	}
	return nil
}

// Can reports whether the connection's identity may do the action (see
// AuthConfig.Roles): always true without identities, false for a revoked
// identity. It neither counts nor audits; Check does.
func (c *Conn) Can(kind access.Kind, target string) bool {
	p := c.grant()
	if p == nil {
		return c.srv.auth == nil
	}
	return !p.revoked.Load() && p.allows(kind, target)
}

// Check is Can for an action about to be taken: a refusal is counted,
// audited (identity, roles, kind and target) and returned as the error
// the peer gets, with code forbidden.
func (c *Conn) Check(kind access.Kind, target string) error {
	p := c.grant()
	if p == nil {
		if c.srv.auth == nil {
			return nil
		}
		return protocol.Errorf(protocol.CodeForbidden, "the connection has no identity")
	}
	if p.revoked.Load() {
		return protocol.Errorf(protocol.CodeForbidden, "%s", ReasonRevoked)
	}
	return c.refuse(p, kind, target)
}

// refuse returns nil when p may do the action, else the forbidden error,
// counted and audited.
func (c *Conn) refuse(p *principal, kind access.Kind, target string) error {
	if p.allows(kind, target) {
		return nil
	}
	c.srv.counters.forbidden.Add(1)
	e := AuditEvent{Event: AuditForbidden, Conn: c.id, Remote: c.remote, Identity: p.name, Roles: p.roles(), Kind: string(kind), Target: target}
	if kind == access.KindRoute {
		e.Route = target
	}
	c.srv.audit(e)
	return protocol.Errorf(protocol.CodeForbidden, "identity %q may not %s", p.name, action(kind, target))
}

// action words an action for a refusal.
func action(kind access.Kind, target string) string {
	switch kind {
	case access.KindRoute:
		return fmt.Sprintf("use route %q", target)
	case access.KindPublish:
		return fmt.Sprintf("publish to %q", target)
	case access.KindSubscribe:
		return fmt.Sprintf("subscribe to %q", target)
	case access.KindSendTo:
		return fmt.Sprintf("send to %q", target)
	case access.KindPush:
		return fmt.Sprintf("push to queue %q", target)
	case access.KindJoin:
		return fmt.Sprintf("work queue %q", target)
	}
	return fmt.Sprintf("%s %q", kind, target)
}

// KnowsIdentity reports whether name is one of the identities in force
// (after the last SetIdentities); false without authentication.
func (s *Server) KnowsIdentity(name string) bool {
	return s.auth != nil && s.auth.byName(name) != nil
}

// ErrNoIdentities is returned by SetIdentities on a server without
// authentication.
var ErrNoIdentities = errors.New("gateway: authentication is off: there are no identities to replace")

// SetIdentities replaces the identities and roles the server checks, as a
// reload of the identities file does. A connection sees the change at its
// next message; connections whose identity is gone, or proves itself with
// another token or key, are told (error unauthorized) and closed now: it
// returns how many. On error nothing changes.
func (s *Server) SetIdentities(ids []Identity, roles map[string]access.Role) (closed int, err error) {
	if s.auth == nil {
		return 0, ErrNoIdentities
	}
	t, err := s.auth.newTable(ids, roles)
	if err != nil {
		return 0, fmt.Errorf("identities: %w", err)
	}
	revoked, err := s.auth.replace(t)
	if err != nil {
		return 0, err
	}
	if len(revoked) > 0 {
		s.mu.Lock()
		conns := s.snapshot()
		s.mu.Unlock()
		for _, c := range conns {
			if p := c.grant(); p != nil && p.revoked.Load() {
				c.w.enqueueError("", protocol.Errorf(protocol.CodeUnauthorized, "%s", ReasonRevoked)) //nolint:errcheck // closing
				c.w.requestClose(CloseCause{Kind: CloseUnauthorized, Detail: ReasonRevoked})
				c.audit(AuditAuthFailed, "", ReasonRevoked)
				closed++
			}
		}
	}
	return closed, nil
}
