-- relay.lua: route "relay". Agent-to-agent messaging: the payload
-- {"to": <connection id>, "body": <anything>} is pushed to that connection
-- as {"from": <sender id>, "body": <body>} on route "relay". The sender gets
-- {"delivered": true|false}. Connection ids are listed by route "relay" with
-- payload {"list": true}: every node's in a cluster (--nats), this node's
-- otherwise.

function on_data(msg, conn)
  local p = msg.payload
  if type(p) ~= "table" then
    error("payload must be an object: {to, body} or {list: true}")
  end
  if p.list then
    return { connections = gateway.connections("cluster"), you = conn.id }
  end
  if type(p.to) ~= "string" then
    error("payload.to must be a connection id")
  end
  local delivered = gateway.send(p.to, { from = conn.id, body = p.body }, "relay")
  log.info("relayed", { from = conn.id, to = p.to, delivered = delivered })
  return { delivered = delivered }
end
