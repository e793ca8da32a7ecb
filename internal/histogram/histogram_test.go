package histogram

import (
	"testing"
	"time"
)

func TestQuantiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.9, 900 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, time.Millisecond}}
	for _, tt := range tests {
		got := h.Quantile(tt.q)
		if got < tt.want || float64(got) > float64(tt.want)*1.07 {
			t.Errorf("quantile(%v) = %v, want %v within 7%%", tt.q, got, tt.want)
		}
	}
	if h.max != time.Millisecond || h.total != 1000 {
		t.Fatalf("max %v total %d", h.max, h.total)
	}
	for _, d := range []time.Duration{0, 1, 15, 16, 17, 1000, time.Hour} {
		if up := bucketUpper(bucketOf(d)); up < d {
			t.Errorf("value %v lands in a bucket ending at %v", d, up)
		}
	}
	var empty Histogram
	if empty.Quantile(0.5) != 0 {
		t.Fatal("empty Histogram")
	}
}
