package access

import (
	"fmt"
	"slices"
	"strings"
)

// Policy is a compiled set of roles and the grant of every identity.
// It is immutable: a reload compiles a new one.
type Policy struct {
	grants map[string]*Grant // by identity
}

// Grant is what one identity may do: the union of its roles. Its methods
// are safe for concurrent use.
type Grant struct {
	roles     []string
	routes    set
	publish   set
	subscribe set
	push      set
	join      set
	sendTo    map[string]struct{} // identity names, roles expanded
}

// Compile checks roles and the roles each identity has (identity name →
// role names) and compiles a grant per identity. Every identity named in
// identities gets one, possibly empty (then it may do nothing).
func Compile(roles map[string]Role, identities map[string][]string) (*Policy, error) {
	if len(roles) > MaxRoles {
		return nil, fmt.Errorf("%w: %d roles, at most %d", ErrTooLarge, len(roles), MaxRoles)
	}
	members := make(map[string][]string) // role → identities, for role:NAME
	for id, rs := range identities {
		if len(rs) > MaxRolesPerIdentity {
			return nil, fmt.Errorf("identity %q: %w: %d roles, at most %d", id, ErrTooLarge, len(rs), MaxRolesPerIdentity)
		}
		for i, r := range rs {
			if _, ok := roles[r]; !ok {
				return nil, fmt.Errorf("identity %q: %w %q", id, ErrUnknownRole, r)
			}
			if slices.Contains(rs[:i], r) {
				return nil, fmt.Errorf("identity %q: role %q: %w", id, r, ErrDuplicate)
			}
			members[r] = append(members[r], id)
		}
	}
	for name, r := range roles {
		if err := checkRole(r, roles, identities); err != nil {
			return nil, fmt.Errorf("role %q: %w", name, err)
		}
	}
	p := &Policy{grants: make(map[string]*Grant, len(identities))}
	nodes := 0                        // of every grant compiled, against MaxNodes
	shared := make(map[string]*Grant) // identities with the same roles share a grant
	for id, rs := range identities {
		sorted := append([]string{}, rs...)
		slices.Sort(sorted)
		key := strings.Join(sorted, "\x00")
		g := shared[key]
		if g == nil {
			g = &Grant{roles: sorted, sendTo: make(map[string]struct{})}
			for _, name := range sorted {
				r := roles[name]
				for _, pats := range []struct {
					s    *set
					list []string
				}{{&g.routes, r.Routes}, {&g.publish, r.Publish}, {&g.subscribe, r.Subscribe}, {&g.push, r.Push}, {&g.join, r.Join}} {
					for _, pat := range pats.list {
						nodes += pats.s.add(pat)
					}
				}
				for _, t := range r.SendTo {
					if role, ok := strings.CutPrefix(t, RolePrefix); ok {
						for _, m := range members[role] {
							g.sendTo[m] = struct{}{}
						}
					} else {
						g.sendTo[t] = struct{}{}
					}
				}
				nodes += len(r.SendTo)
				if nodes > MaxNodes {
					return nil, fmt.Errorf("%w: the grants need more than %d nodes (use fewer distinct role sets or patterns)", ErrTooLarge, MaxNodes)
				}
			}
			shared[key] = g
		}
		p.grants[id] = g
	}
	return p, nil
}

// checkRole validates one role's lists.
func checkRole(r Role, roles map[string]Role, identities map[string][]string) error {
	for _, l := range []struct {
		name string
		list []string
	}{{"routes", r.Routes}, {"topics.publish", r.Publish}, {"topics.subscribe", r.Subscribe}, {"queues.push", r.Push}, {"queues.join", r.Join}} {
		if err := CheckList(l.list); err != nil {
			return fmt.Errorf("%s: %w", l.name, err)
		}
	}
	if len(r.SendTo) > MaxPatternsPerList {
		return fmt.Errorf("send_to: %w: %d entries, at most %d", ErrTooLarge, len(r.SendTo), MaxPatternsPerList)
	}
	for i, t := range r.SendTo {
		if err := CheckTarget(t, roles, identities); err != nil {
			return fmt.Errorf("send_to: %w", err)
		}
		if slices.Contains(r.SendTo[:i], t) {
			return fmt.Errorf("send_to: %q: %w", t, ErrDuplicate)
		}
	}
	return nil
}

// CheckList validates a list of patterns: each valid, none twice, not too
// many.
func CheckList(list []string) error {
	if len(list) > MaxPatternsPerList {
		return fmt.Errorf("%w: %d patterns, at most %d", ErrTooLarge, len(list), MaxPatternsPerList)
	}
	seen := make(map[string]struct{}, len(list))
	for _, p := range list {
		if err := CheckPattern(p); err != nil {
			return err
		}
		if _, dup := seen[p]; dup {
			return fmt.Errorf("%q: %w", p, ErrDuplicate)
		}
		seen[p] = struct{}{}
	}
	return nil
}

// CheckTarget validates a send_to entry: an identity of identities or
// "role:NAME" with NAME a role of roles.
func CheckTarget(t string, roles map[string]Role, identities map[string][]string) error {
	if role, ok := strings.CutPrefix(t, RolePrefix); ok {
		if _, known := roles[role]; !known {
			return fmt.Errorf("%w %q", ErrUnknownRole, role)
		}
		return nil
	}
	if _, known := identities[t]; !known {
		return fmt.Errorf("%w %q (want an identity of the file, or role:NAME)", ErrUnknownTarget, t)
	}
	return nil
}

// Grant returns the grant of identity: an empty one (nothing allowed) for
// an identity the policy does not know.
func (p *Policy) Grant(identity string) *Grant {
	if g := p.grants[identity]; g != nil {
		return g
	}
	return &none
}

var none = Grant{roles: []string{}}

// Allows reports whether the grant allows the action. A route of "" is
// "default", as in the protocol.
func (g *Grant) Allows(k Kind, target string) bool {
	switch k {
	case KindRoute:
		if target == "" {
			target = "default"
		}
		return g.routes.match(target)
	case KindPublish:
		return g.publish.match(target)
	case KindSubscribe:
		return g.subscribe.match(target)
	case KindPush:
		return g.push.match(target)
	case KindJoin:
		return g.join.match(target)
	case KindSendTo:
		_, ok := g.sendTo[target]
		return ok
	}
	return false
}

// Roles returns the grant's role names, sorted. The slice is shared: do
// not modify it.
func (g *Grant) Roles() []string { return g.roles }
