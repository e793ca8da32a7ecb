package scripting

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/secureagentmessaging/samgw/access"
	"github.com/secureagentmessaging/samgw/delivery"
	"github.com/secureagentmessaging/samgw/protocol"
)

// Mailboxes holds messages for identities until they take them
// (delivery.Mailboxes): gateway.deliver appends to them.
type Mailboxes interface {
	Deliver(ctx context.Context, identity string, payload []byte, opts delivery.DeliverOptions) (uint64, error)
}

// ErrNoMailboxes is raised by gateway.deliver when the engine has none.
var ErrNoMailboxes = errors.New("durable delivery is off on this server")

// maxDeliverTTL bounds ttl_ms: beyond it a mailbox's age limit applies
// anyway.
const maxDeliverTTL = 365 * 24 * time.Hour

// deliverOptions reads gateway.deliver's optional table at argument n:
// {route = "...", id = "...", ttl_ms = N}.
func (st *luaState) deliverOptions(n int) delivery.DeliverOptions {
	L := st.L
	var opts delivery.DeliverOptions
	if L.Get(n) == lua.LNil {
		return opts
	}
	t := L.CheckTable(n)
	if v := t.RawGetString("route"); v != lua.LNil {
		s, ok := v.(lua.LString)
		if !ok || (s != "" && !protocol.ValidRoute(string(s))) {
			L.ArgError(n, "route must be a route name")
		}
		opts.Route = string(s)
	}
	if v := t.RawGetString("id"); v != lua.LNil {
		s, ok := v.(lua.LString)
		if !ok || len(s) == 0 || len(s) > 256 {
			L.ArgError(n, "id must be a string of 1 to 256 bytes")
		}
		opts.ID = string(s)
	}
	if v := t.RawGetString("ttl_ms"); v != lua.LNil {
		ms, ok := v.(lua.LNumber)
		if !ok || ms <= 0 || math.IsNaN(float64(ms)) || time.Duration(ms)*time.Millisecond > maxDeliverTTL {
			L.ArgError(n, "ttl_ms must be a positive number of milliseconds (at most a year)")
		}
		opts.TTL = time.Duration(ms) * time.Millisecond
	}
	return opts
}

// gateway.deliver(identity, payload[, opts]) → seq: appends to identity's
// durable mailbox.
func (st *luaState) apiDeliver(L *lua.LState) int {
	identity := L.CheckString(1)
	payload := st.payloadArg(2)
	opts := st.deliverOptions(3)
	st.check("gateway.deliver", st.actor(), access.KindSendTo, identity)
	boxes := st.gen.engine.mailboxes
	if boxes == nil {
		L.RaiseError("gateway.deliver: %s", ErrNoMailboxes)
	}
	ctx, cancel := st.storeContext()
	defer cancel()
	seq, err := boxes.Deliver(ctx, identity, payload, opts)
	if err != nil {
		if errors.Is(err, delivery.ErrUnavailable) {
			st.clusterFailure("gateway.deliver")
		}
		L.RaiseError("gateway.deliver: %s", deliverFailure(identity, err))
	}
	L.Push(lua.LNumber(seq))
	return 1
}

// deliverFailure is the text a script sees for a refused deliver.
func deliverFailure(identity string, err error) string {
	switch {
	case errors.Is(err, delivery.ErrUnknownIdentity):
		return fmt.Sprintf("no such identity %q", truncate(identity, 64))
	case errors.Is(err, delivery.ErrMailboxFull):
		return fmt.Sprintf("the mailbox of %q is full", truncate(identity, 64))
	case errors.Is(err, delivery.ErrStoreFull):
		return "the mailbox store is full"
	case errors.Is(err, delivery.ErrInvalid):
		return err.Error()
	}
	return "not stored"
}
