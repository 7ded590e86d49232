//! The Lua plugin host: Lua 5.4 (vendored) through mlua, in an allow-list sandbox.
//!
//! - Libraries: base (without `load`, `loadfile`, `dofile`, `require`, `collectgarbage`),
//!   `string` (without `dump`), `table`, `math`, `utf8`, `coroutine`. No `io`, `os`, `package`,
//!   `debug`; source text only, never bytecode.
//! - A memory limit, and an instruction-count hook that also watches the wall clock: a script that
//!   loops or hoards memory is stopped with a clear reason. The hook is global, so it holds in
//!   every coroutine; its error cannot be caught (`pcall`, `xpcall` and `coroutine.resume`
//!   re-raise it); host calls charge the same budget; and the pattern functions of `string`
//!   run in Rust on that budget too (see [`patterns`]), so no C function can run for long.
//! - The same capabilities as WASM plugins, through a `meow` table (see `sdk/lua/meow.lua`).
//!
//! A script defines any of `init(config)`, `on_startup()`, `on_message(msg)`, `on_timer(timer)`,
//! `on_contact_added(name, via_directory)`, `on_broadcast(b)`, `on_mqtt(topic, payload)`,
//! `on_device(change, device)`, or a catch-all `handle(event)`.

mod budget;
pub mod patterns;
mod strings;

use std::sync::Arc;
use std::time::Duration;

use meow_plugin::{Event, Failure, Host, HostError, Instance, Level, Limits, Plugin};
use mlua::chunk::ChunkMode;
use mlua::{
    FromLuaMulti, Function, HookTriggers, IntoLuaMulti, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState,
};

use crate::budget::Budget;

/// Instructions between two checks of the budget.
const HOOK_EVERY: u32 = 10_000;
/// Wraps the functions that catch errors so that the budget's error goes through them: the
/// raw functions stay in the chunk's locals, out of the script's reach. Each wrapper refuses to
/// run once the budget is gone, and `xpcall` never runs the script's message handler for the
/// budget's error: Lua runs a handler where the error was raised, and an error raised by the
/// hook leaves hooks off there, so the script's handler would run unwatched.
///
/// Finalizers (`__gc`) are refused: Lua runs them with hooks off, so a looping finalizer could
/// never be stopped; an object is only marked for finalization when `setmetatable` sees `__gc`.
const PRELUDE: &str = "local exhausted, raw_pcall, raw_xpcall, raw_resume, raw_close, error, raw_setmetatable, rawget, type = ... \
    setmetatable = function(t, mt) if type(mt) == 'table' and rawget(mt, '__gc') ~= nil then \
        error('__gc metamethods are not available to plugins', 2) end return raw_setmetatable(t, mt) end \
    local function gone() if exhausted() then error('meow: call budget exhausted', 0) end end \
    local function check(ok, ...) if exhausted() then error(ok and 'meow: call budget exhausted' or (...), 0) end return ok, ... end \
    pcall = function(f, ...) gone() return check(raw_pcall(f, ...)) end \
    xpcall = function(f, h, ...) gone() \
        return check(raw_xpcall(f, function(e) if exhausted() then return e end return h(e) end, ...)) end \
    coroutine.resume = function(co, ...) gone() return check(raw_resume(co, ...)) end \
    coroutine.close = function(co) gone() return check(raw_close(co)) end";

/// Builds the message table of `on_message` in one call: a Lua table constructor with constant
/// keys costs a fraction of setting the fields one by one through the C API.
/// `meow.commands`, written in Lua (see the file): run in the sandbox like the plugin's own code.
const COMMANDS: &str = include_str!("commands.lua");

const MESSAGE_TABLE: &str = "return function(id, sender, content_type, text, body, sent_at, group, automatic, reply_to) \
    return { id = id, sender = sender, content_type = content_type, text = text, body = body, \
    sent_at = sent_at, group = group, automatic = automatic, reply_to = reply_to } end";

/// Runs Lua plugins.
#[derive(Debug, Default)]
pub struct LuaEngine;

/// A running Lua instance.
pub struct LuaInstance {
    lua: Lua,
    name: String,
    limits: Limits,
    budget: Arc<Budget>,
    message_table: Function,
}

impl std::fmt::Debug for LuaInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LuaInstance({})", self.name)
    }
}

fn lua_err(e: HostError) -> mlua::Error {
    mlua::Error::RuntimeError(e.to_string())
}

/// A host function that charges the call's budget before it runs (a script that loops on host
/// calls is stopped as surely as one that loops on arithmetic).
fn func<A, R, F>(lua: &Lua, b: &Arc<Budget>, f: F) -> mlua::Result<Function>
where
    A: FromLuaMulti,
    R: IntoLuaMulti,
    F: Fn(&Lua, A) -> mlua::Result<R> + Send + 'static,
{
    let b = b.clone();
    lua.create_function(move |lua, a: A| {
        b.charge(100)?;
        f(lua, a)
    })
}

/// `true`, or `nil, "reason"`: the Lua idiom for calls that may fail.
fn outcome(lua: &Lua, r: Result<(), HostError>) -> mlua::Result<MultiValue> {
    match r {
        Ok(()) => Ok(MultiValue::from_vec(vec![Value::Boolean(true)])),
        Err(e) => Ok(MultiValue::from_vec(vec![
            Value::Nil,
            Value::String(lua.create_string(e.to_string())?),
        ])),
    }
}

fn json_to_lua(lua: &Lua, v: &serde_json::Value) -> mlua::Result<Value> {
    Ok(match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Number(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => Value::String(lua.create_string(s)?),
        serde_json::Value::Array(a) => {
            let t = lua.create_table()?;
            for (i, x) in a.iter().enumerate() {
                t.set(i + 1, json_to_lua(lua, x)?)?;
            }
            Value::Table(t)
        }
        serde_json::Value::Object(o) => {
            let t = lua.create_table()?;
            for (k, x) in o {
                t.set(k.as_str(), json_to_lua(lua, x)?)?;
            }
            Value::Table(t)
        }
    })
}

/// Removes everything outside the allow-list.
fn sandbox(lua: &Lua) -> mlua::Result<()> {
    let g = lua.globals();
    for name in [
        "load",
        "loadfile",
        "dofile",
        "require",
        "collectgarbage",
        "print",
        "io",
        "os",
        "package",
        "debug",
    ] {
        g.set(name, Value::Nil)?;
    }
    let string: Table = g.get("string")?;
    string.set("dump", Value::Nil)?;
    Ok(())
}

fn register_messaging(lua: &Lua, meow: &Table, host: &Host, b: &Arc<Budget>) -> mlua::Result<()> {
    let h = host.clone();
    meow.set(
        "send",
        func(lua, b, move |lua, (to, text): (String, String)| {
            outcome(lua, h.send(&to, "text", text.into_bytes()))
        })?,
    )?;
    let h = host.clone();
    meow.set(
        "send_typed",
        func(lua, b, move |lua, (to, ct, body): (String, String, mlua::LuaString)| {
            outcome(lua, h.send(&to, &ct, body.as_bytes().to_vec()))
        })?,
    )?;
    let h = host.clone();
    meow.set(
        "reply",
        func(lua, b, move |lua, (msg, text): (Value, String)| {
            let id = match msg {
                Value::Table(t) => t.get::<String>("id")?,
                Value::String(s) => s.to_str()?.to_owned(),
                _ => return Err(mlua::Error::RuntimeError("reply: pass the message or its id".into())),
            };
            outcome(lua, h.reply(&id, &text))
        })?,
    )?;
    Ok(())
}

fn register_kv(lua: &Lua, meow: &Table, host: &Host, b: &Arc<Budget>) -> mlua::Result<()> {
    let kv = lua.create_table()?;
    let h = host.clone();
    kv.set(
        "get",
        func(lua, b, move |lua, key: String| {
            match h.kv_get(&key).map_err(lua_err)? {
                Some(v) => Ok(Value::String(lua.create_string(&v)?)),
                None => Ok(Value::Nil),
            }
        })?,
    )?;
    let h = host.clone();
    kv.set(
        "set",
        func(lua, b, move |lua, (key, value): (String, mlua::LuaString)| {
            outcome(lua, h.kv_set(&key, &value.as_bytes()))
        })?,
    )?;
    let h = host.clone();
    kv.set(
        "delete",
        func(lua, b, move |lua, key: String| outcome(lua, h.kv_delete(&key)))?,
    )?;
    let h = host.clone();
    kv.set(
        "keys",
        func(lua, b, move |_, prefix: Option<String>| {
            h.kv_list(prefix.as_deref().unwrap_or("")).map_err(lua_err)
        })?,
    )?;
    meow.set("kv", kv)
}

fn register_timers(lua: &Lua, meow: &Table, host: &Host, b: &Arc<Budget>) -> mlua::Result<()> {
    let timers = lua.create_table()?;
    let h = host.clone();
    timers.set(
        "timeout",
        func(lua, b, move |_, (name, ms): (String, u64)| {
            h.set_timer(&name, ms, false).map_err(lua_err)
        })?,
    )?;
    let h = host.clone();
    timers.set(
        "interval",
        func(lua, b, move |_, (name, ms): (String, u64)| {
            h.set_timer(&name, ms, true).map_err(lua_err)
        })?,
    )?;
    let h = host.clone();
    timers.set(
        "cron",
        func(lua, b, move |_, (name, expression): (String, String)| {
            h.set_cron_timer(&name, &expression).map_err(lua_err)
        })?,
    )?;
    let h = host.clone();
    timers.set(
        "cancel",
        func(lua, b, move |lua, id: u64| outcome(lua, h.cancel_timer(id)))?,
    )?;
    meow.set("timers", timers)
}

fn register_social(lua: &Lua, meow: &Table, host: &Host, b: &Arc<Budget>) -> mlua::Result<()> {
    let groups = lua.create_table()?;
    let h = host.clone();
    groups.set(
        "send",
        func(lua, b, move |lua, (g, text): (String, String)| {
            outcome(lua, h.group_send(&g, &text))
        })?,
    )?;
    let h = host.clone();
    groups.set("names", func(lua, b, move |_, ()| h.group_names().map_err(lua_err))?)?;
    let h = host.clone();
    groups.set(
        "members",
        func(lua, b, move |_, g: String| h.group_members(&g).map_err(lua_err))?,
    )?;
    meow.set("groups", groups)?;
    let h = host.clone();
    meow.set(
        "broadcast",
        func(lua, b, move |lua, text: String| outcome(lua, h.broadcast(&text)))?,
    )?;
    let directory = lua.create_table()?;
    let h = host.clone();
    directory.set(
        "publish",
        func(lua, b, move |lua, (d, tags): (String, Option<Vec<String>>)| {
            outcome(lua, h.directory_publish(&d, tags.unwrap_or_default()))
        })?,
    )?;
    let h = host.clone();
    directory.set(
        "withdraw",
        func(lua, b, move |lua, ()| outcome(lua, h.directory_withdraw()))?,
    )?;
    let h = host.clone();
    directory.set(
        "search",
        func(lua, b, move |lua, words: String| {
            let found = h.directory_search(&words).map_err(lua_err)?;
            let out = lua.create_table()?;
            for (i, e) in found.into_iter().enumerate() {
                let t = lua.create_table()?;
                t.set("nickname", e.nickname)?;
                t.set("description", e.description)?;
                t.set("tags", e.tags)?;
                t.set("card", e.card)?;
                out.set(i + 1, t)?;
            }
            Ok(out)
        })?,
    )?;
    meow.set("directory", directory)
}

fn register_files(lua: &Lua, meow: &Table, host: &Host, b: &Arc<Budget>) -> mlua::Result<()> {
    let files = lua.create_table()?;
    let h = host.clone();
    files.set(
        "send",
        func(
            lua,
            b,
            move |_, (to, name, data, media_type): (String, String, mlua::LuaString, Option<String>)| {
                let media_type = media_type.unwrap_or_default();
                let file = meow_plugin::OutgoingFile {
                    to,
                    name,
                    media_type,
                    data: data.as_bytes().to_vec(),
                };
                h.file_send(file).map_err(lua_err)
            },
        )?,
    )?;
    let h = host.clone();
    files.set(
        "read",
        func(
            lua,
            b,
            move |lua, (id, offset, len): (String, Option<u64>, Option<u32>)| {
                let data = h
                    .file_read(&id, offset.unwrap_or(0), len.unwrap_or(meow_plugin::MAX_FILE_READ))
                    .map_err(lua_err)?;
                lua.create_string(&data)
            },
        )?,
    )?;
    meow.set("files", files)
}

/// `meow.mqtt.publish(topic, payload [, retain])`, `meow.mqtt.subscribe(filter)`,
/// `meow.mqtt.unsubscribe(filter)`: what arrives comes to `on_mqtt(topic, payload)`.
fn register_mqtt(lua: &Lua, meow: &Table, host: &Host, b: &Arc<Budget>) -> mlua::Result<()> {
    let mqtt = lua.create_table()?;
    let h = host.clone();
    mqtt.set(
        "publish",
        func(
            lua,
            b,
            move |_, (topic, payload, retain): (String, mlua::LuaString, Option<bool>)| {
                h.mqtt_publish(&topic, &payload.as_bytes(), retain.unwrap_or(false))
                    .map_err(lua_err)
            },
        )?,
    )?;
    for (name, subscribe) in [("subscribe", true), ("unsubscribe", false)] {
        let h = host.clone();
        mqtt.set(
            name,
            func(lua, b, move |_, filter: String| {
                h.mqtt_subscribe(&filter, subscribe).map_err(lua_err)
            })?,
        )?;
    }
    meow.set("mqtt", mqtt)
}

/// `meow.devices.list()`: the user's devices, this one first, each `{ id, name, this,
/// last_seen }` (capability devices); device changes come to `on_device(change, device)`.
fn register_devices(lua: &Lua, meow: &Table, host: &Host, b: &Arc<Budget>) -> mlua::Result<()> {
    let devices = lua.create_table()?;
    let h = host.clone();
    devices.set(
        "list",
        func(lua, b, move |lua, ()| {
            let list = h.devices().map_err(lua_err)?;
            let out = lua.create_table()?;
            for (i, d) in list.into_iter().enumerate() {
                let t = lua.create_table()?;
                t.set("id", d.id)?;
                t.set("name", d.name)?;
                t.set("this", d.this)?;
                t.set("last_seen", d.last_seen)?;
                out.set(i + 1, t)?;
            }
            Ok(out)
        })?,
    )?;
    meow.set("devices", devices)
}

/// `meow.http.request{ method = "GET", url = …, headers = { name = value }, body = … }`:
/// `{ status, headers, body }`, or an error raised (denied, quota, failed).
fn register_http(lua: &Lua, meow: &Table, host: &Host, b: &Arc<Budget>) -> mlua::Result<()> {
    let http = lua.create_table()?;
    let h = host.clone();
    http.set(
        "request",
        func(lua, b, move |lua, t: Table| {
            let headers: Option<Table> = t.get("headers")?;
            let mut pairs = Vec::new();
            if let Some(headers) = headers {
                for pair in headers.pairs::<String, String>() {
                    pairs.push(pair?);
                }
            }
            let body: Option<mlua::LuaString> = t.get("body")?;
            let request = meow_plugin::HttpRequest {
                method: t.get::<Option<String>>("method")?.unwrap_or_else(|| "GET".into()),
                url: t.get("url")?,
                headers: pairs,
                body: body.map(|b| b.as_bytes().to_vec()).unwrap_or_default(),
            };
            let answer = h.http(request).map_err(lua_err)?;
            let out = lua.create_table()?;
            out.set("status", answer.status)?;
            let headers = lua.create_table()?;
            for (name, value) in answer.headers {
                headers.set(name, value)?;
            }
            out.set("headers", headers)?;
            out.set("body", lua.create_string(&answer.body)?)?;
            Ok(out)
        })?,
    )?;
    meow.set("http", http)
}

fn register_log_and_node(lua: &Lua, meow: &Table, host: &Host, b: &Arc<Budget>) -> mlua::Result<()> {
    for (name, level) in [
        ("debug", Level::Debug),
        ("info", Level::Info),
        ("warn", Level::Warn),
        ("error", Level::Error),
    ] {
        let h = host.clone();
        meow.set(
            name,
            func(lua, b, move |_, msg: String| {
                h.log(level, &msg);
                Ok(())
            })?,
        )?;
    }
    let h = host.clone();
    lua.globals().set(
        "print",
        func(lua, b, move |_, args: MultiValue| {
            let parts: Vec<String> = args
                .iter()
                .map(|v| v.to_string().unwrap_or_else(|_| "?".into()))
                .collect();
            h.log(Level::Info, &parts.join("\t"));
            Ok(())
        })?,
    )?;
    let h = host.clone();
    meow.set(
        "node",
        func(lua, b, move |lua, ()| {
            let i = h.node_info();
            let t = lua.create_table()?;
            t.set("instance", i.instance)?;
            t.set("nickname", i.nickname)?;
            t.set("fingerprint", i.fingerprint)?;
            t.set("contacts", i.contacts)?;
            t.set("now", i.now)?;
            Ok(t)
        })?,
    )?;
    let h = host.clone();
    meow.set(
        "contact_policy",
        func(lua, b, move |_, contact: String| Ok(h.contact_policy(&contact)))?,
    )?;
    Ok(())
}

/// Installs the wrappers of [`PRELUDE`] around the functions that catch errors.
fn guard_catchers(lua: &Lua, budget: &Arc<Budget>) -> mlua::Result<()> {
    let b = budget.clone();
    let exhausted = lua.create_function(move |_, ()| Ok(b.exhausted()))?;
    let g = lua.globals();
    let co: Table = g.get("coroutine")?;
    let args = (
        exhausted,
        g.get::<Function>("pcall")?,
        g.get::<Function>("xpcall")?,
        co.get::<Function>("resume")?,
        co.get::<Function>("close")?,
        g.get::<Function>("error")?,
        g.get::<Function>("setmetatable")?,
        g.get::<Function>("rawget")?,
        g.get::<Function>("type")?,
    );
    lua.load(PRELUDE)
        .set_name("=meow")
        .set_mode(ChunkMode::Text)
        .call::<()>(args)
}

/// The arguments of an event's handler.
fn handler_args(lua: &Lua, message_table: &Function, e: &Event) -> mlua::Result<MultiValue> {
    Ok(match e {
        Event::Startup => MultiValue::new(),
        Event::Message(m) => {
            let body = lua.create_string(&m.body)?;
            // For text the two fields are the same bytes: one Lua string serves both.
            let text = match &m.text {
                Some(text) if text.as_bytes() == m.body.as_slice() => Value::String(body.clone()),
                Some(text) => Value::String(lua.create_string(text)?),
                None => Value::Nil,
            };
            let t: Table = message_table.call((
                m.id.as_str(),
                m.sender.as_str(),
                m.content_type.as_str(),
                text,
                body,
                m.sent_at,
                m.group.as_deref(),
                m.automatic,
                m.reply_to.as_deref(),
            ))?;
            if m.content_type == "file"
                && let Some(json) = &m.text
                && let Ok(described) = serde_json::from_str::<serde_json::Value>(json)
            {
                // A file's description, as a table: msg.file.file (its id), .name, .size, …
                t.set("file", json_to_lua(lua, &described)?)?;
            }
            MultiValue::from_vec(vec![Value::Table(t)])
        }
        Event::Timer { id, name } => {
            let t = lua.create_table_with_capacity(0, 2)?;
            t.set("id", *id)?;
            t.set("name", name.as_str())?;
            MultiValue::from_vec(vec![Value::Table(t)])
        }
        Event::ContactAdded { name, via_directory } => MultiValue::from_vec(vec![
            Value::String(lua.create_string(name)?),
            Value::Boolean(*via_directory),
        ]),
        Event::Broadcast(b) => {
            let t = lua.create_table_with_capacity(0, 4)?;
            t.set("server", b.server.as_str())?;
            t.set("from_operator", b.from_operator)?;
            t.set("text", b.text.as_str())?;
            t.set("sent_at", b.sent_at)?;
            MultiValue::from_vec(vec![Value::Table(t)])
        }
        Event::Mqtt { topic, payload } => MultiValue::from_vec(vec![
            Value::String(lua.create_string(topic)?),
            Value::String(lua.create_string(payload)?),
        ]),
        Event::Device { change, device } => MultiValue::from_vec(vec![
            Value::String(lua.create_string(change)?),
            Value::String(lua.create_string(device)?),
        ]),
    })
}

/// The single table given to a catch-all `handle(event)`: `kind` plus the handler's arguments.
fn event_table(lua: &Lua, e: &Event, args: MultiValue) -> mlua::Result<Table> {
    let ev = lua.create_table()?;
    ev.set("kind", e.kind())?;
    let mut args = args.into_iter();
    match e {
        Event::Startup => {}
        Event::Message(_) => ev.set("message", args.next())?,
        Event::Timer { .. } => ev.set("timer", args.next())?,
        Event::ContactAdded { .. } => {
            ev.set("name", args.next())?;
            ev.set("via_directory", args.next())?;
        }
        Event::Broadcast(_) => ev.set("broadcast", args.next())?,
        Event::Mqtt { .. } => {
            ev.set("topic", args.next())?;
            ev.set("payload", args.next())?;
        }
        Event::Device { .. } => {
            ev.set("change", args.next())?;
            ev.set("device", args.next())?;
        }
    }
    Ok(ev)
}

fn handler_name(e: &Event) -> &'static str {
    match e {
        Event::Startup => "on_startup",
        Event::Message(_) => "on_message",
        Event::Timer { .. } => "on_timer",
        Event::ContactAdded { .. } => "on_contact_added",
        Event::Broadcast(_) => "on_broadcast",
        Event::Mqtt { .. } => "on_mqtt",
        Event::Device { .. } => "on_device",
    }
}

impl LuaInstance {
    fn failure(&self, e: mlua::Error) -> Failure {
        let text = e.to_string();
        if matches!(e, mlua::Error::MemoryError(_)) || text.contains("not enough memory") {
            Failure::Stopped(format!(
                "exceeded its memory limit of {} MiB",
                self.limits.memory_bytes >> 20
            ))
        } else if self.budget.exhausted() {
            if self.budget.timed_out() {
                Failure::Stopped(format!(
                    "exceeded its time budget of {} ms for one call",
                    self.limits.call_ms
                ))
            } else {
                Failure::Stopped(format!(
                    "exceeded its budget of {} instructions for one call",
                    self.limits.lua_instructions
                ))
            }
        } else {
            Failure::Error(text.lines().next().unwrap_or("").to_owned())
        }
    }

    fn arm(&self) {
        self.budget.arm();
    }

    fn call(&self, f: Function, args: MultiValue) -> Result<(), Failure> {
        self.arm();
        f.call::<()>(args).map_err(|e| self.failure(e))
    }
}

impl Instance for LuaInstance {
    fn init(&mut self, config: &str) -> Result<(), Failure> {
        let cfg: serde_json::Value = serde_json::from_str(config).unwrap_or(serde_json::Value::Null);
        let value = json_to_lua(&self.lua, &cfg).map_err(|e| Failure::Error(e.to_string()))?;
        let meow: Table = self
            .lua
            .globals()
            .get("meow")
            .map_err(|e| Failure::Error(e.to_string()))?;
        meow.set("config", value.clone())
            .map_err(|e| Failure::Error(e.to_string()))?;
        match self.lua.globals().get::<Option<Function>>("init") {
            Ok(Some(f)) => self.call(f, MultiValue::from_vec(vec![value])),
            _ => Ok(()),
        }
    }

    fn handle(&mut self, event: &Event) -> Result<(), Failure> {
        let bad = |e: mlua::Error| Failure::Error(e.to_string());
        // Building the arguments runs Lua code too (the message table constructor): under this
        // call's budget, not what the previous call left.
        self.arm();
        let g = self.lua.globals();
        let name = handler_name(event);
        if let Ok(Some(f)) = g.get::<Option<Function>>(name) {
            let args = handler_args(&self.lua, &self.message_table, event).map_err(bad)?;
            return self.call(f, args);
        }
        if let Ok(Some(f)) = g.get::<Option<Function>>("handle") {
            let args = handler_args(&self.lua, &self.message_table, event).map_err(bad)?;
            let ev = event_table(&self.lua, event, args).map_err(bad)?;
            return self.call(f, MultiValue::from_vec(vec![Value::Table(ev)]));
        }
        Ok(())
    }
}

impl meow_plugin::Engine for LuaEngine {
    fn instantiate(&self, plugin: &Plugin, host: Host, limits: Limits) -> Result<Box<dyn Instance>, Failure> {
        let stop = |e: mlua::Error| Failure::Stopped(format!("cannot start: {e}"));
        let libs = StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::UTF8 | StdLib::COROUTINE;
        let lua = Lua::new_with(libs, LuaOptions::new()).map_err(stop)?;
        sandbox(&lua).map_err(stop)?;
        let budget = Arc::new(Budget::new(
            limits.lua_instructions,
            Duration::from_millis(limits.call_ms),
        ));
        guard_catchers(&lua, &budget).map_err(stop)?;
        strings::install(&lua, &budget, limits.memory_bytes).map_err(stop)?;
        let meow = lua.create_table().map_err(stop)?;
        register_messaging(&lua, &meow, &host, &budget).map_err(stop)?;
        register_kv(&lua, &meow, &host, &budget).map_err(stop)?;
        register_timers(&lua, &meow, &host, &budget).map_err(stop)?;
        register_log_and_node(&lua, &meow, &host, &budget).map_err(stop)?;
        register_social(&lua, &meow, &host, &budget).map_err(stop)?;
        register_files(&lua, &meow, &host, &budget).map_err(stop)?;
        register_http(&lua, &meow, &host, &budget).map_err(stop)?;
        register_mqtt(&lua, &meow, &host, &budget).map_err(stop)?;
        register_devices(&lua, &meow, &host, &budget).map_err(stop)?;
        let commands: Table = lua
            .load(COMMANDS)
            .set_name("=meow.commands")
            .set_mode(ChunkMode::Text)
            .call(())
            .map_err(stop)?;
        meow.set("commands", commands).map_err(stop)?;
        lua.globals().set("meow", meow).map_err(stop)?;
        lua.set_memory_limit(limits.memory_bytes).map_err(stop)?;

        // Global: coroutines the script creates inherit it (a per-thread hook they would not).
        let b = budget.clone();
        let main = lua.current_thread().to_pointer() as usize;
        lua.set_global_hook(HookTriggers::new().every_nth_instruction(HOOK_EVERY), move |lua, _| {
            match b.tick(i64::from(HOOK_EVERY)) {
                Ok(()) => Ok(VmState::Continue),
                // In a coroutine, suspend it rather than kill it: a coroutine killed from a
                // hook keeps hooks off, and could run its `__close` handlers unwatched later.
                // The resume wrappers refuse to resume it and re-raise in the caller. Where the
                // coroutine cannot yield (inside a host function) the yield does not happen and
                // the hook comes back: then the error it is.
                Err(_) if lua.current_thread().to_pointer() as usize != main && b.try_yield() => Ok(VmState::Yield),
                Err(e) => Err(e),
            }
        })
        .map_err(stop)?;

        let message_table: Function = lua
            .load(MESSAGE_TABLE)
            .set_mode(ChunkMode::Text)
            .call(())
            .map_err(stop)?;
        let source =
            std::str::from_utf8(&plugin.code).map_err(|_| Failure::Broken("the script is not UTF-8 text".into()))?;
        let inst = LuaInstance {
            lua,
            name: plugin.name().to_owned(),
            limits,
            budget,
            message_table,
        };
        inst.arm();
        inst.lua
            .load(source)
            .set_name(plugin.name())
            .set_mode(ChunkMode::Text)
            .exec()
            .map_err(|e| match e {
                mlua::Error::SyntaxError { message, .. } => Failure::Broken(format!("does not compile: {message}")),
                e => match inst.failure(e) {
                    Failure::Error(e) => Failure::Stopped(format!("cannot start: {e}")),
                    stopped => stopped,
                },
            })?;
        Ok(Box::new(inst))
    }
}
