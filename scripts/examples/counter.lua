-- counter.lua: route "counter". Counts messages two ways: per connection in
-- conn.state (kept across messages and reloads) and for the whole gateway in
-- the shared store (across connections and handlers).
--   ← {"connection": 3, "total": 42}

function on_data(msg, conn)
  conn.state.count = (conn.state.count or 0) + 1
  local total = store.incr("counter.total")
  return { connection = conn.state.count, total = total }
end
