package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"gopkg.in/yaml.v3"

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
}

// tokenEntry is what `samgw token` prints for pasting into the file.
type tokenEntry struct {
	Name        string `yaml:"name"`
	TokenSHA256 string `yaml:"token_sha256"`
}

// errEmptyRoutes is returned for a routes key present with no routes.
var errEmptyRoutes = errors.New("routes is present but empty: list the route patterns this identity may use, or remove the key to allow every route")

// loadIdentities reads an identities file: a YAML list of identities, or a
// mapping with an `identities` list. Unknown keys are errors, so a typo in
// `routes` cannot silently allow everything.
func loadIdentities(file string) ([]gateway.Identity, error) {
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--identities: %w", err)
	}
	var entries []identityEntry
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if bytes.Contains(src, []byte("identities:")) {
		var doc struct {
			Identities []identityEntry `yaml:"identities"`
		}
		err = dec.Decode(&doc)
		entries = doc.Identities
	} else {
		err = dec.Decode(&entries)
	}
	if err != nil {
		return nil, fmt.Errorf("--identities %s: %w", file, err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("--identities %s: no identities", file)
	}
	ids := make([]gateway.Identity, len(entries))
	for i, e := range entries {
		ids[i] = gateway.Identity{Name: e.Name, TokenSHA256: e.TokenSHA256, PublicKey: e.PublicKey}
		if ids[i].Routes, err = routesOf(&e.Routes); err != nil {
			return nil, fmt.Errorf("--identities %s: line %d: identity %q: %w", file, e.Routes.Line, e.Name, err)
		}
	}
	return ids, nil
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
