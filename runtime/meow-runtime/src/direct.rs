//! Direct links between contacts (spec §1.2.3), the daemon's side: a listener that takes
//! deposits from `direct-preferred` contacts, and the presence announcements that tell them
//! where it is (`meow_node::direct`).
//!
//! The listener speaks the server session protocol (one HPKE handshake, then sealed frames)
//! under a key per contact, made fresh for each run, which each contact learns only through
//! its conversation: the key a hello opens under says which contact connects, and a hello
//! that opens under none is refused. It answers one request, `Deposit`, and only for that
//! contact's mailboxes: the envelope is opened and stored like fetched mail before
//! `Deposited` goes back, so a sender counts a message delivered only once it is on this
//! home's disk. Anything else gets an error, and a connection that idles or misbehaves is
//! closed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::AsyncWriteExt;
use futures_lite::io::BufReader;
use meow_clock::SharedClock;
use meow_net::frame;
use meow_node::direct::Presence;
use meow_node::{Node, sync};
use meow_proto::codec::Decode;
use meow_proto::session::{self, CLIENT_HELLO_LEN};
use meow_proto::wire::{ErrorCode, Request, RequestFrame, Response, ResponseFrame};
use meow_proto::{Address, ServerKey};
use smol::lock::Mutex;

use crate::config::DirectSettings;
use crate::error::{Result, RuntimeError};

/// How long a peer has for its hello, and then between requests.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Direct connections served at once.
const MAX_CONNECTIONS: usize = 64;

/// The keys of this run, one per contact (made when the contact is first announced to).
#[derive(Default)]
struct Keys(parking_lot::Mutex<BTreeMap<String, Arc<ServerKey>>>);

impl Keys {
    fn for_contact(&self, name: &str) -> meow_proto::ServerPublic {
        let mut keys = self.0.lock();
        keys.entry(name.to_owned())
            .or_insert_with(|| Arc::new(ServerKey::generate(&mut meow_proto::os_rng())))
            .public()
    }

    fn all(&self) -> Vec<(String, Arc<ServerKey>)> {
        self.0.lock().iter().map(|(n, k)| (n.clone(), k.clone())).collect()
    }
}

/// Binds the listener, starts serving and announcing; the tasks doing it.
pub(crate) fn start(
    node: Arc<Mutex<Node>>,
    settings: &DirectSettings,
    clock: SharedClock,
) -> Result<Vec<smol::Task<()>>> {
    let listener = std::net::TcpListener::bind(settings.listen).map_err(RuntimeError::io(format!(
        "listening for direct links on {}",
        settings.listen
    )))?;
    let bound = listener
        .local_addr()
        .map_err(RuntimeError::io("reading the direct link address"))?;
    let listener =
        smol::net::TcpListener::try_from(listener).map_err(RuntimeError::io("registering the direct listener"))?;
    let address = match settings.address {
        Some(a) => a,
        None if bound.ip().is_unspecified() => {
            return Err(RuntimeError::Invalid(format!(
                "direct.listen {bound} is every interface: say which address contacts use in direct.address"
            )));
        }
        None => bound,
    };
    let keys = Arc::new(Keys::default());
    tracing::info!(%bound, announced = %address, "direct links accepted");
    Ok(vec![
        smol::spawn(accept_loop(node.clone(), keys.clone(), listener, clock.clone())),
        smol::spawn(announce_loop(node, keys, address, settings.every(), clock)),
    ])
}

/// Tells every `direct-preferred` contact where this home is, now and every `every`.
async fn announce_loop(
    node: Arc<Mutex<Node>>,
    keys: Arc<Keys>,
    address: SocketAddr,
    every: Duration,
    clock: SharedClock,
) {
    loop {
        let expires_ms = clock.now_ms() + 3 * every.as_millis() as u64;
        let queued = {
            let mut n = node.lock().await;
            let presences: Vec<(String, Presence)> = n
                .direct_contacts()
                .into_iter()
                .map(|name| {
                    let presence = Presence {
                        key: keys.for_contact(&name),
                        addresses: vec![Address::Tcp(address.to_string())],
                        expires_ms,
                    };
                    (name, presence)
                })
                .collect();
            n.queue_presence(&presences)
        };
        match queued {
            Ok(items) if !items.is_empty() => {
                if let Err(e) = sync::deliver_all(&node, items).await {
                    tracing::warn!(error = %e, "presence not delivered; it stays in the outbox");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "presence not queued"),
        }
        clock.sleep(every).await;
    }
}

async fn accept_loop(node: Arc<Mutex<Node>>, keys: Arc<Keys>, listener: smol::net::TcpListener, clock: SharedClock) {
    let slots = Arc::new(smol::lock::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "direct accept failed");
                smol::Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(permit) = slots.try_acquire_arc() else {
            tracing::debug!("direct link refused: too many at once");
            continue;
        };
        let (node, keys, clock) = (node.clone(), keys.clone(), clock.clone());
        smol::spawn(async move {
            if let Err(reason) = serve(&node, &keys, &*clock, stream).await {
                tracing::debug!(%reason, "direct link closed");
            }
            drop(permit);
        })
        .detach();
    }
}

async fn serve(
    node: &Mutex<Node>,
    keys: &Keys,
    clock: &dyn meow_clock::Clock,
    stream: smol::net::TcpStream,
) -> std::result::Result<(), String> {
    let link = meow_net::Link::tcp(stream).map_err(|e| e.to_string())?;
    let (raw, mut w, _close) = link.split();
    let mut reader = BufReader::new(raw);
    let mut buf = Vec::new();
    meow_clock::timeout(
        clock,
        HELLO_TIMEOUT,
        frame::read_frame(&mut reader, &mut buf, CLIENT_HELLO_LEN + 16),
    )
    .await
    .ok_or("hello timed out")?
    .map_err(|e| e.to_string())?;
    // The contact is the one whose key the hello opens under.
    let (contact, (session, reply)) = keys
        .all()
        .into_iter()
        .find_map(|(name, key)| Some((name, session::accept(&key, &buf, &mut meow_proto::os_rng()).ok()?)))
        .ok_or("a hello under no contact's key")?;
    frame::write_frame(&mut w, &reply).await.map_err(|e| e.to_string())?;
    let (mut sender, mut receiver, _) = session.split();
    loop {
        match meow_clock::timeout(
            clock,
            IDLE_TIMEOUT,
            frame::read_frame(&mut reader, &mut buf, meow_proto::padding::MAX_ENVELOPE + 1024),
        )
        .await
        {
            None => return Err("idle".into()),
            Some(Err(frame::FrameError::Closed)) => return Ok(()),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(())) => {}
        }
        receiver
            .open_in_place(&mut buf)
            .map_err(|_| "frame failed authentication")?;
        let request = RequestFrame::from_bytes(&buf).map_err(|e| e.to_string())?;
        let response = answer(node, &contact, request.request).await;
        let mut out = Vec::new();
        frame::put_sealed(
            &mut out,
            &mut sender,
            &ResponseFrame {
                id: request.id,
                response,
            },
        );
        w.write_all(&out).await.map_err(|e| e.to_string())?;
        w.flush().await.map_err(|e| e.to_string())?;
    }
}

async fn answer(node: &Mutex<Node>, contact: &str, request: Request) -> Response {
    let error = |code, message: &str| Response::Error {
        code,
        message: message.to_owned(),
    };
    let Request::Deposit { mailbox, envelope } = request else {
        return error(ErrorCode::NotAuthorized, "a direct link takes deposits only");
    };
    match node.lock().await.receive_direct(contact, mailbox, envelope) {
        Ok(Some(_)) => Response::Deposited,
        Ok(None) => error(ErrorCode::NotFound, "not a mailbox of this contact's"),
        Err(e) => {
            tracing::warn!(error = %e, "a direct deposit could not be stored");
            error(ErrorCode::Internal, "not stored")
        }
    }
}
