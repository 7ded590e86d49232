//! Recipes in a running daemon (issue: automation recipes).

use crate::support::{Daemon, Home, TempDir, free_port, repo, wait_for_text};

#[test]
fn sensor_readings_over_the_threshold_alert_the_owner_and_delays_survive_a_restart() {
    let tmp = TempDir::new("recipes");
    let hub = Home::init(tmp.path().join("hub"), "hub");
    let sensor = Home::init(tmp.path().join("sensor"), "sensor");
    let owner = Home::init(tmp.path().join("owner"), "owner");
    let config = tmp.path().join("meow.yaml");
    let base = format!(
        "version: 1\nserver:\n  listen: 127.0.0.1:{}\npoll_wait: 1s\n",
        free_port()
    );
    std::fs::write(&config, &base).unwrap();

    // Contacts first (recipes name them): the hub invites through its running daemon.
    let daemon = Daemon::start(&hub, &config);
    let servers: serde_json::Value = serde_json::from_str(hub.meow(&["servers", "list", "--json"]).ok()).unwrap();
    let card = servers[0]["card"].as_str().unwrap().to_owned();
    for (name, home) in [("sensor", &sensor), ("owner", &owner)] {
        home.meow(&["servers", "add", &card]).ok();
        let inv = tmp.path().join(format!("{name}.meowcard"));
        hub.meow(&["invite", name, "--out", inv.to_str().unwrap()]).ok();
        home.meow(&["accept", inv.to_str().unwrap(), "--name", "hub"]).ok();
    }
    crate::support::wait_for("both contacts at the hub", std::time::Duration::from_secs(30), || {
        let c: serde_json::Value = serde_json::from_str(&hub.meow(&["contacts", "--json"]).stdout).ok()?;
        let names: Vec<&str> = c["contacts"]
            .as_array()?
            .iter()
            .filter_map(|x| x["name"].as_str())
            .collect();
        (names.contains(&"sensor") && names.contains(&"owner")).then_some(())
    });
    assert_eq!(daemon.terminate(), 0);

    let delayed = tmp.path().join("delayed.yaml");
    std::fs::write(
        &delayed,
        "version: 1\nname: delayed-reply\nmode: restart\ntriggers:\n  - message: { from: owner, contains: later }\nactions:\n  - delay: 3s\n  - send: { to: owner, text: \"later: {{ trigger.text }}\" }\n",
    )
    .unwrap();
    let alert = repo().join("recipes/sensor-alert.yaml");
    std::fs::write(
        &config,
        format!("{base}recipes:\n  - {}\n  - {}\n", alert.display(), delayed.display()),
    )
    .unwrap();
    let daemon = Daemon::start(&hub, &config);

    // Readings 3 to 6 are hot: the alert recipe tells the owner (once: it is in single mode).
    let out = sensor.meow(&[
        "sensor", "--to", "hub", "--every", "200ms", "--count", "8", "--hot-at", "3",
    ]);
    assert!(
        out.ok().lines().all(|l| l.contains("176-byte envelope, LoRa class")),
        "{}",
        out.stdout
    );
    let texts = wait_for_text(&owner, "the temperature alert", |t| t.starts_with("ALERT: "));
    let alert_text = texts.iter().find(|t| t.starts_with("ALERT: ")).unwrap();
    let t: f64 = alert_text["ALERT: ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(t > 30.0, "{alert_text}");
    assert_eq!(
        texts.iter().filter(|t| t.starts_with("ALERT: ")).count(),
        1,
        "single mode: one alert per minute"
    );

    // A run waiting in a delay survives a restart of the runtime; in mode restart a new trigger
    // stops the waiting run for good, and the restart does not bring it back.
    owner.meow(&["send", "hub", "later first"]).ok();
    daemon.wait_log("wait 3s -> waiting");
    owner.meow(&["send", "hub", "later please"]).ok();
    daemon.wait_log("run stopped (mode restart)");
    assert_eq!(daemon.terminate(), 0);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let daemon = Daemon::start(&hub, &config);
    let texts = wait_for_text(&owner, "the delayed reply", |t| t == "later: later please");
    assert_eq!(texts.iter().filter(|t| *t == "later: later please").count(), 1);
    daemon.wait_log("resuming a run");
    std::thread::sleep(std::time::Duration::from_secs(1));
    let texts = owner.texts();
    assert!(!texts.iter().any(|t| t == "later: later first"), "{texts:?}");

    // The trace shows each step.
    let trace = hub.meow(&["recipe", "trace", "delayed-reply"]);
    let trace = trace.ok();
    assert!(trace.contains("wait 3s -> waiting"), "{trace}");
    assert!(
        trace.contains("send to owner: \"later: later please\" -> delivered"),
        "{trace}"
    );
    assert!(trace.contains("result: done"), "{trace}");
    assert!(
        trace.contains("result: stopped: triggered again (mode restart)"),
        "{trace}"
    );
    assert_eq!(daemon.terminate(), 0);
}

#[test]
fn recipe_check_and_dry_run_from_the_command_line() {
    let tmp = TempDir::new("recipe-cli");
    let h = Home {
        dir: tmp.path().join("none"),
        password: "x".into(),
    };
    let files: Vec<String> = std::fs::read_dir(repo().join("recipes"))
        .unwrap()
        .flatten()
        .map(|e| e.path().display().to_string())
        .collect();
    let mut args = vec!["recipe", "check"];
    args.extend(files.iter().map(String::as_str));
    let out = h.meow(&args);
    assert_eq!(
        out.ok().lines().filter(|l| l.contains(": ok (")).count(),
        files.len(),
        "{}",
        out.stdout
    );

    let bad = tmp.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "version: 1\ntriggers:\n  - message: { from: sensor }\nactions:\n  - send: { to: owner, txt: hi }\n",
    )
    .unwrap();
    let out = h.meow(&["recipe", "check", bad.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("bad.yaml:5:") && out.stdout.contains("actions[0]") && out.stdout.contains("txt"),
        "{}",
        out.stdout
    );

    let event = tmp.path().join("hot.yaml");
    std::fs::write(&event, "message: { from: sensor, text: '{\"t\": 33.3}' }\n").unwrap();
    let out = h.meow(&[
        "recipe",
        "test",
        repo().join("recipes/sensor-alert.yaml").to_str().unwrap(),
        "--event",
        event.to_str().unwrap(),
    ]);
    let text = out.ok();
    assert!(
        text.contains("action 1: send to owner: \"ALERT: 33.3 °C reported by sensor"),
        "{text}"
    );
    assert!(text.contains("action 4: wait 60s"), "{text}");
}
