-- pubsub.lua: route "pubsub", the subscribe request the clients'
-- subscribe() sends (as scripts/examples/pubsub.lua answers it):
-- {"subscribe": topic[, "since": offset, "epoch": e]} →
-- {"subscribed": true, "recovered": …, "offset": …, "epoch": …}.
function on_data(msg, conn)
  local p = msg.payload
  local r = gateway.subscribe(conn.id, p.subscribe, { since = p.since, epoch = p.epoch })
  if not r then
    return { subscribed = false }
  end
  return { subscribed = true, recovered = r.recovered, offset = r.offset, epoch = r.epoch }
end
