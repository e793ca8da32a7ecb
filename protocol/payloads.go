package protocol

// The payloads the protocol itself defines, encoded and decoded here so that
// no other package hand-builds or re-parses them:
//
//	error:  {"code": "...", "message": "..."}
//	close:  {"reason": "..."} (or {"message": "..."} when answering a client's close)
//	auth:   {"token": "..."} from the client; {"ok": true, "identity": "..."} from the server

// AppendErrorPayload appends {"code": code, "message": message}.
func AppendErrorPayload(dst []byte, code Code, message string) []byte {
	dst = append(dst, `{"code":`...)
	dst = AppendString(dst, string(code))
	dst = append(dst, `,"message":`...)
	dst = AppendString(dst, message)
	return append(dst, '}')
}

// ParseError reads an error payload into an *Error; a payload without a
// code is reported as a malformed error frame.
func ParseError(payload []byte) *Error {
	f := stringFields(payload, "code", "message")
	if f[0] == "" {
		return Errorf(CodeInvalidMessage, "malformed error frame")
	}
	return &Error{Code: Code(f[0]), Message: f[1]}
}

// ParseClose reads why a close frame closes: its "reason", else its
// "message", else "".
func ParseClose(payload []byte) string {
	f := stringFields(payload, "reason", "message")
	if f[0] != "" {
		return f[0]
	}
	return f[1]
}

// AppendAuthPayload appends the payload of a client's auth frame,
// {"token": token}.
func AppendAuthPayload(dst []byte, token string) []byte {
	return AppendReasonPayload(dst, "token", token)
}

// ParseAuthToken reads the token of a client's auth payload ("" if none).
func ParseAuthToken(payload []byte) string { return stringFields(payload, "token")[0] }

// AppendAuthReply appends the server's answer to a successful auth,
// {"ok": true, "identity": identity}.
func AppendAuthReply(dst []byte, identity string) []byte {
	dst = append(dst, `{"ok":true,"identity":`...)
	dst = AppendString(dst, identity)
	return append(dst, '}')
}

// ParseAuthReply reads the identity of the server's auth answer.
func ParseAuthReply(payload []byte) string { return stringFields(payload, "identity")[0] }

// stringFields returns the string values of keys in a JSON object (""
// where a key is absent, not a string, or the payload is not an object).
// Other fields are skipped whatever they hold.
func stringFields(payload []byte, keys ...string) []string {
	out := make([]string, len(keys))
	s := scanner{data: payload, maxDepth: DefaultMaxDepth}
	s.skipSpace()
	if s.expect('{') != nil {
		return out
	}
	s.skipSpace()
	if s.peek() == '}' {
		return out
	}
	for {
		if s.expect('"') != nil {
			return out
		}
		ks, ke, kesc, err := s.scanString()
		if err != nil {
			return out
		}
		key := s.data[ks:ke]
		if kesc {
			key = appendUnescaped(nil, key)
		}
		s.skipSpace()
		if s.expect(':') != nil {
			return out
		}
		s.skipSpace()
		i := indexOf(keys, string(key))
		if i >= 0 && s.peek() == '"' {
			str, _, err := s.stringValue()
			if err != nil {
				return out
			}
			out[i] = string(str)
		} else if s.skipValue(1) != nil {
			return out
		}
		s.skipSpace()
		if s.peek() != ',' {
			return out
		}
		s.pos++
		s.skipSpace()
	}
}

func indexOf(keys []string, key string) int {
	for i, k := range keys {
		if k == key {
			return i
		}
	}
	return -1
}
