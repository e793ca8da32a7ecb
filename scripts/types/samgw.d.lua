---@meta samgw
-- Type stubs of the samgw handler API for LuaLS / EmmyLua: print them with
-- `samgw lua-types > samgw.d.lua` and point your editor's workspace.library
-- at the file (see docs/handlers.md, "Editor support"). A test keeps them in step with the API.

---@class samgw.Message
---@field type "data"
---@field id string|nil the message id; a reply carries it
---@field route string|nil the route ("default" when absent)
---@field timestamp integer|nil the sender's clock, Unix milliseconds
---@field payload any the payload as Lua values (JSON null is json.null)

---@class samgw.Conn
---@field id string the connection id (with the node prefix in a cluster)
---@field remote string the peer's address
---@field transport "tcp"|"tls"|"ws"|"http" how the connection reached the server (a WebSocket, an HTTP request to a route)
---@field identity string|nil the authenticated identity
---@field state table per-connection data, kept across this connection's messages (JSON data, at most --conn-state-max-bytes of it)
---@field roles string[] the identity's roles, sorted (a copy; empty without roles)
---@field can fun(kind: "route"|"publish"|"subscribe"|"send_to", target: string): boolean whether the identity's roles allow it (as the checks would; not audited)

---Called for every data message of this file's route; the return value is the reply (nil: none).
---@type fun(msg: samgw.Message, conn: samgw.Conn): any
on_data = nil
---default.lua only: when a connection is admitted. `return false, "reason"` or `error("reason")`
---refuses it (the client gets close {"reason": ...}); anything else, a returned string included, admits it.
---@type fun(conn: samgw.Conn): (boolean|nil), string?
on_connect = nil
---default.lua only: when a connection has closed.
---@type fun(conn: samgw.Conn, reason: string)
on_close = nil
---default.lua only, with --nats: another node went down with these connections (runs on one node).
---@type fun(node: string, conn_ids: string[])
on_node_down = nil
---default.lua only: when the server starts serving and after every reload; set up timers here.
---@type fun()
on_start = nil
---default.lua only: a job was "acked", "nacked", "expired" (its lease ran out) or went "dead" (to NAME.dead).
---@type fun(event: string, job: {queue: string, id: string, worker?: string, deliveries: integer})
on_job = nil

gateway = {}
---Push a data frame to a connection (on any node); false if it is gone.
---@param conn_id string
---@param payload any
---@param route? string
---@return boolean
function gateway.send(conn_id, payload, route) end
---Push to every connection of an authenticated identity; returns how many.
---@param identity string
---@param payload any
---@param route? string
---@return integer
function gateway.send_to(identity, payload, route) end
---Append to an identity's durable mailbox; returns the message's seq. Raises when it is not stored.
---@param identity string
---@param payload any
---@param opts? {route?: string, id?: string, ttl_ms?: number}
---@return integer
function gateway.deliver(identity, payload, opts) end
---Push to every connection (every node's in a cluster) but except_id; returns how many.
---@param payload any
---@param route? string
---@param except_id? string
---@return integer
function gateway.broadcast(payload, route, except_id) end
---The open connections: this node's ("local", default) or the cluster's.
---@param scope? "local"|"cluster"
---@return string[]
function gateway.connections(scope) end
---Close a connection: it gets close {"reason": reason}.
---@param conn_id string
---@param reason? string
---@return boolean
function gateway.close(conn_id, reason) end
---@class samgw.Recovery
---@field recovered boolean false: some publications after since are no longer kept (or since is of another epoch): resync another way
---@field offset integer the topic's last offset
---@field epoch? string the history's epoch (absent for a topic without history)

---Subscribe a connection of this node to a topic (dot-separated words of [A-Za-z0-9_-], at most 128 bytes; at most 64 per connection); false if the connection is not here. Subscriptions end with the connection.
---With opts (a topic with --topic-history), first sends the kept publications after since, then live ones, none twice, and returns a samgw.Recovery.
---@param conn_id string
---@param topic string
---@param opts? {since?: integer, epoch?: string}
---@return boolean|samgw.Recovery
function gateway.subscribe(conn_id, topic, opts) end
---Unsubscribe; false if it was not subscribed.
---@param conn_id string
---@param topic string
---@return boolean
function gateway.unsubscribe(conn_id, topic) end
---Push to every subscriber of topic (on every node with --nats); returns how many it reached, and for a topic with --topic-history the publication's offset (once stored).
---@param topic string
---@param payload any
---@param route? string
---@return integer delivered
---@return integer|nil offset
function gateway.publish(topic, payload, route) end

log = {}
---@param message string
---@param fields? table
function log.debug(message, fields) end
---@param message string
---@param fields? table
function log.info(message, fields) end
---@param message string
---@param fields? table
function log.warn(message, fields) end
---@param message string
---@param fields? table
function log.error(message, fields) end

json = {}
---@param v any
---@return string
function json.encode(v) end
---@param s string
---@return any
function json.decode(s) end
---@param t? table
---@return table
function json.array(t) end
---Whether v is an integer beyond 2^53 kept exactly (type() says "userdata").
---@param v any
---@return boolean
function json.is_exact(v) end
---JSON null.
json.null = nil

---@class samgw.StoreOptions
---@field ttl_ms? integer the value expires this many milliseconds from now

---Metrics of the application, exported on --metrics-listen's /metrics.
metrics = {}
---Add n (default 1, at least 0) to the counter samgw_script_<name>_total.
---@param name string
---@param n? number
function metrics.inc(name, n) end
---Set the gauge samgw_script_<name>.
---@param name string
---@param v number
function metrics.set(name, v) end
---Record v in the histogram samgw_script_<name>.
---@param name string
---@param v number
function metrics.observe(name, v) end

queue = {}
---Add a job to a work queue; returns its id once stored. Raises when it is not stored.
---@param name string
---@param payload any
---@param opts? {id?: string, lease_ms?: number, max_deliveries?: integer, delay_ms?: number}
---@return string
function queue.push(name, payload, opts) end
---Make a connection of this node a worker of a queue; false if it is not here.
---@param conn_id string
---@param name string
---@param opts? {prefetch?: integer}
---@return boolean
function queue.join(conn_id, name, opts) end
---A worker leaves a queue (its jobs go back at once); whether it was a worker of it.
---@param conn_id string
---@param name string
---@return boolean
function queue.leave(conn_id, name) end
---How many jobs wait, are held by workers, and are dead.
---@param name string
---@return {pending: integer, in_flight: integer, dead: integer}
function queue.stats(name) end

store = {}
---@param key string
---@return any
function store.get(key) end
---Store a value (nil deletes). Past --store-max-bytes it raises "store full".
---@param key string
---@param value any
---@param opts? samgw.StoreOptions
function store.set(key, value, opts) end
---@param key string
function store.delete(key) end
---Add n (default 1) atomically; returns the new number.
---@param key string
---@param n? number
---@return number
function store.incr(key, n) end
---Compare-and-set in one step: set new if the key holds old now (nil: absent).
---@param key string
---@param old any
---@param new any
---@param opts? samgw.StoreOptions
---@return boolean
function store.cas(key, old, new, opts) end
---The live keys starting with prefix, sorted, at most limit (100 by default, 1 to 1000).
---@param prefix string
---@param limit? integer
---@return string[]
function store.keys(prefix, limit) end

---@class samgw.HTTPResponse
---@field status integer
---@field headers table<string, string>
---@field body string

---@class samgw.HTTPRequest
---@field url string
---@field method? string
---@field headers? table<string, string>
---@field body? any
---@field timeout_ms? integer

http = {}
---@param req samgw.HTTPRequest
---@return samgw.HTTPResponse|nil, string|nil
function http.request(req) end
---@param url string
---@param opts? samgw.HTTPRequest
---@return samgw.HTTPResponse|nil, string|nil
function http.get(url, opts) end
---@param url string
---@param body any
---@param opts? samgw.HTTPRequest
---@return samgw.HTTPResponse|nil, string|nil
function http.post(url, body, opts) end

upstream = {}
---A request to the upstream named with --upstream name=host:port.
---@param name string
---@param payload? any
---@param route? string
---@param timeout_ms? integer
---@return any|nil, string|nil
function upstream.request(name, payload, route, timeout_ms) end
---Requests to several upstreams at once: { {name, payload[, route][, timeout_ms]}, … }.
---@param calls table[]
---@return { reply: any, error: string|nil }[]
function upstream.all(calls) end

nats = {}
---@param subject string
---@param payload any
function nats.publish(subject, payload) end
---@param subject string
---@param payload any
---@param timeout_ms? integer
---@return any
function nats.request(subject, payload, timeout_ms) end

crypto = {}
---The raw 32-byte SHA-256 digest.
---@param s string
---@return string
function crypto.sha256(s) end
---The raw 32-byte HMAC-SHA-256.
---@param key string
---@param s string
---@return string
function crypto.hmac_sha256(key, s) end
---@param n integer at most 1 MiB
---@return string
function crypto.random_bytes(n) end

base64 = {}
---@param s string
---@return string
function base64.encode(s) end
---@param s string
---@return string
function base64.decode(s) end

hex = {}
---@param s string
---@return string
function hex.encode(s) end
---@param s string
---@return string
function hex.decode(s) end

---A random version 4 UUID.
---@return string
function uuid() end

---Unix milliseconds.
---@return integer
function now() end

---The settings of --script-config (read-only; {} without it).
---@type table
config = {}

---@class samgw.Timer
local Timer = {}
---Stop the timer; false if it had already run (timer.after) or was cancelled.
---@return boolean
function Timer:cancel() end

timer = {}
---Run fn once, ms milliseconds from now, on this node, under the script timeout.
---@param ms number 0 to one year
---@param fn fun(t: samgw.Timer)
---@return samgw.Timer
function timer.after(ms, fn) end
---Run fn every ms milliseconds (at least 10), each run ms after the previous one ended.
---@param ms number
---@param fn fun(t: samgw.Timer)
---@return samgw.Timer
function timer.every(ms, fn) end
