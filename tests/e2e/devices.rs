//! Several devices of one user, through the CLI (docs/DEVICES.md): linking with the short code,
//! every message on every device, sending from a device that does not hold the conversation,
//! a device offline for the whole exchange catching up, a contact added on one device messaged
//! from another.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use crate::support::{Daemon, Home, ServerProc, TempDir, contacts_through, wait_for_text};

/// `meow device link` on `existing` and `meow device join` for a new home `name`, both
/// confirming the code; returns the new device's home.
fn link(tmp: &TempDir, existing: &Home, name: &str) -> Home {
    let mut linker = existing
        .command()
        .args(["device", "link", "--wait", "60"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    linker.stdin.take().unwrap().write_all(b"y\n").unwrap();
    let mut out = BufReader::new(linker.stdout.take().unwrap());
    let mut card = String::new();
    out.read_line(&mut card).unwrap();
    assert!(card.starts_with("meow:link:"), "{card}");
    let new = Home {
        dir: tmp.path().join(name),
        password: format!("pw-{name}"),
    };
    let mut joiner = new
        .command()
        .args(["device", "join", card.trim(), "--name", name, "--wait", "60"])
        .args(["--kdf-memory-mib", "1", "--kdf-passes", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    joiner.stdin.take().unwrap().write_all(b"y\n").unwrap();
    let joined = joiner.wait_with_output().unwrap();
    let linked = linker.wait_with_output().unwrap();
    let (join_err, link_err) = (
        String::from_utf8_lossy(&joined.stderr),
        String::from_utf8_lossy(&linked.stderr),
    );
    assert!(joined.status.success(), "join: {join_err}");
    assert!(linked.status.success(), "link: {link_err}");
    let code = |text: &str| {
        text.split("code")
            .nth(1)
            .map(|t| t.chars().filter(char::is_ascii_digit).take(6).collect::<String>())
    };
    assert_eq!(
        code(&join_err),
        code(&link_err),
        "both devices show the same code:\n{join_err}\n{link_err}"
    );
    assert!(String::from_utf8_lossy(&joined.stdout).contains("joined"));
    new
}

fn device_names(h: &Home) -> Vec<String> {
    h.json_list(&["device", "list", "--json"])
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn three_devices_see_every_message_and_any_of_them_speaks() {
    let tmp = TempDir::new("devices");
    let server = ServerProc::start(&tmp.path().join("srv"), &[]);
    let (a, bob) = contacts_through(&tmp, &server, "alice", "bob");
    a.meow(&["inbox"]).ok(); // bob's answer completes the contact
    bob.meow(&["send", "alice", "before any link"]).ok();
    a.meow(&["inbox"]).ok();

    let laptop = link(&tmp, &a, "laptop");
    let phone = link(&tmp, &a, "phone");
    assert_eq!(device_names(&phone)[0], "phone", "this device first");
    assert_eq!(device_names(&phone).len(), 3);
    assert!(
        laptop.texts().contains(&"before any link".to_owned()),
        "history comes with the link"
    );

    // The laptop stays offline from here on. Bob writes; the phone sees it.
    bob.meow(&["send", "alice", "hello all of you"]).ok();
    assert!(a.texts().contains(&"hello all of you".to_owned()));
    assert!(phone.texts().contains(&"hello all of you".to_owned()));

    // The phone answers: it goes through the device that holds the conversation.
    let sent = phone.meow(&["send", "bob", "from the phone"]);
    assert!(sent.stderr.contains("handed to your device"), "{}", sent.stderr);
    a.meow(&["inbox"]).ok();
    assert!(
        bob.texts().contains(&"from the phone".to_owned()),
        "bob hears one alice"
    );

    // A contact made on the first device is messaged from the phone.
    let carol = Home::init(tmp.path().join("carol"), "carol");
    carol.meow(&["servers", "add", &server.card.to_text()]).ok();
    let inv = tmp.path().join("carol.meowcard");
    a.meow(&["invite", "carol", "--out", inv.to_str().unwrap()]).ok();
    carol.meow(&["accept", inv.to_str().unwrap(), "--name", "alice"]).ok();
    a.meow(&["inbox"]).ok();
    phone.meow(&["inbox"]).ok();
    phone.meow(&["send", "carol", "hi carol, from the phone"]).ok();
    a.meow(&["inbox"]).ok();
    assert!(carol.texts().contains(&"hi carol, from the phone".to_owned()));

    // The laptop, back after all this, catches up.
    let caught_up = laptop.texts();
    assert!(caught_up.contains(&"hello all of you".to_owned()), "{caught_up:?}");
    let contacts = laptop.meow(&["contacts", "--json"]).ok().to_owned();
    assert!(contacts.contains("carol") && contacts.contains("bob"), "{contacts}");

    // The phone takes bob's conversation once the first device lets it go.
    let busy = phone.meow(&["device", "take", "bob"]);
    assert!(busy.stderr.contains("held by"), "{}", busy.stderr);
    a.meow(&["device", "release", "bob"]).ok();
    phone.meow(&["device", "take", "bob"]).ok();
    let direct = phone.meow(&["send", "bob", "the phone speaks itself"]);
    assert!(direct.stderr.contains("sent to bob"), "{}", direct.stderr);
    assert!(bob.texts().contains(&"the phone speaks itself".to_owned()));

    // The laptop is lost: the phone revokes it with the password; a wrong one is refused.
    phone
        .meow_env(
            &[("MEOW_REVOCATION_PASSWORD", "not it")],
            &["device", "revoke", "laptop"],
        )
        .fails_with(1, "wrong password");
    let revoked = phone.meow_env(
        &[("MEOW_REVOCATION_PASSWORD", &a.password)],
        &["device", "revoke", "laptop"],
    );
    assert!(revoked.ok().contains("revoked laptop"), "{revoked:?}");
    let left = device_names(&phone);
    assert!(left.len() == 2 && !left.contains(&"laptop".to_owned()), "{left:?}");
    // The laptop hears it at its next sync and wipes its home.
    laptop.meow(&["inbox"]);
    assert!(!laptop.dir.join("vault.meta").exists(), "the revoked home is wiped");
}

/// The responder plugin with `sync: true` on two devices: its per-contact counter is the same
/// on both, so the device that takes the conversation over counts on.
#[test]
fn a_plugin_with_a_synced_store_counts_on_where_the_other_device_stopped() {
    let tmp = TempDir::new("devices-plugin");
    let server = ServerProc::start(&tmp.path().join("srv"), &[]);
    let (a, bob) = contacts_through(&tmp, &server, "alice", "bob");
    a.meow(&["inbox"]).ok();
    let laptop = link(&tmp, &a, "laptop");
    let config = |name: &str| {
        let path = tmp.path().join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "version: 1\nserver: {{ enabled: false }}\nplugin_dirs: [{}]\npoll_wait: 1s\nplugins:\n  - {{ name: responder, plugin: responder, grant: [messaging, kv], sync: true }}\n",
                crate::support::plugins().display()
            ),
        )
        .unwrap();
        path
    };
    let (on_a, on_laptop) = (
        Daemon::start(&a, &config("alice")),
        Daemon::start(&laptop, &config("laptop")),
    );
    bob.meow(&["send", "alice", "stats"]).ok();
    wait_for_text(&bob, "the first count", |t| t == "bob, you sent me 1 message");
    bob.meow(&["send", "alice", "stats"]).ok();
    wait_for_text(&bob, "the second count", |t| t == "bob, you sent me 2 messages");
    // The conversation moves to the laptop (through both running daemons).
    a.meow(&["device", "release", "bob"]).ok();
    crate::support::wait_for("the laptop to take bob", std::time::Duration::from_secs(30), || {
        laptop.meow(&["device", "take", "bob"]).code.eq(&0).then_some(())
    });
    bob.meow(&["send", "alice", "stats"]).ok();
    wait_for_text(&bob, "the laptop's count, on from the first device's", |t| {
        t == "bob, you sent me 3 messages"
    });
    assert!(
        on_laptop.log_text().contains("responder"),
        "the laptop's responder answered"
    );
    on_a.terminate();
    on_laptop.terminate();
}

/// Careless and hostile input to the device commands: clear errors, nothing changed.
#[test]
fn device_commands_refuse_bad_input_with_a_reason() {
    let tmp = TempDir::new("devices-bad");
    let server = ServerProc::start(&tmp.path().join("srv"), &[]);
    let (a, _bob) = contacts_through(&tmp, &server, "alice", "bob");
    a.meow(&["inbox"]).ok();
    let fresh = Home {
        dir: tmp.path().join("fresh"),
        password: "pw-fresh".into(),
    };
    // Not a card, a truncated card, a card for an existing home.
    fresh
        .meow(&["device", "join", "meow:card:AAAA", "--name", "x"])
        .fails_with(1, "the link card");
    fresh
        .meow(&["device", "join", "meow:link:AAAA", "--name", "x"])
        .fails_with(1, "the link card");
    a.meow(&["device", "join", "meow:link:AAAA", "--name", "x"])
        .fails_with(1, "a home already exists");
    assert!(!fresh.dir.join("vault.meta").exists(), "nothing was created");
    // A home with one device has nothing to list, take or revoke.
    assert!(a.meow(&["device", "list"]).stderr.contains("one device"));
    a.meow(&["device", "take", "bob"]).fails_with(1, "one device");
    a.meow_env(&[("MEOW_REVOCATION_PASSWORD", "x")], &["device", "revoke", "laptop"])
        .fails_with(1, "one device");
    a.meow(&["device", "rename", "laptop", "bad\u{7}name"])
        .fails_with(1, "device name");
    // Linking through `meow run`: nobody comes, and it says so when the wait is over; a wrong
    // password is refused before anything is made.
    let config = tmp.path().join("alice.yaml");
    std::fs::write(&config, "version: 1\nserver: { enabled: false }\npoll_wait: 1s\n").unwrap();
    let daemon = Daemon::start(&a, &config);
    a.meow(&["device", "link", "--wait", "1"])
        .fails_with(1, "no device asked to join");
    a.meow_env(&[("MEOW_PASSWORD", "not it")], &["device", "link", "--wait", "1"])
        .fails_with(1, "password");
    daemon.terminate();
}

/// A Lua plugin (`on_device`, `meow.devices.list()`) and a recipe (`device` trigger) hear that
/// a device was linked.
#[test]
fn plugins_and_recipes_hear_of_a_new_device() {
    let tmp = TempDir::new("devices-events");
    let server = ServerProc::start(&tmp.path().join("srv"), &[]);
    let (a, bob) = contacts_through(&tmp, &server, "alice", "bob");
    a.meow(&["inbox"]).ok();
    let local = tmp.path().join("local");
    let dir = local.join("devwatch");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("devwatch.lua"),
        "function on_device(change, device)\n\
         \x20 meow.send(\"bob\", change .. \" \" .. device .. \", \" .. #meow.devices.list() .. \" devices\")\n\
         end\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("plugin.yaml"),
        "name: devwatch\nversion: 0.1.0\nkind: lua\nentry: devwatch.lua\ncapabilities: [messaging, devices]\n",
    )
    .unwrap();
    a.meow(&["plugin", "pin", dir.to_str().unwrap()]).ok();
    let recipe = tmp.path().join("device-alert.yaml");
    std::fs::write(
        &recipe,
        "version: 1\nname: device-alert\ntriggers:\n  - device: { change: linked }\nactions:\n  - send: { to: bob, text: \"new device: {{ trigger.device }}\" }\n",
    )
    .unwrap();
    let config = tmp.path().join("alice.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nserver: {{ enabled: false }}\nplugin_dirs: [{}]\npoll_wait: 1s\nplugins:\n  - {{ name: devwatch, plugin: devwatch, grant: [messaging, devices] }}\nrecipes: [{}]\n",
            local.display(),
            recipe.display()
        ),
    )
    .unwrap();
    // The phone is linked through the running daemon.
    let daemon = Daemon::start(&a, &config);
    let _phone = link(&tmp, &a, "phone");
    wait_for_text(&bob, "the plugin's word", |t| t == "linked phone, 2 devices");
    wait_for_text(&bob, "the recipe's word", |t| t == "new device: phone");
    daemon.terminate();
}
