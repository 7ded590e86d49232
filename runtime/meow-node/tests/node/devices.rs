//! Several devices of one user (docs/DEVICES.md): linking a second device through the server,
//! every message on both, sending from the device that does not hold the conversation.

use std::time::Duration;

use meow_node::devices::link::Joining;
use meow_node::devices::net;
use meow_node::sync::{self, Delivery};
use meow_node::{Env, InitOptions, Node};
use meow_proto::crypto::KdfParams;
use meow_proto::envelope::ContentType;
use smol::lock::Mutex;

use super::{home, pair, server, tempdir, texts};

fn inbox_texts(n: &Node) -> Vec<String> {
    let mut t: Vec<String> = n
        .inbox(false)
        .unwrap()
        .iter()
        .map(|i| String::from_utf8_lossy(&i.content).into_owned())
        .collect();
    t.sort();
    t
}

/// `home` invites `other` as `name`; `other` accepts, and `home` reads the answer.
async fn befriend(home: &Mutex<Node>, other: &Mutex<Node>, name: &str) {
    let card = home.lock().await.invite(name, false).unwrap();
    other.lock().await.accept(card.to_text().as_bytes(), None).unwrap();
    sync::flush_outbox(other, false).await.unwrap();
    sync::fetch(home, Duration::ZERO).await.unwrap();
}

/// Links a new device `name` to `existing`, in `dir`; both sides see the same code.
async fn link(existing: &Mutex<Node>, dir: &std::path::Path, name: &str) -> Mutex<Node> {
    let linking = existing.lock().await.start_link().unwrap();
    let env = Env::system();
    let (joining, mailbox, request, code) = Joining::start(linking.card.clone(), name, &env).unwrap();
    let pool = existing.lock().await.pool();
    let new_side = net::join(joining, mailbox, request, &pool, Duration::from_secs(20), || true);
    let old_side = async {
        let (request, code) = net::link_wait(existing, &linking, Duration::from_secs(20))
            .await
            .unwrap();
        net::link_welcome(existing, &linking, &request, b"pw").await.unwrap();
        code
    };
    let (joined, code_seen) = futures_lite::future::zip(new_side, old_side).await;
    assert_eq!(code, code_seen, "both devices show the same short code");
    let (joining, welcome) = joined.unwrap();
    let opts = InitOptions {
        kdf: KdfParams::TESTING,
        display_name: None,
        decoys: false,
    };
    Mutex::new(joining.finish(&dir.join(name), b"pw2", &welcome, opts, env).unwrap())
}

#[test]
fn a_linked_device_sees_every_message_and_sends_through_the_holder() {
    let dir = tempdir("devices");
    let srv = server(dir.path(), 0);
    let (a1, bob) = (home(dir.path(), "alice", &srv), home(dir.path(), "bob", &srv));
    smol::block_on(async {
        pair(&a1, &bob).await;
        sync::send(&bob, "alice", ContentType::TEXT, b"before the link".to_vec())
            .await
            .unwrap();
        sync::fetch(&a1, Duration::ZERO).await.unwrap();

        let a2 = link(&a1, dir.path(), "laptop").await;
        {
            let n = a2.lock().await;
            assert_eq!(n.user_public(), a1.lock().await.user_public(), "one identity");
            assert_eq!(
                n.contacts().iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
                vec!["bob"]
            );
            assert_eq!(
                inbox_texts(&n),
                vec!["before the link"],
                "the history came with the welcome"
            );
            let names: Vec<String> = n.devices().iter().map(|d| d.name.clone()).collect();
            assert_eq!(names.len(), 2);
            assert_eq!(names[0], "laptop", "this device first");
        }

        // Bob writes: the holder (a1) opens it; a2 reads it from the sync log.
        sync::send(&bob, "alice", ContentType::TEXT, b"after the link".to_vec())
            .await
            .unwrap();
        let got = sync::fetch(&a1, Duration::ZERO).await.unwrap();
        assert_eq!(texts(&got.events), vec!["after the link"]);
        let got2 = sync::fetch(&a2, Duration::ZERO).await.unwrap();
        assert!(texts(&got2.events).is_empty(), "a2 does not open bob's envelopes");
        assert_eq!(
            inbox_texts(&*a2.lock().await),
            vec!["after the link", "before the link"]
        );

        // a2 writes to bob: handed to a1, which seals and sends it at its next sync.
        let d = sync::send(&a2, "bob", ContentType::TEXT, b"from the laptop".to_vec())
            .await
            .unwrap();
        assert_eq!(d, Delivery::Handed);
        sync::fetch(&a1, Duration::ZERO).await.unwrap();
        let at_bob = sync::fetch(&bob, Duration::ZERO).await.unwrap();
        assert_eq!(texts(&at_bob.events), vec!["from the laptop"], "bob sees one alice");

        // The draft is marked sent everywhere: another sync sends nothing twice.
        sync::fetch(&a2, Duration::ZERO).await.unwrap();
        sync::fetch(&a1, Duration::ZERO).await.unwrap();
        assert!(texts(&sync::fetch(&bob, Duration::ZERO).await.unwrap().events).is_empty());

        // The laptop cannot take bob while the first device holds it and is active.
        let busy = net::take(&a2, "bob").await.unwrap_err().to_string();
        assert!(busy.contains("held by") && busy.contains("release"), "{busy}");
        // The first device releases it; the laptop takes it and is now the one that speaks.
        net::release(&a1, "bob").await.unwrap();
        net::take(&a2, "bob").await.unwrap();
        let d = sync::send(&a2, "bob", ContentType::TEXT, b"laptop holds it".to_vec())
            .await
            .unwrap();
        assert!(matches!(d, Delivery::Delivered { .. }), "{d:?}");
        let d = sync::send(&a1, "bob", ContentType::TEXT, b"via the laptop".to_vec())
            .await
            .unwrap();
        assert_eq!(d, Delivery::Handed, "the first device hands its messages over now");
        sync::fetch(&a2, Duration::ZERO).await.unwrap();
        let at_bob = sync::fetch(&bob, Duration::ZERO).await.unwrap();
        assert_eq!(texts(&at_bob.events), vec!["laptop holds it", "via the laptop"]);
        sync::send(&bob, "alice", ContentType::TEXT, b"to the new holder".to_vec())
            .await
            .unwrap();
        assert_eq!(
            texts(&sync::fetch(&a2, Duration::ZERO).await.unwrap().events),
            vec!["to the new holder"]
        );
        assert!(texts(&sync::fetch(&a1, Duration::ZERO).await.unwrap().events).is_empty());
        assert!(inbox_texts(&*a1.lock().await).contains(&"to the new holder".to_owned()));

        // Both survive a restart with the same devices and contacts.
        let a2_dir = a2.lock().await.dir().to_owned();
        drop(a2);
        let a2 = Node::open(&a2_dir, b"pw2").unwrap();
        assert_eq!(a2.devices().len(), 2);
        assert_eq!(a2.contacts().len(), 1);
    });
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn a_revoked_device_reads_nothing_new_cannot_revoke_back_and_wipes_itself() {
    let dir = tempdir("revoke");
    let srv = server(dir.path(), 0);
    let (a1, bob) = (home(dir.path(), "alice", &srv), home(dir.path(), "bob", &srv));
    smol::block_on(async {
        pair(&a1, &bob).await;
        let laptop = link(&a1, dir.path(), "laptop").await;
        let phone = link(&a1, dir.path(), "phone").await;
        sync::fetch(&laptop, Duration::ZERO).await.unwrap();
        assert_eq!(laptop.lock().await.devices().len(), 3);

        // The laptop is stolen, unlocked: the thief keeps a copy of its home.
        let laptop_dir = laptop.lock().await.dir().to_owned();
        let stolen = dir.path().join("stolen");
        copy_dir(&laptop_dir, &stolen);

        // Without the password, the thief cannot revoke the others.
        let refused = net::revoke(&laptop, "phone", b"a guess").await.unwrap_err().to_string();
        assert!(refused.contains("wrong password"), "{refused}");
        // The phone cannot be made to revoke itself, and needs the password too.
        assert!(net::revoke(&phone, "phone", b"pw").await.is_err());
        assert!(
            net::revoke(&phone, "laptop", b"pw2")
                .await
                .unwrap_err()
                .to_string()
                .contains("wrong password")
        );

        // The phone revokes the laptop with the password.
        assert_eq!(net::revoke(&phone, "laptop", b"pw").await.unwrap(), "laptop");
        assert_eq!(phone.lock().await.devices().len(), 2);
        // The first device hears it, takes its leases again and rotates bob's keys.
        sync::fetch(&a1, Duration::ZERO).await.unwrap();
        sync::fetch(&a1, Duration::ZERO).await.unwrap();
        let names: Vec<String> = a1.lock().await.devices().iter().map(|d| d.name.clone()).collect();
        assert!(!names.contains(&"laptop".to_owned()), "{names:?}");
        sync::fetch(&bob, Duration::ZERO).await.unwrap();

        // Bob writes after the rotation reached him: the holder reads it, the stolen copy finds
        // nothing where it looks, and cannot open the envelope even when handed it.
        sync::send(&bob, "alice", ContentType::TEXT, b"after the revocation".to_vec())
            .await
            .unwrap();
        let thief = Node::open(&stolen, b"pw2").unwrap();
        let mut conversation = thief.contact("bob").unwrap().conversation.clone();
        let old_keys: Vec<_> = conversation.lookup_keys().cloned().collect();
        let client = meow_net::ServerClient::connect(&srv.card().address, &srv.card().key)
            .await
            .unwrap();
        let refs: Vec<_> = old_keys.iter().collect();
        let found = client.poll(&refs, 100, Duration::ZERO, 0).await.unwrap();
        assert!(found.messages.is_empty(), "the old mailboxes are empty");
        let new_keys: Vec<_> = a1
            .lock()
            .await
            .contact("bob")
            .unwrap()
            .conversation
            .lookup_keys()
            .cloned()
            .collect();
        let refs: Vec<_> = new_keys.iter().collect();
        let got = client.poll(&refs, 100, Duration::ZERO, 0).await.unwrap();
        assert!(!got.messages.is_empty());
        for m in &got.messages {
            for k in &old_keys {
                let mailbox = meow_proto::MailboxId::of(&k.public());
                let opened = conversation.open(&mailbox, &m.envelope, meow_node::now_ms(), &mut meow_proto::os_rng());
                assert!(
                    opened.is_err(),
                    "the stolen state opens nothing sent after the revocation"
                );
            }
        }
        assert_eq!(
            texts(&sync::fetch(&a1, Duration::ZERO).await.unwrap().events),
            vec!["after the revocation"]
        );

        // The laptop itself, at its next sync, learns it was revoked and wipes its home.
        let wiped = sync::fetch(&laptop, Duration::ZERO).await;
        assert!(wiped.is_err() || !Node::exists(&laptop_dir), "{wiped:?}");
        assert!(!Node::exists(&laptop_dir), "the revoked home is gone");
        // The contact keeps talking to the others without a new card.
        sync::send(&phone, "bob", ContentType::TEXT, b"still here".to_vec())
            .await
            .unwrap();
        sync::fetch(&a1, Duration::ZERO).await.unwrap();
        assert!(texts(&sync::fetch(&bob, Duration::ZERO).await.unwrap().events).contains(&"still here".to_owned()));
    });
}

#[test]
fn a_rename_on_one_device_and_a_removal_on_another_converge_by_the_later() {
    let dir = tempdir("converge");
    let srv = server(dir.path(), 0);
    let (a1, bob) = (home(dir.path(), "alice", &srv), home(dir.path(), "bob", &srv));
    let carol = home(dir.path(), "carol", &srv);
    smol::block_on(async {
        pair(&a1, &bob).await;
        // Carol too, so that each case has its own contact.
        befriend(&a1, &carol, "carol").await;
        let a2 = link(&a1, dir.path(), "laptop").await;

        // Offline from each other: a1 renames bob, then a2 removes him (later): removed on both.
        // (The pauses make "later" true on the clock too: the merge orders by physical time
        // first, at millisecond resolution.)
        let later = || std::thread::sleep(Duration::from_millis(3));
        a1.lock().await.rename("bob", "robert").unwrap();
        later();
        a2.lock().await.remove_contact("bob").unwrap();
        later();
        // a2 removes carol, then a1 renames her (later): she stays, renamed, on both.
        a2.lock().await.remove_contact("carol").unwrap();
        later();
        a1.lock().await.rename("carol", "caroline").unwrap();
        // Two plugin key-value writes to one key (the later wins), and one to another key each.
        let kv = |n: &Node, key: &str, value: &str| {
            let vault = n.vault();
            let mut b = vault.batch();
            let key = format!("responder\0{key}");
            b.put(
                meow_node::Table::Kv,
                key.as_bytes(),
                value.as_bytes(),
                &mut meow_proto::os_rng(),
            );
            n.sync_kv(&mut b, key.as_bytes(), Some(value.as_bytes()));
            b.commit().unwrap();
        };
        kv(&*a2.lock().await, "seen/bob", "7");
        later();
        kv(&*a1.lock().await, "seen/bob", "8");
        kv(&*a1.lock().await, "only-on-1", "a");
        kv(&*a2.lock().await, "only-on-2", "b");
        for _ in 0..2 {
            sync::fetch(&a1, Duration::ZERO).await.unwrap();
            sync::fetch(&a2, Duration::ZERO).await.unwrap();
        }
        let names = |n: &Node| {
            let mut v: Vec<String> = n.contacts().iter().map(|c| c.name.clone()).collect();
            v.sort();
            v
        };
        let (on1, on2) = (names(&*a1.lock().await), names(&*a2.lock().await));
        assert_eq!(on1, on2, "both devices agree");
        assert_eq!(on1, vec!["caroline"], "the later change wins each time");
        let read = |n: &Node, key: &str| {
            let key = format!("responder\0{key}");
            n.vault()
                .get(meow_node::Table::Kv, key.as_bytes())
                .unwrap()
                .map(|v| String::from_utf8(v.to_vec()).unwrap())
        };
        for n in [&*a1.lock().await, &*a2.lock().await] {
            assert_eq!(read(n, "seen/bob").as_deref(), Some("8"), "the later write wins");
            assert_eq!(read(n, "only-on-1").as_deref(), Some("a"));
            assert_eq!(read(n, "only-on-2").as_deref(), Some("b"));
        }
    });
}

#[test]
fn groups_follow_to_a_linked_device_which_posts_through_the_holder() {
    let dir = tempdir("groups");
    let srv = server(dir.path(), 0);
    let (a1, bob) = (home(dir.path(), "alice", &srv), home(dir.path(), "bob", &srv));
    let carol = home(dir.path(), "carol", &srv);
    smol::block_on(async {
        pair(&a1, &bob).await;
        befriend(&a1, &carol, "carol").await;
        a1.lock().await.create_group("friends").unwrap();
        for m in ["bob", "carol"] {
            let items = a1.lock().await.group_add("friends", m).unwrap();
            sync::deliver_all(&a1, items).await.unwrap();
        }
        sync::fetch(&bob, Duration::ZERO).await.unwrap();
        sync::fetch(&carol, Duration::ZERO).await.unwrap();

        let a2 = link(&a1, dir.path(), "laptop").await;
        let groups = a2.lock().await.groups().unwrap();
        assert_eq!(groups.len(), 1);
        assert!(groups[0].is_owner(), "the group's key came with the link");
        let mut members = meow_node::groups::member_names(&groups[0]);
        members.sort();
        assert_eq!(members, vec!["bob", "carol"]);
        assert!(
            groups[0].members.iter().all(|(_, id)| *id != 0),
            "members map to the laptop's contacts"
        );

        // A post from the laptop: a draft per member, sealed and sent by the holder.
        sync::group_send(&a2, "friends", ContentType::TEXT, b"dinner at 8".to_vec())
            .await
            .unwrap();
        sync::fetch(&a1, Duration::ZERO).await.unwrap();
        for (who, h) in [("bob", &bob), ("carol", &carol)] {
            let got = texts(&sync::fetch(h, Duration::ZERO).await.unwrap().events);
            assert_eq!(got, vec!["dinner at 8"], "{who} gets the post once");
        }
    });
}
