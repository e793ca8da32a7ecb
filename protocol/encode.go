package protocol

import (
	"bytes"
	"strconv"
	"unicode/utf8"
)

// AppendFrame appends m as one frame, ending in "\n", to dst and returns the
// extended buffer. It does not allocate beyond growing dst.
//
// m.Payload must be valid JSON; it is copied as is, except that any newline
// in it (only possible as white space between tokens) becomes a space, so a
// payload can never break the framing. A zero Timestamp is written as the
// current time.
func AppendFrame(dst []byte, m *Message) []byte {
	dst = append(dst, `{"type":`...)
	dst = AppendString(dst, string(m.Type))
	if m.Payload != nil {
		dst = append(dst, `,"payload":`...)
		start := len(dst)
		dst = append(dst, m.Payload...)
		if bytes.IndexByte(dst[start:], '\n') >= 0 {
			for i := start; i < len(dst); i++ {
				if dst[i] == '\n' {
					dst[i] = ' '
				}
			}
		}
	}
	ts := m.Timestamp
	if ts == 0 {
		ts = Now()
	}
	dst = append(dst, `,"timestamp":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	if m.ID != "" {
		dst = append(dst, `,"id":`...)
		dst = AppendString(dst, m.ID)
	}
	if m.Route != "" {
		dst = append(dst, `,"route":`...)
		dst = AppendString(dst, m.Route)
	}
	if m.Seq != 0 {
		dst = append(dst, `,"seq":`...)
		dst = strconv.AppendUint(dst, m.Seq, 10)
	}
	if m.Job != "" {
		dst = append(dst, `,"job":`...)
		dst = AppendString(dst, m.Job)
	}
	if m.Topic != "" {
		dst = append(dst, `,"topic":`...)
		dst = AppendString(dst, m.Topic)
	}
	if m.Offset != 0 {
		dst = append(dst, `,"offset":`...)
		dst = strconv.AppendUint(dst, m.Offset, 10)
	}
	if m.Epoch != "" {
		dst = append(dst, `,"epoch":`...)
		dst = AppendString(dst, m.Epoch)
	}
	if m.Sig != "" {
		dst = append(dst, `,"sig":`...)
		dst = AppendString(dst, m.Sig)
	}
	return append(dst, '}', '\n')
}

// AppendErrorFrame appends an `error` frame for err answering the message
// with the given id (empty if unknown): its payload is {"code", "message"}.
// An err that is not an *Error is reported as CodeHandlerError with a
// generic message, so internals never reach the peer.
func AppendErrorFrame(dst []byte, id string, err error) []byte {
	code, text := CodeHandlerError, "internal error"
	if pe, ok := err.(*Error); ok {
		code, text = pe.Code, pe.Message
	}
	var buf [256]byte
	payload := AppendErrorPayload(buf[:0], code, text)
	return AppendFrame(dst, &Message{Type: TypeError, ID: id, Payload: payload})
}

// AppendReasonPayload appends {"<key>": text}, the payload shape of close
// frames ({"reason": ...}) and keep-alives ({"message": ...}).
func AppendReasonPayload(dst []byte, key, text string) []byte {
	dst = append(dst, '{')
	dst = AppendString(dst, key)
	dst = append(dst, ':')
	dst = AppendString(dst, text)
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// EncodedStringLen is how many bytes AppendString appends for s, counted
// without encoding it: a caller that bounds its output checks this first
// rather than building what it would refuse (escapes make up to six bytes
// of one).
func EncodedStringLen(s string) int {
	n := len(s) + 2 // the quotes
	for i := plainEndString(s, 0); i < len(s); i = plainEndString(s, i) {
		c := s[i]
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\', '\n', '\r', '\t':
				n++ // a backslash before it
			default:
				n += 5 // \u00XX
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			n += 5 // one byte becomes \ufffd
		case r == '\u2028' || r == '\u2029':
			n += 3 // three bytes become \u2028
		}
		i += size
	}
	return n
}

// AppendString appends s as a JSON string. Control characters, quotes and
// backslashes are escaped, as are U+2028 and U+2029 (which some JavaScript
// parsers reject); invalid UTF-8 becomes U+FFFD.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := plainEndString(s, 0); i < len(s); i = plainEndString(s, i) {
		c := s[i]
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
