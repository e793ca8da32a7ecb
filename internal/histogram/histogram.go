// Package histogram records latencies in constant memory with relative
// precision, for the load generator and the scenario runner.
package histogram

import (
	"math/bits"
	"time"
)

// subBuckets per power of two: values are kept within 1/16 (about 6%).
const (
	subBits    = 4
	subBuckets = 1 << subBits
)

// Histogram counts latencies in log-linear buckets, as HdrHistogram does:
// constant memory, constant-time record, relative precision (about 6%).
// The zero value is empty and ready; it is not safe for concurrent use.
type Histogram struct {
	counts [64 * subBuckets]uint64
	total  uint64
	max    time.Duration
}

func bucketOf(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < subBuckets {
		return int(v)
	}
	exp := bits.Len64(v) - subBits // ≥ 1
	return exp*subBuckets + int(v>>(exp-1)&(subBuckets-1))
}

// bucketUpper is the largest value of bucket i.
func bucketUpper(i int) time.Duration {
	if i < subBuckets {
		return time.Duration(i)
	}
	exp, sub := i/subBuckets, i%subBuckets
	return time.Duration((uint64(subBuckets+sub+1) << (exp - 1)) - 1)
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	h.counts[bucketOf(d)]++
	h.total++
	h.max = max(h.max, d)
}

// Merge adds the counts of o.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.max = max(h.max, o.max)
}

// Quantile returns (the upper bound of the bucket holding) quantile q, from
// 0 to 1; 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(q*float64(h.total) + 0.5)
	rank = min(max(rank, 1), h.total)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(bucketUpper(i), h.max)
		}
	}
	return h.max
}

// Count returns how many latencies were recorded.
func (h *Histogram) Count() uint64 { return h.total }

// Max returns the largest latency recorded.
func (h *Histogram) Max() time.Duration { return h.max }
