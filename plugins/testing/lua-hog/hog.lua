-- A hostile plugin for tests: each message names a way to try to escape the runtime's limits.
--   coroutine  loop inside a coroutine
--   pcall      loop that catches the budget's error and carries on
--   pattern    a pattern that backtracks for hours in C
--   flood      100 000 sends from one event (the answer says how many were refused)
function on_message(msg)
  local t = msg.text
  if t == "coroutine" then
    coroutine.resume(coroutine.create(function() while true do end end))
  elseif t == "pcall" then
    while true do pcall(function() while true do end end) end
  elseif t == "pattern" then
    local s = string.rep("a", 5000)
    string.find(s, "(.-)(.-)(.-)(.-)(.-)b")
  elseif t == "flood" then
    local refused, last = 0, ""
    for i = 1, 100000 do
      local ok, err = meow.send(msg.sender, "flood " .. i)
      if not ok then refused = refused + 1; last = err end
    end
    meow.warn("flood: " .. refused .. " of 100000 sends refused; last: " .. last)
  end
end
