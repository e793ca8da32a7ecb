-- workers: a pool of workers on the work queue "jobs" (see docs/queues.md).
--   {"op": "work", "prefetch": 2}               this connection becomes a worker
--   {"op": "submit", "id": "t1", "task": {...}}  a job for one of the workers: answers its id
--   {"op": "stats"}                              pending, in flight, dead
-- A worker gets each job as a data frame with route "jobs" and a top-level
-- "job" (its id), and answers {"type":"ack","payload":{"job": ID}} when done
-- ("nack" gives it back, "progress" keeps it past its lease). A job given
-- back three times goes to the queue "jobs.dead".
function on_data(msg, conn)
  local p = msg.payload
  if type(p) ~= "table" then
    error({ code = "bad_op", message = "send {op = work | submit | stats}" })
  end
  if p.op == "work" then
    return { joined = queue.join(conn.id, "jobs", { prefetch = p.prefetch or 1 }) }
  elseif p.op == "submit" then
    return { job = queue.push("jobs", p.task, { id = p.id, max_deliveries = 3 }) }
  elseif p.op == "stats" then
    return queue.stats("jobs")
  end
  error({ code = "bad_op", message = "send {op = work | submit | stats}" })
end
