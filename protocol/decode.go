package protocol

import (
	"strconv"
	"unicode/utf8"
)

// Fields of the top level of a frame, as bits, to reject duplicates.
const (
	fieldType = 1 << iota
	fieldID
	fieldRoute
	fieldTimestamp
	fieldPayload
	fieldSig
	fieldSeq
	fieldJob
	fieldTopic
	fieldOffset
	fieldEpoch
)

// Decode validates frame and fills m from it. It checks, in one pass and
// without recursion, that the frame is one JSON object of valid UTF-8 that
// nests no deeper than limits.MaxDepth, that its known fields have the right
// types and appear once, and that its type is known. Unknown fields are
// ignored. m.Payload aliases frame.
//
// The error is an *Error: CodeInvalidJSON for bad syntax or UTF-8,
// CodeInvalidMessage for a well-formed frame that is not a message, and
// CodeUnknownType. Even on error m.ID is set when the frame's id could be
// read, so that the error frame can name the message it answers.
func Decode(frame []byte, m *Message, limits Limits) error {
	*m = Message{}
	d := messageDecoder{s: scanner{data: frame, maxDepth: limits.maxDepth()}, m: m}
	s := &d.s
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] != '{' {
		if err := s.skipValue(0); err != nil {
			return err
		}
		if err := s.end(); err != nil {
			return err
		}
		return Errorf(CodeInvalidMessage, "a message must be a JSON object")
	}
	if err := s.expect('{'); err != nil {
		return err
	}
	if err := d.fields(); err != nil {
		return err
	}
	if err := s.end(); err != nil {
		return err
	}
	return d.result()
}

// messageDecoder is the state of one Decode: syntax errors return at once,
// while the first problem with a field's meaning is kept in semantic and
// reported only if the whole frame is sound JSON.
type messageDecoder struct {
	s        scanner
	m        *Message
	seen     int    // fields met so far, as bits, to refuse duplicates
	semantic *Error // the first problem with a field
	typ      []byte
	hasType  bool
}

// fields reads the members of the top-level object, after its '{'.
func (d *messageDecoder) fields() error {
	s := &d.s
	s.skipSpace()
	if s.peek() == '}' {
		s.pos++
		return nil
	}
	for {
		if err := s.expect('"'); err != nil {
			return err
		}
		ks, ke, kesc, err := s.scanString()
		if err != nil {
			return err
		}
		s.skipSpace()
		if err := s.expect(':'); err != nil {
			return err
		}
		s.skipSpace()
		key := s.data[ks:ke]
		if kesc {
			key = appendUnescaped(nil, key)
		}
		bit, err := d.field(key)
		if err != nil {
			return err
		}
		if d.seen&bit != 0 {
			d.fail(Errorf(CodeInvalidMessage, "duplicate field %q", key))
		}
		d.seen |= bit
		s.skipSpace()
		if s.peek() != ',' {
			return s.expect('}')
		}
		s.pos++
		s.skipSpace()
	}
}

// fail keeps the first semantic problem.
func (d *messageDecoder) fail(err *Error) {
	if d.semantic == nil {
		d.semantic = err
	}
}

// field reads the value of one member and returns the field's bit (0 for
// unknown fields, which are skipped).
func (d *messageDecoder) field(key []byte) (bit int, err error) {
	s := &d.s
	switch string(key) {
	case "type":
		str, kind, err := s.stringValue()
		if err != nil {
			return 0, err
		}
		if kind == stringValue {
			d.typ, d.hasType = str, true
		} else {
			d.fail(Errorf(CodeInvalidMessage, "type must be a string"))
		}
		return fieldType, nil
	case "id":
		return fieldID, d.stringField(key, fieldID, &d.m.ID)
	case "route":
		return fieldRoute, d.stringField(key, fieldRoute, &d.m.Route)
	case "sig":
		return fieldSig, d.stringField(key, fieldSig, &d.m.Sig)
	case "job":
		return fieldJob, d.stringField(key, fieldJob, &d.m.Job)
	case "topic":
		return fieldTopic, d.stringField(key, fieldTopic, &d.m.Topic)
	case "epoch":
		return fieldEpoch, d.stringField(key, fieldEpoch, &d.m.Epoch)
	case "timestamp":
		ts, err := s.timestampValue()
		if err != nil {
			if pe, ok := err.(*Error); ok && pe.Code == CodeInvalidJSON {
				return 0, err
			}
			d.fail(err.(*Error))
		}
		d.m.Timestamp = ts
		return fieldTimestamp, nil
	case "seq":
		return fieldSeq, d.counterField(key, &d.m.Seq)
	case "offset":
		return fieldOffset, d.counterField(key, &d.m.Offset)
	case "payload":
		start := s.pos
		if err := s.skipValue(1); err != nil {
			return 0, err
		}
		d.m.Payload = s.data[start:s.pos]
		return fieldPayload, nil
	}
	return 0, s.skipValue(1)
}

// counterField reads seq or offset into dst: a non-negative integer, or
// null for absent.
func (d *messageDecoder) counterField(key []byte, dst *uint64) error {
	s := &d.s
	start := s.pos
	if err := s.skipValue(1); err != nil {
		return err
	}
	raw := s.data[start:s.pos]
	if string(raw) != "null" {
		n, ok := parseSeq(raw)
		if !ok {
			d.fail(Errorf(CodeInvalidMessage, "%s must be a non-negative integer", key))
		}
		*dst = n
	}
	return nil
}

// stringField reads id, route or sig into dst: a string, or null for
// absent. Route names and ids are checked here, before anything uses them.
func (d *messageDecoder) stringField(key []byte, bit int, dst *string) error {
	str, kind, err := d.s.stringValue()
	if err != nil {
		return err
	}
	switch kind {
	case nullValue:
		return nil // absent
	case stringValue:
	default:
		d.fail(Errorf(CodeInvalidMessage, "%s must be a string", key))
		return nil
	}
	switch {
	case bit == fieldRoute && len(str) > 0 && !validRoute(str):
		d.fail(Errorf(CodeInvalidMessage, "invalid route name %q: want 1 to %d characters of [A-Za-z0-9_.-]", truncateText(str, 64), MaxRouteLen))
	case bit == fieldTopic && (len(str) > MaxTopicLen || hasControl(str)):
		d.fail(Errorf(CodeInvalidMessage, "topic must be at most %d bytes without control characters", MaxTopicLen))
	case bit == fieldEpoch && (len(str) > MaxEpochLen || hasControl(str)):
		d.fail(Errorf(CodeInvalidMessage, "epoch must be at most %d bytes without control characters", MaxEpochLen))
	case bit == fieldJob && (len(str) > MaxJobLen || hasControl(str)):
		d.fail(Errorf(CodeInvalidMessage, "job must be at most %d bytes without control characters", MaxJobLen))
	case bit == fieldID && hasControl(str):
		// A newline in id (or route) would let two different messages sign
		// the same bytes (see AppendSigned).
		d.fail(Errorf(CodeInvalidMessage, "id must not contain control characters"))
	}
	*dst = string(str)
	return nil
}

// result is the outcome of a frame whose syntax was sound.
func (d *messageDecoder) result() error {
	if d.semantic != nil {
		return d.semantic
	}
	if !d.hasType {
		return Errorf(CodeInvalidMessage, "type is required")
	}
	t, ok := knownType(d.typ)
	if !ok {
		return Errorf(CodeUnknownType, "unknown message type %q", truncate(d.typ, 64))
	}
	d.m.Type = t
	return nil
}

// Valid checks that data is one JSON value of valid UTF-8 nesting no deeper
// than maxDepth (clamped to MaxDepthLimit), with the same single-pass scanner
// Decode uses. The error is an *Error: CodeInvalidJSON or, for depth,
// CodeInvalidMessage.
func Valid(data []byte, maxDepth int) error {
	s := scanner{data: data, maxDepth: Limits{MaxDepth: maxDepth}.maxDepth()}
	s.skipSpace()
	if err := s.skipValue(0); err != nil {
		return err
	}
	return s.end()
}

// ScanString checks the JSON string whose opening quote is at data[pos] as
// Valid would (escapes, control characters, UTF-8), for decoders that build
// their own values in one pass: it returns the index just past the closing
// quote and whether the contents hold escapes (AppendUnescaped decodes them).
// The error is an *Error.
func ScanString(data []byte, pos int) (end int, escaped bool, err error) {
	s := scanner{data: data, pos: pos + 1}
	_, _, escaped, err = s.scanString()
	return s.pos, escaped, err
}

// ScanNumber checks the JSON number at data[pos] as Valid would and returns
// the index just past it and whether it is an integer (no fraction, no
// exponent). The error is an *Error.
func ScanNumber(data []byte, pos int) (end int, integer bool, err error) {
	s := scanner{data: data, pos: pos}
	integer, err = s.scanNumber()
	return s.pos, integer, err
}

// AppendUnescaped appends the decoded contents of a JSON string (without its
// quotes) that Valid or Decode accepted: escapes resolved, surrogate pairs
// joined, lone surrogates replaced by U+FFFD.
func AppendUnescaped(dst, str []byte) []byte { return appendUnescaped(dst, str) }

// knownType maps a type name to its constant without allocating.
func knownType(b []byte) (Type, bool) {
	switch string(b) {
	case "data":
		return TypeData, true
	case "ping":
		return TypePing, true
	case "pong":
		return TypePong, true
	case "keepalive":
		return TypeKeepAlive, true
	case "close":
		return TypeClose, true
	case "error":
		return TypeError, true
	case "auth":
		return TypeAuth, true
	case "ack":
		return TypeAck, true
	case "nack":
		return TypeNack, true
	case "progress":
		return TypeProgress, true
	}
	return "", false
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return string(b[:n]) + "…"
}

// scanner walks a JSON text. Positions are byte offsets into data.
type scanner struct {
	data     []byte
	pos      int
	maxDepth int
}

func (s *scanner) peek() byte {
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\r', '\n':
			s.pos++
		default:
			return
		}
	}
}

func (s *scanner) syntaxError(what string) *Error {
	if s.pos >= len(s.data) {
		return Errorf(CodeInvalidJSON, "invalid JSON: unexpected end of input, %s", what)
	}
	return Errorf(CodeInvalidJSON, "invalid JSON at byte %d: %s", s.pos, what)
}

func (s *scanner) expect(c byte) error {
	if s.peek() != c {
		return s.syntaxError("expected " + strconv.QuoteRune(rune(c)))
	}
	s.pos++
	return nil
}

// end checks that only white space follows the value.
func (s *scanner) end() error {
	s.skipSpace()
	if s.pos != len(s.data) {
		return s.syntaxError("unexpected data after the message")
	}
	return nil
}

// The kinds of value stringValue tells apart.
const (
	otherValue = iota
	stringValue
	nullValue
)

// stringValue reads a value that should be a string or null. When it is
// neither, the value is skipped and kind is otherValue.
// truncateText is b, cut to n bytes with an ellipsis, for error messages.
func truncateText(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}

// hasControl reports whether b holds an ASCII control character.
func hasControl(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == 0x7f {
			return true
		}
	}
	return false
}

func (s *scanner) stringValue() (str []byte, kind int, err error) {
	switch s.peek() {
	case '"':
	case 'n':
		return nil, nullValue, s.scanLiteral("null")
	default:
		return nil, otherValue, s.skipValue(1)
	}
	s.pos++
	start, end, escaped, err := s.scanString()
	if err != nil {
		return nil, otherValue, err
	}
	if escaped {
		return appendUnescaped(make([]byte, 0, end-start), s.data[start:end]), stringValue, nil
	}
	return s.data[start:end], stringValue, nil
}

// timestampValue reads a number (or null) in Unix milliseconds. A fraction
// is truncated.
func (s *scanner) timestampValue() (int64, error) {
	c := s.peek()
	if c != '-' && (c < '0' || c > '9') {
		start := s.pos
		if err := s.skipValue(1); err != nil {
			return 0, err
		}
		if string(s.data[start:s.pos]) == "null" {
			return 0, nil
		}
		return 0, Errorf(CodeInvalidMessage, "timestamp must be a number")
	}
	start := s.pos
	integer, err := s.scanNumber()
	if err != nil {
		return 0, err
	}
	num := s.data[start:s.pos]
	if integer {
		if v, ok := parseInt(num); ok {
			return v, nil
		}
	}
	f, ferr := strconv.ParseFloat(string(num), 64)
	if ferr != nil || f >= 1<<63 || f < -(1<<63) {
		return 0, Errorf(CodeInvalidMessage, "timestamp out of range")
	}
	return int64(f), nil
}

// parseInt parses an optionally negative run of digits; ok is false when it
// does not fit an int64.
func parseInt(b []byte) (int64, bool) {
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) > 19 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		v = v*10 + uint64(c-'0') // 19 digits cannot overflow a uint64
	}
	switch {
	case neg && v <= 1<<63:
		return -int64(v-1) - 1, true
	case !neg && v < 1<<63:
		return int64(v), true
	}
	return 0, false
}

// scanString reads a string whose opening quote has been consumed. It
// returns the bounds of its contents and whether they hold escapes, and
// leaves pos after the closing quote.
func (s *scanner) scanString() (start, end int, escaped bool, err error) {
	start = s.pos
	data := s.data
	for i := plainEnd(data, s.pos); i < len(data); i = plainEnd(data, i) {
		switch c := data[i]; {
		case c == '"':
			s.pos = i + 1
			return start, i, escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(data) {
				s.pos = len(data)
				return 0, 0, false, s.syntaxError("unterminated escape")
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(data) || !isHex(data[i+2]) || !isHex(data[i+3]) || !isHex(data[i+4]) || !isHex(data[i+5]) {
					s.pos = i
					return 0, 0, false, s.syntaxError("invalid \\u escape")
				}
				i += 6
			default:
				s.pos = i
				return 0, 0, false, s.syntaxError("invalid escape")
			}
		case c < 0x20:
			s.pos = i
			return 0, 0, false, s.syntaxError("control character in string")
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				s.pos = i
				return 0, 0, false, Errorf(CodeInvalidJSON, "invalid UTF-8 at byte %d", i)
			}
			i += size
		}
	}
	s.pos = len(data)
	return 0, 0, false, s.syntaxError("unterminated string")
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// scanNumber reads a JSON number; integer reports whether it has neither a
// fraction nor an exponent.
func (s *scanner) scanNumber() (integer bool, err error) {
	data, i := s.data, s.pos
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && data[i] >= '1' && data[i] <= '9':
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
	default:
		s.pos = i
		return false, s.syntaxError("invalid number")
	}
	integer = true
	if i < len(data) && data[i] == '.' {
		integer = false
		i++
		if i >= len(data) || data[i] < '0' || data[i] > '9' {
			s.pos = i
			return false, s.syntaxError("invalid number")
		}
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		integer = false
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) || data[i] < '0' || data[i] > '9' {
			s.pos = i
			return false, s.syntaxError("invalid number")
		}
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
	}
	s.pos = i
	return integer, nil
}

func (s *scanner) scanLiteral(lit string) error {
	if len(s.data)-s.pos < len(lit) || string(s.data[s.pos:s.pos+len(lit)]) != lit {
		return s.syntaxError("invalid literal")
	}
	s.pos += len(lit)
	return nil
}

// skipValue validates one JSON value at pos and moves past it. depth is the
// nesting of the container the value sits in. Nesting is tracked with a bit
// stack, not recursion, so a hostile frame cannot exhaust the Go stack.
func (s *scanner) skipValue(depth int) error {
	var open containers
	for {
		// A value is expected at pos.
		s.skipSpace()
		switch c := s.peek(); c {
		case '{', '[':
			if depth+open.level+1 > s.maxDepth {
				return Errorf(CodeInvalidMessage, "nesting deeper than %d levels", s.maxDepth)
			}
			open.push(c == '{')
			s.pos++
			s.skipSpace()
			if s.peek() == c+2 { // '}' is '{'+2 and ']' is '['+2: an empty container
				s.pos++
				open.level--
				break
			}
			if c == '{' {
				if err := s.objectKey(); err != nil {
					return err
				}
			}
			continue
		default:
			if err := s.scalar(c); err != nil {
				return err
			}
		}
		// A value ended: close containers until one continues.
		done, err := s.afterValue(&open)
		if done || err != nil {
			return err
		}
	}
}

// containers is the stack of open arrays and objects of skipValue, one bit
// each (set: object), bounded by MaxDepthLimit.
type containers struct {
	bits  [MaxDepthLimit / 64]uint64
	level int
}

func (c *containers) push(object bool) {
	if object {
		c.bits[c.level/64] |= 1 << (c.level % 64)
	} else {
		c.bits[c.level/64] &^= 1 << (c.level % 64)
	}
	c.level++
}

func (c *containers) inObject() bool { return c.bits[(c.level-1)/64]&(1<<((c.level-1)%64)) != 0 }

// objectKey reads `"key":` inside an object.
func (s *scanner) objectKey() error {
	s.skipSpace()
	if err := s.expect('"'); err != nil {
		return err
	}
	if _, _, _, err := s.scanString(); err != nil {
		return err
	}
	s.skipSpace()
	return s.expect(':')
}

// scalar scans a string, number or literal starting with c.
func (s *scanner) scalar(c byte) error {
	switch {
	case c == '"':
		s.pos++
		_, _, _, err := s.scanString()
		return err
	case c == 't':
		return s.scanLiteral("true")
	case c == 'f':
		return s.scanLiteral("false")
	case c == 'n':
		return s.scanLiteral("null")
	case c == '-' || c >= '0' && c <= '9':
		_, err := s.scanNumber()
		return err
	}
	return s.syntaxError("expected a value")
}

// afterValue consumes what follows a value: closing brackets, then a ','
// (and the next key in an object). done is true when the outermost value
// has ended.
func (s *scanner) afterValue(open *containers) (done bool, err error) {
	for open.level > 0 {
		s.skipSpace()
		c := s.peek()
		if c == ',' {
			s.pos++
			if open.inObject() {
				return false, s.objectKey()
			}
			return false, nil
		}
		if open.inObject() && c == '}' || !open.inObject() && c == ']' {
			s.pos++
			open.level--
			continue
		}
		return false, s.syntaxError("expected ',' or the end of a container")
	}
	return true, nil
}

// appendUnescaped appends the decoded contents of a valid JSON string.
func appendUnescaped(dst, b []byte) []byte {
	for i := 0; i < len(b); {
		c := b[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch b[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := rune(hex4(b[i+2:]))
			i += 6
			if utf16IsHighSurrogate(r) && i+6 <= len(b) && b[i] == '\\' && b[i+1] == 'u' {
				if lo := rune(hex4(b[i+2:])); utf16IsLowSurrogate(lo) {
					r = (r-0xD800)<<10 | (lo - 0xDC00) + 0x10000
					i += 6
				}
			}
			if r >= 0xD800 && r <= 0xDFFF {
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, b[i+1])
		}
		i += 2
	}
	return dst
}

func hex4(b []byte) int {
	v := 0
	for _, c := range b[:4] {
		v <<= 4
		switch {
		case c >= '0' && c <= '9':
			v |= int(c - '0')
		case c >= 'a' && c <= 'f':
			v |= int(c - 'a' + 10)
		default:
			v |= int(c - 'A' + 10)
		}
	}
	return v
}

func utf16IsHighSurrogate(r rune) bool { return r >= 0xD800 && r < 0xDC00 }
func utf16IsLowSurrogate(r rune) bool  { return r >= 0xDC00 && r < 0xE000 }
