-- job.lua: route "job". Pushes payload.body to payload.queue with id
-- payload.id and answers the id.
function on_data(msg)
  local p = msg.payload
  return queue.push(p.queue, p.body, { id = p.id })
end
