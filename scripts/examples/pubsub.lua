-- pubsub.lua: route "pubsub". Topics: a connection subscribes with
-- {"subscribe": "room.1"} and leaves with {"unsubscribe": "room.1"};
-- {"publish": "room.1", "message": <any>} pushes
-- {"topic": "room.1", "from": <id>, "message": <any>} on route "pubsub" to
-- every subscriber (on every node with --nats) and answers how many it
-- reached. Subscriptions end with the connection.

function on_data(msg, conn)
  local p = msg.payload
  if type(p) ~= "table" then
    error('send {"subscribe": topic}, {"unsubscribe": topic} or {"publish": topic, "message": ...}')
  end
  if p.subscribe then
    return { subscribed = gateway.subscribe(conn.id, p.subscribe) }
  elseif p.unsubscribe then
    return { unsubscribed = gateway.unsubscribe(conn.id, p.unsubscribe) }
  elseif p.publish then
    local push = { topic = p.publish, from = conn.id, message = p.message }
    return { delivered = gateway.publish(p.publish, push, "pubsub") }
  end
  error("unknown request: want subscribe, unsubscribe or publish")
end
