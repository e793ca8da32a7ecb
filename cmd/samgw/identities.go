package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/secureagentmessaging/samgw/access"
	"github.com/secureagentmessaging/samgw/gateway"
)

// identityEntry is one entry of the --identities file: the file format
// lives here, gateway.Identity knows nothing of YAML.
type identityEntry struct {
	Name        string `yaml:"name"`
	TokenSHA256 string `yaml:"token_sha256"`
	// Routes is kept as a node to tell an absent key (every route) from a
	// present but empty or null one, which is an error: a list that was
	// meant to restrict must never silently allow everything.
	Routes    yaml.Node `yaml:"routes"`
	PublicKey string    `yaml:"public_key"`
	Roles     yaml.Node `yaml:"roles"` // nodes keep their lines for errors
}

// tokenEntry is what `samgw token` prints for pasting into the file.
type tokenEntry struct {
	Name        string `yaml:"name"`
	TokenSHA256 string `yaml:"token_sha256"`
}

// identitiesFile is a loaded --identities file.
type identitiesFile struct {
	Identities []gateway.Identity
	Roles      map[string]access.Role // nil: the file has no roles section
	Digest     string                 // the file's SHA-256 (hex): logs show its start, to compare nodes
}

// errEmptyRoutes is returned for a routes key present with no routes.
var errEmptyRoutes = errors.New("routes is present but empty: list the route patterns this identity may use, or remove the key to allow every route")

// maxIdentitiesFile bounds the file read: it is parsed whole.
const maxIdentitiesFile = 16 << 20

// roleName is what a role may be called.
var roleName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// fileError is an error at a line of the identities file.
func fileError(file string, line int, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %w", file, line, fmt.Errorf(format, args...))
}

// loadIdentities reads an identities file: a YAML list of identities, or a
// mapping with an `identities` list and, optionally, a `roles` map.
// Unknown keys are errors, so a typo in `routes` cannot silently allow
// everything; every error says file:line.
func loadIdentities(file string) (*identitiesFile, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("--identities: %w", err)
	}
	src, err := io.ReadAll(io.LimitReader(f, maxIdentitiesFile+1))
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("--identities: %w", err)
	}
	if len(src) > maxIdentitiesFile {
		return nil, fmt.Errorf("--identities %s: larger than %d MiB", file, maxIdentitiesFile>>20)
	}
	var entries []identityEntry
	var rolesNode yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if bytes.Contains(src, []byte("identities:")) {
		var doc struct {
			Roles      yaml.Node       `yaml:"roles"`
			Identities []identityEntry `yaml:"identities"`
		}
		err = dec.Decode(&doc)
		entries, rolesNode = doc.Identities, doc.Roles
	} else {
		err = dec.Decode(&entries)
	}
	if err != nil {
		return nil, fmt.Errorf("--identities %s: %w", file, err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("--identities %s: no identities", file)
	}
	out := &identitiesFile{Identities: make([]gateway.Identity, len(entries))}
	sum := sha256.Sum256(src)
	out.Digest = hex.EncodeToString(sum[:])
	var targets []sendTarget
	if rolesNode.Kind != 0 {
		if out.Roles, targets, err = parseRoles(file, &rolesNode); err != nil {
			return nil, err
		}
	}
	members := make(map[string][]string, len(entries))
	for i, e := range entries {
		id := gateway.Identity{Name: e.Name, TokenSHA256: e.TokenSHA256, PublicKey: e.PublicKey}
		if id.Routes, err = routesOf(&e.Routes); err != nil {
			return nil, fmt.Errorf("%s:%d: identity %q: %w", file, e.Routes.Line, e.Name, err)
		}
		if id.Roles, err = identityRoles(file, &e, out.Roles); err != nil {
			return nil, err
		}
		out.Identities[i] = id
		members[e.Name] = id.Roles
	}
	for _, t := range targets {
		if err := access.CheckTarget(t.name, out.Roles, members); err != nil {
			return nil, fileError(file, t.line, "role %q: send_to: %v", t.role, err)
		}
	}
	if out.Roles != nil {
		// What is left to refuse is the size of the whole (access bounds).
		if _, err := access.Compile(out.Roles, members); err != nil {
			return nil, fmt.Errorf("--identities %s: %w", file, err)
		}
	}
	return out, nil
}

// identityRoles reads an identity's roles list: every one defined, none
// twice.
func identityRoles(file string, e *identityEntry, roles map[string]access.Role) ([]string, error) {
	if e.Roles.Kind == 0 {
		return nil, nil
	}
	if roles == nil {
		return nil, fileError(file, e.Roles.Line, "identity %q has roles, but the file has no roles section", e.Name)
	}
	names, lines, err := stringList(file, &e.Roles, "roles")
	if err != nil {
		return nil, err
	}
	if len(names) > access.MaxRolesPerIdentity {
		return nil, fileError(file, e.Roles.Line, "identity %q: %d roles, at most %d", e.Name, len(names), access.MaxRolesPerIdentity)
	}
	for i, r := range names {
		if _, ok := roles[r]; !ok {
			return nil, fileError(file, lines[i], "identity %q: unknown role %q", e.Name, r)
		}
	}
	return names, nil
}

// sendTarget is a send_to entry, checked once every identity is known.
type sendTarget struct {
	role, name string
	line       int
}

// parseRoles reads the roles map: role name → routes, topics (publish,
// subscribe), send_to and queues (push, join), each a list; anything else
// is an error.
func parseRoles(file string, n *yaml.Node) (map[string]access.Role, []sendTarget, error) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return map[string]access.Role{}, nil, nil // "roles:" with nothing: roles on, none granted
	}
	if n.Kind != yaml.MappingNode {
		return nil, nil, fileError(file, n.Line, "roles: want a map of role names to what each grants")
	}
	if len(n.Content)/2 > access.MaxRoles {
		return nil, nil, fileError(file, n.Line, "roles: %d roles, at most %d", len(n.Content)/2, access.MaxRoles)
	}
	roles := make(map[string]access.Role, len(n.Content)/2)
	var targets []sendTarget
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		name := key.Value
		if key.Kind != yaml.ScalarNode || !roleName.MatchString(name) {
			return nil, nil, fileError(file, key.Line, "role name %q: want 1 to 64 of [A-Za-z0-9_.-]", clipName(name))
		}
		if _, dup := roles[name]; dup {
			return nil, nil, fileError(file, key.Line, "role %q is defined twice", name)
		}
		var r access.Role
		role := fmt.Sprintf("role %q", name)
		err := eachKey(file, val, role, func(k string, v *yaml.Node) error {
			switch k {
			case "routes":
				return patternList(file, v, role+": routes", &r.Routes)
			case "topics":
				return patternLists(file, v, role+": topics", []namedList{{"publish", &r.Publish}, {"subscribe", &r.Subscribe}})
			case "queues":
				return patternLists(file, v, role+": queues", []namedList{{"push", &r.Push}, {"join", &r.Join}})
			case "send_to":
				list, lines, err := stringList(file, v, role+": send_to")
				if err != nil {
					return err
				}
				for j, t := range list {
					targets = append(targets, sendTarget{role: name, name: t, line: lines[j]})
				}
				r.SendTo = list
				return nil
			}
			return fileError(file, v.Line, "role %q: unknown key %q (want routes, topics, send_to, queues)", name, clipName(k))
		})
		if err != nil {
			return nil, nil, err
		}
		roles[name] = r
	}
	return roles, targets, nil
}

// namedList is a key of a map of pattern lists and where its list goes.
type namedList struct {
	key string
	dst *[]string
}

// patternLists reads a map whose keys are those of lists, each a list of
// patterns; another key is an error.
func patternLists(file string, n *yaml.Node, what string, lists []namedList) error {
	return eachKey(file, n, what, func(k string, v *yaml.Node) error {
		var keys []string
		for _, l := range lists {
			if l.key == k {
				return patternList(file, v, what+"."+k, l.dst)
			}
			keys = append(keys, l.key)
		}
		return fileError(file, v.Line, "%s: unknown key %q (want %s)", what, clipName(k), strings.Join(keys, ", "))
	})
}

// eachKey calls f for each key of a mapping node (null: none), refusing
// a key given twice.
func eachKey(file string, n *yaml.Node, what string, f func(key string, val *yaml.Node) error) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fileError(file, n.Line, "%s: want a map", what)
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i].Value
		if seen[k] {
			return fileError(file, n.Content[i].Line, "%s: %q is given twice", what, clipName(k))
		}
		seen[k] = true
		if err := f(k, n.Content[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// stringList reads a sequence of strings, none twice, with their lines.
func stringList(file string, n *yaml.Node, what string) ([]string, []int, error) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return []string{}, nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, nil, fileError(file, n.Line, "%s: want a list", what)
	}
	if len(n.Content) > access.MaxPatternsPerList {
		return nil, nil, fileError(file, n.Line, "%s: %d entries, at most %d", what, len(n.Content), access.MaxPatternsPerList)
	}
	list, lines := make([]string, 0, len(n.Content)), make([]int, 0, len(n.Content))
	seen := make(map[string]bool, len(n.Content))
	for _, item := range n.Content {
		if item.Kind != yaml.ScalarNode || item.Tag != "!!str" {
			return nil, nil, fileError(file, item.Line, "%s: want strings", what)
		}
		if seen[item.Value] {
			return nil, nil, fileError(file, item.Line, "%s: %q is listed twice", what, clipName(item.Value))
		}
		seen[item.Value] = true
		list, lines = append(list, item.Value), append(lines, item.Line)
	}
	return list, lines, nil
}

// patternList reads a list of route or topic patterns into dst.
func patternList(file string, n *yaml.Node, what string, dst *[]string) error {
	list, lines, err := stringList(file, n, what)
	if err != nil {
		return err
	}
	for i, p := range list {
		if err := access.CheckPattern(p); err != nil {
			return fileError(file, lines[i], "%s: %v", what, err)
		}
	}
	*dst = list
	return nil
}

// clipName shortens a name quoted in an error.
func clipName(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:64] + "…"
}

// routesOf decodes a routes node: nil when the key is absent.
func routesOf(n *yaml.Node) ([]string, error) {
	if n.Kind == 0 {
		return nil, nil
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, errEmptyRoutes
	}
	var routes []string
	if err := n.Decode(&routes); err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	if len(routes) == 0 {
		return nil, errEmptyRoutes
	}
	return routes, nil
}
