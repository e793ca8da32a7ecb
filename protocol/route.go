package protocol

// MaxRouteLen is the longest route name a frame may carry.
const MaxRouteLen = 128

// ValidRoute reports whether s is a route name: 1 to MaxRouteLen
// characters, each a letter, a digit, '_', '.' or '-'. Route names become
// file names on the server and appear in logs and audit events, so nothing
// else is accepted. Checked by hand: it runs for every data frame.
func ValidRoute(s string) bool { return validRoute(s) }

func validRoute[T string | []byte](s T) bool {
	if len(s) == 0 || len(s) > MaxRouteLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}
