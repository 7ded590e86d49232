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
