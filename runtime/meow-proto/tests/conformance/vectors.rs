//! Test vectors in `runtime/meow-proto/vectors/*.json`.

use std::path::PathBuf;

use meow_proto::broadcast::{Broadcast, UncheckedBroadcast};
use meow_proto::card::{CardBody, CardError};
use meow_proto::codec::{Decode, Encode};
use meow_proto::conversation::KeySet;
use meow_proto::datagram::{self, DatagramSender};
use meow_proto::directory::{DirectoryEntry, UncheckedEntry, Withdrawal};
use meow_proto::envelope::{self, ContentType, Message, MessageId, RotationOffer};
use meow_proto::server_card::ServerCard;
use meow_proto::session::{self, ClientHandshake};
use meow_proto::testing::TestRng;
use meow_proto::upgrade;
use meow_proto::wire::{
    AckItem, MailboxAuth, Request, RequestFrame, Response, ResponseFrame, ServerInfo, StoredMessage,
};
use meow_proto::*;
use serde_json::{Value, json};

const NOW: u64 = 1_800_000_000;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_else(|| panic!("missing {k} in {v}")).to_owned()
}

fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at] ^= 0x01;
    b
}

// ------------------------------------------------------------------ generation

fn sample_card(rng: &mut TestRng, role: CardRole, answers: Option<&Card>) -> (ContactKey, Card) {
    let key = ContactKey::generate(rng);
    let body = CardBody {
        role,
        conversation: ConversationKey::generate(rng).public(),
        lookup: LookupKey::generate(rng).public(),
        servers: vec![ServerRef {
            address: Address::Tcp("192.0.2.7:7070".into()),
            key: ServerKey::generate(rng).public(),
        }],
        nickname: Some("alice".into()),
        created: NOW,
        expires: NOW + 7 * 86_400,
        answers: answers.map(Card::id),
        classical_start: false,
    };
    (key.clone(), Card::sign(&key, body))
}

fn gen_keys() -> Value {
    let mut rng = TestRng::new(100);
    let lookup = LookupKey::generate(&mut rng);
    let contact = ContactKey::generate(&mut rng);
    json!({
        "description": "Key text forms, mailbox ids and fingerprints. Secrets are Ed25519 seeds.",
        "lookup": {
            "seed": hex(lookup.seed().as_slice()),
            "public_text": lookup.public().to_text(),
            "mailbox_id": hex(&MailboxId::of(&lookup.public()).0),
        },
        "contact": {
            "seed": hex(contact.seed().as_slice()),
            "public_text": contact.public().to_text(),
            "fingerprint": contact.public().fingerprint(),
        },
    })
}

fn gen_cards() -> Value {
    let mut rng = TestRng::new(200);
    let (_, inv) = sample_card(&mut rng, CardRole::Invitation, None);
    let (_, ans) = sample_card(&mut rng, CardRole::Answer, Some(&inv));
    let (_, public) = sample_card(&mut rng, CardRole::Public, None);
    let (key, plain) = sample_card(&mut rng, CardRole::Invitation, None);
    let classical = Card::sign(
        &key,
        CardBody {
            classical_start: true,
            ..plain.body
        },
    );
    json!({
        "description": "Rendez-vous cards, checked at `now`. Any changed byte must fail as BadSignature.",
        "now": NOW + 60,
        "valid": [
            {"name": "invitation", "hex": hex(inv.as_bytes()), "text": inv.to_text(), "id": hex(&inv.id().0)},
            {"name": "answer", "hex": hex(ans.as_bytes()), "text": ans.to_text(), "id": hex(&ans.id().0),
             "answers": hex(&inv.id().0)},
            {"name": "public", "hex": hex(public.as_bytes()), "text": public.to_text(), "id": hex(&public.id().0)},
            {"name": "classical start (version 3)", "hex": hex(classical.as_bytes()), "text": classical.to_text(),
             "id": hex(&classical.id().0), "classical_start": true},
        ],
        "invalid": [
            {"name": "flipped magic", "hex": hex(&flip(inv.as_bytes(), 0)), "error": "BadSignature"},
            {"name": "flipped version", "hex": hex(&flip(inv.as_bytes(), 5)), "error": "BadSignature"},
            {"name": "flipped signer key", "hex": hex(&flip(inv.as_bytes(), 10)), "error": "BadSignature"},
            {"name": "flipped nickname", "hex": hex(&flip(inv.as_bytes(), inv.as_bytes().len() - 80)), "error": "BadSignature"},
            {"name": "flipped signature", "hex": hex(&flip(inv.as_bytes(), inv.as_bytes().len() - 1)), "error": "BadSignature"},
            {"name": "truncated", "hex": hex(&inv.as_bytes()[..50]), "error": "BadLength"},
            {"name": "expired at now", "hex": hex(inv.as_bytes()), "now": NOW + 7 * 86_400, "error": "Expired"},
        ],
    })
}

fn gen_envelopes() -> Value {
    let mut rng = TestRng::new(300);
    let sender = ContactKey::generate(&mut rng);
    let recipient = ConversationKey::generate(&mut rng);
    let other = ContactKey::generate(&mut rng);
    let mut cases = Vec::new();
    let messages = [
        ("lora text", ContentType::TEXT, b"t=21.5C".to_vec(), None, None, false),
        ("json 1 KiB", ContentType::JSON, vec![b'7'; 1024], None, None, false),
        (
            "rotation offer and ack",
            ContentType::CONTROL,
            vec![],
            Some(RotationOffer {
                serial: 3,
                conversation: ConversationKey::generate(&mut rng).public(),
                lookup: LookupKey::generate(&mut rng).public(),
            }),
            Some(2),
            false,
        ),
        (
            "automatic reply",
            ContentType::TEXT,
            b"echo: hi".to_vec(),
            None,
            None,
            true,
        ),
    ];
    for (name, content_type, content, rotation, rotation_ack, automatic) in messages {
        let m = Message {
            id: MessageId::random(&mut rng),
            sent_at_ms: NOW * 1000,
            content_type,
            content,
            rotation,
            rotation_ack,
            automatic,
            reply_to: None,
        };
        let env = envelope::seal(&m, &sender, &recipient.public(), &mut rng).unwrap();
        cases.push(json!({"name": name, "message_hex": hex(&m.to_bytes()), "envelope_hex": hex(&env)}));
    }
    let bad = envelope::seal(
        &Message::from_bytes(&unhex(&s(&cases[0], "message_hex"))).unwrap(),
        &other,
        &recipient.public(),
        &mut rng,
    )
    .unwrap();
    let good = unhex(&s(&cases[0], "envelope_hex"));
    json!({
        "description": "Envelopes: open with recipient_secret, verify with sender_public, compare the message.",
        "recipient_secret": hex(recipient.secret_bytes().as_slice()),
        "sender_public": sender.public().to_text(),
        "valid": cases,
        "invalid": [
            {"name": "signed by another contact", "hex": hex(&bad), "error": "NotFromContact"},
            {"name": "ciphertext changed", "hex": hex(&flip(&good, 100)), "error": "Decrypt"},
            {"name": "not a size class", "hex": hex(&good[..good.len() - 1]), "error": "Malformed"},
            {"name": "unknown version", "hex": hex(&flip(&good, 0)), "error": "Malformed"},
        ],
    })
}

fn sample_requests(rng: &mut TestRng) -> Vec<(&'static str, RequestFrame)> {
    let lookup = LookupKey::generate(rng);
    let bkey = BroadcastKey::generate(rng);
    let (ck, public) = sample_card(rng, CardRole::Public, None);
    let entry = DirectoryEntry::sign(&ck, public, "weather bot, ask me", &["weather".into()], NOW + 86_400);
    let entry_id = entry.id();
    vec![
        (
            "deposit",
            Request::Deposit {
                mailbox: MailboxId::of(&lookup.public()),
                envelope: vec![1; 176],
            },
        ),
        (
            "poll",
            Request::Poll {
                mailboxes: vec![MailboxAuth::prove(&lookup, &[7; 32]), MailboxAuth::proven(&lookup)],
                limit: 256,
                wait_ms: 30_000,
                broadcasts_after: 12,
            },
        ),
        (
            "ack",
            Request::Ack {
                items: vec![AckItem {
                    auth: MailboxAuth::proven(&lookup),
                    seqs: vec![1, 2, 300],
                }],
            },
        ),
        (
            "broadcast",
            Request::Broadcast(Broadcast::sign(&bkey, NOW, "storm warning").into()),
        ),
        ("directory publish", Request::DirectoryPublish(entry.into())),
        (
            "directory search",
            Request::DirectorySearch {
                query: "weather bot".into(),
                limit: 10,
            },
        ),
        ("directory random", Request::DirectoryRandom { count: 3 }),
        (
            "directory withdraw",
            Request::DirectoryWithdraw(Withdrawal::sign(&ck, entry_id)),
        ),
        ("info", Request::Info),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (n, request))| {
        (
            n,
            RequestFrame {
                id: i as u64 + 1,
                request,
            },
        )
    })
    .collect()
}

fn sample_responses(rng: &mut TestRng) -> Vec<(&'static str, ResponseFrame)> {
    let bkey = BroadcastKey::generate(rng);
    vec![
        ("deposited", Response::Deposited),
        (
            "messages",
            Response::Messages {
                items: vec![StoredMessage {
                    mailbox: MailboxId([3; 16]),
                    seq: 42,
                    received_at: NOW,
                    envelope: vec![9; 176],
                }],
                broadcasts: vec![wire::BroadcastItem {
                    id: 5,
                    from_operator: true,
                    broadcast: Broadcast::sign(&bkey, NOW, "shelter open").into(),
                }],
                more: false,
            },
        ),
        ("acked", Response::Acked),
        ("broadcasted", Response::Broadcasted { id: 6 }),
        (
            "info",
            Response::Info(ServerInfo {
                name: "home".into(),
                max_envelope: 131_072,
                message_ttl_secs: 14 * 86_400,
                open_broadcast: false,
            }),
        ),
        (
            "error",
            Response::Error {
                code: wire::ErrorCode::MailboxFull,
                message: "mailbox full (10000 messages)".into(),
            },
        ),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (n, response))| {
        (
            n,
            ResponseFrame {
                id: i as u64 + 1,
                response,
            },
        )
    })
    .collect()
}

fn gen_wire() -> Value {
    let mut rng = TestRng::new(400);
    let requests: Vec<Value> = sample_requests(&mut rng)
        .iter()
        .map(|(n, f)| json!({"name": n, "hex": hex(&f.to_bytes())}))
        .collect();
    let responses: Vec<Value> = sample_responses(&mut rng)
        .iter()
        .map(|(n, f)| json!({"name": n, "hex": hex(&f.to_bytes())}))
        .collect();
    json!({
        "description": "Request and response frames (inside a session or datagram).",
        "requests": requests,
        "responses": responses,
        "invalid_requests": [
            {"name": "unknown kind", "hex": "0163", "error": "UnknownValue"},
            {"name": "non-minimal request id", "hex": "800009", "error": "BadVarint"},
            {"name": "trailing byte", "hex": "010900", "error": "TrailingBytes"},
            {"name": "truncated deposit", "hex": "0101aabb", "error": "Truncated"},
            {"name": "poll list too long", "hex": "0102ffff03", "error": "TooLong"},
            {"name": "bad bool", "hex": "010202", "error": "Truncated"},
        ],
    })
}

fn gen_session() -> Value {
    let mut rng = TestRng::new(500);
    let server = ServerKey::generate(&mut rng);
    let (hs, hello) = ClientHandshake::start(&server.public(), &mut rng).unwrap();
    let (mut s, reply) = session::accept(&server, &hello, &mut rng).unwrap();
    let mut c = hs.finish(&reply).unwrap();
    let f1 = c.seal(
        &RequestFrame {
            id: 1,
            request: Request::Info,
        }
        .to_bytes(),
    );
    let f2 = s.seal(
        &ResponseFrame {
            id: 1,
            response: Response::Acked,
        }
        .to_bytes(),
    );
    let mut dg_rng = TestRng::new(501);
    let sender = DatagramSender::new(&server.public(), &mut dg_rng).unwrap();
    let (dgram, _) = sender.seal_request(&Request::Info, NOW);
    json!({
        "description": "A session handshake and first frames, and a sealed datagram, for server_secret.",
        "server_secret": hex(server.secret_bytes().as_slice()),
        "client_hello": hex(&hello),
        "server_hello": hex(&reply),
        "binding": hex(c.binding()),
        "client_frame_1": hex(&f1),
        "client_frame_1_plain": hex(&RequestFrame { id: 1, request: Request::Info }.to_bytes()),
        "server_frame_1": hex(&f2),
        "datagram": hex(&dgram),
        "datagram_now": NOW,
    })
}

fn gen_objects() -> Value {
    let mut rng = TestRng::new(600);
    let server = ServerCard {
        name: "home".into(),
        address: Address::Tcp("192.0.2.7:7070".into()),
        key: ServerKey::generate(&mut rng).public(),
    };
    let b = Broadcast::sign(&BroadcastKey::generate(&mut rng), NOW, "water is safe again");
    let (ck, public) = sample_card(&mut rng, CardRole::Public, None);
    let e = DirectoryEntry::sign(
        &ck,
        public,
        "chess partner",
        &["chess".into(), "games".into()],
        NOW + 86_400,
    );
    let mut rng2 = TestRng::new(601);
    let conv = meow_proto::Conversation::new(
        ContactKey::generate(&mut rng2),
        KeySet::generate(0, &mut rng2),
        ContactKey::generate(&mut rng2).public(),
        PeerKeys {
            serial: 0,
            conversation: ConversationKey::generate(&mut rng2).public(),
            lookup: LookupKey::generate(&mut rng2).public(),
        },
    );
    json!({
        "description": "Standalone objects: server card, broadcast, directory entry, stored conversation state.",
        "now": NOW,
        "server_card": {"hex": hex(&server.to_bytes()), "text": server.to_text()},
        "broadcast": {"hex": hex(&b.to_bytes())},
        "directory_entry": {"hex": hex(&e.to_bytes())},
        "conversation_state": {"hex": hex(&conv.to_bytes())},
    })
}

/// One scripted conversation for `ratchet.json`. Events in order: `send` (the sender seals
/// `plaintext`), `deliver` (the recipient opens message `id`). Losses and reordering included.
const RATCHET_SCRIPT: &[(&str, usize)] = &[
    ("send a", 0),
    ("send a", 1),
    ("deliver", 1),
    ("send b", 2),
    ("deliver", 0),
    ("deliver", 2),
    ("send a", 3),
    ("send a", 4),
    ("send a", 5),
    ("deliver", 5),
    ("deliver", 3),
    ("send b", 6),
    ("deliver", 6),
    ("send a", 7),
    ("deliver", 7),
];

const RATCHET_AD: &[u8] = b"meow ratchet vectors";

struct RatchetParty {
    state: ratchet::Ratchet,
    keys: TestRng,
}

fn ratchet_parties(root: &crypto::SecretKey, a: [u8; 32], b: [u8; 32]) -> [RatchetParty; 2] {
    let (a, b) = (crypto::DhSecret::from_bytes(a), crypto::DhSecret::from_bytes(b));
    let (a_pub, b_pub) = (a.public(), b.public());
    let mut b_keys = TestRng::new(702);
    let bob = ratchet::Ratchet::start_second(root, b, a_pub, &mut b_keys).unwrap();
    [
        RatchetParty {
            state: ratchet::Ratchet::start_first(root, a, b_pub).unwrap(),
            keys: TestRng::new(701),
        },
        RatchetParty {
            state: bob,
            keys: b_keys,
        },
    ]
}

fn ratchet_text(id: usize) -> Vec<u8> {
    format!("message {id}").into_bytes()
}

fn gen_ratchet() -> Value {
    let mut rng = TestRng::new(700);
    let root = crypto::SecretKey::generate(&mut rng);
    let (a, b) = (
        crypto::random_bytes::<32>(&mut rng),
        crypto::random_bytes::<32>(&mut rng),
    );
    let mut parties = ratchet_parties(&root, a, b);
    let mut nonces = TestRng::new(703);
    let mut sent: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut events = Vec::new();
    for &(op, id) in RATCHET_SCRIPT {
        match op {
            "deliver" => {
                let (from, msg) = &sent[id];
                let to = &mut parties[1 - from];
                let plain = to.state.open(RATCHET_AD, msg, &mut to.keys).unwrap();
                assert_eq!(plain.as_slice(), ratchet_text(id));
                events.push(json!({"op": "deliver", "id": id}));
            }
            _ => {
                let from = usize::from(op == "send b");
                let msg = parties[from]
                    .state
                    .seal(RATCHET_AD, &ratchet_text(id), &mut nonces)
                    .unwrap();
                events.push(json!({"op": op, "id": id, "plaintext": hex(&ratchet_text(id)), "hex": hex(&msg)}));
                sent.push((from, msg));
            }
        }
    }
    json!({
        "description": "A Double Ratchet conversation (docs/PROTOCOL.md, conversations v2). Alice starts \
            with start_first(root, alice_key, public(bob_key)), Bob with start_second(root, bob_key, \
            public(alice_key)). New ratchet keys are drawn from TestRng(701) for Alice and \
            TestRng(702) for Bob (SHA-256(\"meow test rng\" || seed_le64 || counter_le64) blocks), only \
            when a ratchet step happens; header nonces are not reproducible and need not be. Replay \
            the events: a send advances the sender (its output may differ), a deliver opens the \
            recorded message. The states at the end are the stored form.",
        "ad": hex(RATCHET_AD),
        "root": hex(root.as_bytes()),
        "alice_key": hex(&a),
        "bob_key": hex(&b),
        "events": events,
        "alice_state": hex(&parties[0].state.to_bytes()),
        "bob_state": hex(&parties[1].state.to_bytes()),
    })
}

/// `upgrade.json`: an offer, its accept and the accepter's first version-2 envelope, with and
/// without X-Wing.
fn gen_upgrade() -> Value {
    let mut rng = TestRng::new(800);
    let (a, b) = (ContactKey::generate(&mut rng), ContactKey::generate(&mut rng));
    let mut cases = Vec::new();
    for post_quantum in [true, false] {
        let secrets = upgrade::OfferSecrets::generate(post_quantum, &mut rng);
        let offer = secrets.offer().unwrap();
        let (mut bob, accept) = upgrade::accept(&offer, &a.public(), &b.public(), &mut rng).unwrap();
        let m = Message {
            id: MessageId::random(&mut rng),
            sent_at_ms: NOW * 1000,
            content_type: ContentType::TEXT,
            content: b"t=21.5C".to_vec(),
            rotation: None,
            rotation_ack: None,
            automatic: false,
            reply_to: None,
        };
        let env = envelope::seal_v2(&m, &mut bob, &b.public(), &a.public(), &mut rng).unwrap();
        cases.push(json!({
            "post_quantum": post_quantum,
            "offer_ratchet_secret": hex(secrets.ratchet.to_bytes().as_slice()),
            "offer_pq_seed": secrets.pq.as_ref().map(|k| hex(k.to_bytes().as_slice())),
            "offer": hex(&offer.to_bytes()),
            "accept": hex(&accept.to_bytes()),
            "envelope": hex(&env),
            "message": hex(&m.to_bytes()),
        }));
    }
    json!({
        "description": "Upgrade to conversation version 2 (docs/PROTOCOL.md §17): offerer A, accepter B. \
            upgrade::complete(A's offer secrets, accept) gives A's ratchet; it opens B's version-2 \
            envelope (sender B, recipient A) to the message body. Offer and accept decode and \
            re-encode byte for byte.",
        "offerer_contact": a.public().to_text(),
        "accepter_contact": b.public().to_text(),
        "cases": cases,
    })
}

/// `onion.json`: a three-relay Matriochka packet (docs/PROTOCOL.md §22) with a fixed session
/// key, and what each relay reads when it peels its layer.
fn gen_onion() -> Value {
    use meow_proto::onion::{self, Instruction, RouteHop};
    let mut rng = TestRng::new(900);
    let relays: Vec<RelayKey> = (0..3).map(|_| RelayKey::generate(&mut rng)).collect();
    let servers: Vec<ServerPublic> = (0..3).map(|_| ServerKey::generate(&mut rng).public()).collect();
    let route: Vec<RouteHop> = (0..3)
        .map(|i| RouteHop {
            relay: relays[i].public(),
            instruction: if i < 2 {
                Instruction::Forward {
                    next: servers[i + 1],
                    address: format!("relay{}.example:7070", i + 1).parse().unwrap(),
                    delay_ms: 50 * (i as u32 + 1),
                }
            } else {
                Instruction::Deliver {
                    delay_ms: 20,
                    target: None,
                    mailbox: MailboxId([0x5a; 16]),
                    envelope: vec![0xee; 176],
                }
            },
        })
        .collect();
    let session = [0x41u8; 32];
    let packet = onion::wrap_with_session(&route, &session).unwrap();
    json!({
        "description": "A Matriochka packet through three relays (docs/PROTOCOL.md §22): Sphinx as BOLT #4 \
            on X25519. Relay i peels with relay_secrets[i], reads instructions[i] (hex of its encoding) \
            and passes the inner packet on; every packet is the same length.",
        "session_key": hex(&session),
        "relay_secrets": relays.iter().map(|k| hex(k.secret_bytes().as_slice())).collect::<Vec<_>>(),
        "instructions": route.iter().map(|h| hex(&h.instruction.to_bytes())).collect::<Vec<_>>(),
        "packet": hex(packet.as_bytes()),
    })
}

/// `descriptor.json`: a signed server descriptor of a relay (docs/PROTOCOL.md §23).
fn gen_descriptor() -> Value {
    use meow_proto::catalog::{DescriptorBody, RelayInfo, ServerDescriptor};
    let mut rng = TestRng::new(901);
    let identity = ServerIdentity::generate(&mut rng);
    let body = DescriptorBody {
        name: "relay-one".into(),
        addresses: vec!["relay1.example:7070".parse().unwrap()],
        session_key: ServerKey::generate(&mut rng).public(),
        issued_at: NOW,
        sequence: 7,
        expires_at: NOW + 3 * 3600,
        relay: Some(RelayInfo {
            max_delay_ms: 60_000,
            epoch_secs: 3600,
            keys: (0..4)
                .map(|e| (NOW / 3600 + e, RelayKey::generate(&mut rng).public()))
                .collect(),
        }),
    };
    let d = ServerDescriptor::sign(&identity, body);
    json!({
        "description": "A server descriptor (docs/PROTOCOL.md §23), valid at `now`; it decodes, \
            checks, and re-encodes byte for byte.",
        "now": NOW,
        "descriptor": hex(&d.to_bytes()),
    })
}

fn generate() -> Vec<(&'static str, Value)> {
    vec![
        ("keys.json", gen_keys()),
        ("cards.json", gen_cards()),
        ("envelopes.json", gen_envelopes()),
        ("wire.json", gen_wire()),
        ("session.json", gen_session()),
        ("objects.json", gen_objects()),
        ("ratchet.json", gen_ratchet()),
        ("upgrade.json", gen_upgrade()),
        ("onion.json", gen_onion()),
        ("descriptor.json", gen_descriptor()),
    ]
}

fn load(name: &str) -> Value {
    let text = std::fs::read_to_string(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn checked_in_vectors_match_the_generator() {
    for (name, value) in generate() {
        let text = serde_json::to_string_pretty(&value).unwrap() + "\n";
        let path = dir().join(name);
        if std::env::var_os("MEOW_REGENERATE_VECTORS").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == text,
            "{name} differs from the generator; an encoding changed (MEOW_REGENERATE_VECTORS=1 to accept)"
        );
    }
}

// ------------------------------------------------------------------ checking (reads only the files)

#[test]
fn key_vectors() {
    let v = load("keys.json");
    let lookup = LookupKey::from_seed(&unhex(&s(&v["lookup"], "seed")).try_into().unwrap());
    assert_eq!(lookup.public().to_text(), s(&v["lookup"], "public_text"));
    assert_eq!(hex(&MailboxId::of(&lookup.public()).0), s(&v["lookup"], "mailbox_id"));
    let contact: ContactPublic = s(&v["contact"], "public_text").parse().unwrap();
    assert_eq!(contact.fingerprint(), s(&v["contact"], "fingerprint"));
    assert_eq!(contact.to_text(), s(&v["contact"], "public_text"));
}

/// Cards and server cards made by version 1 (a plain `host:port` per server) still read, as TCP.
#[test]
fn version_1_cards_still_read() {
    let v = load("cards-v1.json");
    let now = v["now"].as_u64().unwrap();
    for case in v["valid"].as_array().unwrap() {
        let bytes = unhex(&s(case, "hex"));
        assert_eq!(bytes[5], 1, "a version-1 card");
        let card = UncheckedCard::from_bytes(&bytes).unwrap().check(now).unwrap();
        assert_eq!(card.as_bytes(), bytes.as_slice());
        assert_eq!(hex(&card.id().0), s(case, "id"));
        assert_eq!(card.body.servers[0].address, Address::Tcp("192.0.2.7:7070".into()));
    }
    let o = load("objects-v1.json");
    let sc = ServerCard::from_text(&s(&o["server_card"], "text")).unwrap();
    assert_eq!(sc.address, Address::Tcp("192.0.2.7:7070".into()));
    assert_eq!(
        ServerCard::from_bytes(&sc.to_bytes()).unwrap(),
        sc,
        "and is written again as version 2"
    );
    let conv = Conversation::from_bytes(&unhex(&s(&o["conversation_state"], "hex"))).unwrap();
    assert_eq!(
        conv.version_status(),
        conversation::VersionStatus::V1,
        "a conversation stored before version 2 reads as version 1"
    );
    assert_eq!(conv.to_bytes()[0], 2, "and is stored again in the new form");
}

#[test]
fn card_vectors() {
    let v = load("cards.json");
    let now = v["now"].as_u64().unwrap();
    for case in v["valid"].as_array().unwrap() {
        let bytes = unhex(&s(case, "hex"));
        let card = UncheckedCard::from_bytes(&bytes).unwrap().check(now).unwrap();
        assert_eq!(card.as_bytes(), bytes.as_slice(), "{}", case["name"]);
        assert_eq!(card.to_text(), s(case, "text"));
        assert_eq!(hex(&card.id().0), s(case, "id"));
        if let Some(a) = case["answers"].as_str() {
            assert_eq!(hex(&card.body.answers.unwrap().0), a);
        }
        assert_eq!(
            card.body.classical_start,
            case["classical_start"].as_bool().unwrap_or(false),
            "{}",
            case["name"]
        );
        // Re-encoding the decoded fields with the same key gives the same bytes: checked by
        // signing in the generator; here the text form must decode to the same card.
        assert_eq!(
            UncheckedCard::from_text(&card.to_text()).unwrap().check(now).unwrap(),
            card
        );
    }
    for case in v["invalid"].as_array().unwrap() {
        let now = case["now"].as_u64().unwrap_or(now);
        let bytes = unhex(&s(case, "hex"));
        let err = UncheckedCard::from_bytes(&bytes)
            .and_then(|c| c.check(now))
            .unwrap_err();
        let want = s(case, "error");
        assert!(
            format!("{err:?}").starts_with(&want),
            "{}: got {err:?}, want {want}",
            case["name"]
        );
        if want == "BadSignature" {
            assert_eq!(err, CardError::BadSignature);
        }
    }
}

#[test]
fn envelope_vectors() {
    let v = load("envelopes.json");
    let recipient = ConversationKey::from_secret_bytes(unhex(&s(&v, "recipient_secret")).try_into().unwrap());
    let sender: ContactPublic = s(&v, "sender_public").parse().unwrap();
    for case in v["valid"].as_array().unwrap() {
        let env = unhex(&s(case, "envelope_hex"));
        let msg = envelope::open(&env, &recipient).unwrap().verify(&sender).unwrap();
        assert_eq!(hex(&msg.to_bytes()), s(case, "message_hex"), "{}", case["name"]);
        assert_eq!(Message::from_bytes(&unhex(&s(case, "message_hex"))).unwrap(), msg);
    }
    for case in v["invalid"].as_array().unwrap() {
        let env = unhex(&s(case, "hex"));
        let err = envelope::open(&env, &recipient)
            .and_then(|u| u.verify(&sender))
            .unwrap_err();
        assert!(
            format!("{err:?}").starts_with(&s(case, "error")),
            "{}: {err:?}",
            case["name"]
        );
    }
}

#[test]
fn wire_vectors() {
    let v = load("wire.json");
    for case in v["requests"].as_array().unwrap() {
        let bytes = unhex(&s(case, "hex"));
        let frame = RequestFrame::from_bytes(&bytes).unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
        assert_eq!(frame.to_bytes(), bytes, "{}", case["name"]);
    }
    for case in v["responses"].as_array().unwrap() {
        let bytes = unhex(&s(case, "hex"));
        let frame = ResponseFrame::from_bytes(&bytes).unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
        assert_eq!(frame.to_bytes(), bytes, "{}", case["name"]);
    }
    for case in v["invalid_requests"].as_array().unwrap() {
        let err = RequestFrame::from_bytes(&unhex(&s(case, "hex"))).unwrap_err();
        assert!(
            format!("{err:?}").starts_with(&s(case, "error")),
            "{}: {err:?}",
            case["name"]
        );
    }
}

/// The scripted conversation replays from the file: every message opens, in the recorded order,
/// to its plaintext, both sides end in the recorded state, and a replay and a change are refused.
#[test]
fn ratchet_vectors() {
    let v = load("ratchet.json");
    let ad = unhex(&s(&v, "ad"));
    let root = crypto::SecretKey::from_bytes(unhex(&s(&v, "root")).try_into().unwrap());
    let key = |k| unhex(&s(&v, k)).try_into().unwrap();
    let mut parties = ratchet_parties(&root, key("alice_key"), key("bob_key"));
    let mut junk = TestRng::new(0);
    let mut sent: Vec<(usize, Vec<u8>, Vec<u8>)> = Vec::new();
    for e in v["events"].as_array().unwrap() {
        let id = e["id"].as_u64().unwrap() as usize;
        if s(e, "op") == "deliver" {
            let (from, msg, plain) = &sent[id];
            let to = &mut parties[1 - from];
            assert_eq!(
                to.state.open(&ad, msg, &mut to.keys).unwrap().as_slice(),
                plain.as_slice()
            );
            assert_eq!(
                to.state.open(&ad, msg, &mut to.keys).err(),
                Some(ratchet::RatchetError::Replay)
            );
            let changed = flip(msg, msg.len() - 1);
            assert!(to.state.open(&ad, &changed, &mut to.keys).is_err());
        } else {
            let from = usize::from(s(e, "op") == "send b");
            let plain = unhex(&s(e, "plaintext"));
            parties[from].state.seal(&ad, &plain, &mut junk).unwrap();
            sent.push((from, unhex(&s(e, "hex")), plain));
        }
    }
    assert_eq!(hex(&parties[0].state.to_bytes()), s(&v, "alice_state"));
    assert_eq!(hex(&parties[1].state.to_bytes()), s(&v, "bob_state"));
}

/// The upgrade vectors: the offerer's side completes from the file and opens the first envelope.
#[test]
fn upgrade_vectors() {
    let v = load("upgrade.json");
    let a: ContactPublic = s(&v, "offerer_contact").parse().unwrap();
    let b: ContactPublic = s(&v, "accepter_contact").parse().unwrap();
    for case in v["cases"].as_array().unwrap() {
        let (offer, accept) = (unhex(&s(case, "offer")), unhex(&s(case, "accept")));
        for bytes in [&offer, &accept] {
            assert_eq!(&upgrade::UpgradeMessage::from_bytes(bytes).unwrap().to_bytes(), bytes);
        }
        let secrets = upgrade::OfferSecrets {
            ratchet: crypto::DhSecret::from_bytes(unhex(&s(case, "offer_ratchet_secret")).try_into().unwrap()),
            pq: case["offer_pq_seed"]
                .as_str()
                .map(|h| crypto::PqSecret::from_bytes(unhex(h).try_into().unwrap())),
        };
        assert_eq!(
            secrets.offer().unwrap().to_bytes(),
            offer,
            "the offer comes from these secrets"
        );
        let accept = upgrade::UpgradeMessage::from_bytes(&accept).unwrap();
        let mut rng = TestRng::new(1);
        let mut alice = upgrade::complete(secrets, &accept, &a, &b, &mut rng).unwrap();
        let env = unhex(&s(case, "envelope"));
        let mut tampered = alice.clone();
        assert!(envelope::open_v2(&flip(&env, 40), &mut tampered, &b, &a, &mut rng).is_err());
        assert!(
            envelope::open_v2(&env, &mut alice.clone(), &a, &b, &mut rng).is_err(),
            "bound to who writes to whom"
        );
        let m = envelope::open_v2(&env, &mut alice, &b, &a, &mut rng).unwrap();
        assert_eq!(hex(&m.to_bytes()), s(case, "message"));
    }
}

#[test]
fn session_vectors() {
    let v = load("session.json");
    let server = ServerKey::from_secret_bytes(unhex(&s(&v, "server_secret")).try_into().unwrap());
    // The server side is reproducible from the hello (its own randomness aside): it must accept
    // the client hello, and a datagram must open at its time.
    let hello = unhex(&s(&v, "client_hello"));
    assert_eq!(hello.len(), session::CLIENT_HELLO_LEN);
    session::accept(&server, &hello, &mut TestRng::new(9)).unwrap();
    assert_eq!(unhex(&s(&v, "server_hello")).len(), session::SERVER_HELLO_LEN);
    let opened =
        datagram::open_request(&server, &unhex(&s(&v, "datagram")), v["datagram_now"].as_u64().unwrap()).unwrap();
    assert_eq!(opened.request, Request::Info);
}

#[test]
fn object_vectors() {
    let v = load("objects.json");
    let now = v["now"].as_u64().unwrap();
    let sc = unhex(&s(&v["server_card"], "hex"));
    assert_eq!(ServerCard::from_bytes(&sc).unwrap().to_bytes(), sc);
    assert_eq!(
        ServerCard::from_text(&s(&v["server_card"], "text")).unwrap().to_bytes(),
        sc
    );
    let b = unhex(&s(&v["broadcast"], "hex"));
    let checked = UncheckedBroadcast::from_bytes(&b).unwrap().check().unwrap();
    assert_eq!(checked.to_bytes(), b);
    assert!(
        UncheckedBroadcast::from_bytes(&flip(&b, 40))
            .map(|u| u.check().is_err())
            .unwrap_or(true)
    );
    let e = unhex(&s(&v["directory_entry"], "hex"));
    let entry = UncheckedEntry::from_bytes(&e).unwrap().check(now).unwrap();
    assert_eq!(entry.to_bytes(), e);
    let c = unhex(&s(&v["conversation_state"], "hex"));
    assert_eq!(meow_proto::Conversation::from_bytes(&c).unwrap().to_bytes(), c);
}

#[test]
fn onion_vectors() {
    use meow_proto::onion::{self, OnionPacket};
    let v = load("onion.json");
    let mut packet = OnionPacket::from_bytes(unhex(&s(&v, "packet"))).unwrap();
    let len = packet.as_bytes().len();
    let secrets = v["relay_secrets"].as_array().unwrap();
    for (i, secret) in secrets.iter().enumerate() {
        let key = RelayKey::from_secret_bytes(unhex(secret.as_str().unwrap()).try_into().unwrap());
        let peeled = onion::peel(&packet, &key).unwrap();
        assert_eq!(
            hex(&peeled.instruction.to_bytes()),
            v["instructions"][i].as_str().unwrap()
        );
        match peeled.next {
            Some(next) => {
                assert_eq!(next.as_bytes().len(), len, "hop {i}: the same size");
                packet = next;
            }
            None => assert_eq!(i, secrets.len() - 1, "only the last relay delivers"),
        }
    }
}

#[test]
fn descriptor_vectors() {
    use meow_proto::catalog::UncheckedDescriptor;
    let v = load("descriptor.json");
    let bytes = unhex(&s(&v, "descriptor"));
    let d = UncheckedDescriptor::from_bytes(&bytes)
        .unwrap()
        .check(v["now"].as_u64().unwrap())
        .unwrap();
    assert_eq!(d.to_bytes(), bytes);
    assert!(
        UncheckedDescriptor::from_bytes(&flip(&bytes, 40))
            .unwrap()
            .check(v["now"].as_u64().unwrap())
            .is_err()
    );
}
