// Package access decides what an identity may do once roles are
// configured: the routes it may send data to, the topics it may publish
// to and be subscribed to, and the identities it may message. Patterns are
// NATS subjects': dot-separated tokens, "*" stands for one token and ">"
// (last only) for one or more.
//
// It is the one place both sides use: the gateway checks a data frame's
// route before any handler runs, and the script API checks publish,
// subscribe, send_to and deliver with the same grants.
package access

import (
	"errors"
	"fmt"
	"strings"
)

// Kind is a kind of action a grant allows.
type Kind string

// The kinds of action a role grants. A target is a route name, a topic,
// a queue name (KindPush, KindJoin) or an identity name (KindSendTo).
const (
	KindRoute     Kind = "route"
	KindPublish   Kind = "publish"
	KindSubscribe Kind = "subscribe"
	KindSendTo    Kind = "send_to"
	KindPush      Kind = "push"
	KindJoin      Kind = "join"
)

// Kinds lists every kind, in the order the docs give them.
var Kinds = []Kind{KindRoute, KindPublish, KindSubscribe, KindSendTo, KindPush, KindJoin}

// ParseKind returns the kind named s.
func ParseKind(s string) (Kind, bool) {
	for _, k := range Kinds {
		if string(k) == s {
			return k, true
		}
	}
	return "", false
}

// Role is what one role grants, as written in the identities file.
type Role struct {
	Routes    []string // route patterns
	Publish   []string // topic patterns
	Subscribe []string // topic patterns
	// SendTo names identities, or every identity of a role as "role:NAME".
	SendTo []string
	Push   []string // queue patterns: queue.push
	Join   []string // queue patterns: queue.join (as a worker)
}

// Bounds of a policy: a hostile or mistaken file is refused with a clear
// error instead of taking memory or time without limit.
const (
	MaxRoles            = 10_000
	MaxRolesPerIdentity = 64
	MaxPatternsPerList  = 10_000
	MaxPatternLen       = 256
	MaxPatternTokens    = 32
	// MaxNodes bounds the compiled grants of every identity together (one
	// node per distinct pattern prefix of a grant); identities with the
	// same roles share one.
	MaxNodes = 1 << 20
)

// RolePrefix marks a role in a send_to list: "role:worker".
const RolePrefix = "role:"

// Errors of a policy that cannot be compiled; the error wraps one of them.
var (
	ErrInvalidPattern = errors.New("access: invalid pattern")
	ErrUnknownRole    = errors.New("access: unknown role")
	ErrUnknownTarget  = errors.New("access: unknown identity")
	ErrTooLarge       = errors.New("access: policy too large")
	ErrDuplicate      = errors.New("access: listed twice")
)

// CheckPattern validates a route or topic pattern: dot-separated tokens of
// [A-Za-z0-9_-], or "*" for one token, or ">" as the last for the rest.
func CheckPattern(p string) error {
	if p == "" {
		return fmt.Errorf("%w: empty", ErrInvalidPattern)
	}
	if len(p) > MaxPatternLen {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidPattern, len(p), MaxPatternLen)
	}
	tokens, start := 0, 0
	for i := 0; i <= len(p); i++ {
		if i < len(p) && p[i] != '.' {
			continue
		}
		tokens++
		if tokens > MaxPatternTokens {
			return fmt.Errorf("%w: %q has more than %d tokens", ErrInvalidPattern, clip(p), MaxPatternTokens)
		}
		tok := p[start:i]
		switch {
		case tok == "":
			return fmt.Errorf("%w: %q has an empty token", ErrInvalidPattern, clip(p))
		case tok == ">":
			if i != len(p) {
				return fmt.Errorf("%w: %q: \">\" must be the last token", ErrInvalidPattern, clip(p))
			}
		case tok == "*":
		default:
			for j := 0; j < len(tok); j++ {
				if c := tok[j]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
					return fmt.Errorf("%w: %q: token %q: want [A-Za-z0-9_-], or a whole token \"*\" or \">\"", ErrInvalidPattern, clip(p), clip(tok))
				}
			}
		}
		start = i + 1
	}
	return nil
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:64] + "…"
}

// Match reports whether pattern (valid by CheckPattern) matches subject:
// "*" stands for one token, a last ">" for one or more.
func Match(pattern, subject string) bool {
	for {
		pi := strings.IndexByte(pattern, '.')
		ptok := pattern
		if pi >= 0 {
			ptok = pattern[:pi]
		}
		if ptok == ">" {
			return subject != ""
		}
		si := strings.IndexByte(subject, '.')
		stok := subject
		if si >= 0 {
			stok = subject[:si]
		}
		if stok == "" || (ptok != "*" && ptok != stok) {
			return false
		}
		if pi < 0 || si < 0 {
			return pi < 0 && si < 0
		}
		pattern, subject = pattern[pi+1:], subject[si+1:]
	}
}
