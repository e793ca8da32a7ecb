package luabox

import (
	"errors"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// ErrorText is the message of a Lua error (file:line: message) without Go
// stack traces.
func ErrorText(err error) string {
	var ae *lua.ApiError
	if errors.As(err, &ae) && ae.Object != nil {
		return strings.TrimSpace(ae.Object.String())
	}
	return err.Error()
}
