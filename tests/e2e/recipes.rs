//! Recipes in a running daemon (issue: automation recipes).

use crate::support::{Daemon, TempDir, hub_with_contacts, repo, wait_for_text};

#[test]
fn sensor_readings_over_the_threshold_alert_the_owner_and_delays_survive_a_restart() {
    let tmp = TempDir::new("recipes");
    let (hub, homes, config, base) = hub_with_contacts(&tmp, &["sensor", "owner"]);
    let [sensor, owner] = &homes[..] else { unreachable!() };

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
    let texts = wait_for_text(owner, "the temperature alert", |t| t.starts_with("ALERT: "));
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
    let texts = wait_for_text(owner, "the delayed reply", |t| t == "later: later please");
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
    let h = crate::support::cli(&tmp);
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

    let copy = tmp.path().join("copy.yaml");
    std::fs::copy(repo().join("recipes/sensor-alert.yaml"), &copy).unwrap();
    let out = h.meow(&[
        "recipe",
        "check",
        repo().join("recipes/sensor-alert.yaml").to_str().unwrap(),
        copy.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout
            .contains("copy.yaml: the recipe name \"sensor-alert\" is taken by"),
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

    // --at makes a dry run reproducible: `now` in templates is the given time.
    let timed = tmp.path().join("timed.yaml");
    std::fs::write(
        &timed,
        "version: 1\nname: timed\ntriggers: [message: {}]\nactions:\n  - reply: { text: \"at {{ now.date }} {{ now.time }}\" }\n",
    )
    .unwrap();
    let test_at = |at: &str| {
        h.meow(&[
            "recipe",
            "test",
            timed.to_str().unwrap(),
            "--event",
            event.to_str().unwrap(),
            "--at",
            at,
        ])
    };
    let first = test_at("2026-12-02 08:30");
    let text = first.ok();
    assert!(text.contains("reply: \"at 2026-12-02 08:30:00\""), "{text}");
    assert_eq!(test_at("2026-12-02 08:30").ok(), text);
    let bad = test_at("tomorrow");
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("\"tomorrow\" is not a time"), "{}", bad.stderr);
}

#[test]
fn recipes_reload_while_running_all_or_nothing() {
    let tmp = TempDir::new("recipe-reload");
    let (hub, homes, config, base) = hub_with_contacts(&tmp, &["owner"]);
    let owner = &homes[0];
    let dir = tmp.path().join("recipes");
    std::fs::create_dir(&dir).unwrap();
    let reply = |name: &str, to: &str, text: &str| {
        format!(
            "version: 1\nname: {name}\ntriggers:\n  - message: {{ from: owner, contains: ping }}\nactions:\n  - send: {{ to: {to}, text: \"{text}\" }}\n"
        )
    };
    std::fs::write(dir.join("a.yaml"), reply("first", "owner", "first answer")).unwrap();
    std::fs::write(
        &config,
        format!("{base}watch: true\nrecipes:\n  - {}/*.yaml\n", dir.display()),
    )
    .unwrap();
    let daemon = Daemon::start(&hub, &config);
    owner.meow(&["send", "hub", "ping 1"]).ok();
    wait_for_text(owner, "the first recipe's answer", |t| t == "first answer");

    // An edited file and a new one in the folder: both take effect without a restart.
    std::fs::write(dir.join("a.yaml"), reply("first", "owner", "edited answer")).unwrap();
    std::fs::write(dir.join("b.yaml"), reply("second", "owner", "second answer")).unwrap();
    let out = hub.meow(&["recipe", "reload"]);
    assert_eq!(out.ok(), "reloaded 2 recipe(s): first, second\n");
    owner.meow(&["send", "hub", "ping 2"]).ok();
    let texts = wait_for_text(owner, "both new answers", |t| t == "second answer");
    wait_for_text(owner, "the edited answer", |t| t == "edited answer");
    assert_eq!(texts.iter().filter(|t| *t == "first answer").count(), 1, "{texts:?}");

    // A file that fails its checks: the reload is refused with file, line and key, and the
    // recipes already running keep answering (the file watch refuses it as well).
    std::fs::write(dir.join("b.yaml"), reply("second", "bob", "never")).unwrap();
    let refused = hub.meow(&["recipe", "reload"]);
    refused.fails_with(1, "b.yaml:6:13: actions[0].send.to: unknown contact \"bob\"");
    owner.meow(&["send", "hub", "ping 3"]).ok();
    crate::support::wait_for("two answers to ping 3", std::time::Duration::from_secs(30), || {
        let texts = owner.texts();
        (texts.iter().filter(|t| *t == "edited answer").count() == 2
            && texts.iter().filter(|t| *t == "second answer").count() == 2)
            .then_some(())
    });
    let listed = hub.meow(&["recipe", "list"]);
    assert!(listed.ok().contains("second"), "{}", listed.stdout);

    // Two files with one recipe name are refused too (traces and run modes go by name).
    std::fs::write(dir.join("b.yaml"), reply("second", "owner", "second answer")).unwrap();
    std::fs::write(dir.join("c.yaml"), reply("first", "owner", "never")).unwrap();
    hub.meow(&["recipe", "reload"])
        .fails_with(1, "c.yaml: the recipe name \"first\" is taken by");
    std::fs::remove_file(dir.join("c.yaml")).unwrap();

    // With `watch: true`, a changed file is picked up by itself (no reload command from here
    // on); the pings repeat until the watch has reloaded.
    std::fs::write(dir.join("b.yaml"), reply("second", "owner", "watched answer")).unwrap();
    crate::support::wait_for(
        "the answer of the watched file",
        std::time::Duration::from_secs(30),
        || {
            owner.meow(&["send", "hub", "ping 4"]).ok();
            std::thread::sleep(std::time::Duration::from_millis(1500));
            owner.texts().iter().any(|t| t == "watched answer").then_some(())
        },
    );
    daemon.wait_log("recipes reloaded after a file change");
    assert_eq!(daemon.terminate(), 0);
}

/// Readings through a link session with the hub's embedded gateway, in the compact form: 110
/// bytes on the air each, and the alert recipe still sees them (issue 13, "a compact form").
#[test]
fn sensor_readings_over_a_gateway_link_take_110_bytes_and_reach_the_recipes() {
    let tmp = TempDir::new("recipes-link");
    let (hub, homes, config, base) = hub_with_contacts(&tmp, &["sensor", "owner"]);
    let [sensor, owner] = &homes[..] else { unreachable!() };
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let base = base.replacen("poll_wait:", &format!("  udp: {udp}\npoll_wait:"), 1);
    let alert = repo().join("recipes/sensor-alert.yaml");
    std::fs::write(&config, format!("{base}recipes:\n  - {}\n", alert.display())).unwrap();
    let daemon = Daemon::start(&hub, &config);
    let link = format!("udp:{udp}");
    let sensor_args = |count: &str, hot: &str| {
        vec![
            "sensor", "--to", "hub", "--link", &link, "--every", "100ms", "--count", count, "--hot-at", hot,
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<String>>()
    };
    let args = sensor_args("1", "99");
    let first = sensor.meow(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        first.ok().contains("not at version 2 yet: sent the usual way"),
        "{}",
        first.stdout
    );
    crate::support::wait_for(
        "the sensor's conversation at version 2",
        std::time::Duration::from_secs(30),
        || {
            sensor.meow(&["inbox"]).ok();
            sensor.meow(&["contacts"]).stdout.contains("v2 (").then_some(())
        },
    );

    let args = sensor_args("6", "2");
    let out = sensor.meow(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_eq!(lines.len(), 6, "{}", out.stdout);
    assert!(
        lines
            .iter()
            .all(|l| l.contains("83-byte compact envelope, 110 bytes on the link, answer 26")),
        "{}",
        out.stdout
    );
    assert!(lines[0].contains("session opened with 71 + 21 bytes"), "{}", lines[0]);
    let texts = wait_for_text(owner, "the alert from a reading sent over the link", |t| {
        t.starts_with("ALERT: ")
    });
    assert_eq!(
        texts.iter().filter(|t| t.starts_with("ALERT: ")).count(),
        1,
        "{texts:?}"
    );
    let readings = |n: usize| {
        crate::support::wait_for("the readings at the hub", std::time::Duration::from_secs(30), || {
            let texts = hub.texts();
            (texts.iter().filter(|t| t.starts_with("{\"t\":")).count() == n).then_some(())
        })
    };
    readings(7);

    // A gateway that forgot the session (a restart): the sensor opens a new one and loses nothing.
    assert_eq!(daemon.terminate(), 0);
    let daemon = Daemon::start(&hub, &config);
    let args = sensor_args("2", "99");
    let out = sensor.meow(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.ok().lines().all(|l| l.contains("110 bytes on the link")),
        "{}",
        out.stdout
    );
    readings(9);
    assert_eq!(daemon.terminate(), 0);
}

/// The mosquitto binary, or `None` (the test skips) where it is not installed and CI does not
/// require it (see [`crate::support::tool_or_skip`]).
fn mosquitto_or_skip() -> Option<std::path::PathBuf> {
    let install = "apt-get install mosquitto mosquitto-clients";
    crate::support::tool_or_skip("mosquitto", install, "MEOW_REQUIRE_MOSQUITTO")
}

/// A Mosquitto broker on 127.0.0.1:`port`, killed on drop.
fn start_mosquitto(bin: &std::path::Path, dir: &std::path::Path, port: u16) -> crate::support::Proc {
    start_mosquitto_with(bin, dir, port, "")
}

/// [`start_mosquitto`] with more lines for the listener (TLS files).
fn start_mosquitto_with(bin: &std::path::Path, dir: &std::path::Path, port: u16, more: &str) -> crate::support::Proc {
    let conf = dir.join(format!("mosquitto-{port}.conf"));
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\n{more}allow_anonymous true\npersistence false\n"),
    )
    .unwrap();
    let child = std::process::Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    crate::support::wait_for("mosquitto listening", std::time::Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    crate::support::Proc(child)
}

#[test]
fn a_recipe_publishes_each_sensor_reading_to_mosquitto_including_those_sent_while_it_was_down() {
    let Some(bin) = mosquitto_or_skip() else {
        return;
    };
    let tmp = TempDir::new("mqtt");
    let (hub, homes, config, base) = hub_with_contacts(&tmp, &["sensor"]);
    let port = crate::support::free_port();
    let recipe = repo().join("recipes/sensor-to-mqtt.yaml");
    std::fs::write(
        &config,
        format!(
            "{base}mqtt: {{ broker: \"mqtt://127.0.0.1:{port}\", client_id: meow-test }}\nrecipes:\n  - {}\n",
            recipe.display()
        ),
    )
    .unwrap();
    // The broker is down when the runtime starts and when the first reading comes.
    let daemon = Daemon::start(&hub, &config);
    homes[0].meow(&["send", "hub", r#"{"t":21.5}"#]).ok();
    daemon.wait_log("queued for MQTT topic meow/sensor/reading");
    let broker = start_mosquitto(&bin, tmp.path(), port);
    let sub = std::process::Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "meow/#",
            "-v",
            "-C",
            "2",
            "-W",
            "60",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("mosquitto_sub (apt-get install mosquitto-clients)");
    daemon.wait_log("MQTT: connected");
    homes[0].meow(&["send", "hub", r#"{"t":22.0}"#]).ok();
    let out = sub.wait_with_output().unwrap();
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    // The first reading was retained or delivered after the reconnection; the second live.
    assert!(
        lines.contains(&r#"meow/sensor/reading {"t":21.5}"#.to_owned()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&r#"meow/sensor/reading {"t":22.0}"#.to_owned()),
        "{lines:?}"
    );
    drop(broker);
    assert_eq!(daemon.terminate(), 0);
}

/// A recipe listens to MQTT topics and tells a contact what it heard: a small JSON payload and
/// one of 40 KiB (past rumqttc's default packet limit of 10 KiB), published by mosquitto_pub.
#[test]
fn a_recipe_hears_mqtt_topics_and_tells_a_contact() {
    let Some(bin) = mosquitto_or_skip() else {
        return;
    };
    let tmp = TempDir::new("mqtt-in");
    let (hub, homes, config, base) = hub_with_contacts(&tmp, &["owner"]);
    let port = crate::support::free_port();
    let broker = start_mosquitto(&bin, tmp.path(), port);
    let recipe = tmp.path().join("doors.yaml");
    std::fs::write(
        &recipe,
        "version: 1\nname: doors\nmode: queued\ntriggers:\n  - mqtt: { topic: \"home/+/state\" }\n\
         actions:\n  - send: { to: owner, text: \"{{ trigger.topic }} is {{ trigger.json.state }} ({{ trigger.payload | length }} bytes)\" }\n",
    )
    .unwrap();
    std::fs::write(
        &config,
        format!(
            "{base}mqtt: {{ broker: \"mqtt://127.0.0.1:{port}\", client_id: meow-in }}\nrecipes:\n  - {}\n",
            recipe.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&hub, &config);
    daemon.wait_log("MQTT: connected");
    // Subscribing follows the connection: publish until the recipe has heard once.
    let publish = |topic: &str, payload: &str| mosquitto_pub(port, topic, payload);
    crate::support::wait_for("the subscription", std::time::Duration::from_secs(30), || {
        publish("home/door/state", r#"{"state":"open"}"#);
        std::thread::sleep(std::time::Duration::from_millis(300));
        daemon.log_text().contains("home/door/state is open").then_some(())
    });
    let pad = "x".repeat(40 * 1024);
    let large = format!(r#"{{"state":"closed","pad":"{pad}"}}"#);
    publish("home/garage/state", &large);
    publish("garden/gate/state", r#"{"state":"ignored"}"#);
    let expected = format!("home/garage/state is closed ({} bytes)", large.len());
    wait_for_text(&homes[0], "the large one", |t| t == expected);
    let texts = homes[0].texts();
    assert!(
        texts.iter().any(|t| t == "home/door/state is open (16 bytes)"),
        "{texts:?}"
    );
    assert!(!texts.iter().any(|t| t.contains("garden")), "{texts:?}");
    drop(broker);
    assert_eq!(daemon.terminate(), 0);
}

/// Publishes `payload` on `topic` of the broker on `port` at QoS 1 (mosquitto_pub).
fn mosquitto_pub(port: u16, topic: &str, payload: &str) {
    let status = std::process::Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            "1",
            "-t",
            topic,
            "-m",
            payload,
        ])
        .status()
        .expect("mosquitto_pub (apt-get install mosquitto-clients)");
    assert!(status.success());
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with openssl in `dir`: the CA's PEM.
fn tls_files(dir: &std::path::Path) -> std::path::PathBuf {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=meow test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
    ]
    .concat());
    std::fs::write(dir.join("san.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.cnf",
    ]);
    // Mosquitto started as root reads its files as the user `mosquitto`: a throwaway test key.
    for f in ["server.key", "server.pem", "ca.pem"] {
        std::fs::set_permissions(dir.join(f), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    }
    dir.join("ca.pem")
}

/// An `mqtts://` broker whose certificate a home CA signed (`ca_file`): the recipe's readings
/// reach a subscriber over TLS.
#[test]
fn a_recipe_publishes_to_a_tls_broker_signed_by_a_home_ca() {
    let Some(bin) = mosquitto_or_skip() else {
        return;
    };
    if crate::support::tool_or_skip("openssl", "apt-get install openssl", "MEOW_REQUIRE_MOSQUITTO").is_none() {
        return;
    }
    let tmp = TempDir::new("mqtts");
    let (hub, homes, config, base) = hub_with_contacts(&tmp, &["sensor"]);
    let ca = tls_files(tmp.path());
    let port = crate::support::free_port();
    let dir = tmp.path().display();
    let _broker = start_mosquitto_with(
        &bin,
        tmp.path(),
        port,
        &format!("cafile {dir}/ca.pem\ncertfile {dir}/server.pem\nkeyfile {dir}/server.key\n"),
    );
    let recipe = repo().join("recipes/sensor-to-mqtt.yaml");
    std::fs::write(
        &config,
        format!(
            "{base}mqtt: {{ broker: \"mqtts://127.0.0.1:{port}\", client_id: meow-tls, ca_file: {} }}\nrecipes:\n  - {}\n",
            ca.display(),
            recipe.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&hub, &config);
    daemon.wait_log("MQTT: connected");
    let sub = std::process::Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--cafile"])
        .arg(&ca)
        .args(["-t", "meow/#", "-v", "-C", "1", "-W", "60"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("mosquitto_sub (apt-get install mosquitto-clients)");
    std::thread::sleep(std::time::Duration::from_millis(500));
    homes[0].meow(&["send", "hub", r#"{"t":23.5}"#]).ok();
    let out = sub.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"meow/sensor/reading {"t":23.5}"#
    );
    assert_eq!(daemon.terminate(), 0);
}

/// A Lua plugin that listens to `lua/+/cmd` and publishes what it is told to `out/lua`.
const MQTT_LUA: &str = r#"
function init(config)
  meow.mqtt.subscribe("lua/+/cmd")
end
function on_mqtt(topic, payload)
  meow.send("owner", "lua heard " .. topic .. ": " .. payload)
end
function on_message(msg)
  local text = msg.text and msg.text:match("^pub (.+)$")
  if text then
    meow.mqtt.publish("out/lua", text, true) -- retained: a later subscriber gets it
    meow.reply(msg, "published")
  end
end
"#;

/// A Rust plugin (the SDK) that listens to `rust/#` and tells the owner; a wildcard in a topic
/// it publishes to is refused with the reason.
const MQTT_RUST: &str = r#"
use meow_sdk::{Bot, Config, Message, export_bot, messaging, mqtt};

struct Plugin;

impl Bot for Plugin {
    fn init(_config: Config) -> Result<(), String> {
        mqtt::subscribe("rust/#").map_err(|e| e.to_string())
    }

    fn on_mqtt(topic: String, payload: Vec<u8>) -> Result<(), String> {
        let text = String::from_utf8_lossy(&payload);
        messaging::send("owner", &format!("rust heard {topic}: {text}")).map_err(|e| e.to_string())
    }

    fn on_message(msg: Message) -> Result<(), String> {
        if msg.text.as_deref() == Some("bad topic") {
            let why = mqtt::publish("out/#", b"x", false).map_err(|e| e.to_string()).err();
            messaging::reply(&msg.id, &format!("rust: {}", why.unwrap_or_default())).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

export_bot!(Plugin);
"#;

/// A JavaScript plugin (meow:bot 0.2) that listens to `js/+` through its `mqttHandler` export.
const MQTT_JS: &str = r#"import { send } from 'meow:bot/messaging@0.2.1';
import { subscribe } from 'meow:bot/mqtt@0.2.1';
export function start(config) { subscribe('js/+'); }
export function handle(event) {}
export const mqttHandler = {
  onMessage(topic, payload) { send('owner', `js heard ${topic}: ${new TextDecoder().decode(payload)}`); },
};
"#;

/// A Python plugin that listens to `py/+` through its `MqttHandler` class.
const MQTT_PY: &str = r#"
import wit_world
from wit_world import exports
from wit_world.imports import messaging, mqtt, types


class WitWorld(wit_world.WitWorld):
    def init(self, config: str) -> None:
        mqtt.subscribe("py/+")

    def handle(self, event: types.Event) -> None:
        pass


class MqttHandler(exports.MqttHandler):
    def on_message(self, topic: str, payload: bytes) -> None:
        messaging.send("owner", f"py heard {topic}: {payload.decode()}")
"#;

/// Plugins subscribe and publish on a real broker: a Lua plugin (`meow.mqtt`, `on_mqtt`), a
/// Rust one (the SDK's `mqtt` and `Bot::on_mqtt`, through the `mqtt-handler` export), a
/// JavaScript and a Python one (where their componentizers are installed) each hear their own topics only, the Lua
/// one publishes what a contact tells it, and an instance without the `mqtt` grant is denied.
#[test]
fn plugins_subscribe_and_publish_on_mqtt() {
    let Some(bin) = mosquitto_or_skip() else {
        return;
    };
    crate::support::plugins(); // the wasm32-wasip2 target, added if missing
    let tmp = TempDir::new("mqtt-plugins");
    let (hub, homes, config, base) = hub_with_contacts(&tmp, &["owner"]);
    let port = crate::support::free_port();
    let broker = start_mosquitto(&bin, tmp.path(), port);
    let cli = crate::support::cli(&tmp);
    let lua = tmp.path().join("src/mqttlua");
    std::fs::create_dir_all(&lua).unwrap();
    std::fs::write(lua.join("mqttlua.lua"), MQTT_LUA).unwrap();
    std::fs::write(
        lua.join("plugin.yaml"),
        "name: mqttlua\nversion: 0.1.0\nkind: lua\nentry: mqttlua.lua\ncapabilities: [messaging, mqtt]\n",
    )
    .unwrap();
    cli.meow_in(
        tmp.path(),
        &["plugin", "new", "mqttrs", "--lang", "rust", "--dir", "src/mqttrs"],
    )
    .ok();
    std::fs::write(tmp.path().join("src/mqttrs/src/lib.rs"), MQTT_RUST).unwrap();
    let manifest = tmp.path().join("src/mqttrs/plugin.yaml");
    let yaml = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, yaml.replace("[messaging, kv]", "[messaging, mqtt]")).unwrap();
    let mut build: Vec<String> = ["plugin", "build", "src/mqttlua", "src/mqttrs"]
        .map(String::from)
        .to_vec();
    let mut instances = "  - { name: mqttlua, plugin: mqttlua, grant: [messaging, mqtt] }\n  \
                         - { name: mqttrs, plugin: mqttrs, grant: [messaging, mqtt] }\n  \
                         - { name: nomqtt, plugin: mqttlua, grant: [messaging] }\n"
        .to_owned();
    // A JavaScript one (its `mqttHandler` export: built against the world mqtt-bot) and a
    // Python one (its `class MqttHandler`), where their componentizers are installed.
    let mut component = |name: &'static str, file: &str, code: &str, tool: &str, install: &str| {
        if !crate::languages::tool_or_skip(tool, install) {
            return false;
        }
        let dir = tmp.path().join("src").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), code).unwrap();
        let manifest =
            format!("name: {name}\nversion: 0.1.0\nkind: wasm\nentry: {name}.wasm\ncapabilities: [messaging, mqtt]\n");
        std::fs::write(dir.join("plugin.yaml"), manifest).unwrap();
        build.push(format!("src/{name}"));
        instances.push_str(&format!(
            "  - {{ name: {name}, plugin: {name}, grant: [messaging, mqtt] }}\n"
        ));
        true
    };
    let js = component(
        "mqttjs",
        "bot.js",
        MQTT_JS,
        "componentize-js",
        "npm install -g @bytecodealliance/componentize-js",
    );
    let py = component(
        "mqttpy",
        "app.py",
        MQTT_PY,
        "componentize-py",
        "pip install componentize-py",
    );
    build.extend(["--out".to_owned(), "built".to_owned()]);
    cli.meow_in(tmp.path(), &build.iter().map(String::as_str).collect::<Vec<_>>())
        .ok();
    std::fs::write(
        &config,
        format!(
            "{base}mqtt: {{ broker: \"mqtt://127.0.0.1:{port}\", client_id: meow-plugins }}\n\
             plugin_dirs: [{}]\nplugins:\n{instances}",
            tmp.path().join("built").display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&hub, &config);
    let publish = |topic: &str, payload: &str| mosquitto_pub(port, topic, payload);
    // Subscribing follows the connection and the (first) compile: publish until both heard.
    let mut want = vec![("lua", "lua/door/cmd", "open"), ("rust", "rust/boiler/temp", "61")];
    if js {
        want.push(("js", "js/bell", "ring"));
    }
    if py {
        want.push(("py", "py/oven", "180"));
    }
    // Each topic is published until its plugin has heard it (and no more: what a plugin sends
    // the owner counts against the automatic-message budget).
    let start = std::time::Instant::now();
    loop {
        let texts = homes[0].texts();
        let unheard: Vec<_> = want
            .iter()
            .filter(|(who, topic, payload)| !texts.contains(&format!("{who} heard {topic}: {payload}")))
            .collect();
        if unheard.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(240),
            "not heard: {unheard:?}; received {texts:?}; the log:\n{}",
            daemon.log_text()
        );
        for (_, topic, payload) in unheard {
            publish(topic, payload);
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    publish("elsewhere/x", "nobody");
    homes[0].meow(&["send", "hub", "pub kettle on"]).ok();
    wait_for_text(&homes[0], "the publication", |t| t == "published");
    let out = std::process::Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "out/#",
            "-v",
            "-C",
            "1",
            "-W",
            "30",
        ])
        .output()
        .expect("mosquitto_sub (apt-get install mosquitto-clients)");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().next(),
        Some("out/lua kettle on")
    );
    homes[0].meow(&["send", "hub", "bad topic"]).ok();
    wait_for_text(&homes[0], "the refusal", |t| {
        t.starts_with("rust: ") && t.contains("out/#") && t.contains("wildcard")
    });
    let texts = homes[0].texts();
    assert!(
        !texts.iter().any(|t| t.contains("elsewhere") || t.contains("nobody")),
        "{texts:?}"
    );
    let log = daemon.log_text();
    assert!(
        log.contains("capability 'mqtt' is not granted to instance 'nomqtt'"),
        "the instance without the grant is denied:\n{log}"
    );
    drop(broker);
    assert_eq!(daemon.terminate(), 0);
}

/// Recipes declare chat commands: `/help` is generated from those the sender may run, a
/// command of a role the sender lacks is refused with the reason, too few arguments get the
/// usage line, and a command that runs sees its arguments.
#[test]
fn recipe_commands_have_help_roles_and_arguments() {
    let tmp = TempDir::new("recipe-commands");
    let (hub, homes, config, base) = hub_with_contacts(&tmp, &["owner", "guest"]);
    let [owner, guest] = &homes[..] else { unreachable!() };
    let recipe = tmp.path().join("house.yaml");
    std::fs::write(
        &recipe,
        r#"version: 1
name: house
mode: queued
triggers:
  - command: { name: status, help: "how the house is" }
  - command: { name: lights, usage: "<room> on|off", help: "switches a room's lights", role: admin, min_args: 2 }
actions:
  - reply: { text: "{{ trigger.command }} by {{ trigger.sender }} ({{ trigger.role }}): {{ trigger.args | join(',') }}" }
"#,
    )
    .unwrap();
    std::fs::write(
        &config,
        format!(
            "{base}roles: {{ admins: [owner] }}\nrecipes:\n  - {}\n",
            recipe.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&hub, &config);
    guest.meow(&["send", "hub", "/help"]).ok();
    wait_for_text(guest, "the guest's help", |t| {
        t == "commands:\n/help - this list\n/status - how the house is"
    });
    guest.meow(&["send", "hub", "/lights kitchen off"]).ok();
    wait_for_text(guest, "the refusal", |t| t == "/lights is for admins");
    guest.meow(&["send", "hub", "/status"]).ok();
    wait_for_text(guest, "the guest's command", |t| t == "status by guest (anyone): ");
    owner.meow(&["send", "hub", "/help"]).ok();
    wait_for_text(owner, "the admin's help", |t| {
        t.contains("/lights <room> on|off - switches a room's lights") && t.contains("/status")
    });
    owner.meow(&["send", "hub", "/lights kitchen"]).ok();
    wait_for_text(owner, "the usage line", |t| t == "usage: /lights <room> on|off");
    owner.meow(&["send", "hub", "/lights kitchen off"]).ok();
    wait_for_text(owner, "the admin's command", |t| {
        t == "lights by owner (admin): kitchen,off"
    });
    assert!(
        !guest.texts().iter().any(|t| t.starts_with("lights by")),
        "the guest's /lights ran nothing"
    );
    assert_eq!(daemon.terminate(), 0);
}
