-- fanout.lua: route "fanout". Calls two samgw-protocol upstreams with the
-- same payload and merges their answers. The upstreams are named by the
-- operator: `samgw serve --upstream left=10.0.0.5:4000 --upstream right=10.0.0.6:4000`.
-- An upstream that fails or is slow is reported in place of its answer.
--
--   → {"type":"data","route":"fanout","payload":{"q":42},"id":"1"}
--   ← {"type":"data","route":"fanout","payload":{"left":{...},"right":{...}},"id":"1"}

function on_data(msg)
  local merged = {}
  for _, name in ipairs({"left", "right"}) do
    local reply, err = upstream.request(name, msg.payload, 500)
    if reply ~= nil then
      merged[name] = reply
    else
      merged[name] = {error = err}
    end
  end
  return merged
end
