package metrics

import (
	"cmp"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/secureagentmessaging/samgw/gateway"
)

// Subscriber is what /connz reads of the script engine (a
// *scripting.Engine): the topics a connection is subscribed to.
type Subscriber interface {
	Subscriptions(c *gateway.Conn) []string
}

// Workers is what /connz reads of the work queues (a *delivery.Queues):
// the queues a connection works.
type Workers interface {
	QueuesOf(w gateway.JobWorker) []string
}

// AttachQueues lets /connz list each connection's queues.
func (m *Metrics) AttachQueues(q Workers) { m.queues = q }

// Bounds of a /connz page.
const (
	defaultConnzLimit = 256
	maxConnzLimit     = 1024
)

// connz is the body of /connz, after NATS's: one page of the open
// connections, oldest first.
type connz struct {
	Now         time.Time   `json:"now"`
	Total       int         `json:"total"` // open connections that match the filter
	Offset      int         `json:"offset"`
	Limit       int         `json:"limit"`
	Connections []connEntry `json:"connections"`
}

type connEntry struct {
	ID            string    `json:"id"`
	Identity      string    `json:"identity,omitempty"`
	Remote        string    `json:"remote"`
	Transport     string    `json:"transport"`
	Since         time.Time `json:"since"`
	LastActivity  time.Time `json:"last_activity"`
	FramesIn      uint64    `json:"frames_in"`
	FramesOut     uint64    `json:"frames_out"`
	BytesIn       uint64    `json:"bytes_in"`
	BytesOut      uint64    `json:"bytes_out"`
	Subscriptions []string  `json:"subscriptions"`
	Queues        []string  `json:"queues"` // the work queues it is a worker of
}

// serveConnz answers GET /connz[?identity=NAME][&offset=N][&limit=M]: the
// open (authenticated, or unauthenticated servers') connections, oldest
// first, a page at a time (limit at most maxConnzLimit), filtered by
// identity when asked. Connections still proving who they are, or closing,
// are not listed.
func (m *Metrics) serveConnz(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	offset, okOffset := nonNegative(q.Get("offset"), 0)
	limit, okLimit := nonNegative(q.Get("limit"), defaultConnzLimit)
	if !okOffset || !okLimit || limit == 0 {
		http.Error(w, "offset and limit are whole numbers (limit 1 to 1024)", http.StatusBadRequest)
		return
	}
	limit = min(limit, maxConnzLimit)
	identity, filter := q.Get("identity"), q.Has("identity")
	var conns []*gateway.Conn
	if m.srv != nil {
		m.srv.Range(func(c *gateway.Conn) bool {
			if !filter || c.Identity() == identity {
				conns = append(conns, c)
			}
			return true
		})
	}
	infos := make([]gateway.ConnInfo, len(conns))
	for i, c := range conns {
		infos[i] = c.Info()
	}
	order := make([]int, len(conns))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(infos[a].ConnectedAt.Compare(infos[b].ConnectedAt), cmp.Compare(infos[a].ID, infos[b].ID))
	})
	page := connz{Now: time.Now().UTC(), Total: len(conns), Offset: offset, Limit: limit, Connections: []connEntry{}}
	subs, _ := m.engine.(Subscriber)
	for _, i := range order[min(offset, len(order)):min(offset+limit, len(order))] {
		in := infos[i]
		e := connEntry{ID: in.ID, Identity: in.Identity, Remote: in.RemoteAddr, Transport: in.Transport,
			Since: in.ConnectedAt.UTC(), LastActivity: in.LastActivity.UTC(), FramesIn: in.FramesIn, FramesOut: in.FramesOut,
			BytesIn: in.BytesIn, BytesOut: in.BytesOut, Subscriptions: []string{}, Queues: []string{}}
		if subs != nil {
			e.Subscriptions = subs.Subscriptions(conns[i])
		}
		if m.queues != nil {
			if qs := m.queues.QueuesOf(conns[i]); qs != nil {
				e.Queues = qs
			}
		}
		page.Connections = append(page.Connections, e)
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(page) //nolint:errcheck // the client went away
}

// nonNegative parses a query number; empty is def.
func nonNegative(s string, def int) (int, bool) {
	if s == "" {
		return def, true
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0
}
