// Package scripting runs the Lua side of samgw on gopher-lua.
//
//   - Engine implements gateway.Handler: each data message goes to the
//     on_data function of its route's file (DIR/<route>.lua, default.lua
//     without a route); on_connect and on_close of default.lua see
//     connections come and go.
//   - Files are compiled once per generation; a generation keeps a bounded
//     pool of ready Lua states. Reload (on a file change through Watch, or
//     on demand) builds a new generation and swaps it in atomically; a
//     generation that fails to load never replaces a working one.
//   - Scripts run sandboxed (no io, os.execute, debug, file loading) and
//     each call under a deadline; a state whose call timed out is thrown
//     away.
//   - Payloads go from JSON straight to Lua tables and back, without a detour
//     through encoding/json; Store is the shared key-value store.
package scripting
