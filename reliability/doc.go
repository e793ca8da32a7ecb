// Package reliability holds the tests that hold samgw to its promises on a
// bad day: ten thousand connections at once, a soak of mixed traffic while
// the scripts are rewritten every second, and restarts under traffic. It has
// no code of its own.
//
// The bounded versions run with `go test ./...` (and so in CI); longer runs:
//
//	SAMGW_SOAK=5m go test ./reliability -run Soak -v -timeout 20m
package reliability
