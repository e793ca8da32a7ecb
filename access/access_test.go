package access

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestCheckPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		ok      bool
	}{
		{"tasks", true},
		{"tasks.*", true},
		{"tasks.>", true},
		{"*", true},
		{">", true},
		{"*.b.>", true},
		{"a-b_C9.x", true},
		{"", false},
		{".", false},
		{"tasks.", false},
		{".tasks", false},
		{"a..b", false},
		{"tasks.>.x", false},
		{"tasks.a*", false},
		{"tasks.>x", false},
		{"tas ks", false},
		{"tasks/a", false},
		{strings.Repeat("a.", MaxPatternTokens-1) + "a", true},
		{strings.Repeat("a.", MaxPatternTokens) + "a", false},
		{strings.Repeat("a", MaxPatternLen), true},
		{strings.Repeat("a", MaxPatternLen+1), false},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			err := CheckPattern(tc.pattern)
			if (err == nil) != tc.ok {
				t.Fatalf("CheckPattern(%q) = %v, want ok %v", tc.pattern, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidPattern) {
				t.Fatalf("error %v does not wrap ErrInvalidPattern", err)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, subject string
		want             bool
	}{
		{"tasks", "tasks", true},
		{"tasks", "tasks.a", false},
		{"tasks.>", "tasks", false},
		{"tasks.>", "tasks.a", true},
		{"tasks.>", "tasks.a.b.c", true},
		{"tasks.*", "tasks.a", true},
		{"tasks.*", "tasks.a.b", false},
		{"tasks.*", "tasks", false},
		{"*", "tasks", true},
		{"*", "tasks.a", false},
		{">", "a.b.c", true},
		{"*.done", "job1.done", true},
		{"*.done", "job1.done.x", false},
		{"*.done", "done", false},
		{"a.*.c", "a.b.c", true},
		{"a.*.c", "a.b.d", false},
		{"results.*", "results", false},
		{"Tasks.a", "tasks.a", false},
	} {
		t.Run(tc.pattern+"~"+tc.subject, func(t *testing.T) {
			var s set
			s.add(tc.pattern)
			if got := s.match(tc.subject); got != tc.want {
				t.Fatalf("%q matches %q = %v, want %v", tc.pattern, tc.subject, got, tc.want)
			}
		})
	}
}

// TestMatchBranches checks that a literal branch that fails deeper does
// not hide a "*" branch that matches, and the other way round.
func TestMatchBranches(t *testing.T) {
	var s set
	for _, p := range []string{"a.b.x", "a.*.y", "*.b.z", "q.>"} {
		s.add(p)
	}
	for subject, want := range map[string]bool{
		"a.b.x": true, "a.b.y": true, "a.c.y": true, "c.b.z": true, "a.b.z": true,
		"a.c.x": false, "c.c.z": false, "q": false, "q.r": true,
	} {
		if got := s.match(subject); got != want {
			t.Errorf("match(%q) = %v, want %v", subject, got, want)
		}
	}
}

// exampleRoles is the coordinator and worker example of docs/security.md.
func exampleRoles() (map[string]Role, map[string][]string) {
	roles := map[string]Role{
		"coordinator": {Routes: []string{"post_task", "status"}, Publish: []string{"tasks.>"}, Subscribe: []string{"results.*"}, SendTo: []string{"role:worker"}},
		"worker":      {Routes: []string{"report"}, Subscribe: []string{"tasks.*"}, Publish: []string{"results.*"}, SendTo: []string{"coord"}},
	}
	ids := map[string][]string{"coord": {"coordinator"}, "w1": {"worker"}, "w2": {"worker"}, "nobody": nil}
	return roles, ids
}

func TestGrants(t *testing.T) {
	p, err := Compile(exampleRoles())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		identity string
		kind     Kind
		target   string
		want     bool
	}{
		{"coord", KindRoute, "post_task", true},
		{"coord", KindRoute, "report", false},
		{"coord", KindRoute, "", false}, // "default"
		{"coord", KindPublish, "tasks.a.b", true},
		{"coord", KindPublish, "tasks", false},
		{"coord", KindPublish, "results.a", false},
		{"coord", KindSubscribe, "results.a", true},
		{"coord", KindSubscribe, "results.a.b", false},
		{"coord", KindSendTo, "w1", true},
		{"coord", KindSendTo, "w2", true},
		{"coord", KindSendTo, "coord", false},
		{"w1", KindRoute, "report", true},
		{"w1", KindRoute, "post_task", false},
		{"w1", KindSubscribe, "tasks.a", true},
		{"w1", KindSubscribe, "tasks.a.b", false},
		{"w1", KindPublish, "results.t1", true},
		{"w1", KindPublish, "tasks.t1", false},
		{"w1", KindSendTo, "coord", true},
		{"w1", KindSendTo, "w2", false},
		{"nobody", KindRoute, "report", false},
		{"nobody", KindPublish, "results.t1", false},
		{"nobody", KindSubscribe, "tasks.a", false},
		{"nobody", KindSendTo, "coord", false},
		{"stranger", KindRoute, "report", false},
		{"w1", Kind("delete"), "x", false},
	} {
		t.Run(fmt.Sprintf("%s/%s/%s", tc.identity, tc.kind, tc.target), func(t *testing.T) {
			if got := p.Grant(tc.identity).Allows(tc.kind, tc.target); got != tc.want {
				t.Fatalf("Allows = %v, want %v", got, tc.want)
			}
		})
	}
	if p.Grant("w1") != p.Grant("w2") {
		t.Error("identities with the same roles do not share one grant")
	}
	if got := p.Grant("coord").Roles(); len(got) != 1 || got[0] != "coordinator" {
		t.Errorf("Roles = %v", got)
	}
}

func TestCompileRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(roles map[string]Role, ids map[string][]string)
		want  error
		quote string
	}{
		{"unknown role of an identity", func(r map[string]Role, ids map[string][]string) { ids["w1"] = []string{"wroker"} }, ErrUnknownRole, `"wroker"`},
		{"role twice in an identity", func(r map[string]Role, ids map[string][]string) { ids["w1"] = []string{"worker", "worker"} }, ErrDuplicate, `"worker"`},
		{"unknown role in send_to", func(r map[string]Role, ids map[string][]string) {
			r["worker"] = Role{SendTo: []string{"role:boss"}}
		}, ErrUnknownRole, `"boss"`},
		{"unknown identity in send_to", func(r map[string]Role, ids map[string][]string) {
			r["worker"] = Role{SendTo: []string{"cord"}}
		}, ErrUnknownTarget, `"cord"`},
		{"invalid pattern", func(r map[string]Role, ids map[string][]string) {
			r["worker"] = Role{Publish: []string{"results.>.x"}}
		}, ErrInvalidPattern, `topics.publish`},
		{"duplicate pattern", func(r map[string]Role, ids map[string][]string) {
			r["worker"] = Role{Routes: []string{"report", "report"}}
		}, ErrDuplicate, `routes`},
		{"too many roles of an identity", func(r map[string]Role, ids map[string][]string) {
			for i := range MaxRolesPerIdentity + 1 {
				name := fmt.Sprint("r", i)
				r[name] = Role{}
				ids["w1"] = append(ids["w1"], name)
			}
		}, ErrTooLarge, `"w1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			roles, ids := exampleRoles()
			tc.edit(roles, ids)
			_, err := Compile(roles, ids)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Compile = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.quote) {
				t.Fatalf("error %q does not say %s", err, tc.quote)
			}
		})
	}
}

// TestHostilePolicies: the largest policies a file may hold compile in
// bounded time, or are refused, never taking memory without limit.
func TestHostilePolicies(t *testing.T) {
	t.Run("10,000 roles, each identity a different set", func(t *testing.T) {
		roles := make(map[string]Role, MaxRoles)
		ids := make(map[string][]string)
		for i := range MaxRoles {
			name := fmt.Sprint("role", i)
			roles[name] = Role{Routes: []string{fmt.Sprintf("r%d", i)}, Publish: []string{fmt.Sprintf("t.%d.>", i)}, Subscribe: []string{"t.*." + fmt.Sprint(i)}}
		}
		for i := range 1000 {
			for j := range 10 {
				ids[fmt.Sprint("id", i)] = append(ids[fmt.Sprint("id", i)], fmt.Sprint("role", (i*10+j)%MaxRoles))
			}
		}
		start := time.Now()
		p, err := Compile(roles, ids)
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Fatalf("compiling took %v", took)
		}
		if !p.Grant("id3").Allows(KindRoute, "r35") || p.Grant("id3").Allows(KindRoute, "r40") {
			t.Fatal("grants do not follow the roles")
		}
		roles["role10001"] = Role{}
		if _, err := Compile(roles, nil); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%d roles: %v, want ErrTooLarge", len(roles), err)
		}
	})
	t.Run("grants beyond the node bound", func(t *testing.T) {
		roles := map[string]Role{}
		ids := map[string][]string{}
		// 64 roles of 10,000 deep distinct patterns: 20 nodes each.
		for i := range MaxRolesPerIdentity {
			var pats []string
			for j := range MaxPatternsPerList {
				pats = append(pats, fmt.Sprintf("x%d.y%d.%s", i, j, strings.Repeat("z.", 17)+"w"))
			}
			name := fmt.Sprint("big", i)
			roles[name] = Role{Publish: pats}
			ids["greedy"] = append(ids["greedy"], name)
		}
		_, err := Compile(roles, ids)
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Compile = %v, want ErrTooLarge", err)
		}
	})
}

// BenchmarkAllows: one check against a grant of 64 roles with 10 patterns
// each (what a data frame's route check costs).
func BenchmarkAllows(b *testing.B) {
	roles := map[string]Role{}
	var mine []string
	for r := range 100 {
		var routes []string
		for p := range 4 {
			routes = append(routes, fmt.Sprintf("svc%d.op%d", r, p), fmt.Sprintf("agents.%d.*.op%d", r, p))
		}
		routes = append(routes, fmt.Sprintf("r%d.>", r))
		roles[fmt.Sprint("role", r)] = Role{Routes: routes, Publish: []string{fmt.Sprintf("tasks.%d.>", r)}, Subscribe: []string{fmt.Sprintf("results.%d.*", r)}}
		if r < 64 {
			mine = append(mine, fmt.Sprint("role", r))
		}
	}
	p, err := Compile(roles, map[string][]string{"bench": mine})
	if err != nil {
		b.Fatal(err)
	}
	g := p.Grant("bench")
	for _, tc := range []struct{ name, route string }{{"literal", "svc40.op3"}, {"wildcard", "agents.40.x.op3"}, {"refused", "nope.op"}} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				g.Allows(KindRoute, tc.route)
			}
		})
	}
}

func TestMatchPattern(t *testing.T) {
	tests := []struct {
		pattern, subject string
		want             bool
	}{
		{"news", "news", true},
		{"news", "news.eu", false},
		{"news.*", "news.eu", true},
		{"news.*", "news", false},
		{"news.*", "news.eu.fr", false},
		{"news.>", "news.eu", true},
		{"news.>", "news.eu.fr", true},
		{"news.>", "news", false},
		{">", "a", true},
		{">", "a.b.c", true},
		{"*.eu", "news.eu", true},
		{"*.eu", "news.us", false},
		{"*", "a", true},
		{"*", "a.b", false},
		{"a.*.c", "a.b.c", true},
		{"a.*.c", "a.b.d", false},
		{"news.eu", "news.e", false},
		{"news.e", "news.eu", false},
	}
	for _, tt := range tests {
		if got := Match(tt.pattern, tt.subject); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.subject, got, tt.want)
		}
	}
}
