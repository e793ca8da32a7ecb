-- chat.lua: route "chat". A chat room: every message is broadcast to all the
-- other connections as {"from": <id>, "text": <text>} on route "chat", and
-- the sender gets {"sent_to": <count>}.

function on_data(msg, conn)
  local text = msg.payload
  if type(text) == "table" then
    text = text.text
  end
  if type(text) ~= "string" then
    error("payload must be a string or {text: string}")
  end
  local n = gateway.broadcast({ from = conn.id, text = text }, "chat", conn.id)
  return { sent_to = n }
end
