package luabox

import (
	"errors"

	lua "github.com/yuin/gopher-lua"
)

// checkEvery is how many units of work pass between two looks at the
// call's deadline: often enough to stop within microseconds, rarely enough
// to cost nothing measurable.
const checkEvery = 4096

// ErrInterrupted is returned by a conversion, and is the text of the error
// raised inside a library call, whose deadline passed (or whose call was
// stopped for memory): the caller classifies the call by its own deadline,
// this only ends it.
var ErrInterrupted = errors.New("luabox: interrupted: the call's deadline passed")

// budget charges the work of one library call: it raises an error when the
// call's context is done or the call did more than limit units of work.
// Go code that loops over script-controlled sizes calls spend, so a single
// library call cannot outlive the deadline the instruction loop enforces.
type budget struct {
	L     *lua.LState
	what  string
	used  int
	next  int
	limit int
}

func newBudget(L *lua.LState, what string, limit int) *budget {
	return &budget{L: L, what: what, next: checkEvery, limit: limit}
}

// spend charges n units of work.
func (b *budget) spend(n int) {
	b.used += n
	if b.used >= b.next {
		b.check()
	}
}

func (b *budget) check() {
	if b.used > b.limit {
		b.L.RaiseError("%s: too much work (more than %d steps)", b.what, b.limit)
	}
	b.next = b.used + checkEvery
	CheckInterrupt(b.L)
}

// CheckInterrupt raises an error in L when the context of its call is done.
// Go functions registered for scripts call it in loops whose length a
// script controls.
func CheckInterrupt(L *lua.LState) {
	ctx := L.Context()
	if ctx == nil {
		return
	}
	select {
	case <-ctx.Done():
		L.RaiseError("%s", ErrInterrupted.Error())
	default:
	}
}

// checkSize raises an error when a result of n bytes would pass MaxString.
func checkSize(L *lua.LState, what string, n int) {
	if n > MaxString || n < 0 {
		L.RaiseError("%s: result larger than the limit of %d bytes", what, MaxString)
	}
}
