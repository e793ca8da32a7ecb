-- pubsub.lua: route "pubsub". Topics: a connection subscribes with
-- {"subscribe": "room.1"} and leaves with {"unsubscribe": "room.1"};
-- {"publish": "room.1", "message": <any>} pushes
-- {"topic": "room.1", "from": <id>, "message": <any>} on route "pubsub" to
-- every subscriber (on every node with --nats) and answers how many it
-- reached. Subscriptions end with the connection.
--
-- With --topic-history (say room.*=100) the topic's publications are kept
-- and numbered: each push carries "offset" and "epoch", and
-- {"subscribe": "room.1", "since": OFFSET, "epoch": EPOCH} first sends
-- what was published after OFFSET, then answers
-- {"subscribed": true, "recovered": true|false, "offset": N, "epoch": E}
-- (recovered = false: some are no longer kept, resync another way). The
-- clients' subscribe() sends exactly this, from the last offset they saw.

function on_data(msg, conn)
  local p = msg.payload
  if type(p) ~= "table" then
    error('send {"subscribe": topic}, {"unsubscribe": topic} or {"publish": topic, "message": ...}')
  end
  if p.subscribe then
    if p.since == nil and p.epoch == nil then
      return { subscribed = gateway.subscribe(conn.id, p.subscribe) }
    end
    local r = gateway.subscribe(conn.id, p.subscribe, { since = p.since or 0, epoch = p.epoch })
    if not r then
      return { subscribed = false }
    end
    return { subscribed = true, recovered = r.recovered, offset = r.offset, epoch = r.epoch }
  elseif p.unsubscribe then
    return { unsubscribed = gateway.unsubscribe(conn.id, p.unsubscribe) }
  elseif p.publish then
    local push = { topic = p.publish, from = conn.id, message = p.message }
    local delivered, offset = gateway.publish(p.publish, push, "pubsub")
    return { delivered = delivered, offset = offset }
  end
  error("unknown request: want subscribe, unsubscribe or publish")
end
