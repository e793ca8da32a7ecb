package metrics

import (
	"cmp"
	"encoding/json"
	"html/template"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/secureagentmessaging/samgw/gateway"
)

// StatusSources are the optional parts of the status page: what exists
// only with scripts, a cluster or work queues. Nil fields are left out.
type StatusSources struct {
	// Version and Started describe the process.
	Version string
	Started time.Time
	// Subscriptions counts this node's topic subscriptions (the script
	// engine's SubscriptionCount).
	Subscriptions func() int
	// Nodes lists the cluster's live nodes (cluster.Cluster.Nodes).
	Nodes func() []string
}

// SetStatus gives the status page what it shows besides the server's and
// the engine's own figures. Call it before serving.
func (m *Metrics) SetStatus(src StatusSources) { m.status = src }

// Bounds of the status page.
const (
	maxStatusIdentities = 50
	maxStatusRoutes     = 200
)

// status is the body of /status.json and what /status shows.
type status struct {
	Version     string        `json:"version"`
	Started     time.Time     `json:"started"`
	Uptime      string        `json:"uptime"`
	Connections statusConns   `json:"connections"`
	Routes      []statusRoute `json:"routes"`
	Scripts     *statusScript `json:"scripts,omitempty"`
	Topics      *statusTopics `json:"topics,omitempty"`
	Queues      []statusQueue `json:"queues,omitempty"`
	Checks      []statusCheck `json:"checks"`
	Nodes       []string      `json:"nodes,omitempty"`
}

type statusConns struct {
	Open        int            `json:"open"`
	Total       uint64         `json:"total"`
	ByTransport map[string]int `json:"by_transport"`
	// ByIdentity: the identities with the most connections, most first (at
	// most maxStatusIdentities; Others counts the rest's connections).
	ByIdentity []statusCount `json:"by_identity"`
	Others     int           `json:"others,omitempty"`
}

type statusCount struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

type statusRoute struct {
	Route    string  `json:"route"`
	Calls    uint64  `json:"calls"`
	Errors   uint64  `json:"errors"`
	Timeouts uint64  `json:"timeouts"`
	P99Ms    float64 `json:"p99_ms"` // from the histogram's buckets
}

type statusScript struct {
	Generation    uint64 `json:"generation"`
	ReloadsOK     uint64 `json:"reloads_ok"`
	ReloadsFailed uint64 `json:"reloads_failed"`
	LastError     string `json:"last_error,omitempty"`
}

type statusTopics struct {
	Subscriptions int `json:"subscriptions"`
}

type statusQueue struct {
	Queue   string `json:"queue"`
	Workers int    `json:"workers"` // this node's connections working it
}

type statusCheck struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// snapshot gathers the status now.
func (m *Metrics) snapshot() status {
	now := time.Now()
	st := status{Version: m.status.Version, Started: m.status.Started, Uptime: now.Sub(m.status.Started).Round(time.Second).String(),
		Connections: statusConns{ByTransport: map[string]int{}}, Routes: []statusRoute{}, Checks: []statusCheck{}}
	if m.srv != nil {
		stats := m.srv.Stats()
		st.Connections.Total = stats.ConnectionsTotal
		ids := map[string]int{}
		queues := map[string]int{}
		m.srv.Range(func(c *gateway.Conn) bool {
			st.Connections.Open++
			st.Connections.ByTransport[c.Transport()]++
			if id := c.Identity(); id != "" {
				ids[id]++
			}
			if m.queues != nil {
				for _, q := range m.queues.QueuesOf(c) {
					queues[q]++
				}
			}
			return true
		})
		st.Connections.ByIdentity, st.Connections.Others = topCounts(ids, maxStatusIdentities)
		for q, n := range queues {
			st.Queues = append(st.Queues, statusQueue{q, n})
		}
		slices.SortFunc(st.Queues, func(a, b statusQueue) int { return strings.Compare(a.Queue, b.Queue) })
	}
	st.Routes = m.routeStats()
	if e := m.engine; e != nil {
		ok, failed := e.Reloads()
		st.Scripts = &statusScript{Generation: e.Generation(), ReloadsOK: ok, ReloadsFailed: failed, LastError: e.ReloadError()}
	}
	if f := m.status.Subscriptions; f != nil {
		st.Topics = &statusTopics{Subscriptions: f()}
	}
	for _, chk := range m.checks {
		c := statusCheck{Name: chk.name, OK: true}
		if err := chk.fn(); err != nil {
			c.OK, c.Error = false, err.Error()
		}
		st.Checks = append(st.Checks, c)
	}
	if f := m.status.Nodes; f != nil {
		st.Nodes = f()
	}
	return st
}

// topCounts returns the n largest counts, largest first (then by name),
// and the sum of the others.
func topCounts(counts map[string]int, n int) ([]statusCount, int) {
	out := make([]statusCount, 0, len(counts))
	for name, c := range counts {
		out = append(out, statusCount{name, c})
	}
	slices.SortFunc(out, func(a, b statusCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Name, b.Name))
	})
	others := 0
	if len(out) > n {
		for _, c := range out[n:] {
			others += c.Count
		}
		out = out[:n]
	}
	return out, others
}

// routeStats reads the handler histogram: calls, errors, timeouts and
// the 99th percentile of each route.
func (m *Metrics) routeStats() []statusRoute {
	ch := make(chan prometheus.Metric, 64)
	go func() {
		m.duration.Collect(ch)
		close(ch)
	}()
	byRoute := map[string]*statusRoute{}
	hists := map[string][]*dto.Histogram{}
	for metric := range ch {
		var pb dto.Metric
		if metric.Write(&pb) != nil || pb.Histogram == nil {
			continue
		}
		var route, outcome string
		for _, l := range pb.Label {
			switch l.GetName() {
			case "route":
				route = l.GetValue()
			case "outcome":
				outcome = l.GetValue()
			}
		}
		r := byRoute[route]
		if r == nil {
			r = &statusRoute{Route: route}
			byRoute[route] = r
		}
		n := pb.Histogram.GetSampleCount()
		r.Calls += n
		switch outcome {
		case "error":
			r.Errors += n
		case "timeout":
			r.Timeouts += n
		}
		hists[route] = append(hists[route], pb.Histogram)
	}
	out := make([]statusRoute, 0, len(byRoute))
	for route, r := range byRoute {
		r.P99Ms = quantile(hists[route], 0.99) * 1000
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b statusRoute) int { return strings.Compare(a.Route, b.Route) })
	if len(out) > maxStatusRoutes {
		out = out[:maxStatusRoutes]
	}
	return out
}

// quantile estimates the q-quantile of the histograms together: the upper
// bound of the bucket it falls in (the buckets are fine enough to read).
func quantile(hs []*dto.Histogram, q float64) float64 {
	var total uint64
	counts := map[float64]uint64{}
	for _, h := range hs {
		total += h.GetSampleCount()
		for _, b := range h.Bucket {
			counts[b.GetUpperBound()] += b.GetCumulativeCount()
		}
	}
	if total == 0 {
		return 0
	}
	bounds := make([]float64, 0, len(counts))
	for b := range counts {
		bounds = append(bounds, b)
	}
	slices.Sort(bounds)
	want := uint64(math.Ceil(q * float64(total)))
	for _, b := range bounds {
		if counts[b] >= want {
			return b
		}
	}
	if len(bounds) > 0 {
		return bounds[len(bounds)-1] // past the last bucket: at least that
	}
	return 0
}

// serveStatusJSON answers GET /status.json.
func (m *Metrics) serveStatusJSON(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(m.snapshot()) //nolint:errcheck // the client went away
}

// serveStatus answers GET /status: the same, as a page that needs no
// script and no other file (it reloads itself every 5 s).
func (m *Metrics) serveStatus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	statusPage.Execute(w, m.snapshot()) //nolint:errcheck // the client went away
}

var statusPage = template.Must(template.New("status").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>samgw status</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border-bottom:1px solid #ddd;padding:.25em .8em;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b00020}.ok{color:#1b5e20}
</style></head><body>
<h1>samgw</h1>
<p>Version <b id="version">{{.Version}}</b>, up <b id="uptime">{{.Uptime}}</b> (since {{.Started.Format "2006-01-02 15:04:05 MST"}}).</p>

<h2>Connections</h2>
<p><b id="open">{{.Connections.Open}}</b> open, {{.Connections.Total}} since start.</p>
<table id="transports"><tr><th>transport</th><th>open</th></tr>
{{range $t, $n := .Connections.ByTransport}}<tr><td>{{$t}}</td><td class="n">{{$n}}</td></tr>
{{end}}</table>
{{if .Connections.ByIdentity}}<table id="identities"><tr><th>identity</th><th>connections</th></tr>
{{range .Connections.ByIdentity}}<tr><td>{{.Name}}</td><td class="n">{{.Count}}</td></tr>
{{end}}{{if .Connections.Others}}<tr><td>(others)</td><td class="n">{{.Connections.Others}}</td></tr>{{end}}</table>{{end}}

<h2>Routes</h2>
<table id="routes"><tr><th>route</th><th>calls</th><th>errors</th><th>timeouts</th><th>p99</th></tr>
{{range .Routes}}<tr><td>{{.Route}}</td><td class="n">{{.Calls}}</td><td class="n">{{.Errors}}</td><td class="n">{{.Timeouts}}</td><td class="n">{{printf "%.3g" .P99Ms}} ms</td></tr>
{{else}}<tr><td colspan="5">no calls yet</td></tr>
{{end}}</table>

{{with .Scripts}}<h2>Scripts</h2>
<p>Generation {{.Generation}}; {{.ReloadsOK}} loads ok, {{.ReloadsFailed}} failed.
{{if .LastError}}<span class="bad" id="reload-error">Last reload failed: {{.LastError}}</span>{{else}}<span class="ok">The last reload succeeded.</span>{{end}}</p>{{end}}

{{with .Topics}}<h2>Topics</h2><p>{{.Subscriptions}} subscriptions on this node.</p>{{end}}

{{if .Queues}}<h2>Work queues</h2>
<table id="queues"><tr><th>queue</th><th>workers here</th></tr>
{{range .Queues}}<tr><td>{{.Queue}}</td><td class="n">{{.Workers}}</td></tr>
{{end}}</table>{{end}}

{{if .Checks}}<h2>Health</h2>
<table id="checks"><tr><th>check</th><th>state</th></tr>
{{range .Checks}}<tr><td>{{.Name}}</td><td>{{if .OK}}<span class="ok">ok</span>{{else}}<span class="bad">{{.Error}}</span>{{end}}</td></tr>
{{end}}</table>{{end}}

{{if .Nodes}}<h2>Cluster</h2><p id="nodes">{{range $i, $n := .Nodes}}{{if $i}}, {{end}}{{$n}}{{end}}</p>{{end}}
<p><a href="/status.json">/status.json</a> · <a href="/metrics">/metrics</a> · <a href="/connz">/connz</a></p>
</body></html>
`))
