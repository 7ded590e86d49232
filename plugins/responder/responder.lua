-- responder: answers keywords, tells its uptime and how its messages to you travel (privacy),
-- counts messages per contact, greets new contacts.
--
-- Configuration (plugin.yaml has the defaults):
--   keywords            word -> answer, e.g. { ping = "pong" }
--   greet_new_contacts  say hello to new contacts

local started = meow.node().now

local function human(seconds)
  seconds = math.floor(seconds)
  local d, h, m, s = seconds // 86400, seconds % 86400 // 3600, seconds % 3600 // 60, seconds % 60
  if d > 0 then return string.format("%dd %dh", d, h) end
  if h > 0 then return string.format("%dh %dm", h, m) end
  if m > 0 then return string.format("%dm %ds", m, s) end
  return string.format("%ds", s)
end

local function count(sender)
  local key = "seen/" .. sender
  local n = tonumber(meow.kv.get(key) or "0") + 1
  meow.kv.set(key, tostring(n))
  return n
end

function init(config)
  local words = {}
  for word in pairs(config.keywords or {}) do words[#words + 1] = word end
  table.sort(words)
  meow.info("responder ready, keywords: " .. table.concat(words, ", "))
end

function on_message(msg)
  if not msg.text then return end
  local n = count(msg.sender)
  local word = (msg.text:lower():match("^%s*(%S+)")) or ""
  if word == "uptime" then
    meow.reply(msg, "up " .. human((meow.node().now - started) / 1000))
  elseif word == "privacy" then
    local policy = meow.contact_policy(msg.sender) or "unknown"
    meow.reply(msg, "my messages to you travel by: " .. policy)
  elseif word == "stats" then
    meow.reply(msg, string.format("%s, you sent me %d message%s", msg.sender, n, n == 1 and "" or "s"))
  else
    local answer = (meow.config.keywords or {})[word]
    if answer then meow.reply(msg, answer) end
  end
end

function on_contact_added(name, via_directory)
  if meow.config.greet_new_contacts then
    meow.send(name, "hello " .. name .. "! I answer: " .. table.concat((function()
      local w = {}
      for k in pairs(meow.config.keywords or {}) do w[#w + 1] = k end
      w[#w + 1] = "uptime"; w[#w + 1] = "stats"; w[#w + 1] = "privacy"
      table.sort(w)
      return w
    end)(), ", "))
  end
end
