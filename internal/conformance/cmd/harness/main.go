// Command harness runs the conformance scenario's servers for the
// TypeScript and Python test suites. It prints the Fixture as one JSON line
// on stdout, then obeys one JSON command per line on stdin:
//
//	{"stop":"plain"}  → {"stopped":"plain"}   (graceful: clients get close "server shutdown")
//	{"start":"plain"} → {"started":"plain"}   (same port, accepting)
//
// A failed command answers {"error":"…"}. At the end of stdin (the test
// runner exited or closed it) every server is stopped and the harness
// exits, so nothing outlives the tests.
//
// Usage, from the module root: go run ./internal/conformance/cmd/harness
// ($SAMGW_BIN names a prebuilt samgw; otherwise one is built).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/secureagentmessaging/samgw/internal/conformance"
)

func main() {
	root := flag.String("root", ".", "the samgw module root")
	flag.Parse()
	if err := run(*root); err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(1)
	}
}

func run(root string) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "samgw-conformance-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := conformance.BuildSamgw(ctx, root, dir)
	if err != nil {
		return err
	}
	scripts, err := filepath.Abs(filepath.Join(root, "internal", "conformance", "scripts"))
	if err != nil {
		return err
	}
	servers, err := conformance.Start(ctx, bin, dir, scripts, os.Stderr)
	if err != nil {
		return err
	}
	defer servers.Close()
	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(servers.Fixture); err != nil {
		return err
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var cmd struct{ Stop, Start string }
		if err := json.Unmarshal(in.Bytes(), &cmd); err != nil {
			out.Encode(map[string]string{"error": err.Error()}) //nolint:errcheck // stdout gone: stdin ends next
			continue
		}
		switch {
		case cmd.Stop != "":
			err = servers.StopServer(cmd.Stop)
			reply(out, "stopped", cmd.Stop, err)
		case cmd.Start != "":
			err = servers.StartServer(ctx, cmd.Start)
			reply(out, "started", cmd.Start, err)
		default:
			reply(out, "", "", fmt.Errorf("unknown command %s", in.Text()))
		}
	}
	return nil
}

func reply(out *json.Encoder, done, name string, err error) {
	if err != nil {
		out.Encode(map[string]string{"error": err.Error()}) //nolint:errcheck // stdout gone: stdin ends next
		return
	}
	out.Encode(map[string]string{done: name}) //nolint:errcheck // stdout gone: stdin ends next
}
