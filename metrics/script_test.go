package metrics

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

func TestScriptMetrics(t *testing.T) {
	m := New()
	s := m.Scripts()
	if err := s.Inc("tasks_done", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Inc("tasks_done", 2.5); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("queue_depth", 7); err != nil {
		t.Fatal(err)
	}
	for _, v := range []float64{0.01, 0.2, 3} {
		if err := s.Observe("tool_seconds", v); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		call func() error
		want error
	}{
		{"empty name", func() error { return s.Inc("", 1) }, ErrMetricName},
		{"upper case", func() error { return s.Inc("Tasks", 1) }, ErrMetricName},
		{"leading digit", func() error { return s.Set("1x", 1) }, ErrMetricName},
		{"a dash", func() error { return s.Set("a-b", 1) }, ErrMetricName},
		{"65 characters", func() error { return s.Inc(strings.Repeat("a", 65), 1) }, ErrMetricName},
		{"a megabyte", func() error { return s.Inc(strings.Repeat("a", 1<<20), 1) }, ErrMetricName},
		{"samgw's own reloads", func() error { return s.Inc("reloads", 1) }, ErrMetricName},
		{"samgw's own generation", func() error { return s.Set("generation", 1) }, ErrMetricName},
		{"a gauge colliding with a counter's series", func() error { return s.Set("tasks_done_total", 1) }, ErrMetricName},
		{"counter used as gauge", func() error { return s.Set("tasks_done", 1) }, ErrMetricKind},
		{"gauge used as histogram", func() error { return s.Observe("queue_depth", 1) }, ErrMetricKind},
		{"negative increment", func() error { return s.Inc("tasks_done", -1) }, ErrMetricValue},
		{"NaN increment", func() error { return s.Inc("tasks_done", math.NaN()) }, ErrMetricValue},
		{"NaN gauge", func() error { return s.Set("queue_depth", math.NaN()) }, ErrMetricValue},
		{"NaN observation", func() error { return s.Observe("tool_seconds", math.NaN()) }, ErrMetricValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	_, scrape := get(t, serveMetrics(t, m)+"/metrics")
	if v := value(t, scrape, "samgw_script_tasks_done_total"); v != 3.5 {
		t.Fatalf("counter %v, want 3.5", v)
	}
	if v := value(t, scrape, "samgw_script_queue_depth"); v != 7 {
		t.Fatalf("gauge %v, want 7", v)
	}
	if v := value(t, scrape, "samgw_script_tool_seconds_count"); v != 3 {
		t.Fatalf("histogram count %v, want 3", v)
	}
	if strings.Contains(scrape, "samgw_script_tasks_done_total_total") || strings.Contains(scrape, "aaaa") {
		t.Fatalf("refused names reached the scrape:\n%s", scrape)
	}
}

func TestScriptMetricsAreBounded(t *testing.T) {
	s := New().Scripts()
	for i := range MaxScriptMetrics {
		if err := s.Inc(fmt.Sprintf("m%d", i), 1); err != nil {
			t.Fatalf("name %d: %v", i, err)
		}
	}
	for i := range 1000 { // a script that names metrics after its input
		if err := s.Inc(fmt.Sprintf("user_%d", i), 1); !errors.Is(err, ErrTooManyMetrics) {
			t.Fatalf("name %d past the bound: %v", MaxScriptMetrics+i, err)
		}
	}
	if err := s.Inc("m7", 1); err != nil {
		t.Fatalf("an existing name past the bound: %v", err)
	}
	if n := len(s.metrics); n != MaxScriptMetrics {
		t.Fatalf("%d metrics kept, want %d", n, MaxScriptMetrics)
	}
}
