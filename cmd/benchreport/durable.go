package main

import (
	"bufio"
	"bytes"
	"fmt"
	"log"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// durableGroup is one table of the -durable mode: Go benchmarks of one
// package run together, once a round, so that each round's ratios compare
// runs that shared the machine's conditions.
type durableGroup struct {
	title     string
	pkg       string
	pattern   string // -bench
	benchtime string
	unit      string      // the figure compared: a ReportMetric unit, or "ops/s" (from ns/op)
	ratios    [][2]string // benchmark pairs whose ratio each round reports: numerator, denominator
}

// durableGroups are the durable delivery measurements: mailboxes against
// non-durable sends and plain JetStream, work queues against nats.go, and
// topic history (appends against plain publishes, recovery alone and a
// herd of 10,000 after a restart).
var durableGroups = []durableGroup{
	{"Mailboxes: a live resuming agent", "./delivery", "^(BenchmarkSendToLive|BenchmarkDeliverLive|BenchmarkJetStreamLoop)$", "20000x", "msgs/s",
		[][2]string{{"DeliverLive", "SendToLive"}, {"DeliverLive", "JetStreamLoop"}}},
	{"Work queues: push → worker → ack, 16 workers", "./delivery", "^(BenchmarkQueueJobs|BenchmarkQueueJobsThreeNodes|BenchmarkJetStreamWorkQueue)$", "20000x", "jobs/s",
		[][2]string{{"QueueJobs", "JetStreamWorkQueue"}, {"QueueJobsThreeNodes", "QueueJobs"}}},
	{"Topic history: appends (one publisher) against plain JetStream publishes", "./delivery", "^BenchmarkHistoryAppend$", "3000x", "ops/s",
		[][2]string{{"HistoryAppend/history", "HistoryAppend/jetstream"}}},
	{"Topic history: recoveries of 5 missed publications, 128 at once", "./delivery", "^BenchmarkHistoryRecover$", "20000x", "ops/s", nil},
	{"Topic history: 10,000 subscribers resubscribe after kill -9 and a restart", "./reliability", "^BenchmarkTopicRecovery$", "1x", "catch-up-ms", nil},
}

// durableReport runs each group rounds times (alternating the groups'
// benchmarks within a round) and returns the tables.
func durableReport(rounds int) string {
	var b strings.Builder
	for _, g := range durableGroups {
		var perRound []map[string]float64
		for range rounds {
			perRound = append(perRound, runGroup(g))
		}
		names := []string{}
		for name := range perRound[0] {
			names = append(names, name)
		}
		slices.Sort(names)
		fmt.Fprintf(&b, "\n%s (%s, -benchtime %s, %d rounds; %s)\n\n| round |", g.title, g.pkg, g.benchtime, rounds, g.unit)
		for _, n := range names {
			fmt.Fprintf(&b, " %s |", n)
		}
		for _, rt := range g.ratios {
			fmt.Fprintf(&b, " %s / %s |", rt[0], rt[1])
		}
		b.WriteString("\n| --- |" + strings.Repeat(" ---: |", len(names)+len(g.ratios)) + "\n")
		ratios := make([][]float64, len(g.ratios))
		for i, res := range perRound {
			fmt.Fprintf(&b, "| %d |", i+1)
			for _, n := range names {
				fmt.Fprintf(&b, " %.0f |", res[n])
			}
			for k, rt := range g.ratios {
				r := res[rt[0]] / res[rt[1]]
				ratios[k] = append(ratios[k], r)
				fmt.Fprintf(&b, " %.2f |", r)
			}
			b.WriteString("\n")
		}
		for k, rt := range g.ratios {
			fmt.Fprintf(&b, "\n%s / %s, median of the rounds: %.2f", rt[0], rt[1], median(ratios[k]))
		}
		if len(g.ratios) > 0 {
			b.WriteString("\n")
		}
	}
	return b.String()
}

// runGroup runs g's benchmarks once and returns each one's figure.
func runGroup(g durableGroup) map[string]float64 {
	cmd := exec.Command("go", "test", g.pkg, "-run", "^$", "-bench", g.pattern, "-benchtime", g.benchtime, "-count", "1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		log.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	res := parseBench(out, g.unit)
	if len(res) == 0 {
		log.Fatalf("%s: no benchmark reported %s\n%s", strings.Join(cmd.Args, " "), g.unit, out)
	}
	return res
}

// parseBench reads `go test -bench` output: for each benchmark line, the
// value of unit (ops/s: 1e9 / ns/op), by the benchmark's name without
// "Benchmark" and the -N suffix.
func parseBench(out []byte, unit string) map[string]float64 {
	res := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i]
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch {
			case f[i+1] == unit:
				res[name] = v
			case unit == "ops/s" && f[i+1] == "ns/op" && v > 0:
				res[name] = 1e9 / v
			}
		}
	}
	return res
}
