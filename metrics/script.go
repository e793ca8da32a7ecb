package metrics

import (
	"errors"
	"fmt"
	"regexp"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// MaxScriptMetrics bounds how many names the scripts may define: a script
// that makes names from its input cannot grow the registry without end.
const MaxScriptMetrics = 100

// Errors of the script metrics, to test with errors.Is.
var (
	// ErrMetricName: not 1 to 64 characters of [a-z0-9_] starting with a
	// letter, or a name samgw uses itself.
	ErrMetricName = errors.New("metrics: invalid metric name")
	// ErrTooManyMetrics: MaxScriptMetrics names exist already.
	ErrTooManyMetrics = errors.New("metrics: too many script metrics")
	// ErrMetricKind: the name is already a metric of another kind.
	ErrMetricKind = errors.New("metrics: metric used as another kind")
	// ErrMetricValue: a counter increment below zero, or a value that is
	// not a number.
	ErrMetricValue = errors.New("metrics: invalid metric value")
)

var metricName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// reservedScriptNames would collide with samgw's own samgw_script_* series.
var reservedScriptNames = map[string]bool{"reloads": true, "generation": true}

// ScriptMetrics are the metrics the Lua scripts define (metrics.inc, set,
// observe): samgw_script_<name>_total counters, samgw_script_<name> gauges
// and samgw_script_<name> histograms. A name's kind is fixed by its first
// use. Safe for concurrent use.
type ScriptMetrics struct {
	reg *prometheus.Registry

	mu      sync.Mutex
	metrics map[string]scriptMetric
}

type scriptMetric struct {
	kind      string // "counter", "gauge" or "histogram"
	counter   prometheus.Counter
	gauge     prometheus.Gauge
	histogram prometheus.Histogram
}

// Scripts returns the registry's script metrics.
func (m *Metrics) Scripts() *ScriptMetrics {
	m.scriptsOnce.Do(func() { m.scripts = &ScriptMetrics{reg: m.reg, metrics: map[string]scriptMetric{}} })
	return m.scripts
}

// Inc adds n (at least 0) to the counter name.
func (s *ScriptMetrics) Inc(name string, n float64) error {
	if !(n >= 0) || n > 1e300 {
		return fmt.Errorf("%w: a counter goes up: %v", ErrMetricValue, n)
	}
	sm, err := s.get(name, "counter")
	if err == nil {
		sm.counter.Add(n)
	}
	return err
}

// Set sets the gauge name.
func (s *ScriptMetrics) Set(name string, v float64) error {
	if v != v {
		return fmt.Errorf("%w: NaN", ErrMetricValue)
	}
	sm, err := s.get(name, "gauge")
	if err == nil {
		sm.gauge.Set(v)
	}
	return err
}

// Observe records v in the histogram name.
func (s *ScriptMetrics) Observe(name string, v float64) error {
	if v != v {
		return fmt.Errorf("%w: NaN", ErrMetricValue)
	}
	sm, err := s.get(name, "histogram")
	if err == nil {
		sm.histogram.Observe(v)
	}
	return err
}

// get returns the metric name of kind, making it on first use.
func (s *ScriptMetrics) get(name, kind string) (scriptMetric, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sm, ok := s.metrics[name]; ok {
		if sm.kind != kind {
			return sm, fmt.Errorf("%w: %q is a %s", ErrMetricKind, name, sm.kind)
		}
		return sm, nil
	}
	if !metricName.MatchString(name) || reservedScriptNames[name] {
		return scriptMetric{}, fmt.Errorf("%w: %q: want 1 to 64 characters of a-z, 0-9 and _, starting with a letter (not reloads or generation)", ErrMetricName, truncateName(name))
	}
	if len(s.metrics) >= MaxScriptMetrics {
		return scriptMetric{}, fmt.Errorf("%w: %d names exist", ErrTooManyMetrics, MaxScriptMetrics)
	}
	sm := scriptMetric{kind: kind}
	var c prometheus.Collector
	help := "Defined by the Lua scripts (metrics." + map[string]string{"counter": "inc", "gauge": "set", "histogram": "observe"}[kind] + ")."
	switch kind {
	case "counter":
		sm.counter = prometheus.NewCounter(prometheus.CounterOpts{Name: "samgw_script_" + name + "_total", Help: help})
		c = sm.counter
	case "gauge":
		sm.gauge = prometheus.NewGauge(prometheus.GaugeOpts{Name: "samgw_script_" + name, Help: help})
		c = sm.gauge
	default:
		sm.histogram = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "samgw_script_" + name, Help: help})
		c = sm.histogram
	}
	if err := s.reg.Register(c); err != nil {
		// A gauge "x_total" and a counter "x" would share a series name.
		return scriptMetric{}, fmt.Errorf("%w: %q collides with another metric", ErrMetricName, name)
	}
	s.metrics[name] = sm
	return sm, nil
}

func truncateName(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
