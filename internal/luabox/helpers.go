package luabox

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"

	lua "github.com/yuin/gopher-lua"
)

// MaxRandomBytes bounds crypto.random_bytes: a script asking for more is
// refused rather than allowed to make the gateway allocate it.
const MaxRandomBytes = 1 << 20

// OpenHelpers installs what scripts keep needing and should not write in
// Lua: crypto (sha256, hmac_sha256, random_bytes), base64 and hex (encode,
// decode), and uuid() (a random version 4 UUID). Hashes are raw bytes (a
// Lua string), as in OpenResty: hex.encode(crypto.sha256(s)) for text.
// Inputs are Lua strings, so their size is bounded by the string limits;
// decoding errors are raised.
func OpenHelpers(L *lua.LState) {
	mod := func(funcs map[string]lua.LGFunction) *lua.LTable {
		t := L.NewTable()
		for name, fn := range funcs {
			t.RawSetString(name, L.NewFunction(fn))
		}
		return t
	}
	L.SetGlobal("crypto", mod(map[string]lua.LGFunction{
		"sha256": func(L *lua.LState) int {
			sum := sha256.Sum256([]byte(L.CheckString(1)))
			L.Push(lua.LString(sum[:]))
			return 1
		},
		"hmac_sha256": func(L *lua.LState) int {
			h := hmac.New(sha256.New, []byte(L.CheckString(1)))
			h.Write([]byte(L.CheckString(2)))
			L.Push(lua.LString(h.Sum(nil)))
			return 1
		},
		"random_bytes": func(L *lua.LState) int {
			n := L.CheckInt(1)
			if n < 0 || n > MaxRandomBytes {
				L.ArgError(1, fmt.Sprintf("between 0 and %d bytes", MaxRandomBytes))
			}
			b := make([]byte, n)
			rand.Read(b) //nolint:errcheck // crypto/rand.Read never fails
			L.Push(lua.LString(b))
			return 1
		},
	}))
	codec := func(name string, encodedLen func(int) int, encode func([]byte) string, decode func(string) ([]byte, error)) *lua.LTable {
		return mod(map[string]lua.LGFunction{
			"encode": func(L *lua.LState) int {
				s := L.CheckString(1)
				checkSize(L, name+".encode", encodedLen(len(s))) // hex doubles, base64 adds a third
				L.Push(lua.LString(encode([]byte(s))))
				return 1
			},
			"decode": func(L *lua.LState) int {
				b, err := decode(L.CheckString(1))
				if err != nil {
					L.RaiseError("%s.decode: %v", name, err)
				}
				L.Push(lua.LString(b))
				return 1
			},
		})
	}
	L.SetGlobal("base64", codec("base64", base64.StdEncoding.EncodedLen, base64.StdEncoding.EncodeToString, base64.StdEncoding.DecodeString))
	L.SetGlobal("hex", codec("hex", hex.EncodedLen, hex.EncodeToString, hex.DecodeString))
	L.SetGlobal("uuid", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString(NewUUID()))
		return 1
	}))
}

// NewUUID returns a random (version 4, RFC 9562) UUID.
func NewUUID() string {
	var b [16]byte
	rand.Read(b[:]) //nolint:errcheck // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}
