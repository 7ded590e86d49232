//! `meow run` with WASM and Lua plugins (issue: plugin runtime).

use std::time::Duration;

use crate::support::{Daemon, copy_dir, plugins, repo, setup, wait_for_text};

#[test]
fn echo_and_lua_answer_while_hostile_plugins_are_stopped() {
    let mut instances = String::from(
        "  - { name: echo, plugin: echo, grant: [messaging, kv] }\n\
         \x20 - { name: responder, plugin: responder, grant: [messaging, kv] }\n\
         \x20 - { name: spin, plugin: spin, limits: { call_ms: 300 } }\n\
         \x20 - { name: bomb, plugin: memory-bomb, limits: { memory_mib: 16 } }\n",
    );
    for way in ["io", "os", "require", "load", "dump"] {
        instances.push_str(&format!(
            "  - {{ name: escape-{way}, plugin: escape, config: {{ attempt: {way} }} }}\n"
        ));
    }
    let s = setup("plugins", &instances);
    copy_dir(&repo().join("tests/fixtures/escape"), &s.local().join("escape"));
    let daemon = Daemon::start(&s.bot, &s.config);
    s.pair();

    // The responder greets the new contact; both plugins answer a ping.
    s.user.meow(&["send", "bot", "ping"]).ok();
    wait_for_text(&s.user, "the echo of ping", |t| t == "echo: ping (#1)");
    wait_for_text(&s.user, "pong from the Lua plugin", |t| t == "pong");

    // Hostile plugins are stopped with a clear reason, and restarted.
    s.user.meow(&["send", "bot", "spin"]).ok();
    s.user.meow(&["send", "bot", "bomb"]).ok();
    daemon.wait_log("plugin spin was stopped: exceeded its time budget of 300 ms");
    daemon.wait_log("plugin bomb was stopped: exceeded its memory limit of 16 MiB");
    for (way, reason) in [
        ("io", "global 'io'"),
        ("os", "global 'os'"),
        ("require", "global 'require'"),
        ("load", "global 'load'"),
        ("dump", "field 'dump'"),
    ] {
        daemon.wait_log(&format!("plugin escape-{way} was stopped: init failed"));
        let log = daemon.log_text();
        let line = log
            .lines()
            .find(|l| l.contains(&format!("plugin escape-{way} was stopped")))
            .unwrap();
        assert!(line.contains(reason), "{line}");
        assert!(!log.contains(&format!("escaped through {way}")));
    }

    // Both read the contact's policy: Lua through meow.contact_policy, WASM through
    // node.contact-policy; the change is made through the running daemon.
    s.user.meow(&["send", "bot", "privacy"]).ok();
    wait_for_text(&s.user, "the responder's privacy answer", |t| {
        t == "my messages to you travel by: server"
    });
    let set = s.bot.meow(&["contacts", "policy", "user", "direct-preferred"]);
    assert!(set.ok().contains("user: direct (was server)"), "{}", set.stdout);
    s.user.meow(&["send", "bot", "privacy"]).ok();
    wait_for_text(&s.user, "the new policy, from Lua", |t| {
        t == "my messages to you travel by: direct"
    });
    wait_for_text(&s.user, "the new policy, from WASM", |t| {
        t.starts_with("echo: privacy") && t.ends_with("[direct]")
    });

    // The echo plugin kept answering throughout.
    s.user.meow(&["send", "bot", "after the storm"]).ok();
    wait_for_text(&s.user, "the echo after hostile plugins", |t| {
        t.starts_with("echo: after the storm")
    });
    let list: serde_json::Value = serde_json::from_str(s.bot.meow(&["plugin", "list", "--json"]).ok()).unwrap();
    let status = |n: &str| list.as_array().unwrap().iter().find(|i| i["instance"] == n).unwrap()["status"].clone();
    assert!(status("spin")["restarts"].as_u64().unwrap() >= 1);
    assert_eq!(status("echo")["restarts"], 0);
    assert_eq!(daemon.terminate(), 0);
}

#[test]
fn hot_reload_swaps_rolls_back_and_keeps_state() {
    let s = setup(
        "reload",
        "  - { name: responder, plugin: \"{local}/responder\", grant: [messaging, kv] }\n",
    );
    let dir = s.local().join("responder");
    copy_dir(&plugins().join("responder"), &dir);
    let daemon = Daemon::start(&s.bot, &s.config);
    s.pair();
    s.user.meow(&["send", "bot", "stats"]).ok();
    wait_for_text(&s.user, "stats", |t| t == "user, you sent me 1 message");

    // A new version: swapped in, and the key-value state survives.
    let yaml = std::fs::read_to_string(dir.join("plugin.yaml")).unwrap();
    std::fs::write(
        dir.join("plugin.yaml"),
        yaml.replace("version: 0.1.0", "version: 0.2.0")
            .replace("ping: pong", "ping: pong v2"),
    )
    .unwrap();
    s.bot.meow(&["plugin", "pin", dir.to_str().unwrap()]).ok();
    let out = s.bot.meow(&["plugin", "reload", "responder"]);
    assert!(
        out.ok().contains("reloaded responder (version 0.2.0)"),
        "{}",
        out.stdout
    );
    s.user.meow(&["send", "bot", "ping"]).ok();
    wait_for_text(&s.user, "the new version's answer", |t| t == "pong v2");
    s.user.meow(&["send", "bot", "stats"]).ok();
    wait_for_text(&s.user, "stats kept across the reload", |t| {
        t == "user, you sent me 3 messages"
    });

    // A broken version is refused and the running one stays.
    let lua = std::fs::read_to_string(dir.join("responder.lua")).unwrap();
    std::fs::write(dir.join("responder.lua"), format!("{lua}\nfunction broken(")).unwrap();
    s.bot.meow(&["plugin", "pin", dir.to_str().unwrap()]).ok();
    s.bot
        .meow(&["plugin", "reload", "responder"])
        .fails_with(1, "the old one keeps running");
    // A changed file that was not re-pinned is refused too.
    std::fs::write(dir.join("responder.lua"), &lua).unwrap();
    s.bot
        .meow(&["plugin", "reload", "responder"])
        .fails_with(1, "refusing a changed plugin");
    s.user.meow(&["send", "bot", "ping"]).ok();
    wait_for_text(&s.user, "the old version still answering", |t| t == "pong v2");
    let pongs = s.user.texts().iter().filter(|t| *t == "pong v2").count();
    assert_eq!(pongs, 2);
    assert_eq!(daemon.terminate(), 0);
}

/// A plugin that cannot run as it is (here a script that does not compile) is not started
/// again and again: `meow plugin list` says it is broken and why, and a fixed version loaded
/// with `meow plugin reload` runs.
#[test]
fn a_plugin_that_does_not_compile_is_not_retried_until_a_new_version_comes() {
    let s = setup(
        "broken",
        "  - { name: responder, plugin: \"{local}/responder\", grant: [messaging, kv] }\n",
    );
    let dir = s.local().join("responder");
    copy_dir(&plugins().join("responder"), &dir);
    let lua = std::fs::read_to_string(dir.join("responder.lua")).unwrap();
    std::fs::write(dir.join("responder.lua"), format!("{lua}\nfunction broken(")).unwrap();
    s.bot.meow(&["plugin", "pin", dir.to_str().unwrap()]).ok();
    let daemon = Daemon::start(&s.bot, &s.config);
    let status = || {
        let list: serde_json::Value = serde_json::from_str(s.bot.meow(&["plugin", "list", "--json"]).ok()).unwrap();
        list.as_array().unwrap()[0]["status"].clone()
    };
    let broken = crate::support::wait_for("the plugin marked broken", Duration::from_secs(20), || {
        status()["broken"].as_str().map(str::to_owned)
    });
    assert!(broken.contains("does not compile"), "{broken}");
    // Past the first backoffs (1 s, 2 s), it was not started again.
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(status()["restarts"], 0, "{}", status());
    let text = s.bot.meow(&["plugin", "list"]);
    assert!(text.ok().contains("broken: not started again until"), "{}", text.stdout);
    assert_eq!(
        daemon.log_text().matches("cannot run as it is").count(),
        1,
        "said once, not at every retry"
    );

    std::fs::write(dir.join("responder.lua"), &lua).unwrap();
    s.bot.meow(&["plugin", "pin", dir.to_str().unwrap()]).ok();
    s.bot.meow(&["plugin", "reload", "responder"]).ok();
    s.pair();
    s.user.meow(&["send", "bot", "ping"]).ok();
    wait_for_text(&s.user, "the fixed version's answer", |t| t == "pong");
    assert!(status()["broken"].is_null());
    assert_eq!(daemon.terminate(), 0);
}

#[test]
fn sigterm_stops_cleanly_and_nothing_is_lost() {
    let s = setup("sigterm", "  - { name: echo, plugin: echo, grant: [messaging, kv] }\n");
    let daemon = Daemon::start(&s.bot, &s.config);
    s.pair();
    s.user.meow(&["send", "bot", "first"]).ok();
    wait_for_text(&s.user, "the first echo", |t| t == "echo: first (#1)");
    assert_eq!(daemon.terminate(), 0, "clean exit on SIGTERM");
    assert!(
        !s.bot.dir.join("control.sock").exists(),
        "the control socket is removed"
    );

    // The bot (and its embedded server) is down: the message waits in the user's outbox.
    s.user
        .meow(&["send", "bot", "while you were away"])
        .fails_with(75, "queued");
    let daemon = Daemon::start(&s.bot, &s.config);
    s.user.meow(&["inbox"]).ok();
    wait_for_text(&s.user, "the echo after the restart", |t| {
        t == "echo: while you were away (#2)"
    });
    assert_eq!(daemon.terminate(), 0);
}

#[test]
fn a_plugin_sees_a_hidden_contact_only_while_it_is_unlocked_and_its_state_goes_with_it() {
    let s = setup(
        "hidden-plugin",
        "  - { name: echo, plugin: echo, grant: [messaging, kv] }\n",
    );
    let other = crate::support::Home::init(s.tmp.path().join("other"), "other");
    let daemon = Daemon::start(&s.bot, &s.config);
    s.pair();
    s.pair_with(&other, "other");
    s.user.meow(&["send", "bot", "first"]).ok();
    wait_for_text(&s.user, "the first echo", |t| t == "echo: first (#1)");

    // Hidden and locked in the running daemon: the plugin gets nothing of the user.
    let secret = [("MEOW_COMPARTMENT_PASSWORD", "hidden user")];
    s.bot.meow_env(&secret, &["hide", "user", "--new"]).ok();
    s.bot.meow(&["lock"]).ok();
    s.user.meow(&["send", "bot", "while hidden"]).ok();
    other.meow(&["send", "bot", "ping"]).ok();
    wait_for_text(&other, "the other contact's echo", |t| t == "echo: ping (#1)");
    assert!(
        !s.user.texts().iter().any(|t| t.contains("while hidden")),
        "a locked contact was answered"
    );

    // Unlocked: the waiting message is answered, and the plugin's count for the user (kept
    // under `count/user`) went into the compartment with it: #2, not #1.
    s.bot.meow_env(&secret, &["unlock"]).ok();
    wait_for_text(&s.user, "the echo after unlock", |t| t == "echo: while hidden (#2)");
    assert_eq!(daemon.terminate(), 0);
}

#[test]
fn a_guests_stdout_and_stderr_reach_the_log_rate_limited_and_a_panic_says_why() {
    let s = setup("guest-output", "  - { name: spin, plugin: spin }\n");
    let daemon = Daemon::start(&s.bot, &s.config);
    s.pair();
    s.user.meow(&["send", "bot", "print"]).ok();
    daemon.wait_log("stdout: hello from the guest");
    daemon.wait_log("stderr: and a word on stderr");
    s.user.meow(&["send", "bot", "panic"]).ok();
    daemon.wait_log("panicked at testing/spin/src/lib.rs");
    daemon.wait_log("the guest gave up)");
    assert!(
        daemon.log_text().contains("(its last words on stderr: thread"),
        "{}",
        daemon.log_text()
    );
    // A flood of output is cut to the log's rate, and says how much it dropped.
    s.user.meow(&["send", "bot", "flood"]).ok();
    daemon.wait_log("stdout: line 0");
    // The next line after the log's bucket refills (a second) reports what was dropped.
    std::thread::sleep(Duration::from_millis(1500));
    s.user.meow(&["send", "bot", "print"]).ok();
    daemon.wait_log("log lines dropped");
    let log = daemon.log_text();
    let lines = log.lines().filter(|l| l.contains("stdout: line ")).count();
    assert!(lines > 0 && lines < 1000, "{lines} of 10 000 lines logged");
    assert_eq!(daemon.terminate(), 0);
}

#[test]
fn the_helpdesk_bot_lists_its_commands_enforces_roles_and_slows_a_flood() {
    let s = setup(
        "helpdesk",
        "  - { name: helpdesk, plugin: helpdesk, grant: [messaging, kv], config: { admins: boss, commands_per_minute: 8 } }\n",
    );
    let daemon = Daemon::start(&s.bot, &s.config);
    s.pair();
    let boss = crate::support::Home::init(s.tmp.path().join("boss"), "boss");
    s.pair_with(&boss, "boss");

    // A new contact is greeted with the commands it may run.
    let greeting = wait_for_text(&s.user, "the user's greeting", |t| {
        t.starts_with("hello user! commands:")
    });
    assert!(!greeting.iter().any(|t| t.contains("/announce")), "{greeting:?}");
    wait_for_text(&boss, "the admin's greeting", |t| {
        t.starts_with("hello boss! commands:") && t.contains("/announce <text> - sends text to every contact")
    });

    s.user.meow(&["send", "bot", "/help"]).ok();
    wait_for_text(&s.user, "/help", |t| {
        t == "commands:\n/help - this list\n/ping - answers pong\n/time - the bot's clock, Unix ms\n/visits - counts your visits"
    });
    s.user.meow(&["send", "bot", "/announce free pizza"]).ok();
    wait_for_text(&s.user, "the refusal", |t| t == "/announce is for admins");
    boss.meow(&["send", "bot", "/announce meeting at 5"]).ok();
    wait_for_text(&boss, "the admin's confirmation", |t| t == "announced to 1 contacts");
    wait_for_text(&s.user, "the announcement", |t| t == "meeting at 5");
    assert!(!s.user.texts().contains(&"free pizza".to_owned()));

    // 2 commands used of 8 a minute: 6 pings are answered, the 7th gets one warning, the rest
    // nothing.
    for _ in 0..10 {
        s.user.meow(&["send", "bot", "/ping"]).ok();
    }
    wait_for_text(&s.user, "the warning", |t| {
        t.starts_with("slow down: 8 commands per 60 s")
    });
    std::thread::sleep(Duration::from_secs(3));
    let texts = s.user.texts();
    assert_eq!(texts.iter().filter(|t| *t == "pong").count(), 6, "{texts:?}");
    assert_eq!(
        texts.iter().filter(|t| t.starts_with("slow down")).count(),
        1,
        "{texts:?}"
    );
    assert_eq!(daemon.terminate(), 0);
}

/// A plugin's `meow.reply` and a recipe's `reply` name the message they answer: the contact's
/// copy of each answer carries the id under which the bot received the question.
#[test]
fn a_plugins_and_a_recipes_replies_keep_the_thread() {
    let s = setup(
        "plugin-thread",
        "  - { name: responder, plugin: responder, grant: [messaging, kv] }\n",
    );
    let recipe = s.tmp.path().join("away.yaml");
    std::fs::write(
        &recipe,
        "version: 1\nname: away\ntriggers:\n  - message: { contains: away }\nactions:\n  - reply: { text: back at 8 }\n",
    )
    .unwrap();
    let yaml = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, format!("{yaml}recipes:\n  - {}\n", recipe.display())).unwrap();
    let daemon = Daemon::start(&s.bot, &s.config);
    s.pair();
    s.user.meow(&["send", "bot", "ping"]).ok();
    wait_for_text(&s.user, "pong", |t| t == "pong");
    s.user.meow(&["send", "bot", "are you away?"]).ok();
    wait_for_text(&s.user, "the recipe's answer", |t| t == "back at 8");
    let inbox = ["inbox", "--all", "--json"];
    let (asked, answered) = (s.bot.json_list(&inbox), s.user.json_list(&inbox));
    for (question, answer) in [("ping", "pong"), ("are you away?", "back at 8")] {
        let q = asked.iter().find(|m| m["text"] == question).unwrap();
        let a = answered.iter().find(|m| m["text"] == answer).unwrap();
        assert_eq!(a["reply_to"], q["id"], "{a}");
    }
    assert_eq!(daemon.terminate(), 0);
}
