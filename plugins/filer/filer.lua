-- filer: a Lua bot that takes files and gives them back.
--   send it a file     -> it says what arrived (name, size, type, its first line)
--   "again"            -> it sends you back the last file you sent it
--   "report"           -> it sends you a small generated file, report.txt

local LINE_MAX = 80

local function first_line(id)
  local head = meow.files.read(id, 0, LINE_MAX)
  return (head:match("^[^\n]*"))
end

local function took(msg)
  local f = msg.file
  meow.kv.set("last:" .. msg.sender, f.file)
  meow.reply(msg, string.format("got %s (%d bytes, %s); it starts with: %s",
    f.name, f.size, f.media_type, first_line(f.file)))
end

local function again(msg)
  local id = meow.kv.get("last:" .. msg.sender)
  if not id then
    meow.reply(msg, "send me a file first")
    return
  end
  -- Read it back in slices of 1 MiB (the most one read returns).
  local parts, offset = {}, 0
  while true do
    local part = meow.files.read(id, offset, 1048576)
    if #part == 0 then break end
    parts[#parts + 1] = part
    offset = offset + #part
  end
  meow.files.send(msg.sender, "again-" .. id:sub(1, 8) .. ".bin", table.concat(parts))
end

function on_message(msg)
  if msg.file then
    took(msg)
  elseif msg.text == "again" then
    again(msg)
  elseif msg.text == "report" then
    local lines = {}
    for i = 1, meow.config.report_lines do
      lines[i] = string.format("line %d of the report", i)
    end
    meow.files.send(msg.sender, "report.txt", table.concat(lines, "\n") .. "\n")
  end
end
