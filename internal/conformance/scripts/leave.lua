-- leave.lua: route "leave". Keeps payload.body in the mailbox of
-- payload.to (id payload.id, route "mail") and answers the seq.
function on_data(msg, conn)
  local p = msg.payload
  return gateway.deliver(p.to, p.body, { id = p.id, route = "mail" })
end
