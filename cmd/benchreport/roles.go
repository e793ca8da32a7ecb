package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// rolesToken is the bench identity's token in the roles measurement.
const rolesToken = "bench-roles-token"

// rolesFiles writes two identities files for the same bench identity:
// without roles, and with 100 roles of 10 patterns each (1,000 patterns;
// routes, publish and subscribe), 64 of them the identity's, the one that
// grants the echo's route among them.
func rolesFiles(dir string) (plain, withRoles string) {
	sum := sha256.Sum256([]byte(rolesToken))
	entry := "  - name: bench\n    token_sha256: " + hex.EncodeToString(sum[:]) + "\n"
	plain = filepath.Join(dir, "identities-plain.yaml")
	write(plain, "identities:\n"+entry)
	var b strings.Builder
	b.WriteString("roles:\n")
	for r := range 100 {
		fmt.Fprintf(&b, "  role%d:\n    routes: [", r)
		for p := range 4 {
			fmt.Fprintf(&b, "\"svc%d.op%d\", \"agents.%d.*.op%d\", ", r, p, r, p)
		}
		if r == 63 {
			b.WriteString(`"default", `)
		}
		fmt.Fprintf(&b, "\"r%d.>\"]\n    topics: { publish: [\"tasks.%d.>\"], subscribe: [\"results.%d.*\"] }\n", r, r, r)
	}
	b.WriteString("identities:\n" + entry + "    roles: [")
	for r := range 64 {
		if r > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "role%d", r)
	}
	b.WriteString("]\n")
	withRoles = filepath.Join(dir, "identities-roles.yaml")
	write(withRoles, b.String())
	return plain, withRoles
}

func write(file, text string) {
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		log.Fatal(err)
	}
}

// roles measures the Lua echo at 64 × 16 with authentication, without and
// with roles, alternating, and reports what the checks cost.
func (r *reporter) roles(dir string, duration time.Duration) string {
	plain, withRoles := rolesFiles(dir)
	servers := []server{
		{"Lua echo, identities without roles", r.startSamgw(r.bin, "--identities", plain)},
		{"Lua echo, 100 roles, 1,000 patterns", r.startSamgw(r.bin, "--identities", withRoles)},
	}
	r.token = rolesToken
	c := config{64, 16}
	res := r.alternate(servers, c, duration)
	var b strings.Builder
	fmt.Fprintf(&b, "| server (64 connections × 16 in flight, %d s, %d rounds) | frames/s (median) | p99 ms |\n| --- | ---: | ---: |\n", int(duration.Seconds()), r.rounds)
	for _, s := range servers {
		fmt.Fprintf(&b, "| %s | %.0f | %.2f |\n", s.name, res[s.name].FramesPerSec, res[s.name].P99)
	}
	ratio := r.roundRatio(servers[1].name, servers[0].name, c)
	fmt.Fprintf(&b, "\nWith roles / without, median of the rounds' ratios: %.3f (cost %.1f%%)\n", ratio, (1-ratio)*100)
	return b.String()
}
