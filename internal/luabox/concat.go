package luabox

import (
	"reflect"
	"strings"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/ast"
)

// concatGlobal names the function every `..` of a compiled chunk calls
// (see BoundConcat). Scripts see it as a global like any other; a file
// that replaces it in its own globals breaks only its own `..`.
const concatGlobal = "__samgw_concat"

// BoundConcat rewrites every chain of `..` in a parsed chunk (a .. b .. c)
// into one call of a Go function that does what the VM's concatenation
// does (strings and numbers joined, __concat metamethods called, right to
// left) but refuses a result past MaxString before building it, and checks
// the deadline. gopher-lua concatenates in one Go call that no deadline
// interrupts: `s = s .. s` in a loop built a string of hundreds of
// megabytes per step and ran a handler 1.4 to 3.9 s past a 1 s timeout.
// Call it between parse.Parse and lua.Compile.
func BoundConcat(chunk []ast.Stmt) {
	rewrite(reflect.ValueOf(chunk))
}

var exprType = reflect.TypeFor[ast.Expr]()

// rewrite walks the syntax tree under v and replaces each concatenation
// it finds where an ast.Expr is held.
func rewrite(v reflect.Value) {
	switch v.Kind() {
	case reflect.Interface:
		if v.IsNil() {
			return
		}
		if c, ok := v.Interface().(*ast.StringConcatOpExpr); ok && v.Type() == exprType && v.CanSet() {
			v.Set(reflect.ValueOf(concatCall(c)))
			return
		}
		rewrite(v.Elem())
	case reflect.Pointer:
		if !v.IsNil() {
			rewrite(v.Elem())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				rewrite(v.Field(i))
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			rewrite(v.Index(i))
		}
	}
}

// concatCall is the call that replaces a chain of concatenations: its
// operands, in order, each rewritten in turn.
func concatCall(c *ast.StringConcatOpExpr) ast.Expr {
	var args []ast.Expr
	for {
		args = append(args, c.Lhs)
		next, ok := c.Rhs.(*ast.StringConcatOpExpr)
		if !ok {
			args = append(args, c.Rhs)
			break
		}
		c = next
	}
	for i := range args {
		rewrite(reflect.ValueOf(args).Index(i))
		// An operand is one value, as in the VM: a call or ... last in an
		// argument list would pass all its results ("a" .. f() gave "axy"
		// for f returning "x", "y"); adjusted, as (f()) is, it passes one.
		switch a := args[i].(type) {
		case *ast.FuncCallExpr:
			a.AdjustRet = true
		case *ast.Comma3Expr:
			a.AdjustRet = true
		}
	}
	fn := &ast.IdentExpr{Value: concatGlobal}
	fn.SetLine(c.Line())
	fn.SetLastLine(c.LastLine())
	call := &ast.FuncCallExpr{Func: fn, Args: args}
	call.SetLine(c.Line())
	call.SetLastLine(c.LastLine())
	return call
}

// concat is the bounded `..` of its arguments (at least two), as the VM
// does it: from the right, each run of strings and numbers joined at once,
// a __concat metamethod called where an operand is neither.
func concat(L *lua.LState) int {
	CheckInterrupt(L)
	n := L.GetTop()
	rhs := L.Get(n)
	for i := n - 1; i >= 1; {
		lhs := L.Get(i)
		if !lua.LVCanConvToString(lhs) || !lua.LVCanConvToString(rhs) {
			rhs = concatMeta(L, lhs, rhs)
			i--
			continue
		}
		j := i
		total := len(lua.LVAsString(rhs))
		for ; j >= 1 && lua.LVCanConvToString(L.Get(j)); j-- {
			total += len(lua.LVAsString(L.Get(j)))
			checkSize(L, "..", total)
		}
		var b strings.Builder
		b.Grow(total)
		for k := j + 1; k <= i; k++ {
			b.WriteString(lua.LVAsString(L.Get(k)))
		}
		b.WriteString(lua.LVAsString(rhs))
		rhs = lua.LString(b.String())
		i = j
	}
	L.Push(rhs)
	return 1
}

// concatMeta is lhs .. rhs through a __concat metamethod of either.
func concatMeta(L *lua.LState, lhs, rhs lua.LValue) lua.LValue {
	op := L.GetMetaField(lhs, "__concat")
	if op == lua.LNil {
		op = L.GetMetaField(rhs, "__concat")
	}
	if op.Type() != lua.LTFunction {
		L.RaiseError("cannot perform concat operation between %v and %v", lhs.Type().String(), rhs.Type().String())
	}
	L.Push(op)
	L.Push(lhs)
	L.Push(rhs)
	L.Call(2, 1)
	v := L.Get(-1)
	L.Pop(1)
	return v
}
