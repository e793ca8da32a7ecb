package protocol

import "strconv"

// The payloads the protocol itself defines, encoded and decoded here so that
// no other package hand-builds or re-parses them:
//
//	error:  {"code": "...", "message": "..."}
//	close:  {"reason": "..."} (or {"message": "..."} when answering a client's close)
//	auth:   {"token": "...", "resume": true} from the client ("resume" optional);
//	        {"ok": true, "identity": "...", "resume": true, "pending": N} from the
//	        server ("resume" and "pending" only when the client asked to resume)
//	ack:    {"seq": N} from a resuming client: its mailbox's messages up to N are done

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

// AppendResumeAuthPayload appends the payload of an auth frame that asks
// for the identity's mailbox, {"token": token, "resume": true}.
func AppendResumeAuthPayload(dst []byte, token string) []byte {
	dst = AppendAuthPayload(dst, token)
	return append(dst[:len(dst)-1], `,"resume":true}`...)
}

// ParseAuthResume reports whether an auth payload asks to resume: its
// "resume" is true (anything else is no).
func ParseAuthResume(payload []byte) bool { return string(rawField(payload, "resume")) == "true" }

// AppendResumeAuthReply appends the server's answer to an auth frame that
// asked to resume: resumed says whether the connection gets its identity's
// mailbox, pending how many messages wait there.
func AppendResumeAuthReply(dst []byte, identity string, resumed bool, pending uint64) []byte {
	dst = AppendAuthReply(dst, identity)
	dst = dst[:len(dst)-1]
	if !resumed {
		return append(dst, `,"resume":false}`...)
	}
	dst = append(dst, `,"resume":true,"pending":`...)
	dst = strconv.AppendUint(dst, pending, 10)
	return append(dst, '}')
}

// ParseAuthReplyResume reads the mailbox part of the server's auth answer:
// whether the connection resumed and how many messages wait.
func ParseAuthReplyResume(payload []byte) (resumed bool, pending uint64) {
	if string(rawField(payload, "resume")) != "true" {
		return false, 0
	}
	n, _ := parseSeq(rawField(payload, "pending"))
	return true, n
}

// AppendAckPayload appends the payload of an ack frame, {"seq": seq}.
func AppendAckPayload(dst []byte, seq uint64) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	return append(dst, '}')
}

// ParseAck reads the sequence number of an ack payload: a positive integer
// (an *Error with CodeInvalidMessage otherwise).
func ParseAck(payload []byte) (uint64, error) {
	raw := rawField(payload, "seq")
	if raw == nil {
		return 0, Errorf(CodeInvalidMessage, `an ack needs a payload {"seq": N}`)
	}
	seq, ok := parseSeq(raw)
	if !ok || seq == 0 {
		return 0, Errorf(CodeInvalidMessage, "ack seq must be a positive integer, got %s", truncateText(raw, 32))
	}
	return seq, nil
}

// AppendJobPayload appends {"job": job}, the payload of a worker's ack,
// nack and progress frames.
func AppendJobPayload(dst []byte, job string) []byte {
	dst = append(dst, `{"job":`...)
	dst = AppendString(dst, job)
	return append(dst, '}')
}

// ParseJob reads the job id of an ack, nack or progress payload: a
// string of 1 to MaxJobLen bytes (an *Error with CodeInvalidMessage
// otherwise); ok is false when the payload has no "job" at all (an ack
// of a mailbox's seq).
func ParseJob(payload []byte) (job string, ok bool, err error) {
	raw := rawField(payload, "job")
	if raw == nil {
		return "", false, nil
	}
	var s scanner
	s.data = raw
	str, kind, err := s.stringValue()
	if err != nil || kind != stringValue || len(str) == 0 || len(str) > MaxJobLen || hasControl(str) {
		return "", true, Errorf(CodeInvalidMessage, "job must be a string of 1 to %d bytes, got %s", MaxJobLen, truncateText(raw, 32))
	}
	return string(str), true, nil
}

// parseSeq reads a sequence number: a JSON integer from 0 to 2^63-1 written
// without fraction or exponent.
func parseSeq(raw []byte) (uint64, bool) {
	if len(raw) == 0 || raw[0] == '-' {
		return 0, false
	}
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	if len(raw) > 1 && raw[0] == '0' {
		return 0, false
	}
	v, ok := parseInt(raw)
	return uint64(v), ok
}

// stringFields returns the string values of keys in a JSON object (""
// where a key is absent, not a string, or the payload is not an object).
// Other fields are skipped whatever they hold.
func stringFields(payload []byte, keys ...string) []string {
	out := make([]string, len(keys))
	eachField(payload, func(s *scanner, key []byte) bool {
		i := indexOf(keys, string(key))
		if i < 0 || s.peek() != '"' {
			return false
		}
		str, _, err := s.stringValue()
		if err == nil {
			out[i] = string(str)
		}
		return err == nil
	})
	return out
}

// rawField returns the raw JSON value of key in a JSON object, or nil when
// the key is absent or the payload is not an object. It aliases payload.
func rawField(payload []byte, key string) []byte {
	var raw []byte
	eachField(payload, func(s *scanner, k []byte) bool {
		if string(k) != key {
			return false
		}
		start := s.pos
		if s.skipValue(1) != nil {
			return true
		}
		raw = s.data[start:s.pos]
		return true
	})
	return raw
}

// eachField walks the members of a JSON object: visit is called with the
// scanner at each member's value and reads it (returning true) or leaves it
// to be skipped (false). A malformed payload ends the walk.
func eachField(payload []byte, visit func(s *scanner, key []byte) bool) {
	s := scanner{data: payload, maxDepth: DefaultMaxDepth}
	s.skipSpace()
	if s.expect('{') != nil {
		return
	}
	s.skipSpace()
	if s.peek() == '}' {
		return
	}
	for {
		if s.expect('"') != nil {
			return
		}
		ks, ke, kesc, err := s.scanString()
		if err != nil {
			return
		}
		key := s.data[ks:ke]
		if kesc {
			key = appendUnescaped(nil, key)
		}
		s.skipSpace()
		if s.expect(':') != nil {
			return
		}
		s.skipSpace()
		start := s.pos
		if !visit(&s, key) {
			s.pos = start
			if s.skipValue(1) != nil {
				return
			}
		} else if s.pos == start {
			return // the visitor could not read the value
		}
		s.skipSpace()
		if s.peek() != ',' {
			return
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
