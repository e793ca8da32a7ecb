-- post_task: counts its runs, so a test can tell it never ran for a
-- refused sender.
function on_data(msg)
  store.incr("post_task_runs")
  return { n = gateway.publish("tasks." .. msg.payload.task, msg.payload) }
end
