-- session.lua: route "session". Sessions that expire when idle (timers):
-- {"login": "<name>"} opens a session, every later message on the route
-- renews it, and a session idle for idle_ms (30 s; config.session.idle_ms
-- with --script-config) is ended: the connection is closed with the reason
-- "session expired".
--   → {"type":"data","route":"session","payload":{"login":"ann"},"id":"1"}
--   ← {"type":"data","route":"session","payload":{"session":"ann","idle_ms":30000},"id":"1"}
--
-- The session lives in the store with a time to live, renewed by each
-- message; one timer per session (a second login on the connection makes
-- none) looks every second whether it is still there. The timer only reads the store, so it does not matter which Lua
-- state a renewal runs in (a top-level table of timers would: see "Where
-- state lives" in docs/handlers.md).

local IDLE_MS = (config.session or {}).idle_ms or 30000
local CHECK_MS = 1000

local function key(conn_id) return "session." .. conn_id end

function on_data(msg, conn)
  local p = msg.payload
  local name = type(p) == "table" and p.login
  if name then
    local renewing = store.get(key(conn.id)) ~= nil -- its timer is running already
    store.set(key(conn.id), name, { ttl_ms = IDLE_MS })
    if not renewing then
      local id = conn.id
      timer.every(CHECK_MS, function(t)
        if store.get(key(id)) == nil then
          t:cancel()
          gateway.close(id, "session expired")
        end
      end)
    end
    return { session = name, idle_ms = IDLE_MS }
  end
  local session = store.get(key(conn.id))
  if session == nil then
    error("no session: log in with {\"login\": name}")
  end
  store.set(key(conn.id), session, { ttl_ms = IDLE_MS })
  return { session = session, renewed = true }
end
