-- load.lua: a small load test. Each virtual client sends args.n requests
-- (default 100) and checks every reply:
--   samgw client --scenario scripts/scenarios/load.lua --clients 50 --arg n=200
-- The summary gives passed/failed clients and request latency percentiles.

local n = tonumber(args.n or "100")
for i = 1, n do
  local reply = request({client = client.id, seq = i})
  if reply.client ~= client.id or reply.seq ~= i then
    error(string.format("client %d request %d: wrong reply %s", client.id, i, json.encode(reply)))
  end
end
