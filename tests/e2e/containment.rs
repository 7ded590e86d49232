//! Containment (issue 11): no plugin, recipe or peer can hang the daemon, flood it, make it
//! lose events, or start an endless conversation between bots.

use std::time::{Duration, Instant};

use crate::support::{Daemon, Home, TempDir, free_port, setup, wait_for, wait_for_text};

/// Sends `text` from `home` to `to` and waits for an answer matching `pred`; the time it took.
fn round_trip(home: &Home, to: &str, text: &str, pred: impl Fn(&str) -> bool) -> Duration {
    let t = Instant::now();
    home.meow(&["send", to, text]).ok();
    wait_for_text(home, &format!("the answer to {text:?}"), pred);
    t.elapsed()
}

#[test]
fn hostile_plugins_neither_delay_a_good_one_nor_hang_the_daemon() {
    let s = setup(
        "hostile",
        "  - { name: echo, plugin: echo, grant: [messaging, kv] }\n\
         \x20 - { name: hog, plugin: lua-hog, grant: [messaging], limits: { call_ms: 300 } }\n\
         \x20 - { name: spin, plugin: spin, limits: { call_ms: 300 } }\n",
    );
    let daemon = Daemon::start(&s.bot, &s.config);
    s.pair();
    for (i, attack) in ["coroutine", "pcall", "pattern", "sleep", "spin"].iter().enumerate() {
        s.user.meow(&["send", "bot", attack]).ok();
        let ping = format!("ping {i}");
        let took = round_trip(&s.user, "bot", &ping, |t| t.starts_with(&format!("echo: {ping} ")));
        assert!(took < Duration::from_secs(2), "after {attack}, the echo took {took:?}");
    }
    for reason in [
        "plugin hog was stopped: exceeded its",
        "plugin spin was stopped: tried to wait inside WASI (a sleep, or a poll with nothing ready)",
        "plugin spin was stopped: exceeded its time budget of 300 ms for one call",
    ] {
        daemon.wait_log(reason);
    }
    // Each of the three Lua attacks stops the instance once (after its restart backoff).
    let status = |n: &str| {
        let list: serde_json::Value = serde_json::from_str(s.bot.meow(&["plugin", "list", "--json"]).ok()).unwrap();
        list.as_array().unwrap().iter().find(|i| i["instance"] == n).unwrap()["status"].clone()
    };
    wait_for("three stops of the Lua hog", Duration::from_secs(30), || {
        (status("hog")["restarts"].as_u64().unwrap() >= 3).then_some(())
    });
    assert_eq!(status("echo")["restarts"], 0);

    // SIGTERM right after a plugin tried to sleep for an hour inside WASI: the daemon ends at once.
    s.user.meow(&["send", "bot", "sleep"]).ok();
    std::thread::sleep(Duration::from_millis(200));
    let (code, took) = daemon.terminate_timed();
    assert_eq!(code, 0);
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
}

#[test]
fn every_message_reaches_the_bots_once_whichever_command_fetched_it() {
    let s = setup("events", "  - { name: echo, plugin: echo, grant: [messaging, kv] }\n");
    let daemon = Daemon::start(&s.bot, &s.config);
    s.pair();
    // The bot's owner reads the bot's mail by hand while messages arrive: `meow inbox` fetches
    // through the daemon, and what it fetches must reach the echo plugin too.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (stop, bot) = (
            stop.clone(),
            Home {
                dir: s.bot.dir.clone(),
                password: s.bot.password.clone(),
            },
        );
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                bot.meow(&["inbox"]);
            }
        })
    };
    for i in 1..=20 {
        s.user.meow(&["send", "bot", &format!("m{i}")]).ok();
    }
    let texts = wait_for("20 echoes", Duration::from_secs(60), || {
        let texts = s.user.texts();
        (texts.iter().filter(|t| t.starts_with("echo: m")).count() >= 20).then_some(texts)
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reader.join().unwrap();
    for i in 1..=20 {
        let n = texts.iter().filter(|t| t.starts_with(&format!("echo: m{i} "))).count();
        assert_eq!(n, 1, "m{i} was echoed {n} times: {texts:?}");
    }
    assert_eq!(daemon.terminate(), 0);
}

#[test]
fn a_send_flood_is_cut_at_the_quota_and_a_bystander_is_still_answered() {
    let s = setup(
        "flood",
        "  - { name: echo, plugin: echo, grant: [messaging, kv] }\n\
         \x20 - { name: hog, plugin: lua-hog, grant: [messaging] }\n",
    );
    let bystander = Home::init(s.tmp.path().join("bystander"), "bystander");
    let daemon = Daemon::start(&s.bot, &s.config);
    s.pair();
    s.pair_with(&bystander, "bystander");
    s.user.meow(&["send", "bot", "flood"]).ok();
    daemon.wait_log("flood: ");
    let log = daemon.log_text();
    let line = log.lines().find(|l| l.contains("flood: ")).unwrap();
    let refused: u64 = line
        .split("flood: ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(refused >= 99_000, "{line}");
    assert!(line.contains("quota"), "{line}");
    let took = round_trip(&bystander, "bot", "are you there?", |t| {
        t.starts_with("echo: are you there?")
    });
    assert!(took < Duration::from_secs(2), "the bystander waited {took:?}");
    assert!(daemon.rss_kib() < 300 * 1024, "RSS {} KiB", daemon.rss_kib());
    let lines = daemon.log_text().lines().count();
    assert!(lines < 2000, "the flood wrote {lines} log lines");
    let floods = s.user.texts().iter().filter(|t| t.starts_with("flood ")).count();
    assert!((1..=250).contains(&floods), "{floods} flood messages reached the user");
    let (code, took) = daemon.terminate_timed();
    assert_eq!(code, 0);
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
}

/// Two homes, each a daemon with an embedded server and the recipe `trigger`, that know each
/// other as `a` and `b`.
fn two_auto_answering_homes(tmp: &TempDir, trigger: &str, limits: &str) -> (Home, Home, Daemon, Daemon) {
    let recipe = tmp.path().join("auto.yaml");
    std::fs::write(
        &recipe,
        format!("version: 1\nname: auto\ntriggers:\n  - message: {trigger}\nactions:\n  - reply: {{ text: \"auto: {{{{ trigger.text }}}}\" }}\n"),
    )
    .unwrap();
    let start = |name: &str| {
        let home = Home::init(tmp.path().join(name), name);
        let config = tmp.path().join(format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!(
                "version: 1\nserver:\n  listen: 127.0.0.1:{}\npoll_wait: 1s\nrecipes: [{}]\n{limits}",
                free_port(),
                recipe.display()
            ),
        )
        .unwrap();
        let daemon = Daemon::start(&home, &config);
        (home, daemon)
    };
    let ((a, da), (b, db)) = (start("a"), start("b"));
    let inv = tmp.path().join("b.meowcard");
    a.meow(&["invite", "b", "--out", inv.to_str().unwrap()]).ok();
    b.meow(&["accept", inv.to_str().unwrap(), "--name", "a"]).ok();
    wait_for("the contact at a", Duration::from_secs(30), || {
        let c: serde_json::Value = serde_json::from_str(&a.meow(&["contacts", "--json"]).stdout).ok()?;
        (c["contacts"].as_array()?.iter().any(|x| x["name"] == "b")).then_some(())
    });
    (a, b, da, db)
}

fn count(home: &Home) -> usize {
    home.texts().len()
}

#[test]
fn two_auto_answering_homes_stop_by_themselves() {
    // Marked messages: the other home's recipe does not answer an automatic reply.
    let tmp = TempDir::new("loop-marked");
    let (a, b, da, db) = two_auto_answering_homes(&tmp, "{}", "");
    a.meow(&["send", "b", "hello"]).ok();
    wait_for_text(&a, "b's automatic answer", |t| t == "auto: hello");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!((count(&a), count(&b)), (1, 1), "a: {:?} b: {:?}", a.texts(), b.texts());
    assert_eq!((da.terminate(), db.terminate()), (0, 0));

    // Homes that answer automatic messages too: the per-contact budget ends the loop.
    let tmp = TempDir::new("loop-budget");
    let limits = "limits:\n  auto_replies_per_contact: 10\n  auto_reply_window: 1h\n";
    let (a, b, da, db) = two_auto_answering_homes(&tmp, "{ automatic: true }", limits);
    a.meow(&["send", "b", "ping"]).ok();
    let settled = wait_for("the loop to stop", Duration::from_secs(60), || {
        let before = (count(&a), count(&b));
        std::thread::sleep(Duration::from_secs(2));
        (before == (count(&a), count(&b)) && before.0 > 1).then_some(before)
    });
    assert!(settled.0 <= 10 && settled.1 <= 11, "{settled:?}");
    let trace = b.meow(&["recipe", "trace", "auto"]);
    assert!(
        trace.ok().contains("at most 10 automatic messages to a per 3600 s"),
        "{}",
        trace.stdout
    );
    db.wait_log("automatic messages to a per 3600 s");
    assert_eq!((da.terminate(), db.terminate()), (0, 0));
}
