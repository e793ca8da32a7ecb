package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/secureagentmessaging/samgw/internal/testutil"
)

// TestQueueThroughServe: a worker and a producer through samgw serve: the
// job reaches the worker, its ack runs on_job and counts in /metrics.
func TestQueueThroughServe(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "default.lua"), `
function on_data(msg) return {last = store.get("last_job") or ""} end
function on_job(event, job) store.set("last_job", event .. " " .. job.queue .. " " .. job.id .. " " .. job.deliveries) end`)
	writeFile(t, filepath.Join(dir, "work.lua"), `function on_data(msg, conn) return queue.join(conn.id, "tasks", {prefetch = 2}) end`)
	writeFile(t, filepath.Join(dir, "job.lua"), `function on_data(msg) return {id = queue.push("tasks", msg.payload, {id = "t1"}), stats = queue.stats("tasks")} end`)
	addr, log, _ := startServe(t, "--scripts", dir, "--metrics-listen", "127.0.0.1:0")
	metricsAddr := regexp.MustCompile(`msg="Metrics listening" addr=(\S+)`).FindStringSubmatch(log.String())[1]

	dialRaw := func() *agent {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		return &agent{t: t, nc: nc, r: bufio.NewReader(nc)}
	}
	worker, producer := dialRaw(), dialRaw()
	if f := worker.frame(`{"type":"data","id":"w1","route":"work"}`); string(mustJSON(t, f["payload"])) != "true" {
		t.Fatalf("join answered %v", f)
	}
	got := producer.call("job", map[string]any{"text": "summarise"})
	st, _ := got["stats"].(map[string]any)
	if got["id"] != "t1" || st["pending"].(float64)+st["in_flight"].(float64) != 1 || st["dead"] != 0.0 {
		t.Fatalf("push answered %v", got)
	}
	resp, err := http.Get("http://" + metricsAddr + "/connz")
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Connections []struct {
			Queues []string `json:"queues"`
		} `json:"connections"`
	}
	err = json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if err != nil || len(page.Connections) != 2 || fmt.Sprint(page.Connections[0].Queues, page.Connections[1].Queues) != "[tasks] []" {
		t.Fatalf("/connz: %+v %v", page, err)
	}
	job := worker.push()
	if job["job"] != "t1" || job["route"] != "tasks" {
		t.Fatalf("the worker got %v", job)
	}
	if _, err := worker.nc.Write([]byte(`{"type":"ack","payload":{"job":"t1"}}` + "\n")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "on_job", func() bool { return producer.call("", nil)["last"] == "acked tasks t1 1" })
	resp, err = http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `samgw_queue_jobs_total{event="acked"} 1`) {
		t.Fatalf("the scrape has no acked job:\n%s", grepLines(string(body), "samgw_queue"))
	}
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
