-- work.lua: route "work". The sender becomes a worker of payload.queue
-- (prefetch payload.prefetch) and gets true.
function on_data(msg, conn)
  return queue.join(conn.id, msg.payload.queue, { prefetch = msg.payload.prefetch })
end
