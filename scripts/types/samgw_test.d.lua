---@meta samgw_test
-- Type stubs of the `samgw test` harness: these globals exist only in
-- *_test.lua files (and in the handlers they call, while a test runs).

---Declare a test; run them with `samgw test [DIR] [--run PATTERN]`.
---@param name string
---@param fn fun()
function test(name, fn) end

---@class samgw.ConnOptions
---@field id? string default c1, c2, …
---@field identity? string
---@field remote? string
---@field roles? string[] what conn.roles shows
---@field grants? {routes?: string[], publish?: string[], subscribe?: string[], send_to?: string[]} what conn.can answers from (everything allowed without)

---A made-up connection for call, connect and disconnect.
---@param opts? samgw.ConnOptions
---@return samgw.Conn
function new_conn(opts) end

---Run route's on_data with payload on conn (a new one when absent); returns what the client would get (through JSON). A handler error is raised again.
---@param route string
---@param payload any
---@param conn? samgw.Conn
---@return any
function call(route, payload, conn) end

---Run default.lua's on_connect for conn: true, or false and the reason.
---@param conn samgw.Conn
---@return boolean ok, string|nil reason
function connect(conn) end

---The connection goes: default.lua's on_close runs, its subscriptions end.
---@param conn samgw.Conn
---@param reason? string
function disconnect(conn, reason) end

---Run default.lua's on_start, as the gateway does when it starts serving.
function start() end

---Run default.lua's on_job, as the work queues do.
---@param event "acked"|"nacked"|"expired"|"dead"
---@param job {queue: string, id: string, worker?: string, deliveries?: integer}
function job_event(event, job) end

---Keep the last keep publications of the topics pattern matches, as --topic-history does (the first rule that matches applies; epoch "test").
---@param pattern string
---@param keep integer
function topic_history(pattern, keep) end

---@class samgw.Push
---@field payload any
---@field route string|nil
---@field topic string|nil a publication of a topic with history: its topic, offset and epoch
---@field offset integer|nil
---@field epoch string|nil

---The frames pushed to conn so far.
---@param conn samgw.Conn
---@return samgw.Push[]
function pushes(conn) end

---The reason conn was closed for, or nil while it is open.
---@param conn samgw.Conn
---@return string|nil
function closed(conn) end

---conn.state as the handlers left it.
---@param conn samgw.Conn
---@return any
function conn_state(conn) end

---Every gateway, queue and nats action so far: {action=, to=, identity=, topic=, subject=, queue=, id=, payload=, route=, except=, reason=}.
---@return table[]
function outbox() end

stub = {}
---Answer http requests to url ("https://x/y" or "POST https://x/y"): a table {status=, headers=, body=}, or a function(req) returning one (or nil, err).
---@param url string
---@param answer table|fun(req: table): table|nil, string|nil
function stub.http(url, answer) end
---Answer upstream.request / upstream.all to name: a value, or a function(payload, route) returning one (or nil, err).
---@param name string
---@param answer any
function stub.upstream(name, answer) end
---Answer nats.request on subject: a value, or a function(payload) returning one (or nil, err).
---@param subject string
---@param answer any
function stub.nats(subject, answer) end

clock = {}
---Move the test's clock on, running the timers that fall due, in order; store entries expire by it too.
---@param ms number
function clock.advance(ms) end
---Milliseconds since the test began.
---@return integer
function clock.now() end

---Fail unless got equals want (tables compared deeply); the failure names this line.
---@param got any
---@param want any
---@param message? string
function assert_eq(got, want, message) end
---Fail unless fn raises an error containing text; returns the error.
---@param fn fun()
---@param text? string
---@return string
function assert_error(fn, text) end
