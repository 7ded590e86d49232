//! The Lua host against a recording fake runtime: handlers, capabilities, the sandbox, limits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;

use meow_lua::LuaEngine;
use meow_plugin::{Capability, Engine, Event, Failure, Host, Kind, Limits, Manifest, MessageEvent, Plugin};
use meow_testkit::RecordingServices as Recorder;

fn plugin(source: &str) -> Plugin {
    Plugin {
        manifest: Manifest {
            name: "t".into(),
            version: "1".into(),
            kind: Kind::Lua,
            entry: "t.lua".into(),
            sha256: None,
            description: None,
            capabilities: vec![],
            config: Default::default(),
        },
        dir: PathBuf::new(),
        code: source.as_bytes().to_vec(),
        sha256: String::new(),
    }
}

fn start(
    source: &str,
    caps: &[Capability],
    limits: Limits,
) -> (Result<Box<dyn meow_plugin::Instance>, Failure>, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let host = Host::new("t", caps.iter().copied(), rec.clone());
    (LuaEngine.instantiate(&plugin(source), host, limits), rec)
}

fn message(text: &str) -> Event {
    Event::Message(MessageEvent {
        id: "abc".into(),
        sender: "bob".into(),
        content_type: "text".into(),
        body: text.as_bytes().to_vec(),
        text: Some(text.into()),
        sent_at: 1,
        group: None,
        automatic: false,
        reply_to: None,
    })
}

#[test]
fn handlers_reply_and_use_the_kv_store() {
    let src = r#"
        function init(config) meow.info("prefix " .. config.prefix) end
        function on_message(msg)
            local n = tonumber(meow.kv.get("n") or "0") + 1
            meow.kv.set("n", tostring(n))
            meow.reply(msg, meow.config.prefix .. msg.text .. " #" .. n)
        end
    "#;
    let (inst, rec) = start(src, &[Capability::Messaging, Capability::Kv], Limits::default());
    let mut inst = inst.unwrap();
    inst.init(r#"{"prefix": "> "}"#).unwrap();
    inst.handle(&message("hi")).unwrap();
    inst.handle(&message("again")).unwrap();
    assert_eq!(
        rec.sent(),
        vec![
            ("reply:abc".into(), "> hi #1".into()),
            ("reply:abc".into(), "> again #2".into())
        ]
    );
    assert_eq!(rec.logs()[0], "prefix > ");
}

#[test]
fn message_tables_carry_every_field_to_both_handler_styles() {
    let show =
        r#"table.concat({m.id, m.sender, m.content_type, m.text or "-", #m.body, m.sent_at, m.group or "-"}, "|")"#;
    let direct = format!("function on_message(m) meow.send('log', {show}) end");
    let catch_all = format!("function handle(e) local m = e.message; meow.send('log', e.kind .. ':' .. {show}) end");
    let binary = Event::Message(MessageEvent {
        id: "i2".into(),
        sender: "carol".into(),
        content_type: "binary".into(),
        body: vec![0, 159, 146, 150],
        text: None,
        sent_at: 1_800_000_000_000,
        group: Some("friends".into()),
        automatic: true,
        reply_to: None,
    });
    for (src, prefix) in [(direct, ""), (catch_all, "message:")] {
        let (inst, rec) = start(&src, &[Capability::Messaging], Limits::default());
        let mut inst = inst.unwrap();
        inst.handle(&message("héllo")).unwrap();
        inst.handle(&binary).unwrap();
        let sent: Vec<String> = rec.sent().iter().map(|(_, t)| t.clone()).collect();
        assert_eq!(
            sent,
            vec![
                format!("{prefix}abc|bob|text|héllo|6|1|-"),
                format!("{prefix}i2|carol|binary|-|4|1800000000000|friends"),
            ]
        );
    }
}

#[test]
fn capabilities_not_granted_are_denied() {
    let src = r#"function on_message(msg) local ok, err = meow.send("bob", "x"); meow.warn(err) end"#;
    let (inst, rec) = start(src, &[], Limits::default());
    inst.unwrap().handle(&message("x")).unwrap();
    assert!(rec.sent().is_empty());
    assert!(
        rec.logs()[0].contains("capability 'messaging' is not granted"),
        "{:?}",
        rec.logs()
    );
}

#[test]
fn the_sandbox_has_no_way_out() {
    for escape in [
        "io.open('/etc/passwd')",
        "os.execute('true')",
        "require('os')",
        "load('return 1')()",
        "loadfile('/etc/passwd')",
        "dofile('/etc/passwd')",
        "string.dump(print)",
        "debug.getinfo(1)",
        "package.loadlib('x', 'y')",
        "collectgarbage('count')",
        "(''):dump()",
    ] {
        let (inst, _) = start(escape, &[], Limits::default());
        match inst {
            Err(Failure::Stopped(reason)) => assert!(reason.contains("cannot start"), "{escape}: {reason}"),
            other => panic!("{escape} was not refused: {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn an_infinite_loop_is_stopped() {
    let limits = Limits {
        call_ms: 200,
        ..Limits::default()
    };
    let (inst, _) = start("function on_message(m) while true do end end", &[], limits);
    let err = inst.unwrap().handle(&message("x")).unwrap_err();
    assert!(matches!(&err, Failure::Stopped(r) if r.contains("budget")), "{err:?}");
}

#[test]
fn a_memory_bomb_is_stopped() {
    let limits = Limits {
        memory_bytes: 8 << 20,
        ..Limits::default()
    };
    let (inst, _) = start(
        "function on_message(m) local t = {} while true do t[#t+1] = string.rep('x', 65536) end end",
        &[],
        limits,
    );
    let err = inst.unwrap().handle(&message("x")).unwrap_err();
    assert_eq!(err, Failure::Stopped("exceeded its memory limit of 8 MiB".into()));
}

#[test]
fn ordinary_errors_keep_the_instance() {
    let (inst, rec) = start(
        "function on_message(m) if m.text == 'bad' then error('boom') end meow.info('ok') end",
        &[],
        Limits::default(),
    );
    let mut inst = inst.unwrap();
    assert!(matches!(inst.handle(&message("bad")), Err(Failure::Error(e)) if e.contains("boom")));
    inst.handle(&message("fine")).unwrap();
    assert_eq!(rec.logs().as_slice(), ["ok"]);
}

/// Runs one call on its own thread; what it returned and how long it took (`None`: still
/// running after 10 s, an escape).
fn timed(src: &str, limits: Limits, caps: &[Capability]) -> Option<(Result<(), Failure>, std::time::Duration)> {
    let (inst, _) = start(src, caps, limits);
    let mut inst = inst.unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let t = std::time::Instant::now();
        let r = inst.handle(&message("x"));
        let _ = tx.send((r, t.elapsed()));
    });
    rx.recv_timeout(std::time::Duration::from_secs(10)).ok()
}

#[test]
fn no_escape_from_the_budget_coroutines_pcall_error_handlers_patterns_or_host_calls() {
    let limits = Limits {
        call_ms: 300,
        ..Limits::default()
    };
    for (name, src) in [
        (
            "coroutine",
            "function on_message(m) coroutine.resume(coroutine.create(function() while true do end end)) end",
        ),
        (
            "coroutine.wrap",
            "function on_message(m) while true do pcall(coroutine.wrap(function() while true do end end)) end end",
        ),
        (
            "pcall",
            "function on_message(m) while true do pcall(function() while true do end end) end end",
        ),
        (
            "xpcall",
            "function on_message(m) while true do xpcall(function() while true do end end, function(e) while true do end end) end end",
        ),
        (
            "error value",
            "function on_message(m) while true do pcall(error, {}) end end",
        ),
        (
            "pattern",
            "function on_message(m) local s = string.rep('a', 5000) while true do string.find(s, '(.-)(.-)(.-)(.-)(.-)b') end end",
        ),
        (
            "gsub callback",
            "function on_message(m) string.gsub(string.rep('a', 100000), '.', function() while true do end end) end",
        ),
        (
            "host calls",
            "function on_message(m) while true do meow.kv.set('k', 'v') end end",
        ),
        (
            "to-be-closed in a dead coroutine",
            "function on_message(m) \
               local co = coroutine.create(function() \
                 local x <close> = setmetatable({}, {__close = function() while true do end end}) \
                 while true do end end) \
               local guard <close> = setmetatable({}, {__close = function() coroutine.close(co) end}) \
               coroutine.resume(co) end",
        ),
        (
            "to-be-closed in a coroutine stopped where it cannot yield",
            "function on_message(m) \
               local co = coroutine.create(function() \
                 local x <close> = setmetatable({}, {__close = function() while true do end end}) \
                 string.gsub('aaaa', '.', function() while true do end end) end) \
               local guard <close> = setmetatable({}, {__close = function() coroutine.close(co) end}) \
               coroutine.resume(co) end",
        ),
    ] {
        let (r, took) = timed(src, limits, &[Capability::Kv]).unwrap_or_else(|| panic!("{name}: escaped the budget"));
        assert!(
            matches!(&r, Err(Failure::Stopped(reason)) if reason.contains("budget")),
            "{name}: {r:?}"
        );
        assert!(took < std::time::Duration::from_secs(2), "{name} ran for {took:?}");
    }
}

#[test]
fn finalizers_are_refused_because_lua_runs_them_unwatched() {
    let (inst, rec) = start(
        "function on_message(m) local ok, err = pcall(setmetatable, {}, {__gc = function() while true do end end}) \
         meow.info(tostring(ok) .. ' ' .. err) local mt = {} setmetatable({}, mt) mt.__gc = function() end \
         meow.info('later __gc fields are inert') end",
        &[],
        Limits::default(),
    );
    inst.unwrap().handle(&message("x")).unwrap();
    let logs = rec.logs();
    assert!(logs[0].starts_with("false") && logs[0].contains("__gc"), "{logs:?}");
    assert_eq!(logs[1], "later __gc fields are inert");
}

#[test]
fn pcall_still_catches_ordinary_errors_and_patterns_still_work() {
    let src = r#"
        function on_message(m)
            local ok, err = pcall(error, "plain")
            local ok2, err2 = xpcall(function() error({code = 7}) end, function(e) return e.code end)
            local co = coroutine.create(function(a) local b = coroutine.yield(a + 1) error("in co " .. b) end)
            local _, one = coroutine.resume(co, 1)
            local okc, errc = coroutine.resume(co, "x")
            local k, v = string.match("key = value", "(%w+)%s*=%s*(%w+)")
            meow.info(table.concat({tostring(ok), err, tostring(ok2), tostring(err2), one, tostring(okc), errc:match("in co x"), k, v}, " "))
        end
    "#;
    let (inst, rec) = start(src, &[], Limits::default());
    inst.unwrap().handle(&message("x")).unwrap();
    assert_eq!(rec.logs().as_slice(), ["false plain false 7 2 false in co x key value"]);
}

#[test]
fn meow_commands_give_help_roles_bans_and_a_rate_limit() {
    let src = r#"
        local bot = meow.commands.new { bans = true, rate = { count = 4, window_ms = 60000 } }
        bot:command("ping", "", "answers pong", function() return "pong" end)
        bot:command("echo", "<text>", "says it back", function(msg, args) return table.concat(args, " ") end)
        bot:admin("stop", "", "stops the bot", function() return "bye" end)
        function on_message(msg) bot:handle(msg) end
    "#;
    let (inst, rec) = start(src, &[Capability::Messaging, Capability::Kv], Limits::default());
    let mut inst = inst.unwrap();
    inst.init(r#"{"admins": "alice, carol"}"#).unwrap();
    for text in [
        "/help",
        "/echo a  b",
        "/stop",
        "hello",
        "/nope",
        "/ping",
        "/ping",
        "/ping",
    ] {
        inst.handle(&message(text)).unwrap();
    }
    let answers: Vec<String> = rec.sent().into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        answers,
        [
            "commands:\n/help - this list\n/ping - answers pong\n/echo <text> - says it back",
            "a b",
            "/stop is for admins",
            "unknown command /nope: /help lists them",
            "slow down: 4 commands per 60 s; try again in 60 s",
        ],
        "bob is no admin; 'hello' is no command; the fifth command is over the limit, the rest are ignored"
    );
}

#[test]
fn meow_commands_ban_says_why_it_cannot_without_the_kv_capability() {
    let src = r#"
        local bot = meow.commands.new { bans = true }
        function on_message(msg) bot:handle(msg) end
    "#;
    let (inst, rec) = start(src, &[Capability::Messaging], Limits::default());
    let mut inst = inst.unwrap();
    inst.init(r#"{"owner": "bob"}"#).unwrap();
    inst.handle(&message("/ban eve")).unwrap();
    inst.handle(&message("/unban")).unwrap();
    let answers: Vec<String> = rec.sent().into_iter().map(|(_, t)| t).collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(answers[0].starts_with("cannot ban: denied"), "{answers:?}");
    assert_eq!(answers[1], "usage: /unban <contact>");
}
