package luabox

import (
	"math"
	"strconv"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// maxFormatDigits bounds a conversion's width and precision to two digits,
// as C Lua does, so one item adds at most 99 bytes beyond its argument.
const maxFormatDigits = 2

// strFormat is string.format with C Lua's conversions (%d %i %u %c %o %x %X
// %e %E %f %g %G %q %s %%) and nothing else: gopher-lua hands the format to
// Go's fmt, which prints pointers for %p and Go syntax for %v.
func strFormat(L *lua.LState) int {
	format := L.CheckString(1)
	var out []byte
	arg := 1
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' {
			out = append(out, c)
			continue
		}
		i++
		if i < len(format) && format[i] == '%' {
			out = append(out, '%')
			continue
		}
		spec, next := parseSpec(L, format, i)
		i = next
		arg++
		out = spec.append(L, out, arg)
		checkSize(L, "string.format", len(out))
	}
	L.Push(lua.LString(out))
	return 1
}

// formatSpec is one parsed conversion.
type formatSpec struct {
	flags     string
	width     int
	precision int // -1: none
	verb      byte
}

func parseSpec(L *lua.LState, format string, i int) (formatSpec, int) {
	spec := formatSpec{precision: -1}
	start := i
	for i < len(format) && strings.IndexByte("-+ #0", format[i]) >= 0 {
		i++
	}
	if i-start > 5 {
		L.RaiseError("invalid format (repeated flags)")
	}
	spec.flags = format[start:i]
	digits := func() int {
		n, d := 0, 0
		for i < len(format) && format[i] >= '0' && format[i] <= '9' {
			n = n*10 + int(format[i]-'0')
			i++
			d++
		}
		if d > maxFormatDigits {
			L.RaiseError("invalid format (width or precision too long)")
		}
		return n
	}
	spec.width = digits()
	if i < len(format) && format[i] == '.' {
		i++
		spec.precision = digits()
	}
	if i >= len(format) {
		L.RaiseError("invalid option '%%' to 'format' (the format ends)")
	}
	spec.verb = format[i]
	return spec, i
}

func (f formatSpec) has(flag byte) bool { return strings.IndexByte(f.flags, flag) >= 0 }

// append formats argument n by f onto out.
func (f formatSpec) append(L *lua.LState, out []byte, n int) []byte {
	switch f.verb {
	case 'c':
		return f.pad(out, string([]byte{byte(L.CheckInt(n))}))
	case 'd', 'i':
		v := toInteger(float64(L.CheckNumber(n)))
		abs := uint64(v)
		if v < 0 {
			abs = -abs
		}
		digits := strconv.AppendUint(nil, abs, 10)
		return f.padNumber(out, digits, v < 0, "")
	case 'u', 'o', 'x', 'X':
		v := uint64(toInteger(float64(L.CheckNumber(n))))
		base, prefix := 10, ""
		switch f.verb {
		case 'o':
			base = 8
			if f.has('#') {
				prefix = "0"
			}
		case 'x':
			base = 16
			if f.has('#') && v != 0 {
				prefix = "0x"
			}
		case 'X':
			base = 16
			if f.has('#') && v != 0 {
				prefix = "0X"
			}
		}
		digits := strconv.AppendUint(nil, v, base)
		if f.verb == 'X' {
			digits = []byte(strings.ToUpper(string(digits)))
		}
		return f.padNumber(out, digits, false, prefix)
	case 'e', 'E', 'f', 'g', 'G':
		return f.appendFloat(out, float64(L.CheckNumber(n)))
	case 'q':
		s := L.CheckString(n)
		checkSize(L, "string.format", len(out)+quotedLen(s))
		return appendQuoted(out, s)
	case 's':
		s := stringArg(L, n)
		if f.precision >= 0 && len(s) > f.precision {
			s = s[:f.precision]
		}
		// Checked before the copy: an argument that cannot fit costs
		// nothing, where appending it first built up to twice the limit.
		checkSize(L, "string.format", len(out)+max(len(s), f.width))
		return f.pad(out, s)
	}
	L.RaiseError("invalid option '%%%c' to 'format'", f.verb)
	return out
}

// stringArg is what %s prints: strings and numbers as they are, other
// values through __tostring, or their type name (never an address).
func stringArg(L *lua.LState, n int) string {
	v := L.CheckAny(n)
	switch v := v.(type) {
	case lua.LString:
		return string(v)
	case lua.LNumber, lua.LBool, *lua.LNilType:
		return v.String()
	}
	if L.GetMetaField(v, "__tostring") != lua.LNil {
		return L.ToStringMeta(v).String()
	}
	return v.Type().String()
}

// toInteger converts a Lua number to an integer the way C does for the
// values it defines, saturating the rest.
func toInteger(f float64) int64 {
	switch {
	case math.IsNaN(f):
		return 0
	case f >= math.MaxInt64:
		return math.MaxInt64
	case f <= math.MinInt64:
		return math.MinInt64
	}
	return int64(f)
}

func (f formatSpec) appendFloat(out []byte, v float64) []byte {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		s := "inf"
		if math.IsNaN(v) {
			s = "nan"
		}
		if f.verb == 'E' || f.verb == 'G' {
			s = strings.ToUpper(s)
		}
		return f.padNumber(out, []byte(s), math.IsInf(v, -1), "")
	}
	prec := f.precision
	if prec < 0 {
		prec = 6
	}
	verb := f.verb | 0x20 // e, f or g; upper case is applied below
	if verb == 'g' && prec == 0 {
		prec = 1
	}
	// strconv writes two-digit exponents and drops %g's trailing zeros, as C does.
	digits := strconv.AppendFloat(nil, math.Abs(v), verb, prec, 64)
	if f.verb == 'E' || f.verb == 'G' {
		digits = []byte(strings.ToUpper(string(digits)))
	}
	return f.padNumber(out, digits, math.Signbit(v) && v != 0, "")
}

// padNumber writes sign, prefix and digits padded to the width: zeros
// after the sign with '0', spaces before otherwise, spaces after with '-'.
func (f formatSpec) padNumber(out, digits []byte, negative bool, prefix string) []byte {
	sign := ""
	switch {
	case negative:
		sign = "-"
	case f.has('+'):
		sign = "+"
	case f.has(' '):
		sign = " "
	}
	if f.precision >= 0 && strings.IndexByte("diuoxX", f.verb) >= 0 {
		for len(digits) < f.precision {
			digits = append([]byte{'0'}, digits...)
		}
		if f.precision == 0 && len(digits) == 1 && digits[0] == '0' {
			digits = digits[:0]
		}
	}
	body := len(sign) + len(prefix) + len(digits)
	pad := f.width - body
	switch {
	case pad <= 0:
		out = append(out, sign...)
		out = append(out, prefix...)
		return append(out, digits...)
	case f.has('-'):
		out = append(out, sign...)
		out = append(out, prefix...)
		out = append(out, digits...)
		return append(out, strings.Repeat(" ", pad)...)
	case f.has('0') && !(f.precision >= 0 && strings.IndexByte("diuoxX", f.verb) >= 0):
		out = append(out, sign...)
		out = append(out, prefix...)
		out = append(out, strings.Repeat("0", pad)...)
		return append(out, digits...)
	}
	out = append(out, strings.Repeat(" ", pad)...)
	out = append(out, sign...)
	out = append(out, prefix...)
	return append(out, digits...)
}

// pad writes s padded with spaces to the width.
func (f formatSpec) pad(out []byte, s string) []byte {
	pad := f.width - len(s)
	if pad <= 0 {
		return append(out, s...)
	}
	if f.has('-') {
		out = append(out, s...)
		return append(out, strings.Repeat(" ", pad)...)
	}
	out = append(out, strings.Repeat(" ", pad)...)
	return append(out, s...)
}

// quotedLen is the length of what appendQuoted writes for s.
func quotedLen(s string) int {
	n := len(s) + 2
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"', '\\', '\n', '\r':
			n++
		case 0:
			n += 3
		}
	}
	return n
}

// appendQuoted is %q: a Lua string literal that reads back as s.
func appendQuoted(out []byte, s string) []byte {
	out = append(out, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\', '\n':
			out = append(out, '\\', c)
		case '\r':
			out = append(out, `\r`...)
		case 0:
			out = append(out, `\000`...)
		default:
			out = append(out, c)
		}
	}
	return append(out, '"')
}
