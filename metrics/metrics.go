// Package metrics exposes a gateway to Prometheus and to health checks:
// /metrics, /healthz (the process is alive), /readyz (listening, scripts
// loaded) and /connz (the open connections, as JSON).
//
// Counters are read from gateway.Server.Stats and the script engine at scrape
// time, so the message path pays nothing for them; only the Lua handler
// duration histogram is observed per call.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/secureagentmessaging/samgw/gateway"
)

// Metrics is the registry of one gateway. Create it before the engine (its
// ObserveCall goes into scripting.Config), then Attach the server.
type Metrics struct {
	reg      *prometheus.Registry
	duration *prometheus.HistogramVec
	jobs     *prometheus.CounterVec
	srv      *gateway.Server
	engine   Scripts
	queues   Workers
	checks   []check
	pprof    bool
	status   StatusSources

	scriptsOnce sync.Once
	scripts     *ScriptMetrics
}

// check is an extra readiness condition, such as the cluster's.
type check struct {
	name string
	fn   func() error
}

// AddCheck makes /readyz depend on fn too, and exports it as the gauge
// samgw_ready{check=name} (1 when fn returns nil). Call it before serving.
func (m *Metrics) AddCheck(name string, fn func() error) {
	m.checks = append(m.checks, check{name, fn})
}

// New returns a registry with the Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "samgw_handler_duration_seconds",
			Help:    "Duration of Lua on_data calls, by route and outcome (ok, error, timeout).",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .1, .5, 1, 5},
		}, []string{"route", "outcome"}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samgw_queue_jobs_total",
			Help: "Jobs of the work queues answered or given up on this node, by event (acked, nacked, expired, dead).",
		}, []string{"event"}),
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), m.duration, m.jobs)
	return m
}

// JobEvent counts a job event of the work queues: acked, nacked, expired
// (its lease ran out) or dead (moved to its dead queue).
func (m *Metrics) JobEvent(event string) {
	m.jobs.WithLabelValues(event).Inc()
}

// ObserveCall records one handler call; pass it as the script engine's
// ObserveCall.
func (m *Metrics) ObserveCall(route string, d time.Duration, outcome string) {
	if route == "" {
		route = "default"
	}
	m.duration.WithLabelValues(route, outcome).Observe(d.Seconds())
}

// Scripts is what the metrics read of the script engine (a
// *scripting.Engine): which scripts generation serves, and how reloads went.
type Scripts interface {
	Generation() uint64
	Reloads() (ok, failed uint64)
	// ReloadError is why the last reload failed, "" when it succeeded.
	ReloadError() string
}

// Attach registers the server's and the engine's counters (engine may be
// nil: --no-scripts).
func (m *Metrics) Attach(srv *gateway.Server, engine Scripts) {
	m.srv, m.engine = srv, engine
	m.reg.MustRegister(&collector{m: m})
}

// EnablePprof adds Go's profiler under /debug/pprof/ (CPU, heap,
// goroutines, and the mutex and block profiles, which it switches on: a
// small cost on every contended lock while the process runs). Off unless
// asked for: profiles show internals an operator's metrics port should not.
func (m *Metrics) EnablePprof() {
	m.pprof = true
	runtime.SetMutexProfileFraction(100)
	runtime.SetBlockProfileRate(int(100 * time.Microsecond))
}

// Handler serves /metrics, /healthz, /readyz and /connz.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	if m.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /connz", m.serveConnz)
	mux.HandleFunc("GET /status", m.serveStatus)
	mux.HandleFunc("GET /status.json", m.serveStatusJSON)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := m.ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if m.engine != nil {
			if failed := m.engine.ReloadError(); failed != "" {
				// Still ready: the previous version of the scripts serves.
				fmt.Fprintf(w, "ready; the last reload of the scripts failed, the previous version serves: %s\n", failed)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

func (m *Metrics) ready() error {
	if m.srv == nil || !m.srv.Listening() {
		return errors.New("not listening")
	}
	if m.engine != nil && m.engine.Generation() == 0 {
		return errors.New("scripts not loaded")
	}
	for _, c := range m.checks {
		if err := c.fn(); err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
	}
	return nil
}

// Serve serves Handler on addr until ctx ends. ready, if not nil, receives
// the bound address once listening.
func (m *Metrics) Serve(ctx context.Context, addr string, ready chan<- string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	hs := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 5 * time.Second}
	if ready != nil {
		ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs.Shutdown(sctx) //nolint:errcheck // best effort at exit
	<-errc
	return nil
}

// collector turns the gateway's counters into metrics at scrape time.
type collector struct{ m *Metrics }

var (
	descConnsOpen  = prometheus.NewDesc("samgw_connections_open", "Connections open now.", nil, nil)
	descConnsTotal = prometheus.NewDesc("samgw_connections_total", "Connections accepted since start.", nil, nil)
	descRefused    = prometheus.NewDesc("samgw_connections_refused_total", "Connections turned away (server full, too many from one address).", nil, nil)
	descEvicted    = prometheus.NewDesc("samgw_unauthenticated_evicted_total", "Connections closed before they authenticated, to admit newer ones (--max-unauthenticated).", nil, nil)
	descFrames     = prometheus.NewDesc("samgw_frames_total", "Frames by direction (in, out) and type.", []string{"direction", "type"}, nil)
	descInvalid    = prometheus.NewDesc("samgw_invalid_frames_total", "Frames that did not decode.", nil, nil)
	descBytes      = prometheus.NewDesc("samgw_bytes_total", "Bytes by direction (in, out).", []string{"direction"}, nil)
	descKeepAlive  = prometheus.NewDesc("samgw_keepalive_timeouts_total", "Connections closed for sending nothing within the keep-alive timeout.", nil, nil)
	descSlow       = prometheus.NewDesc("samgw_slow_consumer_closes_total", "Connections closed as slow consumers.", nil, nil)
	descPending    = prometheus.NewDesc("samgw_pending_bytes", "Outbound bytes the connections hold waiting to be written, as counted against --max-pending-bytes.", nil, nil)
	descShed       = prometheus.NewDesc("samgw_outbound_shed_total", "Connections closed as slow consumers to keep the outbound bytes under --max-pending-bytes.", nil, nil)
	descAuthFail   = prometheus.NewDesc("samgw_auth_failures_total", "Failed authentications.", nil, nil)
	descRejected   = prometheus.NewDesc("samgw_rejected_frames_total", "Data frames rejected, by reason (forbidden, bad_signature, replay, rate_limited).", []string{"reason"}, nil)
	descReloads    = prometheus.NewDesc("samgw_script_reloads_total", "Loads of the scripts by result (ok, failed).", []string{"result"}, nil)
	descGeneration = prometheus.NewDesc("samgw_script_generation", "The scripts generation serving now.", nil, nil)
	descReady      = prometheus.NewDesc("samgw_ready", "1 when the named readiness check passes (cluster: NATS reachable).", []string{"check"}, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnsOpen, descConnsTotal, descRefused, descEvicted, descFrames, descInvalid, descBytes,
		descKeepAlive, descSlow, descPending, descShed, descAuthFail, descRejected, descReloads, descGeneration, descReady} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.m.srv.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descConnsOpen, float64(st.ConnectionsOpen))
	counter(descConnsTotal, st.ConnectionsTotal)
	counter(descRefused, st.ConnectionsRefused)
	counter(descEvicted, st.UnauthenticatedEvicted)
	for i, t := range gateway.FrameTypes {
		counter(descFrames, st.FramesIn[i], "in", string(t))
		counter(descFrames, st.FramesOut[i], "out", string(t))
	}
	counter(descInvalid, st.InvalidFrames)
	counter(descBytes, st.BytesIn, "in")
	counter(descBytes, st.BytesOut, "out")
	counter(descKeepAlive, st.KeepAliveTimeouts)
	counter(descSlow, st.SlowConsumers)
	gauge(descPending, float64(st.PendingBytes))
	counter(descShed, st.OutboundShed)
	counter(descAuthFail, st.AuthFailures)
	counter(descRejected, st.Forbidden, "forbidden")
	counter(descRejected, st.BadSignatures, "bad_signature")
	counter(descRejected, st.Replays, "replay")
	counter(descRejected, st.RateLimited, "rate_limited")
	for _, chk := range c.m.checks {
		v := 1.0
		if chk.fn() != nil {
			v = 0
		}
		gauge(descReady, v, chk.name)
	}
	if e := c.m.engine; e != nil {
		ok, failed := e.Reloads()
		counter(descReloads, ok, "ok")
		counter(descReloads, failed, "failed")
		gauge(descGeneration, float64(e.Generation()))
	}
}
