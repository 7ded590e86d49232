-- {{name}}: answers "hello" with a greeting and counts greetings per contact.

function init(config)
  meow.info("{{name}} ready")
end

function on_message(msg)
  if msg.text == nil or msg.text:match("^%s*(.-)%s*$") ~= "hello" then return end
  local key = "greeted/" .. msg.sender
  local n = tonumber(meow.kv.get(key) or "0") + 1
  meow.kv.set(key, tostring(n))
  meow.reply(msg, string.format("hello %s, from lua (#%d)", msg.sender, n))
end
