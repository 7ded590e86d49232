//! Link sessions with a gateway server over a datagram link (LoRa, serial, UDP): one sealed
//! datagram opens a session, after which each deposit costs 27 bytes around its envelope instead
//! of the 66 of a sealed datagram (`crate::datagram`), and the mailbox travels as a one-byte alias.
//!
//! ```text
//! open    = 'O' | enc:[32] | HPKE_seal(ServerPublic, info "meow/v2/link", aad 'O',
//!               sent_at:varint (Unix s) | count:u8 | mailbox:[16] × count)
//! opened  = 'o' | AEAD(down, nonce 0, aad 'o', session:[4])
//! frame   = 'L' | session:[4] | counter:u32 | AEAD(up, nonce(counter), aad = the 9 header bytes,
//!               kind:u8 (=1 deposit) | alias:u8 | envelope)
//! answer  = 'l' | session:[4] | counter:u32 | AEAD(down, nonce(counter), aad = the 9 header bytes,
//!               status:u8 (0 deposited, else a wire error code))
//! unknown = 'x' | session:[4] | counter:u32      (not authenticated: "open a new session")
//! up, down = HPKE export of the open's context, labels "meow/v2/link-up", "meow/v2/link-down"
//! nonce(c) = 0:[8] | c:u32 big-endian (counters start at 1; 0 is the open's answer)
//! ```
//!
//! What each part answers: the HPKE open hides the mailboxes from the radio and binds the session
//! keys to the server's key; the counter is both the nonce (never repeated under a key: the keys
//! are new with every session, which lives in memory only) and replay protection (a 64-frame
//! window, as in RFC 6479); the session id is all a listener on the radio learns, and a new one is
//! drawn at each open. An `unknown` answer is not authenticated: forging one only makes the
//! client open a new session (costing an open, losing nothing).
//!
//! ```
//! use meow_proto::crypto::CounterRng;
//! use meow_proto::keys::{MailboxId, ServerKey};
//! use meow_proto::link::{self, LinkOpener, LinkRequest, LinkStatus, SessionId};
//!
//! let mut rng = CounterRng::new(3);
//! let gateway = ServerKey::generate(&mut rng);
//! let mailbox = MailboxId([7; 16]);
//! let (opener, open) = LinkOpener::new(&gateway.public(), vec![mailbox], 1_800_000_000, &mut rng)?;
//! let opened = link::accept(&gateway, &open, 1_800_000_000, SessionId([1, 2, 3, 4]))?;
//! let (mut server, answer) = (opened.link, opened.answer);
//! let mut client = opener.finish(&answer)?;
//! let alias = client.alias(&mailbox).expect("opened with this mailbox");
//! let (counter, frame) = client.deposit(alias, &[3; 83])?;
//! assert_eq!(frame.len(), 110);
//! let (n, request) = server.open_frame(&frame)?;
//! let LinkRequest::Deposit { alias, envelope } = request else { panic!("a deposit") };
//! assert_eq!((n, server.mailbox(alias), envelope.len()), (counter, Some(mailbox), 83));
//! assert!(server.open_frame(&frame).is_err(), "a replay is refused");
//! let status = client.read_answer(counter, &server.answer(n, LinkStatus::Deposited))?;
//! assert_eq!(status, LinkStatus::Deposited);
//! # Ok::<(), meow_proto::link::LinkError>(())
//! ```

use zeroize::Zeroizing;

use crate::codec::{DecodeError, Reader, Writer};
use crate::crypto::{AeadKey, CryptoRng, ENC_LEN, HpkeReceiver, HpkeSender, NONCE_LEN, SecretKey, TAG_LEN};
use crate::datagram::MAX_SKEW_SECS;
use crate::keys::{MailboxId, ServerKey, ServerPublic};
use crate::session::SessionError;
use crate::wire::ErrorCode;

/// First byte of an open request.
pub const OPEN: u8 = b'O';
/// First byte of the answer to an open.
pub const OPENED: u8 = b'o';
/// First byte of a frame in a session.
pub const FRAME: u8 = b'L';
/// First byte of the answer to a frame.
pub const ANSWER: u8 = b'l';
/// First byte of "no such session".
pub const UNKNOWN: u8 = b'x';
/// Bytes of a frame's (and an answer's) clear header: type, session, counter.
pub const HEADER_LEN: usize = 1 + 4 + 4;
/// What a deposit frame adds around its envelope: header, kind, alias, tag.
pub const DEPOSIT_OVERHEAD: usize = HEADER_LEN + 2 + TAG_LEN;
/// Most mailboxes one session names.
pub const MAX_MAILBOXES: usize = 8;
/// Frames older than the newest by this many are refused.
pub const REPLAY_WINDOW: u32 = 64;
const INFO: &[u8] = b"meow/v2/link";
const UP_LABEL: &[u8] = b"meow/v2/link-up";
const DOWN_LABEL: &[u8] = b"meow/v2/link-down";
const KIND_DEPOSIT: u8 = 1;

/// Why a link datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// Not a link datagram of the expected type, or cut short.
    #[error("not a MEOW link datagram of the expected type")]
    BadHeader,
    /// Decryption failed: another session, or changed on the way.
    #[error("link datagram does not decrypt")]
    Decrypt,
    /// The open's time is too far from the server's clock.
    #[error("link open timestamp outside the accepted window")]
    Stale,
    /// A frame already received, or older than the window.
    #[error("link frame replayed or too old")]
    Replay,
    /// The gateway does not know the session (it restarted, or forgot it): open a new one.
    #[error("the gateway does not know this link session")]
    UnknownSession,
    /// The content does not decode.
    #[error("malformed link content: {0}")]
    Malformed(#[from] DecodeError),
    /// More mailboxes than a session names.
    #[error("a link session names at most {MAX_MAILBOXES} mailboxes")]
    TooManyMailboxes,
    /// 2^32 frames in one session: open a new one.
    #[error("the link session's counter is exhausted")]
    Exhausted,
    /// Setting up the seal failed.
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// A session's id on the link (all a radio listener learns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub [u8; 4]);

/// What a frame asks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkRequest {
    /// Store `envelope` in the mailbox named by `alias`.
    Deposit {
        /// Index in the session's mailbox list.
        alias: u8,
        /// The envelope (any version the server accepts).
        envelope: Vec<u8>,
    },
}

/// What the gateway answered to a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    /// The envelope is on disk.
    Deposited,
    /// Refused, for the reason a session answer would give.
    Refused(ErrorCode),
}

fn nonce(counter: u32) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[NONCE_LEN - 4..].copy_from_slice(&counter.to_be_bytes());
    n
}

fn header(kind: u8, session: SessionId, counter: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = kind;
    h[1..5].copy_from_slice(&session.0);
    h[5..].copy_from_slice(&counter.to_be_bytes());
    h
}

/// The type, session and counter of a frame or answer.
pub fn read_header(datagram: &[u8]) -> Option<(u8, SessionId, u32)> {
    let h: [u8; HEADER_LEN] = datagram.get(..HEADER_LEN)?.try_into().ok()?;
    let session = SessionId(h[1..5].try_into().ok()?);
    Some((h[0], session, u32::from_be_bytes(h[5..].try_into().ok()?)))
}

/// "No such session", for a frame the gateway cannot place.
pub fn unknown_session(frame: &[u8]) -> Option<Vec<u8>> {
    let (kind, session, counter) = read_header(frame)?;
    (kind == FRAME).then(|| header(UNKNOWN, session, counter).to_vec())
}

/// The two directions' keys of a session.
struct Keys {
    up: SecretKey,
    down: SecretKey,
}

impl Keys {
    fn from_sender(ctx: &HpkeSender) -> Self {
        Self {
            up: ctx.export(UP_LABEL),
            down: ctx.export(DOWN_LABEL),
        }
    }

    fn from_receiver(ctx: &HpkeReceiver) -> Self {
        Self {
            up: ctx.export(UP_LABEL),
            down: ctx.export(DOWN_LABEL),
        }
    }
}

// ---------------------------------------------------------------- client side

/// An open request on its way: what reads the gateway's answer.
pub struct LinkOpener {
    keys: Keys,
    mailboxes: Vec<MailboxId>,
}

impl std::fmt::Debug for LinkOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LinkOpener({} mailboxes)", self.mailboxes.len())
    }
}

impl LinkOpener {
    /// The open datagram for a session naming `mailboxes` (aliases are their indexes).
    pub fn new(
        server: &ServerPublic,
        mailboxes: Vec<MailboxId>,
        now_secs: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<(Self, Vec<u8>), LinkError> {
        if mailboxes.len() > MAX_MAILBOXES {
            return Err(LinkError::TooManyMailboxes);
        }
        let (enc, mut ctx) = HpkeSender::new(server.as_bytes(), INFO, rng).map_err(SessionError::from)?;
        let mut w = Writer::with_capacity(6 + 16 * mailboxes.len());
        w.varint(now_secs).u8(mailboxes.len() as u8);
        for m in &mailboxes {
            w.raw(&m.0);
        }
        let sealed = ctx.seal(&[OPEN], w.as_slice());
        let mut out = Vec::with_capacity(1 + ENC_LEN + sealed.len());
        out.push(OPEN);
        out.extend_from_slice(&enc);
        out.extend_from_slice(&sealed);
        let keys = Keys::from_sender(&ctx);
        Ok((Self { keys, mailboxes }, out))
    }

    /// The session, from the gateway's answer.
    pub fn finish(self, answer: &[u8]) -> Result<ClientLink, LinkError> {
        if answer.first() != Some(&OPENED) {
            return Err(LinkError::BadHeader);
        }
        let plain = AeadKey::new(&self.keys.down)
            .open(&nonce(0), &[OPENED], &answer[1..])
            .map_err(|_| LinkError::Decrypt)?;
        let session = SessionId(plain.as_slice().try_into().map_err(|_| LinkError::BadHeader)?);
        Ok(ClientLink {
            session,
            keys: self.keys,
            next: 1,
            mailboxes: self.mailboxes,
        })
    }
}

/// A client's open session: it numbers its frames and reads the answers.
pub struct ClientLink {
    session: SessionId,
    keys: Keys,
    next: u32,
    mailboxes: Vec<MailboxId>,
}

impl std::fmt::Debug for ClientLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientLink({} frames sent)", self.next - 1)
    }
}

impl ClientLink {
    /// The session's id.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The alias of `mailbox` in this session, if it names it.
    pub fn alias(&self, mailbox: &MailboxId) -> Option<u8> {
        self.mailboxes.iter().position(|m| m == mailbox).map(|i| i as u8)
    }

    /// A deposit frame and its counter (to read the answer with).
    pub fn deposit(&mut self, alias: u8, envelope: &[u8]) -> Result<(u32, Vec<u8>), LinkError> {
        let counter = self.next;
        self.next = counter.checked_add(1).ok_or(LinkError::Exhausted)?;
        let h = header(FRAME, self.session, counter);
        let mut plain = Zeroizing::new(Vec::with_capacity(2 + envelope.len()));
        plain.extend_from_slice(&[KIND_DEPOSIT, alias]);
        plain.extend_from_slice(envelope);
        let mut out = h.to_vec();
        out.extend_from_slice(&AeadKey::new(&self.keys.up).seal(&nonce(counter), &h, &plain));
        Ok((counter, out))
    }

    /// The gateway's answer to frame `counter`.
    pub fn read_answer(&self, counter: u32, answer: &[u8]) -> Result<LinkStatus, LinkError> {
        let (kind, session, n) = read_header(answer).ok_or(LinkError::BadHeader)?;
        if session != self.session || n != counter {
            return Err(LinkError::BadHeader);
        }
        match kind {
            UNKNOWN if answer.len() == HEADER_LEN => return Err(LinkError::UnknownSession),
            ANSWER => {}
            _ => return Err(LinkError::BadHeader),
        }
        let plain = AeadKey::new(&self.keys.down)
            .open(&nonce(counter), &answer[..HEADER_LEN], &answer[HEADER_LEN..])
            .map_err(|_| LinkError::Decrypt)?;
        match plain.as_slice() {
            [0] => Ok(LinkStatus::Deposited),
            [code] => Ok(LinkStatus::Refused(ErrorCode::from_u8(*code)?)),
            _ => Err(LinkError::Malformed(DecodeError::Invalid {
                what: "link answer",
                reason: "not one status byte",
            })),
        }
    }
}

// ---------------------------------------------------------------- gateway side

/// What the gateway keeps of a session.
pub struct ServerLink {
    session: SessionId,
    keys: Keys,
    mailboxes: Vec<MailboxId>,
    /// Mailbox proofs would be bound to this (the open's `enc`).
    pub binding: [u8; ENC_LEN],
    highest: u32,
    seen: u64,
}

impl std::fmt::Debug for ServerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerLink({:?}, newest frame {})", self.session, self.highest)
    }
}

/// An accepted open: the session to keep and the answer to send.
#[derive(Debug)]
pub struct Opened {
    /// The session.
    pub link: ServerLink,
    /// The `opened` datagram.
    pub answer: Vec<u8>,
}

/// Gateway side: opens an open request, giving it the id `session` (drawn by the caller, who
/// knows which ids are taken).
pub fn accept(server: &ServerKey, datagram: &[u8], now_secs: u64, session: SessionId) -> Result<Opened, LinkError> {
    if datagram.len() < 1 + ENC_LEN || datagram[0] != OPEN {
        return Err(LinkError::BadHeader);
    }
    let enc: [u8; ENC_LEN] = datagram[1..1 + ENC_LEN].try_into().map_err(|_| LinkError::BadHeader)?;
    let mut ctx = HpkeReceiver::new(server.dh(), &enc, INFO).map_err(|_| LinkError::Decrypt)?;
    let plain = ctx
        .open(&[OPEN], &datagram[1 + ENC_LEN..])
        .map_err(|_| LinkError::Decrypt)?;
    let mut r = Reader::new(&plain);
    let sent_at = r.varint("link open time")?;
    if sent_at.abs_diff(now_secs) > MAX_SKEW_SECS {
        return Err(LinkError::Stale);
    }
    let count = usize::from(r.u8("mailbox count")?);
    if count > MAX_MAILBOXES {
        return Err(LinkError::TooManyMailboxes);
    }
    let mailboxes = (0..count)
        .map(|_| r.array("mailbox").map(MailboxId))
        .collect::<Result<Vec<_>, _>>()?;
    r.finish("link open")?;
    let keys = Keys::from_receiver(&ctx);
    let mut answer = vec![OPENED];
    answer.extend_from_slice(&AeadKey::new(&keys.down).seal(&nonce(0), &[OPENED], &session.0));
    let link = ServerLink {
        session,
        keys,
        mailboxes,
        binding: enc,
        highest: 0,
        seen: 0,
    };
    Ok(Opened { link, answer })
}

impl ServerLink {
    /// The session's id.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The mailbox an alias names.
    pub fn mailbox(&self, alias: u8) -> Option<MailboxId> {
        self.mailboxes.get(usize::from(alias)).copied()
    }

    /// Opens a frame of this session: its counter and request. A frame that does not open, or
    /// was seen, changes nothing.
    pub fn open_frame(&mut self, frame: &[u8]) -> Result<(u32, LinkRequest), LinkError> {
        let (kind, session, counter) = read_header(frame).ok_or(LinkError::BadHeader)?;
        if kind != FRAME || session != self.session {
            return Err(LinkError::BadHeader);
        }
        if !self.fresh(counter) {
            return Err(LinkError::Replay);
        }
        let plain = Zeroizing::new(
            AeadKey::new(&self.keys.up)
                .open(&nonce(counter), &frame[..HEADER_LEN], &frame[HEADER_LEN..])
                .map_err(|_| LinkError::Decrypt)?,
        );
        let request = match plain.as_slice() {
            [KIND_DEPOSIT, alias, envelope @ ..] => LinkRequest::Deposit {
                alias: *alias,
                envelope: envelope.to_vec(),
            },
            [kind, ..] => {
                return Err(LinkError::Malformed(DecodeError::UnknownValue {
                    what: "link request",
                    value: (*kind).into(),
                }));
            }
            [] => return Err(LinkError::Malformed(DecodeError::Truncated { what: "link request" })),
        };
        self.mark(counter);
        Ok((counter, request))
    }

    /// The answer to frame `counter`.
    pub fn answer(&self, counter: u32, status: LinkStatus) -> Vec<u8> {
        let code = match status {
            LinkStatus::Deposited => 0,
            LinkStatus::Refused(c) => c.to_u8(),
        };
        let h = header(ANSWER, self.session, counter);
        let mut out = h.to_vec();
        out.extend_from_slice(&AeadKey::new(&self.keys.down).seal(&nonce(counter), &h, &[code]));
        out
    }

    /// Whether `counter` is new: above the newest, or within the window and not seen.
    fn fresh(&self, counter: u32) -> bool {
        if counter == 0 {
            return false;
        }
        if counter > self.highest {
            return true;
        }
        let back = self.highest - counter;
        back < REPLAY_WINDOW && self.seen & (1u64 << back) == 0
    }

    fn mark(&mut self, counter: u32) {
        if counter > self.highest {
            let shift = counter - self.highest;
            self.seen = if shift >= REPLAY_WINDOW { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.highest = counter;
        } else {
            self.seen |= 1u64 << (self.highest - counter);
        }
    }
}

#[cfg(test)]
mod tests;
