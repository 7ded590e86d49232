-- meow.commands: "/name args" routed to handlers, a generated /help, roles from the instance's
-- configuration (owner: one contact; admins: comma-separated contacts or a list), /ban and
-- /unban for admins (kept in meow.kv under "bans/CONTACT"), and a rate limit per contact (told
-- once, then ignored until its window ends). The same rules as the Rust SDK's Commands.
--
--   local bot = meow.commands.new { bans = true, rate = { count = 10, window_ms = 60000 } }
--   bot:command("ping", "", "answers pong", function(msg, args) return "pong" end)
--   bot:admin("announce", "<text>", "sends text to everyone", announce)
--   function on_message(msg) bot:handle(msg) end

local Commands = {}
Commands.__index = Commands

local RANK = { anyone = 0, admin = 1, owner = 2 }

local function names(v)
  local out = {}
  if type(v) == "table" then
    for _, n in ipairs(v) do out[#out + 1] = tostring(n) end
    return out
  end
  for n in string.gmatch(tostring(v or ""), "[^,%s%[%]\"]+") do out[#out + 1] = n end
  return out
end

local function line(name, usage, help)
  if usage == "" then return "/" .. name .. " - " .. help end
  return "/" .. name .. " " .. usage .. " - " .. help
end

function Commands.new(opts)
  opts = opts or {}
  return setmetatable({ list = {}, bans = opts.bans == true, rate = opts.rate, windows = {} }, Commands)
end

local function add(self, role, name, usage, help, fn)
  self.list[#self.list + 1] = { name = name, usage = usage or "", help = help or "", role = role, fn = fn }
  return self
end

function Commands:command(name, usage, help, fn) return add(self, "anyone", name, usage, help, fn) end
function Commands:admin(name, usage, help, fn) return add(self, "admin", name, usage, help, fn) end
function Commands:owner(name, usage, help, fn) return add(self, "owner", name, usage, help, fn) end

-- "owner", "admin" or "anyone", from meow.config (read at each call: a reload may change it).
function Commands:role_of(contact)
  local config = meow.config or {}
  if config.owner == contact then return "owner" end
  for _, a in ipairs(names(config.admins)) do
    if a == contact then return "admin" end
  end
  return "anyone"
end

-- The /help text for a contact of `role`: the commands it may run.
function Commands:help(role)
  local rank = RANK[role or "anyone"] or 0
  local lines = { "commands:", "/help - this list" }
  for _, c in ipairs(self.list) do
    if RANK[c.role] <= rank then lines[#lines + 1] = line(c.name, c.usage, c.help) end
  end
  if self.bans and rank >= RANK.admin then
    lines[#lines + 1] = line("ban", "<contact>", "ignore a contact's messages")
    lines[#lines + 1] = line("unban", "<contact>", "hear a contact again")
  end
  return table.concat(lines, "\n")
end

-- Counts one command of `contact` at `now` (ms): true, or false and what to say (once).
function Commands:admit(contact, now)
  local rate = self.rate
  if not rate then return true end
  for k, w in pairs(self.windows) do
    if now - w.start >= rate.window_ms then self.windows[k] = nil end
  end
  local w = self.windows[contact]
  if not w then
    w = { start = now, used = 0, warned = false }
    self.windows[contact] = w
  end
  w.used = w.used + 1
  if w.used <= rate.count then return true end
  if w.warned then return false end
  w.warned = true
  local secs = math.ceil((rate.window_ms - (now - w.start)) / 1000)
  return false, string.format("slow down: %d commands per %d s; try again in %d s",
    rate.count, rate.window_ms // 1000, secs)
end

local function ban(on, args)
  local name = on and "ban" or "unban"
  if #args ~= 1 then return "usage: /" .. name .. " <contact>" end
  local key = "bans/" .. args[1]
  local call, ok, err
  if on then call, ok, err = pcall(meow.kv.set, key, "1") else call, ok, err = pcall(meow.kv.delete, key) end
  if not call or not ok then return "cannot " .. name .. ": " .. tostring(call and err or ok) end
  return args[1] .. (on and " is banned" or " is heard again")
end

-- The answer to `text` from a contact of `role` (nil: not a command).
function Commands:answer(msg, role, text)
  local rest = text:match("^%s*/(.*)$")
  if not rest then return nil end
  local args = {}
  for w in rest:gmatch("%S+") do args[#args + 1] = w end
  local name = table.remove(args, 1)
  if not name then return nil end
  if name == "help" then return self:help(role) end
  if self.bans and (name == "ban" or name == "unban") then
    if RANK[role] < RANK.admin then return "/" .. name .. " is for admins" end
    return ban(name == "ban", args)
  end
  for _, c in ipairs(self.list) do
    if c.name == name then
      if RANK[role] < RANK[c.role] then
        return "/" .. name .. " is for " .. (c.role == "owner" and "the owner" or "admins")
      end
      return c.fn(msg, args)
    end
  end
  return "unknown command /" .. name .. ": /help lists them"
end

-- Handles `msg` if it is a command; returns whether it was one (a banned contact's messages
-- count as handled, and get no answer).
function Commands:handle(msg)
  -- Without the kv capability there are no bans to read (and /ban says why it fails).
  if self.bans then
    local read, banned = pcall(meow.kv.get, "bans/" .. msg.sender)
    if read and banned then return true end
  end
  local text = msg.text
  if not text or not text:match("^%s*/") then return false end
  local ok, why = self:admit(msg.sender, meow.node().now)
  local answer = why
  if ok then answer = self:answer(msg, self:role_of(msg.sender), text) end
  if answer and answer ~= "" then meow.reply(msg, answer) end
  return true
end

return Commands
