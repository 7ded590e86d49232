//! Groups, broadcast and the directory (issue: groups, broadcast and the directory).

use crate::support::{Daemon, Home, ServerProc, TempDir, free_port, plugins, wait_for_text};

/// Homes that are all contacts of the first one, through one server process.
fn star(tmp: &TempDir, names: &[&str], server_args: &[&str]) -> (ServerProc, Vec<Home>) {
    let homes: Vec<Home> = names.iter().map(|n| Home::init(tmp.path().join(n), n)).collect();
    let mut extra: Vec<String> = server_args.iter().map(|s| s.to_string()).collect();
    if extra.iter().any(|a| a == "OPERATOR") {
        let key = homes[0].meow(&["broadcast-key"]).ok().trim().to_owned();
        extra = extra
            .into_iter()
            .map(|a| if a == "OPERATOR" { key.clone() } else { a })
            .collect();
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let server = ServerProc::start(&tmp.path().join("server"), &extra);
    for h in &homes {
        h.meow(&["servers", "add", &server.card.to_text()]).ok();
    }
    let hub = &homes[0];
    for (h, name) in homes.iter().zip(names).skip(1) {
        let inv = tmp.path().join(format!("{name}.meowcard"));
        hub.meow(&["invite", name, "--out", inv.to_str().unwrap()]).ok();
        h.meow(&["accept", inv.to_str().unwrap(), "--name", names[0]]).ok();
    }
    hub.meow(&["inbox"]).ok(); // the answers complete the contacts
    (server, homes)
}

fn group_texts(h: &Home) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(h.meow(&["inbox", "--all", "--json"]).ok()).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|m| m["origin"]["kind"] == "group")
        .map(|m| {
            format!(
                "{}@{}: {}",
                m["from"].as_str().unwrap(),
                m["origin"]["group"].as_str().unwrap(),
                m["text"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn a_group_of_three_and_a_removed_member_receives_nothing_more() {
    let tmp = TempDir::new("groups");
    let (_server, homes) = star(&tmp, &["alice", "bob", "carol"], &[]);
    let [alice, bob, carol] = [&homes[0], &homes[1], &homes[2]];
    alice.meow(&["group", "create", "friends"]).ok();
    alice.meow(&["group", "add", "friends", "bob"]).ok();
    alice.meow(&["group", "add", "friends", "carol"]).ok();

    // The owner's message reaches both others.
    alice.meow(&["group", "send", "friends", "hello all"]).ok();
    assert_eq!(group_texts(bob), vec!["alice@friends: hello all"]);
    assert_eq!(group_texts(carol), vec!["alice@friends: hello all"]);
    let list: serde_json::Value = serde_json::from_str(bob.meow(&["group", "list", "--json"]).ok()).unwrap();
    assert_eq!(list[0]["members"], serde_json::json!(["bob", "carol"]));
    assert_eq!(list[0]["owner"], false);

    // A member's message goes to the owner, who relays it to the others.
    bob.meow(&["group", "send", "friends", "hi from bob"]).ok();
    assert_eq!(group_texts(alice), vec!["bob@friends: hi from bob"]);
    assert_eq!(
        group_texts(carol),
        vec!["alice@friends: hello all", "bob@friends: hi from bob"]
    );

    // Carol is removed: she is told, and receives nothing more.
    alice.meow(&["group", "remove", "friends", "carol"]).ok();
    carol.meow(&["inbox"]).ok();
    alice.meow(&["group", "send", "friends", "after carol left"]).ok();
    bob.meow(&["group", "send", "friends", "bob again"]).ok();
    alice.meow(&["inbox"]).ok();
    assert!(group_texts(bob).contains(&"alice@friends: after carol left".to_owned()));
    assert_eq!(
        group_texts(carol).len(),
        2,
        "nothing after the removal: {:?}",
        group_texts(carol)
    );
    let list: serde_json::Value = serde_json::from_str(carol.meow(&["group", "list", "--json"]).ok()).unwrap();
    assert_eq!(list[0]["left"], true);
    carol
        .meow(&["group", "send", "friends", "let me in"])
        .fails_with(1, "no longer in");
    alice
        .meow(&["group", "add", "friends", "nobody"])
        .fails_with(1, "unknown contact");
}

#[test]
fn broadcasts_from_the_operator_reach_everyone_and_users_are_refused() {
    let tmp = TempDir::new("broadcast");
    let (_server, homes) = star(&tmp, &["operator", "user"], &["--operator", "OPERATOR"]);
    homes[0].meow(&["broadcast", "flood warning: move uphill"]).ok();
    let out = homes[1].meow(&["inbox"]);
    assert!(out.ok().contains("BROADCAST from the operator of"), "{}", out.stdout);
    assert!(out.stdout.contains("flood warning: move uphill"));
    assert!(!homes[1].meow(&["inbox"]).ok().contains("flood"), "shown once");
    homes[1]
        .meow(&["broadcast", "hello everyone"])
        .fails_with(1, "only this server's operator may broadcast");
}

#[test]
fn the_directory_bot_is_found_contacted_and_greets() {
    let tmp = TempDir::new("directory");
    let bot = Home::init(tmp.path().join("bot"), "weatherbot");
    let user = Home::init(tmp.path().join("user"), "user");
    let config = tmp.path().join("meow.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nserver:\n  listen: 127.0.0.1:{}\nplugin_dirs: [{}]\npoll_wait: 1s\nplugins:\n  - name: directory-bot\n    plugin: directory-bot\n    grant: [messaging, directory]\n    config: {{ description: \"I forecast the weather\", tags: \"weather,bot\" }}\n",
            free_port(),
            plugins().display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&bot, &config);
    daemon.wait_log("directory entry published");
    let servers: serde_json::Value = serde_json::from_str(bot.meow(&["servers", "list", "--json"]).ok()).unwrap();
    user.meow(&["servers", "add", servers[0]["card"].as_str().unwrap()])
        .ok();

    // A new home finds the bot by a word, and starts a contact from the entry's card.
    let found: serde_json::Value =
        serde_json::from_str(user.meow(&["directory", "search", "weather", "--json"]).ok()).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["description"], "I forecast the weather");
    assert_eq!(found[0]["nickname"], "weatherbot");
    assert!(user.meow(&["directory", "search", "chess", "--json"]).ok().trim() == "[]");
    user.meow(&["accept", found[0]["card"].as_str().unwrap(), "--name", "bot"])
        .ok();

    // The bot greets its new contact, and moved it to private keys (a rotation).
    wait_for_text(&user, "the greeting", |t| {
        t.starts_with("Hello user! You found me in the directory")
    });
    user.meow(&["send", "bot", "help"]).ok();
    wait_for_text(&user, "the help answer", |t| {
        t == "I am listed in the directory as: I forecast the weather"
    });
    let contacts: serde_json::Value = serde_json::from_str(user.meow(&["contacts", "--json"]).ok()).unwrap();
    assert_eq!(contacts["contacts"][0]["name"], "bot");
    let bot_contacts: serde_json::Value = serde_json::from_str(bot.meow(&["contacts", "--json"]).ok()).unwrap();
    assert_eq!(bot_contacts["contacts"][0]["via_directory"], true);
    assert_eq!(
        bot_contacts["contacts"][0]["key_serial"], 1,
        "the shared public-card keys were rotated away"
    );
    assert_eq!(daemon.terminate(), 0);
}
