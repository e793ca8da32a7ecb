-- pubsub.lua: route "pubsub". Topics: a connection subscribes with
-- {"subscribe": "room.1"} and leaves with {"unsubscribe": "room.1"};
-- {"publish": "room.1", "message": <any>} pushes
-- {"topic": "room.1", "from": <id>, "message": <any>} on route "pubsub" to
-- every subscriber (on every node with --nats) and answers how many it
-- reached. Subscriptions end with the connection.
--
-- With --topic-history (say room.*=100) the topic's publications are kept
-- and numbered: each push carries "offset" and "epoch", a subscribe answers
-- {"subscribed": true, "offset": N, "epoch": E} (where the topic stands),
-- and {"subscribe": "room.1", "since": OFFSET, "epoch": EPOCH} first sends
-- what was published after OFFSET, then answers with "recovered" too
-- (false: some are no longer kept, resync another way). The clients'
-- subscribe() sends exactly this, from the last offset they saw.

function on_data(msg, conn)
  local p = msg.payload
  if type(p) ~= "table" then
    error('send {"subscribe": topic}, {"unsubscribe": topic} or {"publish": topic, "message": ...}')
  end
  if p.subscribe then
    local r = gateway.subscribe(conn.id, p.subscribe, { since = p.since, epoch = p.epoch })
    if not r then
      return { subscribed = false }
    end
    local reply = { subscribed = true }
    if r.epoch then -- the topic keeps history
      reply.offset, reply.epoch = r.offset, r.epoch
      if p.since ~= nil then
        reply.recovered = r.recovered
      end
    end
    return reply
  elseif p.unsubscribe then
    return { unsubscribed = gateway.unsubscribe(conn.id, p.unsubscribe) }
  elseif p.publish then
    local push = { topic = p.publish, from = conn.id, message = p.message }
    local delivered, offset = gateway.publish(p.publish, push, "pubsub")
    return { delivered = delivered, offset = offset }
  end
  error("unknown request: want subscribe, unsubscribe or publish")
end
