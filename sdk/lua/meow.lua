---@meta
-- Type stubs for meow Lua plugins (for lua-language-server / editors). Not loaded at run time:
-- the runtime provides the `meow` table. Functions that may fail return `true`, or `nil, reason`.

---@class MeowMessage
---@field id string            message id (hex), for meow.reply
---@field sender string        the sender's contact name
---@field content_type string  "text", "json", "binary", …
---@field body string          the raw content
---@field text string|nil      the content as text, when it is text or JSON
---@field sent_at integer      sender's clock, Unix milliseconds
---@field group string|nil     the group it was sent to, if any
---@field file MeowFile|nil     for content_type "file": the file that arrived
---@field reply_to string|nil  the id of the message it answers (meow.reply sets it)

---@class MeowFile
---@field file string          its id, for meow.files.read
---@field name string          a plain file name (no folder)
---@field media_type string
---@field size integer         bytes
---@field sha256 string        hex, checked on arrival

---@class MeowTimer
---@field id integer
---@field name string

---@class MeowBroadcast
---@field server string
---@field from_operator boolean
---@field text string
---@field sent_at integer

---@class MeowNodeInfo
---@field instance string
---@field nickname string|nil
---@field fingerprint string
---@field contacts string[]
---@field now integer          Unix milliseconds

---@class MeowKv
local kv = {}
---@param key string
---@return string|nil
function kv.get(key) end
---@param key string
---@param value string
---@return boolean|nil ok, string|nil err
function kv.set(key, value) end
---@param key string
---@return boolean|nil ok, string|nil err
function kv.delete(key) end
---@param prefix string|nil
---@return string[]
function kv.keys(prefix) end

---@class MeowTimers
local timers = {}
---Fires `on_timer` once after `ms` milliseconds (capability `timers`).
---@param name string
---@param ms integer
---@return integer id
function timers.timeout(name, ms) end
---Fires `on_timer` every `ms` milliseconds (capability `timers`).
---@param name string
---@param ms integer
---@return integer id
function timers.interval(name, ms) end
---@param id integer
---@return boolean|nil ok, string|nil err
function timers.cancel(id) end

---@class MeowFiles
local files = {}
---Sends `data` as a file named `name` (capability `files`); returns its id. It travels in
---chunks through the outbox; the instance's `limits.file_size` caps it (8 MiB by default).
---@param to string
---@param name string          a plain file name
---@param data string
---@param media_type string|nil guessed from the name when absent
---@return string id
function files.send(to, name, data, media_type) end
---Reads at most `len` bytes (1 MiB at most, the default) of a received file from `offset`
---(capability `files`); fewer at its end, "" past it.
---@param id string            msg.file.file
---@param offset integer|nil   0 by default
---@param len integer|nil
---@return string
function files.read(id, offset, len) end

---@class MeowHttpResponse
---@field status integer
---@field headers table<string, string>
---@field body string

---@class MeowHttp
local http = {}
---Makes an HTTP request to a host `http.allow` in meow.yaml names (capability `http`); raises
---an error when denied, on a timeout, or when the answer is over `http.max_response`.
---@param request {url: string, method: string|nil, headers: table<string, string>|nil, body: string|nil}
---@return MeowHttpResponse
function http.request(request) end

---@class MeowMqtt
local mqtt = {}
---Publishes to the broker `mqtt.broker` in meow.yaml names, at least once (capability `mqtt`);
---never waits (queued while the broker is away). Raises an error for a topic with a wildcard,
---a payload over 256 KiB, a full queue, or no broker.
---@param topic string
---@param payload string
---@param retain boolean|nil   false by default
function mqtt.publish(topic, payload, retain) end
---Listens to a topic filter (`+` one level, `#` the rest; at most 32 per instance): what
---arrives comes to `on_mqtt(topic, payload)`. Subscriptions end when the instance stops or
---restarts: subscribe in `init`.
---@param filter string
function mqtt.subscribe(filter) end
---@param filter string
function mqtt.unsubscribe(filter) end

---@class MeowDevice
---@field id string              its id (hex)
---@field name string
---@field this boolean           the device this plugin runs on
---@field last_seen integer|nil  Unix ms, if anything came from it since the runtime started

---@class MeowDevices
local devices = {}
---The user's devices, this one first; an empty list for a home with one device
---(capability `devices`). Raises an error without the capability.
---@return MeowDevice[]
function devices.list() end

---@class MeowCommands
---@field new fun(opts: {bans: boolean|nil, rate: {count: integer, window_ms: integer}|nil}|nil): MeowCommands
local commands = {}
---A command anyone may run: `/name usage` does `help`; the handler returns the answer.
---@param name string
---@param usage string
---@param help string
---@param fn fun(msg: MeowMessage, args: string[]): string|nil
---@return MeowCommands
function commands:command(name, usage, help, fn) end
---A command for admins (`admins` in the configuration) and the owner.
---@return MeowCommands
function commands:admin(name, usage, help, fn) end
---A command for the owner (`owner` in the configuration).
---@return MeowCommands
function commands:owner(name, usage, help, fn) end
---Answers `msg` if it is a command (help, roles, bans, rate limit); returns whether it was one.
---@param msg MeowMessage
---@return boolean
function commands:handle(msg) end
---The /help text for a role ("anyone", "admin", "owner").
---@return string
function commands:help(role) end
---@param contact string
---@return string role
function commands:role_of(contact) end

---@class Meow
---@field config table          this instance's configuration (defaults filled in)
---@field kv MeowKv             key-value store (capability `kv`)
---@field timers MeowTimers     timers (capability `timers`)
---@field commands MeowCommands command bots: `meow.commands.new{…}`
---@field files MeowFiles       files (capability `files`)
---@field http MeowHttp         web requests (capability `http`)
---@field mqtt MeowMqtt         MQTT (capability `mqtt`)
---@field devices MeowDevices   the user's devices (capability `devices`)
meow = {}

---Sends text to a contact (capability `messaging`).
---@param to string
---@param text string
---@return boolean|nil ok, string|nil err
function meow.send(to, text) end

---Sends typed content ("text", "json", "binary") to a contact (capability `messaging`).
---@param to string
---@param content_type string
---@param body string
---@return boolean|nil ok, string|nil err
function meow.send_typed(to, content_type, body) end

---Answers a received message (capability `messaging`).
---@param message MeowMessage|string the message or its id
---@param text string
---@return boolean|nil ok, string|nil err
function meow.reply(message, text) end

---@return MeowNodeInfo
function meow.node() end

---How messages to a contact travel: "server", "direct" or "matriochka" (an onion route).
---@param contact string
---@return string|nil policy nil when there is no such contact
function meow.contact_policy(contact) end

---@param text string
function meow.debug(text) end
---@param text string
function meow.info(text) end
---@param text string
function meow.warn(text) end
---@param text string
function meow.error(text) end

-- Handlers a plugin may define (all optional):
---@type fun(config: table)|nil
init = nil
---@type fun()|nil
on_startup = nil
---@type fun(message: MeowMessage)|nil
on_message = nil
---@type fun(timer: MeowTimer)|nil
on_timer = nil
---@type fun(name: string, via_directory: boolean)|nil
on_contact_added = nil
---@type fun(broadcast: MeowBroadcast)|nil
on_broadcast = nil
---A message on an MQTT topic the instance subscribed to (`meow.mqtt.subscribe`).
---@type fun(topic: string, payload: string)|nil
on_mqtt = nil
---One of the user's devices was linked or revoked: change is "linked" or "revoked".
---@type fun(change: string, device: string)|nil
on_device = nil
---Catch-all, called when no specific handler exists: event.kind is "message", "timer", …
---@type fun(event: table)|nil
handle = nil
