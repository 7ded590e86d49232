//! The server as a real process: durability under SIGKILL, and bad input next to a good client.

use std::collections::{BTreeSet, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meow_net::ServerClient;
use meow_proto::padding::LORA_CLASS;
use meow_proto::session::ClientHandshake;
use meow_proto::testing::TestRng;
use meow_proto::wire::{ErrorCode, MailboxAuth, Request, Response};
use meow_proto::{LookupKey, MailboxId};

use crate::support::{ServerProc, TempDir};

fn envelope(tag: u64) -> Vec<u8> {
    let mut e = vec![0u8; LORA_CLASS];
    e[0] = 1;
    e[1..9].copy_from_slice(&tag.to_be_bytes());
    e
}

fn tag_of(envelope: &[u8]) -> u64 {
    u64::from_be_bytes(envelope[1..9].try_into().unwrap())
}

#[test]
fn every_acknowledged_deposit_survives_sigkill_and_is_delivered_once() {
    let data = TempDir::new("sigkill");
    // A crash test, not a budget test: the writers must still be running when the server dies.
    let unlimited = ["--address-deposits", "0", "--session-deposits", "0"];
    let server = ServerProc::start(data.path(), &unlimited);
    let keys: Vec<LookupKey> = (0..8)
        .map(|i| LookupKey::generate(&mut TestRng::new(100 + i)))
        .collect();
    let acked: Arc<Mutex<BTreeSet<u64>>> = Arc::default();

    // Eight writers deposit as fast as they can; the server is killed while they run.
    let writers: Vec<_> = (0..8u64)
        .map(|w| {
            let (address, key, acked) = (server.address(), server.card.key, acked.clone());
            let mailbox = MailboxId::of(&keys[w as usize].public());
            std::thread::spawn(move || {
                smol::block_on(async {
                    let Ok(c) = ServerClient::connect(&address.parse().unwrap(), &key).await else {
                        return;
                    };
                    for i in 0.. {
                        let tag = w << 32 | i;
                        match c.deposit(mailbox, envelope(tag)).await {
                            Ok(()) => {
                                acked.lock().unwrap().insert(tag);
                            }
                            Err(_) => return, // the server died: unacknowledged deposits may be lost
                        }
                    }
                })
            })
        })
        .collect();
    crate::support::wait_for("deposits in flight", Duration::from_secs(30), || {
        (acked.lock().unwrap().len() > 2000).then_some(())
    });
    server.kill9();
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 2000);

    // Restart on the same data and collect everything.
    let server = ServerProc::start(data.path(), &[]);
    smol::block_on(async {
        let c = ServerClient::connect(&server.card.address, &server.card.key)
            .await
            .unwrap();
        let mut seen = HashSet::new();
        let refs: Vec<&LookupKey> = keys.iter().collect();
        loop {
            let got = c.poll(&refs, 4096, Duration::ZERO, 0).await.unwrap();
            if got.messages.is_empty() {
                break;
            }
            let mut per_key: Vec<(&LookupKey, Vec<u64>)> = keys.iter().map(|k| (k, Vec::new())).collect();
            for m in &got.messages {
                assert!(seen.insert(tag_of(&m.envelope)), "message delivered twice");
                let i = keys
                    .iter()
                    .position(|k| MailboxId::of(&k.public()) == m.mailbox)
                    .unwrap();
                per_key[i].1.push(m.seq);
            }
            c.ack(&per_key).await.unwrap();
        }
        let missing: Vec<_> = acked.iter().filter(|t| !seen.contains(t)).take(5).collect();
        assert!(
            missing.is_empty(),
            "{} acknowledged deposits lost, e.g. {missing:?}",
            acked.iter().filter(|t| !seen.contains(t)).count()
        );
        // After the acks nothing is delivered again.
        assert!(c.poll(&refs, 10, Duration::ZERO, 0).await.unwrap().messages.is_empty());
    });
}

/// Opens a raw TCP connection and sends `bytes`.
fn raw(address: &str, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(address).unwrap();
    let _ = s.write_all(bytes);
    s
}

/// Whether the server closed the connection within a few seconds.
fn closed_soon(mut s: TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(0) | Err(_))
}

#[test]
fn garbage_truncated_oversized_and_forged_input_leave_good_clients_served() {
    let data = TempDir::new("garbage");
    let server = ServerProc::start(data.path(), &[]);
    let address = server.address();
    let key = server.card.key;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // A well-behaved client deposits and polls throughout.
    let good = {
        let (address, stop) = (address.clone(), stop.clone());
        std::thread::spawn(move || {
            smol::block_on(async {
                let c = ServerClient::connect(&address.parse().unwrap(), &key).await.unwrap();
                let lk = LookupKey::generate(&mut TestRng::new(7));
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    c.deposit(MailboxId::of(&lk.public()), envelope(n)).await.unwrap();
                    let got = c.poll(&[&lk], 10, Duration::ZERO, 0).await.unwrap();
                    let seqs = got.messages.iter().map(|m| m.seq).collect();
                    c.ack(&[(&lk, seqs)]).await.unwrap();
                    n += 1;
                }
                n
            })
        })
    };

    // Garbage instead of a hello.
    assert!(closed_soon(raw(&address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")));
    // Random bytes.
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert!(closed_soon(raw(&address, &noise)));
    // An oversized frame length.
    assert!(closed_soon(raw(&address, &u32::MAX.to_be_bytes())));
    // A truncated frame, then the client goes away.
    drop(raw(&address, &[0, 0, 0, 86, b'M', b'E']));
    // A valid handshake, then a frame that does not authenticate.
    let mut s = TcpStream::connect(&address).unwrap();
    let (hs, hello) = ClientHandshake::start(&key, &mut meow_proto::os_rng()).unwrap();
    s.write_all(&(hello.len() as u32).to_be_bytes()).unwrap();
    s.write_all(&hello).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut reply = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut reply).unwrap();
    hs.finish(&reply).unwrap();
    s.write_all(&[0, 0, 0, 40]).unwrap();
    s.write_all(&[0x55; 40]).unwrap();
    assert!(closed_soon(s));
    // Silent connections hold nothing the good client needs.
    let silent: Vec<TcpStream> = (0..50).map(|_| TcpStream::connect(&address).unwrap()).collect();

    // A forged poll: a proof bound to another session is refused, the session stays usable.
    smol::block_on(async {
        let c = ServerClient::connect(&address.parse().unwrap(), &key).await.unwrap();
        let victim = LookupKey::generate(&mut TestRng::new(8));
        let forged = MailboxAuth::prove(&victim, &[9u8; 32]);
        let resp = c
            .request(
                Request::Poll {
                    mailboxes: vec![forged],
                    limit: 10,
                    wait_ms: 0,
                    broadcasts_after: 0,
                },
                Duration::ZERO,
            )
            .await
            .unwrap();
        assert!(
            matches!(
                resp,
                Response::Error {
                    code: ErrorCode::NotAuthorized,
                    ..
                }
            ),
            "{resp:?}"
        );
        // An envelope that is not a size class.
        let err = c.deposit(MailboxId([1; 16]), vec![1; 100]).await.unwrap_err();
        assert!(err.to_string().contains("padding class"), "{err}");
        assert!(c.info().await.is_ok(), "the same session keeps working");
    });

    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = good.join().unwrap();
    assert!(rounds > 10, "the good client made progress ({rounds} rounds)");
    drop(silent);
}

/// Resident memory of a process, KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn thousands_of_idle_sockets_from_one_address_do_not_lock_a_good_client_out() {
    let data = TempDir::new("idle-sockets");
    let server = ServerProc::start(data.path(), &["--max-connections", "1024"]);
    let address = server.address();
    // Twice as many sockets as the whole server may hold, none saying hello, all from
    // 127.0.0.1 like the good client.
    let idle: Vec<TcpStream> = (0..2048).filter_map(|_| TcpStream::connect(&address).ok()).collect();
    assert!(idle.len() > 2000, "only {} sockets opened", idle.len());
    let t = std::time::Instant::now();
    smol::block_on(async {
        let c = ServerClient::connect(&address.parse().unwrap(), &server.card.key)
            .await
            .unwrap();
        let key = LookupKey::generate(&mut TestRng::new(9));
        c.deposit(MailboxId::of(&key.public()), envelope(1)).await.unwrap();
    });
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "the good client waited {:?}",
        t.elapsed()
    );
    drop(idle);
}

#[test]
fn frames_announced_but_not_sent_take_no_memory() {
    let data = TempDir::new("unsent-frames");
    let server = ServerProc::start(data.path(), &[]);
    let pid = server.proc.0.id();
    let before = rss_kib(pid);
    // 300 sessions each complete the handshake, then announce a 256 KiB frame and send nothing.
    let sessions: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(server.address()).unwrap();
            let (hs, hello) = ClientHandshake::start(&server.card.key, &mut meow_proto::os_rng()).unwrap();
            let mut frame = (hello.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&hello);
            s.write_all(&frame).unwrap();
            let mut len = [0u8; 4];
            s.read_exact(&mut len).unwrap();
            let mut reply = vec![0; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut reply).unwrap();
            drop(hs.finish(&reply).unwrap());
            s.write_all(&(256 * 1024u32).to_be_bytes()).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let grown = rss_kib(pid).saturating_sub(before);
    // Reserving the announced frames would take 300 x 256 KiB = 75 MiB.
    assert!(grown < 30 * 1024, "the server grew by {grown} KiB");
    drop(sessions);
}

/// `meow bench lora` as a user runs it: its last line is the figure issue 13 asks for.
#[test]
fn bench_lora_puts_a_20_byte_reading_in_at_most_120_bytes_on_the_air() {
    let out = std::process::Command::new(crate::support::meow_bin())
        .args(["-q", "bench", "lora", "--readings", "2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let last = stdout.lines().last().unwrap();
    let n: usize = last.strip_prefix("on-air bytes: ").unwrap().parse().unwrap();
    assert!(n <= 120, "{stdout}");
    assert!(
        stdout.contains("sealed datagram (no session): 250 + 250 up"),
        "{stdout}"
    );
    // Issue 17: the time on air of the same frame through an RNode, and readings per hour.
    assert!(
        stdout.contains("SF7  compact   189.7 ms") && stdout.contains("8 readings/hour under 1 %"),
        "{stdout}"
    );
}

/// Link sessions on the server's UDP side, tried by a hostile radio: garbage, cut frames, forged
/// and replayed frames, unknown sessions. Each is dropped or answered "unknown", and a good
/// client's session works throughout.
#[test]
fn hostile_link_datagrams_leave_a_good_session_working() {
    use meow_proto::link::{self, LinkOpener, LinkStatus};
    let tmp = TempDir::new("link-hostile");
    let udp_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let udp = format!("127.0.0.1:{udp_port}");
    let server = ServerProc::start(tmp.path(), &["--udp", &udp]);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(&udp).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(1000))).unwrap();
    let mut buf = [0u8; 2048];
    let mut recv = || socket.recv(&mut buf).ok().map(|n| buf[..n].to_vec());
    let now = meow_net::now_secs();
    let mut rng = TestRng::new(77);

    let mailbox = MailboxId([4; 16]);
    let (opener, open) = LinkOpener::new(&server.card.key, vec![mailbox], now, &mut rng).unwrap();
    socket.send(&open).unwrap();
    let mut client = opener.finish(&recv().expect("the open's answer")).unwrap();
    socket.send(&open).unwrap();
    assert_eq!(recv(), None, "a replayed open is ignored");

    for i in 0..300u32 {
        let len = (i as usize * 37) % 300;
        let mut junk: Vec<u8> = (0..len).map(|k| (k as u32 * 31 + i) as u8).collect();
        if let Some(first) = junk.first_mut() {
            *first = [link::OPEN, link::FRAME, b'Q', 1][i as usize % 4];
        }
        socket.send(&junk).unwrap();
        if i % 50 == 49 {
            // A UDP flood past the socket buffer is dropped, good frames with it: let the
            // server drain, answering "unknown session" to the frame-shaped junk.
            while recv().is_some_and(|a| a[0] == link::UNKNOWN && a.len() == link::HEADER_LEN) {}
        }
    }
    let (counter, frame) = client.deposit(0, &[3; 83]).unwrap();
    let mut forged = frame.clone();
    forged[20] ^= 1;
    socket.send(&forged).unwrap();
    socket.send(&frame[..12]).unwrap();
    socket.send(&frame).unwrap();
    let answer = recv().expect("an answer to the good frame");
    // A compact envelope's layout (the server cannot open it): stored.
    assert_eq!(client.read_answer(counter, &answer), Ok(LinkStatus::Deposited));
    let (counter, bad) = client.deposit(0, &[2; 83]).unwrap();
    socket.send(&bad).unwrap();
    let answer = recv().expect("an answer to a bad envelope");
    assert_eq!(
        client.read_answer(counter, &answer),
        Ok(LinkStatus::Refused(ErrorCode::InvalidEnvelope)),
        "not a size class: refused, and said so"
    );
    socket.send(&frame).unwrap();
    while let Some(a) = recv() {
        assert_ne!(a.first(), Some(&link::ANSWER), "a replayed frame is not answered");
    }

    let mut other = [0u8; 20];
    other[0] = link::FRAME;
    socket.send(&other).unwrap();
    assert_eq!(
        recv().map(|a| a[0]),
        Some(link::UNKNOWN),
        "an unknown session is told so"
    );
    drop(server);
}
