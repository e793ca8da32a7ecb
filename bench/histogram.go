package bench

import (
	"math/bits"
	"time"
)

// subBuckets per power of two: values are kept within 1/16 (about 6%).
const (
	subBits    = 4
	subBuckets = 1 << subBits
)

// histogram counts latencies in log-linear buckets, as HdrHistogram does:
// constant memory, constant-time record, relative precision.
type histogram struct {
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

func (h *histogram) record(d time.Duration) {
	h.counts[bucketOf(d)]++
	h.total++
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.max = max(h.max, o.max)
}

// quantile returns the upper bound of the bucket holding quantile q.
func (h *histogram) quantile(q float64) time.Duration {
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
