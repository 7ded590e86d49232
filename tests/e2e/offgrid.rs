//! Off the internet (issue 17): a sensor reports over a serial line, an RNode and a Meshtastic
//! device (simulated on pseudo-terminals, speaking those devices' protocols) to a server whose
//! owner reads over TCP.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use meow_net::port::{LinkAddress, PortPeer};
use meow_testkit::radio::{Air, NullModem, on_pty, pluggable, sim_meshtastic, sim_rnode};

use crate::support::{Home, ServerProc, TempDir, wait_for};

/// Two homes on `server`, `inviter` and `invitee`, contacts of each other (each knows the
/// other by the other's name). The invitee reaches the server `via` a link for link sessions,
/// if given.
pub(crate) fn contacts_on(
    tmp: &TempDir,
    server: &ServerProc,
    inviter: &str,
    invitee: &str,
    via: Option<&str>,
) -> (Home, Home) {
    let a = Home::init(tmp.path().join(inviter), inviter);
    let b = Home::init(tmp.path().join(invitee), invitee);
    let card = server.card.to_text();
    a.meow(&["servers", "add", &card]).ok();
    match via {
        Some(via) => {
            let out = b.meow(&["servers", "add", &card, "--via", via]);
            assert!(out.ok().contains("link sessions go via"), "{}", out.stdout);
            let list = b.meow(&["servers", "list"]);
            assert!(list.ok().contains(&format!("via {via}")), "{}", list.stdout);
        }
        None => {
            b.meow(&["servers", "add", &card]).ok();
        }
    }
    let inv = tmp.path().join(format!("{invitee}.meowcard"));
    a.meow(&["invite", invitee, "--out", inv.to_str().unwrap()]).ok();
    b.meow(&["accept", inv.to_str().unwrap(), "--name", inviter]).ok();
    wait_for("the inviter to know the invitee", Duration::from_secs(30), || {
        a.meow(&["inbox"]).ok();
        a.meow(&["contacts"]).stdout.contains(invitee).then_some(())
    });
    (a, b)
}

/// A sensor and an owner on `server` (set up over TCP, as on a bench), their conversation at
/// version 2 so readings take the compact form. The sensor reaches the server `via` a link for
/// link sessions, if given.
fn pair_at_v2(tmp: &TempDir, server: &ServerProc, via: Option<&str>) -> (Home, Home) {
    let (owner, sensor) = contacts_on(tmp, server, "owner", "sensor", via);
    wait_for("the conversation at version 2", Duration::from_secs(60), || {
        owner.meow(&["inbox"]).ok();
        sensor.meow(&["send", "owner", "hello"]).ok();
        owner.meow(&["inbox"]).ok();
        sensor.meow(&["inbox"]).ok();
        sensor.meow(&["contacts"]).stdout.contains("v2 (").then_some(())
    });
    (sensor, owner)
}

/// The readings `n` the owner has, in the order stored.
fn readings_at(owner: &Home) -> Vec<u64> {
    owner
        .texts()
        .iter()
        .filter_map(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        .filter_map(|v| v["n"].as_u64())
        .collect()
}

/// Waits until the owner has readings 1..=count, each once.
fn owner_gets(owner: &Home, count: u64) -> Vec<u64> {
    let mut got = wait_for("every reading at the owner", Duration::from_secs(60), || {
        let got = readings_at(owner);
        (got.len() as u64 >= count).then_some(got)
    });
    got.sort_unstable();
    assert_eq!(got, (1..=count).collect::<Vec<_>>(), "each reading once, none lost");
    got
}

/// `meow sensor` arguments: through `link`, or with none the link recorded for the server.
fn sensor_args(link: Option<&str>, count: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "sensor", "--to", "owner", "--every", "300ms", "--count", count, "--hot-at", "99",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(link) = link {
        args.extend(["--link".to_owned(), link.to_owned()]);
    }
    args
}

#[test]
fn readings_cross_a_serial_line_and_a_cut_cable_loses_none() {
    let tmp = TempDir::new("offgrid-serial");
    let (cable, server_end, sensor_end) = NullModem::new();
    let server = ServerProc::start(&tmp.path().join("srv"), &["--serial", server_end.to_str().unwrap()]);
    let link = format!("serial:{}:115200", sensor_end.display());
    let (sensor, owner) = pair_at_v2(&tmp, &server, Some(&link));

    // No --link: the sensor uses the link recorded with `meow servers add --via`.
    let mut child = sensor
        .command()
        .args(sensor_args(None, "8"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        lines.push(line.unwrap());
        match lines.len() {
            2 => cable.set_cut(true),
            4 => cable.set_cut(false),
            _ => {}
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{lines:#?}");
    assert_eq!(lines.len(), 8, "{lines:#?}");
    for l in &lines[..2] {
        assert!(l.contains("110 bytes on the link, answer 26"), "{l}");
    }
    assert!(lines[0].contains("session opened with 71 + 21 bytes"), "{}", lines[0]);
    for (l, waiting) in lines[2..4].iter().zip(["1 waiting", "2 waiting"]) {
        assert!(l.contains("queued:") && l.contains(waiting), "{l}");
    }
    assert!(lines[4].contains("(+2 that waited for the link)"), "{}", lines[4]);
    for l in &lines[5..] {
        assert!(l.contains("110 bytes on the link") && !l.contains("waited"), "{l}");
    }
    owner_gets(&owner, 8);
}

/// Reads the `meow sensor` lines of `count` readings through `link`; asserts every one went.
fn report_through(sensor: &Home, link: &str, count: usize) -> Vec<String> {
    let out = sensor.meow(
        &sensor_args(Some(link), &count.to_string())
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let lines: Vec<String> = out.ok().lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), count, "{}", out.stdout);
    for l in &lines {
        assert!(l.contains("110 bytes on the link, answer 26"), "{l}");
        assert!(l.contains("airtime left"), "{l}");
    }
    assert!(lines[0].contains("session opened with 71 + 21 bytes"), "{}", lines[0]);
    lines
}

/// Opens two ports on `links` (radios on `air`), sends a datagram larger than one frame from
/// the first and checks the second gets it whole.
fn large_datagram_crosses(links: [&str; 2]) {
    smol::block_on(async {
        let clock = meow_clock::SystemClock::shared();
        let mut ports = Vec::new();
        for l in links {
            let opened = meow_net::radio::open(&LinkAddress::parse(l).unwrap(), clock.clone())
                .await
                .unwrap();
            ports.push(opened.spawned().0);
        }
        let big: Vec<u8> = (0..1500u32).map(|i| (i % 253) as u8).collect();
        ports[0].send_to(&big, PortPeer::Line).await.unwrap();
        let (got, _) = ports[1].recv_from().await.unwrap();
        assert_eq!(got, big);
    });
}

/// A server serving the radio `gateway`, a sensor and an owner on it, and three readings from
/// the sensor through the radio `radio`, all at the owner.
fn three_readings_over(tmp: &TempDir, gateway: &str, radio: &str) {
    let server = ServerProc::start(&tmp.path().join("srv"), &["--radio", gateway]);
    let (sensor, owner) = pair_at_v2(tmp, &server, None);
    report_through(&sensor, radio, 3);
    owner_gets(&owner, 3);
}

fn link_to(kind: &str, path: &Path, options: &str) -> String {
    format!("{kind}:{}{options}", path.display())
}

#[test]
fn a_reading_crosses_simulated_rnodes_and_large_datagrams_are_split() {
    let tmp = TempDir::new("offgrid-rnode");
    let air = Air::new(meow_clock::SystemClock::shared());
    let (a, b) = (air.clone(), air.clone());
    let gateway = on_pty(move |l| sim_rnode(l, a, "gateway".into()));
    let radio = on_pty(move |l| sim_rnode(l, b, "sensor".into()));
    three_readings_over(
        &tmp,
        &link_to("rnode", &gateway, ",sf=7,bw=125k"),
        &link_to("rnode", &radio, ",sf=7,bw=125k"),
    );
    // What each radio was given to send: the open, then one 110-byte frame per reading; the
    // gateway's answers: 21 for the open, 26 per deposit. The RNode adds its 1-byte header.
    assert_eq!(air.sizes_from("sensor"), [71, 110, 110, 110]);
    assert_eq!(air.sizes_from("gateway"), [21, 26, 26, 26]);

    // Two more radios, on other settings (the SF7 pair does not hear them).
    let (c, d) = (air.clone(), air.clone());
    let one = on_pty(move |l| sim_rnode(l, c, "one".into()));
    let two = on_pty(move |l| sim_rnode(l, d, "two".into()));
    large_datagram_crosses([&link_to("rnode", &one, ",sf=9"), &link_to("rnode", &two, ",sf=9")]);
    assert_eq!(air.sizes_from("one"), [508, 508, 493], "1500 bytes in three frames");
}

#[test]
fn a_reading_crosses_simulated_meshtastic_devices_and_large_datagrams_are_split() {
    let tmp = TempDir::new("offgrid-mesh");
    let air = Air::new(meow_clock::SystemClock::shared());
    let (a, b) = (air.clone(), air.clone());
    let gateway = on_pty(move |l| sim_meshtastic(l, a, 0x000a_7e00));
    let radio = on_pty(move |l| sim_meshtastic(l, b, 0x5e45));
    three_readings_over(
        &tmp,
        &link_to("meshtastic", &gateway, ""),
        &link_to("meshtastic", &radio, ""),
    );
    assert_eq!(air.sizes_from("!00005e45"), [71, 110, 110, 110]);
    assert_eq!(air.sizes_from("!000a7e00"), [21, 26, 26, 26]);

    let (c, d) = (air.clone(), air.clone());
    let one = on_pty(move |l| sim_meshtastic(l, c, 1));
    let two = on_pty(move |l| sim_meshtastic(l, d, 2));
    large_datagram_crosses([&link_to("meshtastic", &one, ""), &link_to("meshtastic", &two, "")]);
    let sizes = air.sizes_from("!00000001");
    assert_eq!(sizes.len(), 7, "1500 bytes in 230-byte pieces: {sizes:?}");
    assert!(sizes.iter().all(|&s| s <= 233), "{sizes:?}");
}

/// A hub's daemon serves a radio with its embedded server (`server.links` in meow.yaml), and
/// `meow status` shows what the radio carried and the airtime left this hour.
#[test]
fn a_daemons_radio_shows_its_airtime_budget_in_meow_status() {
    let tmp = TempDir::new("offgrid-status");
    let (hub, homes, config, base) = crate::support::hub_with_contacts(&tmp, &["sensor"]);
    let sensor = &homes[0];
    let air = Air::new(meow_clock::SystemClock::shared());
    let (a, b) = (air.clone(), air.clone());
    let gateway = on_pty(move |l| sim_rnode(l, a, "hub".into()));
    let radio = on_pty(move |l| sim_rnode(l, b, "sensor".into()));
    let links = format!("  links: [\"{}\"]\npoll_wait:", link_to("rnode", &gateway, ",sf=8"));
    std::fs::write(&config, base.replacen("poll_wait:", &links, 1)).unwrap();
    let daemon = crate::support::Daemon::start(&hub, &config);
    wait_for(
        "the sensor's conversation at version 2",
        Duration::from_secs(60),
        || {
            sensor.meow(&["send", "hub", "hello"]).ok();
            sensor.meow(&["inbox"]).ok();
            sensor.meow(&["contacts"]).stdout.contains("v2 (").then_some(())
        },
    );
    let link = link_to("rnode", &radio, ",sf=8");
    let out = sensor.meow(&[
        "sensor", "--to", "hub", "--link", &link, "--every", "100ms", "--count", "2",
    ]);
    assert_eq!(out.ok().lines().count(), 2, "{}", out.stdout);
    let status = hub.meow(&["status"]);
    let line = status
        .ok()
        .lines()
        .find(|l| l.starts_with("link "))
        .unwrap_or_else(|| panic!("no link line: {}", status.stdout))
        .to_owned();
    assert!(
        line.contains("rnode:") && line.contains("3 sent") && line.contains("3 received"),
        "{line}"
    );
    assert!(
        line.contains("airtime left") && line.contains("of 36 s this hour"),
        "{line}"
    );
    assert_eq!(air.sizes_from("hub"), [21, 26, 26]);
    assert_eq!(daemon.terminate(), 0);
}

/// On a network with no internet, a server announced over multicast DNS is found with its card,
/// and proves it holds the card's key; an impostor announcing someone else's address under its
/// own key is found too, and shown as failing that proof (discovery never replaces checking).
#[test]
fn servers_announced_on_the_local_network_are_found_and_their_cards_checked() {
    let tmp = TempDir::new("offgrid-mdns");
    let server = ServerProc::start(&tmp.path().join("srv"), &["--announce", "--name", "wifi-hub"]);
    let impostor = meow_proto::ServerCard {
        name: "wifi-hub-evil".into(),
        address: server.card.address.clone(),
        key: meow_proto::ServerKey::generate(&mut meow_proto::os_rng()).public(),
    };
    let listen: std::net::SocketAddr = server.address().parse().unwrap();
    let _fake = meow_discover::announce(&impostor, listen, meow_discover::Scope::Loopback).unwrap();
    let home = Home::init(tmp.path().join("phone"), "phone");
    let found = wait_for("both announcements", Duration::from_secs(30), || {
        let out = home.meow(&["servers", "discover", "--loopback", "--wait", "2s", "--json"]);
        let v: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
        let list = v.as_array().unwrap().clone();
        let names: Vec<&str> = list.iter().filter_map(|d| d["name"].as_str()).collect();
        (names.contains(&"wifi-hub") && names.contains(&"wifi-hub-evil")).then_some(list)
    });
    let by_name = |n: &str| found.iter().find(|d| d["name"] == n).unwrap().clone();
    let real = by_name("wifi-hub");
    assert_eq!(real["card"].as_str().unwrap(), server.card.to_text());
    assert_eq!(real["verified"], true);
    assert_eq!(by_name("wifi-hub-evil")["verified"], false);
    // The found card is the one to add.
    home.meow(&["servers", "add", real["card"].as_str().unwrap()]).ok();
    let text = home.meow(&["servers", "discover", "--loopback", "--wait", "2s"]);
    assert!(text.ok().contains("does NOT answer under this key"), "{}", text.stdout);
}

/// The texts a home has stored, also while its server is down (`meow inbox` then says so with
/// an error that says nothing was lost, after listing what is stored).
fn stored_texts(home: &Home) -> Vec<String> {
    let out = home.meow(&["inbox", "--all", "--json"]);
    let unreachable = out.stderr.contains("nothing was lost");
    assert!(
        out.code == 0 || unreachable,
        "{} {}{}",
        out.code,
        out.stdout,
        out.stderr
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .collect()
}

pub(crate) fn wait_for_stored(home: &Home, text: &str) -> Vec<String> {
    wait_for(text, Duration::from_secs(30), || {
        let texts = stored_texts(home);
        texts.iter().any(|t| t == text).then_some(texts)
    })
}

fn contact_direct(home: &Home, name: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(&home.meow(&["contacts", "--json"]).stdout).ok()?;
    v["contacts"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)?
        .get("direct")?
        .as_str()
        .map(str::to_owned)
}

/// Two homes whose policies are `direct-preferred` tell each other where they listen and then
/// talk directly: messages arrive while their server is down. When the direct link is cut
/// (one home restarts without it), messages go through the server again, none lost or twice.
#[test]
fn direct_preferred_contacts_talk_directly_and_fall_back_to_their_server() {
    let tmp = TempDir::new("offgrid-direct");
    let srv = tmp.path().join("srv");
    let port = crate::support::free_port();
    let server = ServerProc::start_on(&srv, port, &[]);
    let (alice, bob) = contacts_on(&tmp, &server, "alice", "bob", None);
    assert!(
        alice
            .meow(&["policy", "bob", "direct-preferred"])
            .ok()
            .contains("bob: direct (was server)")
    );
    bob.meow(&["policy", "alice", "direct-preferred"]).ok();

    let config = |name: &str, direct: bool| {
        let path = tmp.path().join(format!("{name}-{direct}.yaml"));
        let direct = if direct {
            "direct:\n  listen: 127.0.0.1:0\n  announce_every: 2s\n"
        } else {
            ""
        };
        std::fs::write(
            &path,
            format!("version: 1\nserver:\n  enabled: false\npoll_wait: 1s\n{direct}"),
        )
        .unwrap();
        path
    };
    let alice_run = crate::support::Daemon::start(&alice, &config("alice", true));
    let bob_run = crate::support::Daemon::start(&bob, &config("bob", true));
    wait_for("each to learn where the other listens", Duration::from_secs(60), || {
        (contact_direct(&alice, "bob").is_some() && contact_direct(&bob, "alice").is_some()).then_some(())
    });
    assert!(
        alice
            .meow(&["contacts"])
            .ok()
            .contains("reachable directly at 127.0.0.1:")
    );
    // A stranger who finds the port cannot even complete a handshake: no contact's key is its.
    let bobs = meow_proto::Address::Tcp(contact_direct(&alice, "bob").unwrap());
    let stranger = meow_proto::ServerKey::generate(&mut meow_proto::os_rng()).public();
    assert!(smol::block_on(meow_net::ServerClient::connect(&bobs, &stranger)).is_err());

    // The server is gone: only the direct link can carry these (exit 0 = delivered).
    server.kill9();
    for i in 1..=3 {
        alice.meow(&["send", "bob", &format!("direct {i}")]).ok();
    }
    bob.meow(&["send", "alice", "direct reply"]).ok();
    wait_for_stored(&bob, "direct 3");
    wait_for_stored(&alice, "direct reply");

    // The server comes back; bob's daemon restarts without direct links: the link is cut.
    let _server = ServerProc::start_on(&srv, port, &[]);
    assert_eq!(bob_run.terminate(), 0);
    let bob_run = crate::support::Daemon::start(&bob, &config("bob", false));
    for i in 1..=3 {
        alice.meow(&["send", "bob", &format!("server {i}")]).ok();
    }
    let texts = wait_for_stored(&bob, "server 3");
    for want in ["direct 1", "direct 2", "direct 3", "server 1", "server 2", "server 3"] {
        assert_eq!(texts.iter().filter(|t| *t == want).count(), 1, "{want} once: {texts:?}");
    }
    assert!(
        alice_run
            .log_text()
            .contains("direct link failed; the contact's servers carry it")
    );
    assert_eq!(bob_run.terminate(), 0);
    assert_eq!(alice_run.terminate(), 0);
}

/// Careless input gets one clear line and changes nothing: a missing device, a file that is no
/// serial device, a radio setting out of range, a bare line given as a radio, a bad link.
#[test]
fn wrong_devices_and_settings_are_named() {
    let tmp = TempDir::new("offgrid-careless");
    let home = Home::init(tmp.path().join("h"), "h");
    let srv = tmp.path().join("srv");
    let srv = srv.to_str().unwrap();
    let server = |extra: &[&str]| {
        let mut args = vec!["server", "--data", srv, "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        home.run_raw(&args)
    };
    server(&["--serial", "/nonexistent/ttyUSB7"]).fails_with(1, "opening /nonexistent/ttyUSB7: No such file");
    server(&["--serial", "/dev/null"]).fails_with(1, "is it a serial device?");
    server(&["--radio", "rnode:/dev/null,sf=13"]).fails_with(1, "spreading factor 13 is not 6..12");
    server(&["--radio", "serial:/dev/ttyUSB0"]).fails_with(1, "a bare line goes with --serial");
    server(&["--radio", "rnode:/dev/null,colour=red"]).fails_with(1, "unknown radio option \"colour\"");
    let silent = on_pty(|l| async move {
        let _open = l;
        std::future::pending::<()>().await
    });
    let out = server(&["--radio", &link_to("rnode", &silent, "")]);
    out.fails_with(1, "no RNode answered");
    home.meow(&["servers", "add", "meow:server:nonsense", "--via", "serial:/dev/x"])
        .fails_with(1, "");
    let card = {
        let s = ServerProc::start(&tmp.path().join("srv2"), &[]);
        s.card.to_text()
    };
    home.meow(&["servers", "add", &card, "--via", "lora:/dev/x"])
        .fails_with(1, "unknown link kind \"lora\"");
    assert!(
        !home.meow(&["servers", "list"]).ok().contains("via"),
        "nothing recorded"
    );
}

/// The sensor's own radio is unplugged in the middle of a run and plugged back at the same
/// path: the readings meanwhile wait, the sensor opens the radio again, and the owner gets all.
#[test]
fn a_sensor_radio_unplugged_and_plugged_back_loses_no_reading() {
    let tmp = TempDir::new("offgrid-unplug");
    let air = Air::new(meow_clock::SystemClock::shared());
    let a = air.clone();
    let gateway = on_pty(move |l| sim_rnode(l, a, "gateway".into()));
    let server = ServerProc::start(&tmp.path().join("srv"), &["--radio", &link_to("rnode", &gateway, "")]);
    let (sensor, owner) = pair_at_v2(&tmp, &server, None);
    let device = tmp.path().join("ttyACM0");
    let b = air.clone();
    let (first, unplug) = pluggable(move |l| sim_rnode(l, b, "sensor".into()));
    std::os::unix::fs::symlink(&first, &device).unwrap();

    let mut child = sensor
        .command()
        .args(sensor_args(Some(&link_to("rnode", &device, "")), "6"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut unplug = Some(unplug);
    let mut plugged = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        lines.push(line.unwrap());
        match lines.len() {
            2 => drop(unplug.take()),
            3 => {
                let c = air.clone();
                let (second, keep) = pluggable(move |l| sim_rnode(l, c, "sensor".into()));
                std::fs::remove_file(&device).unwrap();
                std::os::unix::fs::symlink(&second, &device).unwrap();
                plugged = Some(keep);
            }
            _ => {}
        }
    }
    assert!(child.wait().unwrap().success(), "{lines:#?}");
    assert_eq!(lines.len(), 6, "{lines:#?}");
    assert!(lines[2].contains("queued:"), "{}", lines[2]);
    assert!(
        lines[3..].iter().any(|l| l.contains("that waited for the link")),
        "{lines:#?}"
    );
    owner_gets(&owner, 6);
    drop(plugged);
}
