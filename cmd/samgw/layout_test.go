package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestLayoutMatchesImports keeps docs/layout.md's arrows true: each row
// names a package and the samgw packages it must never depend on
// (directly or through another), as `go list -deps` sees it.
func TestLayoutMatchesImports(t *testing.T) {
	const module = "github.com/secureagentmessaging/samgw/"
	for _, tc := range []struct {
		pkg   string
		never []string
	}{
		{"protocol", []string{"gateway", "scripting", "cluster", "internal/luabox", "metrics", "bench"}},
		{"gateway", []string{"scripting", "internal/luabox", "cluster", "metrics", "bench", "scripts"}},
		{"scripting", []string{"bench", "cluster", "metrics", "scenario", "cmd/samgw"}},
		{"scenario", []string{"scripting", "bench", "cluster"}},
		{"bench", []string{"gateway", "scripting", "internal/luabox"}},
		{"metrics", []string{"scripting", "cluster", "internal/luabox"}},
		{"cluster", []string{"bench", "metrics", "scenario"}},
		{"scripts", []string{"protocol", "gateway", "scripting"}},
		{"internal/luabox", []string{"gateway", "scripting", "scenario"}},
		{"access", []string{"protocol", "gateway", "scripting", "internal/luabox", "cluster", "delivery"}},
	} {
		t.Run(tc.pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", module+tc.pkg).Output()
			if err != nil {
				t.Fatalf("go list: %v", err)
			}
			deps := strings.Fields(string(out))
			for _, never := range tc.never {
				if slices.Contains(deps, module+never) {
					t.Errorf("%s depends on %s: docs/layout.md says it must not", tc.pkg, never)
				}
			}
		})
	}
}
