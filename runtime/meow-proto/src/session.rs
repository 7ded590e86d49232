//! The encrypted session between a client and a server on a stream transport (TCP).
//!
//! One handshake keyed to the server's [`ServerKey`], then AES-256-GCM per frame: the public-key
//! work is paid once per connection, not once per message.
//!
//! ```text
//! client hello = "MEOW" 'H' version:u8 (=1) | enc1:[32] | HPKE_seal(ServerPublic,
//!                    info "meow/v1/session", aad = the 6 header bytes, client_ephemeral:[32])
//! server hello = enc2:[32] | AES-GCM(s2c, nonce 0, aad = enc2, "meow/v1/server-ready")
//!   where enc2 is an HPKE encapsulation to client_ephemeral (info "meow/v1/session-reply")
//!
//! secret  = HKDF-Extract(salt "meow/v1/session", export(ctx1, "meow/v1/session") ||
//!                                                 export(ctx2, "meow/v1/session"))
//! c2s key = HKDF-Expand(secret, "c2s"), s2c key = HKDF-Expand(secret, "s2c"),
//! binding = HKDF-Expand(secret, "binding")        (mailbox proofs are signed over it)
//! frame   = AES-GCM(key of the direction, nonce = 0u32 || counter:u64 BE, aad = "", payload)
//! ```
//! Only the holder of the server's secret can derive the keys (server authentication); the second
//! HPKE context to a client ephemeral key gives forward secrecy once the ephemeral is erased.
//! Counters make replayed, reordered or dropped frames fail. The stream framing (a length before
//! each frame) is the transport's, see `meow-net`.

use crate::crypto::{
    AeadKey, CryptoError, CryptoRng, DhSecret, ENC_LEN, HpkeReceiver, HpkeSender, NONCE_LEN, SecretKey, TAG_LEN,
};
use crate::keys::{ServerKey, ServerPublic};

/// Session protocol version.
pub const SESSION_VERSION: u8 = 1;
const HELLO_HEADER: [u8; 6] = [b'M', b'E', b'O', b'W', b'H', SESSION_VERSION];
const INFO_1: &[u8] = b"meow/v1/session";
const INFO_2: &[u8] = b"meow/v1/session-reply";
const READY: &[u8] = b"meow/v1/server-ready";
/// Length of a client hello.
pub const CLIENT_HELLO_LEN: usize = HELLO_HEADER.len() + ENC_LEN + 32 + TAG_LEN;
/// Length of a server hello.
pub const SERVER_HELLO_LEN: usize = ENC_LEN + READY.len() + TAG_LEN;

/// Why a handshake or frame failed. Any of these ends the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The hello is not a MEOW session hello.
    #[error("not a MEOW session hello")]
    BadHello,
    /// The client speaks a session version this server does not.
    #[error("unsupported session version {0}")]
    UnsupportedVersion(u8),
    /// The handshake did not authenticate (wrong server key or tampering).
    #[error("handshake failed: the server does not hold the expected key, or the data was altered")]
    HandshakeFailed,
    /// A frame did not decrypt: tampered, replayed, reordered or from another session.
    #[error("frame authentication failed")]
    BadFrame,
    /// The server key in use is invalid.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// One direction of a session: key and frame counter.
#[derive(Debug)]
struct Direction {
    key: AeadKey,
    counter: u64,
}

impl Direction {
    fn new(secret: &SecretKey, label: &[u8], counter: u64) -> Self {
        Self {
            key: AeadKey::new(&secret.expand(label)),
            counter,
        }
    }

    fn next_nonce(&mut self) -> [u8; NONCE_LEN] {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[4..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter += 1;
        nonce
    }
}

/// An established session: seals outgoing frames, opens incoming ones.
#[derive(Debug)]
pub struct Session {
    send: Direction,
    recv: Direction,
    binding: [u8; 32],
}

impl Session {
    fn derive(export1: &SecretKey, export2: &SecretKey, is_client: bool) -> Self {
        let mut ikm = [0u8; 64];
        ikm[..32].copy_from_slice(export1.as_bytes());
        ikm[32..].copy_from_slice(export2.as_bytes());
        let mut prk = [0u8; 32];
        crate::crypto::hkdf_sha256(Some(INFO_1), &ikm, b"prk", &mut prk);
        let secret = SecretKey::from_bytes(prk);
        zeroize::Zeroize::zeroize(&mut ikm);
        zeroize::Zeroize::zeroize(&mut prk);
        // The server hello uses s2c nonce 0; data frames in that direction start at 1.
        let c2s = Direction::new(&secret, b"c2s", 0);
        let s2c = Direction::new(&secret, b"s2c", 0);
        let binding = *secret.expand(b"binding").as_bytes();
        let (send, recv) = if is_client { (c2s, s2c) } else { (s2c, c2s) };
        Self { send, recv, binding }
    }

    /// The channel binding: unique to this session, known to both ends only.
    pub fn binding(&self) -> &[u8; 32] {
        &self.binding
    }

    /// Encrypts `buf[start..]` in place as the next outgoing frame (appends the tag).
    pub fn seal_in_place(&mut self, buf: &mut Vec<u8>, start: usize) {
        let nonce = self.send.next_nonce();
        self.send.key.seal_in_place(&nonce, b"", buf, start);
    }

    /// Encrypts the next outgoing frame.
    pub fn seal(&mut self, payload: &[u8]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(payload.len() + TAG_LEN);
        buf.extend_from_slice(payload);
        self.seal_in_place(&mut buf, 0);
        buf
    }

    /// Decrypts the next incoming frame in place (removes the tag).
    pub fn open_in_place(&mut self, frame: &mut Vec<u8>) -> Result<(), SessionError> {
        let nonce = self.recv.next_nonce();
        self.recv
            .key
            .open_in_place(&nonce, b"", frame, 0)
            .map_err(|_| SessionError::BadFrame)
    }
}

/// The sending half of a split [`Session`].
#[derive(Debug)]
pub struct SessionSender(Direction);

impl SessionSender {
    /// Encrypts `buf[start..]` in place as the next outgoing frame (appends the tag).
    pub fn seal_in_place(&mut self, buf: &mut Vec<u8>, start: usize) {
        let nonce = self.0.next_nonce();
        self.0.key.seal_in_place(&nonce, b"", buf, start);
    }
}

/// The receiving half of a split [`Session`].
#[derive(Debug)]
pub struct SessionReceiver(Direction);

impl SessionReceiver {
    /// Decrypts the next incoming frame in place (removes the tag).
    pub fn open_in_place(&mut self, frame: &mut Vec<u8>) -> Result<(), SessionError> {
        let nonce = self.0.next_nonce();
        self.0
            .key
            .open_in_place(&nonce, b"", frame, 0)
            .map_err(|_| SessionError::BadFrame)
    }
}

impl Session {
    /// Splits into halves that can be used from different tasks; returns the binding too.
    pub fn split(self) -> (SessionSender, SessionReceiver, [u8; 32]) {
        (SessionSender(self.send), SessionReceiver(self.recv), self.binding)
    }
}

/// A client waiting for the server hello.
#[derive(Debug)]
pub struct ClientHandshake {
    ephemeral: DhSecret,
    export1: SecretKey,
}

impl ClientHandshake {
    /// Starts a session to `server`: returns the state and the hello to send.
    pub fn start(server: &ServerPublic, rng: &mut impl CryptoRng) -> Result<(Self, Vec<u8>), SessionError> {
        let ephemeral = DhSecret::generate(rng);
        let (enc, mut ctx) = HpkeSender::new(server.as_bytes(), INFO_1, rng)?;
        let sealed = ctx.seal(&HELLO_HEADER, &ephemeral.public());
        let export1 = ctx.export(INFO_1);
        let mut hello = Vec::with_capacity(CLIENT_HELLO_LEN);
        hello.extend_from_slice(&HELLO_HEADER);
        hello.extend_from_slice(&enc);
        hello.extend_from_slice(&sealed);
        Ok((Self { ephemeral, export1 }, hello))
    }

    /// Checks the server hello and returns the session.
    pub fn finish(self, server_hello: &[u8]) -> Result<Session, SessionError> {
        if server_hello.len() != SERVER_HELLO_LEN {
            return Err(SessionError::HandshakeFailed);
        }
        let (enc2, confirm) = server_hello.split_at(ENC_LEN);
        let enc2: [u8; ENC_LEN] = enc2.try_into().map_err(|_| SessionError::HandshakeFailed)?;
        let ctx2 = HpkeReceiver::new(&self.ephemeral, &enc2, INFO_2).map_err(|_| SessionError::HandshakeFailed)?;
        let mut session = Session::derive(&self.export1, &ctx2.export(INFO_1), true);
        let nonce = session.recv.next_nonce();
        let ready = session
            .recv
            .key
            .open(&nonce, &enc2, confirm)
            .map_err(|_| SessionError::HandshakeFailed)?;
        if ready != READY {
            return Err(SessionError::HandshakeFailed);
        }
        Ok(session)
    }
}

/// Server side: answers a client hello; returns the session and the server hello to send.
pub fn accept(
    server: &ServerKey,
    client_hello: &[u8],
    rng: &mut impl CryptoRng,
) -> Result<(Session, Vec<u8>), SessionError> {
    if client_hello.len() < HELLO_HEADER.len() || client_hello[..5] != HELLO_HEADER[..5] {
        return Err(SessionError::BadHello);
    }
    if client_hello[5] != SESSION_VERSION {
        return Err(SessionError::UnsupportedVersion(client_hello[5]));
    }
    if client_hello.len() != CLIENT_HELLO_LEN {
        return Err(SessionError::BadHello);
    }
    let enc1: [u8; ENC_LEN] = client_hello[6..6 + ENC_LEN]
        .try_into()
        .map_err(|_| SessionError::BadHello)?;
    let mut ctx1 = HpkeReceiver::new(server.dh(), &enc1, INFO_1).map_err(|_| SessionError::HandshakeFailed)?;
    let eph = ctx1
        .open(&HELLO_HEADER, &client_hello[6 + ENC_LEN..])
        .map_err(|_| SessionError::HandshakeFailed)?;
    let eph: [u8; 32] = eph.as_slice().try_into().map_err(|_| SessionError::HandshakeFailed)?;
    let (enc2, ctx2) = HpkeSender::new(&eph, INFO_2, rng).map_err(|_| SessionError::HandshakeFailed)?;
    let mut session = Session::derive(&ctx1.export(INFO_1), &ctx2.export(INFO_1), false);
    let nonce = session.send.next_nonce();
    let mut hello = Vec::with_capacity(SERVER_HELLO_LEN);
    hello.extend_from_slice(&enc2);
    hello.extend_from_slice(&session.send.key.seal(&nonce, &enc2, READY));
    Ok((session, hello))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestRng;

    fn handshake(rng: &mut TestRng) -> (Session, Session) {
        let server = ServerKey::generate(rng);
        let (hs, hello) = ClientHandshake::start(&server.public(), rng).unwrap();
        assert_eq!(hello.len(), CLIENT_HELLO_LEN);
        let (s, reply) = accept(&server, &hello, rng).unwrap();
        (hs.finish(&reply).unwrap(), s)
    }

    #[test]
    fn frames_flow_both_ways_and_bindings_match() {
        let mut rng = TestRng::new(21);
        let (mut c, mut s) = handshake(&mut rng);
        assert_eq!(c.binding(), s.binding());
        for i in 0..3u8 {
            let mut f = c.seal(&[i; 10]);
            s.open_in_place(&mut f).unwrap();
            assert_eq!(f, [i; 10]);
            let mut g = s.seal(&[i + 100; 5]);
            c.open_in_place(&mut g).unwrap();
            assert_eq!(g, [i + 100; 5]);
        }
    }

    #[test]
    fn replayed_or_reordered_frames_fail() {
        let mut rng = TestRng::new(22);
        let (mut c, mut s) = handshake(&mut rng);
        let f1 = c.seal(b"one");
        let f2 = c.seal(b"two");
        assert_eq!(s.open_in_place(&mut f2.clone()), Err(SessionError::BadFrame));
        let (mut c, mut s) = handshake(&mut rng);
        let mut a = c.seal(b"one");
        s.open_in_place(&mut a).unwrap();
        assert_eq!(s.open_in_place(&mut f1.clone()), Err(SessionError::BadFrame));
    }

    #[test]
    fn wrong_server_key_fails_the_handshake() {
        let mut rng = TestRng::new(23);
        let real = ServerKey::generate(&mut rng);
        let fake = ServerKey::generate(&mut rng);
        let (hs, hello) = ClientHandshake::start(&real.public(), &mut rng).unwrap();
        assert_eq!(
            accept(&fake, &hello, &mut rng).unwrap_err(),
            SessionError::HandshakeFailed
        );
        let (_, reply) = accept(&real, &hello, &mut rng).unwrap();
        let mut bad = reply.clone();
        bad[40] ^= 1;
        assert_eq!(hs.finish(&bad).unwrap_err(), SessionError::HandshakeFailed);
    }

    #[test]
    fn garbage_hellos_are_refused() {
        let mut rng = TestRng::new(24);
        let server = ServerKey::generate(&mut rng);
        assert_eq!(
            accept(&server, b"GET / HTTP/1.1\r\n", &mut rng).unwrap_err(),
            SessionError::BadHello
        );
        let mut v2 = vec![b'M', b'E', b'O', b'W', b'H', 2];
        v2.resize(CLIENT_HELLO_LEN, 0);
        assert_eq!(
            accept(&server, &v2, &mut rng).unwrap_err(),
            SessionError::UnsupportedVersion(2)
        );
    }
}
