-- http_bridge.lua: route "http_bridge". Forwards each data message to an
-- HTTP API and returns its answer: the payload is POSTed as JSON to
-- config.http_bridge.url (from `samgw serve --script-config FILE`; default
-- below), and the reply is the API's JSON (or its text, with the status, when
-- it is not JSON). The destination must be allowed with
-- `samgw serve --upstream-allow 127.0.0.1:8081`.
--
--   # settings.yaml
--   http_bridge:
--     url: http://127.0.0.1:8081/
--     timeout_ms: 2000
--
--   → {"type":"data","route":"http_bridge","payload":{"q":"status"},"id":"1"}
--   ← {"type":"data","route":"http_bridge","payload":{...the API's answer...},"id":"1"}

local settings = config.http_bridge or {}
local API = settings.url or "http://127.0.0.1:8081/"
local TIMEOUT_MS = settings.timeout_ms or 2000

function on_data(msg, conn)
  local res, err = http.post(API, msg.payload, {
    timeout_ms = TIMEOUT_MS,
    headers = {["X-Samgw-Conn"] = conn.id},
  })
  if not res then
    -- Returning the error keeps the connection informed; error(err) would
    -- send an upstream_error / upstream_timeout frame instead.
    return {error = err}
  end
  local ctype = res.headers["content-type"] or ""
  if res.status < 300 and string.find(ctype, "json", 1, true) then
    return json.decode(res.body)
  end
  return {status = res.status, body = res.body}
end
