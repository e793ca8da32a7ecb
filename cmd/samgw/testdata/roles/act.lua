-- act: does what the payload asks, so a test can try every checked call
-- as the connection that sends it.
function on_data(msg, conn)
  local p = msg.payload
  if p.op == "publish" then
    return { n = gateway.publish(p.topic, p.body or "x") }
  elseif p.op == "subscribe" then
    return { ok = gateway.subscribe(p.conn or conn.id, p.topic) }
  elseif p.op == "send_to" then
    return { n = gateway.send_to(p.to, p.body or "x") }
  elseif p.op == "deliver" then
    return { seq = gateway.deliver(p.to, p.body or "x") }
  elseif p.op == "can" then
    return { can = conn.can(p.kind, p.target), can_colon = conn:can(p.kind, p.target) }
  elseif p.op == "roles" then
    local roles = conn.roles
    roles[#roles + 1] = "forged" -- a copy: the gateway's roles do not change
    return { roles = conn.roles, id = conn.id }
  elseif p.op == "guarded" then
    -- A script can catch a refusal and answer in its own words.
    local ok, err = pcall(gateway.publish, p.topic, "x")
    return { ok = ok, err = not ok and tostring(err) or nil }
  elseif p.op == "push" then
    return { job = queue.push(p.queue, p.body or "x") }
  elseif p.op == "join" then
    return { ok = queue.join(p.conn or conn.id, p.queue) }
  elseif p.op == "runs" then
    return { runs = store.get("post_task_runs") or 0 }
  end
  error({ code = "bad_op", message = "unknown op" })
end
