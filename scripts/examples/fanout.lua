-- fanout.lua: route "fanout". Calls two samgw-protocol upstreams with the
-- same payload and merges their answers. The upstreams are named by the
-- operator: `samgw serve --upstream left=10.0.0.5:4000 --upstream right=10.0.0.6:4000`.
-- Both are called at once (upstream.all), so two slow upstreams cost the
-- slower one's time, not the sum. An upstream that fails or is slow is
-- reported in place of its answer (why it failed: timeout, refused, …).
--
--   → {"type":"data","route":"fanout","payload":{"q":42},"id":"1"}
--   ← {"type":"data","route":"fanout","payload":{"left":{...},"right":{...}},"id":"1"}

local NAMES = {"left", "right"}

function on_data(msg)
  local calls = {}
  for i, name in ipairs(NAMES) do
    calls[i] = {name, msg.payload, 500} -- name, payload[, route][, timeout_ms]
  end
  local merged = {}
  for i, result in ipairs(upstream.all(calls)) do
    merged[NAMES[i]] = result.reply or {error = result.error}
  end
  return merged
end
