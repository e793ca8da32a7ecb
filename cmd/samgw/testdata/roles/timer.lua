-- timer: a call outside any message acts as the server: not checked.
function on_data(msg)
  timer.after(1, function()
    gateway.publish("admin.audit", { from = "timer" })
  end)
  return { armed = true }
end
