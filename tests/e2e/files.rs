//! Files through the command line: `meow send --file`, `meow inbox`, `meow file list|save|delete`,
//! with the server killed and restarted in the middle; plugins and recipes that send, read and
//! save files (issue 18).

use std::time::Duration;

use crate::support::{
    Daemon, Home, ServerProc, TempDir, contacts_through, free_port, grep, setup, wait_for, wait_for_text,
};

/// Bytes that compress badly and repeat nowhere in 5 MB.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

fn files(home: &Home) -> Vec<serde_json::Value> {
    home.json_list(&["file", "list", "--json"])
}

#[test]
fn a_5_mb_file_arrives_intact_through_a_server_restart_and_one_sent_while_it_is_down_follows() {
    let tmp = TempDir::new("files");
    let data_dir = tmp.path().join("server");
    let port = free_port();
    let server = ServerProc::start_on(&data_dir, port, &[]);
    let (alice, bob) = contacts_through(&tmp, &server, "alice", "bob");
    alice.meow(&["inbox"]).ok();

    let big = content(5 * 1024 * 1024, 7);
    let path = tmp.path().join("report.bin");
    std::fs::write(&path, &big).unwrap();
    let out = alice.meow(&["send", "bob", "--file", path.to_str().unwrap()]);
    assert!(
        out.ok().contains("file report.bin (5.0 MiB, 46 chunk(s)) to bob"),
        "{}",
        out.stdout
    );

    // The server dies with every chunk on its disk, and comes back.
    server.kill9();
    let small = content(300_000, 9);
    let small_path = tmp.path().join("notes.txt");
    std::fs::write(&small_path, &small).unwrap();
    // Sent while it is down: queued whole in Alice's outbox.
    alice
        .meow(&[
            "send",
            "bob",
            "--file",
            small_path.to_str().unwrap(),
            "--as",
            "later.txt",
        ])
        .fails_with(75, "queued");
    let server = ServerProc::start_on(&data_dir, port, &[]);
    alice.meow(&["inbox"]).ok();

    let inbox = bob.meow(&["inbox"]);
    let lines: Vec<&str> = inbox.ok().lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains("alice: file report.bin (5.0 MiB, application/octet-stream): meow file save "),
        "{lines:?}"
    );
    assert!(lines[1].contains("file later.txt (293.0 KiB, text/plain)"), "{lines:?}");

    let list = files(&bob);
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["complete"], true);
    assert_eq!(list[0]["size"], big.len() as u64);
    assert_eq!(list[0]["contact"], "alice");
    let id = list[0]["id"].as_str().unwrap()[..6].to_owned();

    // Saved into a folder under its own name, checked, and never over an existing file.
    let downloads = tmp.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    bob.meow(&["file", "save", &id, downloads.to_str().unwrap()]).ok();
    assert!(
        std::fs::read(downloads.join("report.bin")).unwrap() == big,
        "the saved file differs"
    );
    bob.meow(&["file", "save", &id, downloads.to_str().unwrap()])
        .fails_with(1, "exists (choose another path, or overwrite it with --force)");
    bob.meow(&["file", "save", &id, downloads.to_str().unwrap(), "--force"])
        .ok();
    let later = list[1]["id"].as_str().unwrap().to_owned();
    bob.meow_in(&downloads, &["file", "save", &later]).ok();
    assert!(std::fs::read(downloads.join("later.txt")).unwrap() == small);

    // At rest in Bob's home, the file is encrypted like everything else.
    assert_eq!(
        grep(&bob.dir, &big[1_000_000..1_000_064]),
        None,
        "file bytes in bob's home"
    );

    // Careless input gets one clear line.
    bob.meow(&["file", "save", "ffff"]).fails_with(1, "no file \"ffff\"");
    alice
        .meow(&["send", "bob", "--file", tmp.path().join("nope.bin").to_str().unwrap()])
        .fails_with(1, "nope.bin: No such file or directory");
    alice
        .meow(&["send", "bob", "--file", downloads.to_str().unwrap()])
        .fails_with(1, "not a regular file");
    alice
        .meow(&[
            "send",
            "bob",
            "--file",
            path.to_str().unwrap(),
            "--as",
            "../../etc/passwd",
        ])
        .fails_with(1, "must not start with a dot");
    let neither = alice.meow(&["send", "bob"]);
    assert_eq!(neither.code, 2, "{}", neither.stderr);
    assert!(
        neither.stderr.contains("required arguments were not provided"),
        "{}",
        neither.stderr
    );

    bob.meow(&["file", "delete", &id]).ok();
    assert_eq!(files(&bob).len(), 1);
    drop(server);
}

/// Waits until `home` has a complete file named `name`; returns its id.
fn wait_for_file(home: &Home, name: &str) -> String {
    wait_for(&format!("the file {name}"), Duration::from_secs(30), || {
        home.meow(&["inbox"]).ok();
        files(home)
            .into_iter()
            .find(|f| f["name"] == name && f["complete"] == true)
            .map(|f| f["id"].as_str().unwrap().to_owned())
    })
}

const NO_FILES: &str = r#"
function on_message(msg)
  if msg.text == "try files" then
    local ok, err = pcall(meow.files.send, msg.sender, "x.txt", "x")
    meow.reply(msg, "files: " .. tostring(ok) .. " " .. tostring(err))
  end
end
"#;

/// A plugin (the first-party `filer`) and a recipe handle files: what arrives is described,
/// read back and returned; a recipe saves every file that arrives and sends one from disk; a
/// plugin without the `files` capability is denied.
#[test]
fn plugins_and_recipes_send_read_and_save_files_and_the_capability_is_enforced() {
    let s = setup(
        "files-plugins",
        "  - { name: filer, plugin: filer, grant: [messaging, kv, files] }\n  \
         - { name: nofiles, plugin: \"{local}/nofiles\", grant: [messaging] }\n",
    );
    s.lua_plugin("nofiles", NO_FILES, "messaging, files");
    // A recipe keeps every file that arrives in saved/, and sends manual.txt when asked.
    let recipes = s.tmp.path().join("recipes");
    std::fs::create_dir_all(recipes.join("saved")).unwrap();
    std::fs::write(recipes.join("manual.txt"), "read me first\n").unwrap();
    std::fs::write(
        recipes.join("keep.yaml"),
        "version: 1\nname: keep\nmode: queued\ntriggers:\n  - message: {}\nconditions:\n  - \"trigger.type == 'file'\"\n\
         actions:\n  - save_file: { file: \"{{ trigger.json.file }}\", to: saved/ }\n",
    )
    .unwrap();
    std::fs::write(
        recipes.join("manual.yaml"),
        "version: 1\nname: manual\ntriggers:\n  - message: { contains: manual }\n\
         actions:\n  - send_file: { to: \"{{ trigger.sender }}\", path: manual.txt, as: guide.txt }\n",
    )
    .unwrap();
    let yaml = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, format!("{yaml}recipes:\n  - {}/*.yaml\n", recipes.display())).unwrap();

    let daemon = Daemon::start(&s.bot, &s.config);
    s.pair();
    let mut photo = b"hello from the user\n".to_vec();
    photo.extend(content(600_000, 3));
    let path = s.tmp.path().join("photo.bin");
    std::fs::write(&path, &photo).unwrap();
    s.user.meow(&["send", "bot", "--file", path.to_str().unwrap()]).ok();
    wait_for_text(&s.user, "filer's description", |t| {
        t == "got photo.bin (600020 bytes, application/octet-stream); it starts with: hello from the user"
    });
    // The recipe saved it under its own name beside the recipe.
    let saved = recipes.join("saved/photo.bin");
    wait_for("the recipe's copy", Duration::from_secs(30), || {
        std::fs::read(&saved).ok().filter(|b| *b == photo)
    });

    // The plugin reads it whole and sends it back.
    s.user.meow(&["send", "bot", "again"]).ok();
    let back = wait_for_file(
        &s.user,
        &format!("again-{}.bin", &files(&s.bot)[0]["id"].as_str().unwrap()[..8]),
    );
    let copy = s.tmp.path().join("back.bin");
    s.user.meow(&["file", "save", &back, copy.to_str().unwrap()]).ok();
    assert!(std::fs::read(&copy).unwrap() == photo, "the plugin's copy differs");

    s.user.meow(&["send", "bot", "report"]).ok();
    let report = wait_for_file(&s.user, "report.txt");
    let copy = s.tmp.path().join("report.txt");
    s.user.meow(&["file", "save", &report, copy.to_str().unwrap()]).ok();
    let text = std::fs::read_to_string(&copy).unwrap();
    assert_eq!(text.lines().count(), 20_000);
    assert_eq!(text.lines().last(), Some("line 20000 of the report"));

    s.user.meow(&["send", "bot", "manual please"]).ok();
    let guide = wait_for_file(&s.user, "guide.txt");
    let copy = s.tmp.path().join("guide.txt");
    s.user.meow(&["file", "save", &guide, copy.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), "read me first\n");

    // Without the grant, the capability is denied (the manifest asking for it is not enough).
    s.user.meow(&["send", "bot", "try files"]).ok();
    wait_for_text(&s.user, "the denial", |t| {
        t.starts_with("files: false") && t.contains("denied") && t.contains("files")
    });
    assert_eq!(daemon.terminate(), 0);
}
