package access

// set is a compiled list of patterns: a tree of tokens, so matching a
// subject costs one step per token whatever the number of patterns. Each
// node is reached by one path, so a match visits a node at most once even
// with "*" branches.
type set struct {
	root node
}

type node struct {
	next map[string]*node // literal tokens
	star *node            // "*"
	rest bool             // ">" ends a pattern here: one or more tokens follow
	end  bool             // a pattern ends here
}

// add inserts a pattern CheckPattern accepted, and returns how many nodes
// it added.
func (s *set) add(p string) int {
	n, added := &s.root, 0
	for start := 0; start <= len(p); {
		i := start
		for i < len(p) && p[i] != '.' {
			i++
		}
		tok := p[start:i]
		start = i + 1
		switch tok {
		case ">":
			n.rest = true
			return added
		case "*":
			if n.star == nil {
				n.star = &node{}
				added++
			}
			n = n.star
		default:
			child := n.next[tok]
			if child == nil {
				if n.next == nil {
					n.next = make(map[string]*node)
				}
				child = &node{}
				n.next[tok] = child
				added++
			}
			n = child
		}
	}
	n.end = true
	return added
}

// match reports whether some pattern matches subject.
func (s *set) match(subject string) bool {
	return s != nil && s.root.match(subject, 0)
}

// match reports whether a pattern below n matches subject[start:]; start
// is the beginning of a token.
func (n *node) match(subject string, start int) bool {
	if start > len(subject) {
		return n.end
	}
	if n.rest {
		return true // at least the token at start follows
	}
	i := start
	for i < len(subject) && subject[i] != '.' {
		i++
	}
	if child := n.next[subject[start:i]]; child != nil && child.match(subject, i+1) {
		return true
	}
	return n.star != nil && n.star.match(subject, i+1)
}
