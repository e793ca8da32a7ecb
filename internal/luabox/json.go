package luabox

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unsafe"

	lua "github.com/yuin/gopher-lua"

	"github.com/secureagentmessaging/samgw/protocol"
)

// Bounds of the JSON ↔ Lua conversion. Decoding follows the protocol's depth
// limit; encoding stops at maxEncodeDepth, which also catches cycles.
const (
	maxDecodeDepth = protocol.MaxDepthLimit
	maxEncodeDepth = 128
)

// arrayMarker is the field of the metatable that marks a table as a JSON
// array, so that an empty array round-trips as [] and not {}.
const arrayMarker = "__jsonarray"

// nullMarker is the Go value behind every json.null userdata.
type nullMarker struct{}

// JSONEncoder is implemented by the Value of a userdata that encodes itself
// (a handler's msg object): AppendJSON appends its JSON to dst, converting
// what it holds with c at the given depth.
type JSONEncoder interface {
	AppendJSON(c *Converter, dst []byte, depth int) ([]byte, error)
}

// ErrNotEncodable is wrapped by errors of values JSON cannot represent.
var ErrNotEncodable = errors.New("luabox: value cannot be encoded as JSON")

// ErrTooLarge is returned for JSON text past MaxString: a table that
// holds one large string many times would otherwise encode to gigabytes in
// one call.
var ErrTooLarge = errors.New("luabox: JSON text larger than the limit")

// convertCheckEvery is how many values are converted between two looks at
// the deadline and the size.
const convertCheckEvery = 4096

// Converter turns JSON into Lua values and back, for one LState: arrays get
// that state's array metatable and null its json.null. Objects keep their
// key order, arrays stay arrays even when empty, integers are exact up to
// 2^53. Every conversion checks the call's deadline and the MaxString size
// every few thousand values. A Converter is used by its state's goroutine
// only.
type Converter struct {
	L         *lua.LState
	arrayMeta *lua.LTable
	exactMeta *lua.LTable // of ExactInteger userdata
	null      *lua.LUserData
	values    int               // converted since the last check
	keys      map[string]string // object keys seen, to share their strings (see key)
	scratch   []byte            // json.encode's buffer, kept while at most maxScratch
}

// maxScratch bounds the json.encode buffer a Converter keeps between calls.
const maxScratch = 64 << 10

// Bounds of the object keys a Converter keeps: messages of one kind repeat
// their keys, and a key met again costs no allocation. Keys past the bounds
// (or past the count: a peer sending ever new keys) are simply not kept.
const (
	maxSharedKeys   = 128
	maxSharedKeyLen = 32
)

// check counts one value and, every convertCheckEvery values, looks at the
// call's deadline and at size, the output (or input) size so far.
func (c *Converter) check(size int) error {
	if c.values++; c.values < convertCheckEvery {
		return nil
	}
	c.values = 0
	if size > MaxString {
		return fmt.Errorf("%w (%d bytes)", ErrTooLarge, MaxString)
	}
	if ctx := c.L.Context(); ctx != nil && ctx.Err() != nil {
		return ErrInterrupted
	}
	return nil
}

// NewConverter returns the converter of L.
func NewConverter(L *lua.LState) *Converter {
	meta := L.NewTable()
	meta.RawSetString(arrayMarker, lua.LTrue)
	meta.RawSetString("__metatable", lua.LString("json.array")) // scripts cannot alter it
	null := L.NewUserData()
	null.Value = nullMarker{}
	nullMeta := L.NewTable()
	nullMeta.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString("null"))
		return 1
	}))
	nullMeta.RawSetString("__metatable", lua.LString("json.null"))
	null.Metatable = nullMeta
	return &Converter{L: L, arrayMeta: meta, exactMeta: newExactMeta(L), null: null, keys: make(map[string]string)}
}

// NewArray returns an empty table that encodes as a JSON array.
func (c *Converter) NewArray(capacity int) *lua.LTable {
	t := c.L.CreateTable(capacity, 0)
	t.Metatable = c.arrayMeta
	return t
}

// IsArray reports whether t was marked as a JSON array.
func (c *Converter) IsArray(t *lua.LTable) bool {
	if t.Metatable == c.arrayMeta {
		return true
	}
	meta, ok := t.Metatable.(*lua.LTable)
	return ok && meta.RawGetString(arrayMarker) == lua.LTrue
}

// Decode builds the Lua value of JSON text that is known to be valid: a
// payload that protocol.Decode accepted, or a value this package encoded.
func (c *Converter) Decode(data []byte) (lua.LValue, error) { return c.decode(data, false) }

// DecodeUntrusted decodes JSON from a script or a store, checking as it
// goes everything protocol.Valid checks (strings, numbers, nothing after
// the value), in the same one pass.
func (c *Converter) DecodeUntrusted(data []byte) (lua.LValue, error) {
	v, err := c.decode(data, true)
	var pe *protocol.Error
	if errors.As(err, &pe) {
		err = errors.New(pe.Message)
	}
	return v, err
}

// decode decodes data, checking it as it goes when strict.
func (c *Converter) decode(data []byte, strict bool) (lua.LValue, error) {
	d := jsonDecoder{c: c, data: data, strict: strict}
	c.values = 0
	d.skipSpace()
	v, err := d.value(0)
	if err == nil && strict {
		if d.skipSpace(); d.pos != len(d.data) {
			err = d.errorf("unexpected data after the value")
		}
	}
	if err != nil {
		return lua.LNil, err
	}
	return v, nil
}

type jsonDecoder struct {
	c      *Converter
	data   []byte
	pos    int
	strict bool // the text is not known to be valid: check strings and numbers
}

func (d *jsonDecoder) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid JSON at byte %d: %s", d.pos, fmt.Sprintf(format, args...))
}

func (d *jsonDecoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\r', '\n':
			d.pos++
		default:
			return
		}
	}
}

// value decodes the value at pos. Recursion is bounded by maxDecodeDepth.
func (d *jsonDecoder) value(depth int) (lua.LValue, error) {
	if err := d.c.check(0); err != nil {
		return lua.LNil, err
	}
	if d.pos >= len(d.data) {
		return lua.LNil, d.errorf("unexpected end of input")
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		return d.object(depth + 1)
	case c == '[':
		return d.array(depth + 1)
	case c == '"':
		s, err := d.str()
		return lua.LString(s), err
	case c == 't':
		return lua.LTrue, d.literal("true")
	case c == 'f':
		return lua.LFalse, d.literal("false")
	case c == 'n':
		return d.c.null, d.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return d.number()
	}
	return lua.LNil, d.errorf("expected a value")
}

func (d *jsonDecoder) literal(lit string) error {
	if len(d.data)-d.pos < len(lit) || string(d.data[d.pos:d.pos+len(lit)]) != lit {
		return d.errorf("invalid literal")
	}
	d.pos += len(lit)
	return nil
}

func (d *jsonDecoder) object(depth int) (lua.LValue, error) {
	if depth > maxDecodeDepth {
		return lua.LNil, d.errorf("nesting deeper than %d levels", maxDecodeDepth)
	}
	d.pos++ // {
	t := d.c.L.CreateTable(0, 4)
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		return t, nil
	}
	for {
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return lua.LNil, d.errorf("expected a string key")
		}
		key, err := d.key()
		if err != nil {
			return lua.LNil, err
		}
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return lua.LNil, d.errorf("expected ':'")
		}
		d.pos++
		d.skipSpace()
		v, err := d.value(depth)
		if err != nil {
			return lua.LNil, err
		}
		t.RawSetString(key, v)
		if closed, err := d.next('}'); err != nil || closed {
			return t, err
		}
	}
}

// next reads what follows a container's item: ',' (more items: false) or
// the closing byte (true).
func (d *jsonDecoder) next(closing byte) (closed bool, err error) {
	d.skipSpace()
	if d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ',':
			d.pos++
			return false, nil
		case closing:
			d.pos++
			return true, nil
		}
	}
	return false, d.errorf("expected ',' or '%c'", closing)
}

func (d *jsonDecoder) array(depth int) (lua.LValue, error) {
	if depth > maxDecodeDepth {
		return lua.LNil, d.errorf("nesting deeper than %d levels", maxDecodeDepth)
	}
	d.pos++ // [
	t := d.c.NewArray(4)
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		return t, nil
	}
	for i := 1; ; i++ {
		d.skipSpace()
		v, err := d.value(depth)
		if err != nil {
			return lua.LNil, err
		}
		t.RawSetInt(i, v)
		if closed, err := d.next(']'); err != nil || closed {
			return t, err
		}
	}
}

// key decodes an object key at pos, sharing the string of a key seen
// before.
func (d *jsonDecoder) key() (string, error) {
	start := d.pos + 1
	end := start
	for end < len(d.data) && end-start <= maxSharedKeyLen && d.data[end] != '"' && d.data[end] != '\\' && d.data[end] >= 0x20 && d.data[end] < 0x80 {
		end++
	}
	if end >= len(d.data) || d.data[end] != '"' {
		return d.str() // escaped, long, not plain ASCII, or unterminated
	}
	raw := d.data[start:end]
	d.pos = end + 1
	if k, ok := d.c.keys[string(raw)]; ok {
		return k, nil
	}
	k := string(raw)
	if len(d.c.keys) < maxSharedKeys {
		d.c.keys[k] = k
	}
	return k, nil
}

// str decodes a string at pos (at its opening quote).
func (d *jsonDecoder) str() (string, error) {
	if d.strict {
		end, escaped, err := protocol.ScanString(d.data, d.pos)
		if err != nil {
			return "", err
		}
		raw := d.data[d.pos+1 : end-1]
		d.pos = end
		if !escaped {
			return string(raw), nil
		}
		return string(protocol.AppendUnescaped(make([]byte, 0, len(raw)), raw)), nil
	}
	d.pos++
	start := d.pos
	// Most strings have no escape: find the closing quote at memchr speed.
	if n := bytes.IndexByte(d.data[start:], '"'); n >= 0 && bytes.IndexByte(d.data[start:start+n], '\\') < 0 {
		d.pos = start + n + 1
		return string(d.data[start : start+n]), nil
	}
	escaped := false
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case '"':
			raw := d.data[start:d.pos]
			d.pos++
			if !escaped {
				return string(raw), nil
			}
			return string(protocol.AppendUnescaped(make([]byte, 0, len(raw)), raw)), nil
		case '\\':
			escaped = true
			d.pos += 2
		default:
			d.pos++
		}
	}
	return "", d.errorf("unterminated string")
}

func (d *jsonDecoder) number() (lua.LValue, error) {
	start := d.pos
	integer := true
	if d.strict {
		end, isInt, err := protocol.ScanNumber(d.data, d.pos)
		if err != nil {
			return lua.LNil, err
		}
		d.pos, integer = end, isInt
	} else {
	scan:
		for d.pos < len(d.data) {
			switch c := d.data[d.pos]; {
			case c >= '0' && c <= '9' || c == '-':
			case c == '.' || c == 'e' || c == 'E' || c == '+':
				integer = false
			default:
				break scan
			}
			d.pos++
		}
	}
	num := d.data[start:d.pos]
	if integer && len(num) <= 15 && num[0] != '-' || integer && len(num) <= 16 && num[0] == '-' {
		neg := num[0] == '-'
		if neg {
			num = num[1:]
		}
		var v int64
		for _, c := range num {
			v = v*10 + int64(c-'0')
		}
		if neg {
			v = -v
		}
		return lua.LNumber(v), nil
	}
	if integer && needsExact(num) {
		u := d.c.L.NewUserData()
		u.Value = ExactInteger{Text: string(num)}
		u.Metatable = d.c.exactMeta
		return u, nil
	}
	// ParseFloat copies the string into any error it returns, so handing
	// it a view of the buffer is safe and saves an allocation.
	f, err := strconv.ParseFloat(unsafe.String(&num[0], len(num)), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return lua.LNil, d.errorf("invalid number")
	}
	return lua.LNumber(f), nil
}

// Encode appends the JSON of v to dst.
func (c *Converter) Encode(dst []byte, v lua.LValue) ([]byte, error) {
	c.values = 0
	start := len(dst)
	dst, err := c.AppendValue(dst, v, 0)
	if err == nil && len(dst)-start > MaxString {
		err = fmt.Errorf("%w (%d bytes)", ErrTooLarge, MaxString)
	}
	return dst, err
}

// appendJSONString appends s as a JSON string unless that takes dst past
// MaxString, which it tells before building anything: escapes turn a byte
// into up to six, so a string well under the limit can encode to several
// times it. Only a string that could pass the limit is measured first.
func appendJSONString(dst []byte, s string) ([]byte, error) {
	if len(dst)+6*len(s)+2 > MaxString && len(dst)+protocol.EncodedStringLen(s) > MaxString {
		return dst, fmt.Errorf("%w (%d bytes)", ErrTooLarge, MaxString)
	}
	return protocol.AppendString(dst, s), nil
}

// AppendValue appends the JSON of v, nested depth levels deep, to dst.
func (c *Converter) AppendValue(dst []byte, v lua.LValue, depth int) ([]byte, error) {
	if err := c.check(len(dst)); err != nil {
		return dst, err
	}
	switch v := v.(type) {
	case *lua.LNilType:
		return append(dst, "null"...), nil
	case lua.LBool:
		if v {
			return append(dst, "true"...), nil
		}
		return append(dst, "false"...), nil
	case lua.LNumber:
		return AppendNumber(dst, float64(v))
	case lua.LString:
		return appendJSONString(dst, string(v))
	case *lua.LTable:
		return c.AppendTable(dst, v, depth+1)
	case *lua.LUserData:
		switch u := v.Value.(type) {
		case nullMarker:
			return append(dst, "null"...), nil
		case JSONEncoder:
			return u.AppendJSON(c, dst, depth+1)
		}
	}
	return dst, fmt.Errorf("%w: a %s", ErrNotEncodable, v.Type())
}

// AppendNumber writes integers exactly (up to 2^53) without an exponent.
func AppendNumber(dst []byte, f float64) ([]byte, error) {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return dst, fmt.Errorf("%w: %v", ErrNotEncodable, f)
	case f == math.Trunc(f) && math.Abs(f) <= 1<<53:
		return strconv.AppendInt(dst, int64(f), 10), nil
	}
	return strconv.AppendFloat(dst, f, 'g', -1, 64), nil
}

// AppendTable appends the JSON of t: an array when it is marked as one or
// has exactly the keys 1..n, an object otherwise.
func (c *Converter) AppendTable(dst []byte, t *lua.LTable, depth int) ([]byte, error) {
	if depth > maxEncodeDepth {
		return dst, fmt.Errorf("%w: tables nested deeper than %d levels (a cycle?)", ErrNotEncodable, maxEncodeDepth)
	}
	n := sequenceLength(t)
	if n == 0 && c.IsArray(t) {
		n = t.Len()
	}
	if n > 0 || c.IsArray(t) {
		dst = append(dst, '[')
		for i := 1; i <= n; i++ {
			if i > 1 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = c.AppendValue(dst, t.RawGetInt(i), depth); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	}
	dst = append(dst, '{')
	first := true
	var err error
	for k, v := t.Next(lua.LNil); k != lua.LNil; k, v = t.Next(k) {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		switch k := k.(type) {
		case lua.LString:
			if dst, err = appendJSONString(dst, string(k)); err != nil {
				return dst, err
			}
		case lua.LNumber:
			dst = append(dst, '"')
			if dst, err = AppendNumber(dst, float64(k)); err != nil {
				return dst, err
			}
			dst = append(dst, '"')
		default:
			return dst, fmt.Errorf("%w: a table key of type %s", ErrNotEncodable, k.Type())
		}
		dst = append(dst, ':')
		if dst, err = c.AppendValue(dst, v, depth); err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
}

// sequenceLength returns n when t has exactly the keys 1..n, and 0
// otherwise.
func sequenceLength(t *lua.LTable) int {
	if n := t.Len(); n > 0 {
		// The common case: 1..n in the array part and nothing else.
		if k, _ := t.Next(lua.LNumber(n)); k == lua.LNil {
			return n
		}
	}
	// Integer keys set out of order live in the hash part: count them.
	count, maxKey := 0, 0
	for k, _ := t.Next(lua.LNil); k != lua.LNil; k, _ = t.Next(k) {
		n, ok := k.(lua.LNumber)
		if !ok || n < 1 || n != lua.LNumber(int(n)) {
			return 0
		}
		count++
		maxKey = max(maxKey, int(n))
	}
	if count == maxKey {
		return count
	}
	return 0
}

// OpenJSON installs what handlers and scenarios share: the json module
// (encode, decode, null, array) converting with conv, and now().
func OpenJSON(L *lua.LState, conv *Converter) {
	mod := L.NewTable()
	mod.RawSetString("encode", L.NewFunction(func(L *lua.LState) int {
		// Encoded into the converter's scratch buffer, so the text is
		// allocated once, as the string, not grown step by step. Encoding
		// runs no Lua code, so nothing can reach the buffer meanwhile.
		out, err := conv.Encode(conv.scratch[:0], L.CheckAny(1))
		if cap(out) <= maxScratch {
			conv.scratch = out[:0]
		}
		if err != nil {
			L.RaiseError("json.encode: %s", err)
		}
		L.Push(lua.LString(out))
		return 1
	}))
	mod.RawSetString("decode", L.NewFunction(func(L *lua.LState) int {
		// Decoding only reads the text (strings it makes are copies), so
		// it reads the Lua string in place.
		s := L.CheckString(1)
		v, err := conv.DecodeUntrusted(unsafe.Slice(unsafe.StringData(s), len(s)))
		if err != nil {
			L.RaiseError("json.decode: %s", err)
		}
		L.Push(v)
		return 1
	}))
	// json.is_exact(v) → whether v is an integer kept exactly (see
	// ExactInteger): type() calls it "userdata".
	mod.RawSetString("is_exact", L.NewFunction(func(L *lua.LState) int {
		_, ok := asExact(L.Get(1))
		L.Push(lua.LBool(ok))
		return 1
	}))
	// json.array([table]) → the table (a new one if none), marked to encode
	// as a JSON array even when empty.
	mod.RawSetString("array", L.NewFunction(func(L *lua.LState) int {
		t, ok := L.Get(1).(*lua.LTable)
		if !ok {
			t = L.NewTable()
		} else if L.GetMetaField(t, "__metatable") != lua.LNil {
			L.RaiseError("json.array: the table's metatable is protected")
		}
		t.Metatable = conv.arrayMeta
		L.Push(t)
		return 1
	}))
	mod.RawSetString("null", conv.null)
	L.SetGlobal("json", mod)
	L.SetGlobal("now", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LNumber(protocol.Now()))
		return 1
	}))
}
