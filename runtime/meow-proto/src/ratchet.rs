//! The Double Ratchet with header encryption: Signal's "The Double Ratchet Algorithm" (Trevor
//! Perrin and Moxie Marlinspike, revision 1, 2016-11-20), §3 and §4, implemented from the
//! specification on X25519, HKDF-SHA256, HMAC-SHA256, AES-256-GCM (message bodies) and
//! XChaCha20-Poly1305 (headers).
//!
//! What it gives a conversation: *forward secrecy* (every message key is derived once, used once
//! and erased; a copy of today's state opens nothing sent before it) and *post-compromise
//! security* (every change of direction mixes a fresh X25519 secret into the root key, so a copy
//! of the state stops opening new messages after one round trip). Headers (the sender's ratchet
//! key and message numbers) are encrypted too, so the server cannot link a conversation across
//! its lookup-key rotations by its ratchet keys.
//!
//! Departures from the specification's pseudocode, all in the initialization:
//! - the first sender ("Alice") uses as its first ratchet key the conversation key it already
//!   gave the other side in its card, instead of a fresh one;
//! - the other side ("Bob") knows that key from the card, so at initialization it performs at
//!   once the DH ratchet step that Alice's first message would trigger. Both sides can then send
//!   first, as MEOW contacts always could. Alice's card key is erased at her first step, Bob's at
//!   initialization.
//!
//! Every operation is transactional: a message that does not open leaves the state as it was.
//!
//! ```
//! use meow_proto::crypto::{CounterRng, DhSecret, SecretKey};
//! use meow_proto::ratchet::Ratchet;
//!
//! let mut rng = CounterRng::new(1);
//! let root = SecretKey::generate(&mut rng);
//! let (a_key, b_key) = (DhSecret::generate(&mut rng), DhSecret::generate(&mut rng));
//! let (a_pub, b_pub) = (a_key.public(), b_key.public());
//! let mut alice = Ratchet::start_first(&root, a_key, b_pub)?;
//! let mut bob = Ratchet::start_second(&root, b_key, a_pub, &mut rng)?;
//! let sealed = alice.seal(b"ad", b"hello", &mut rng)?;
//! assert_eq!(bob.open(b"ad", &sealed, &mut rng)?.as_slice(), b"hello");
//! assert!(bob.open(b"ad", &sealed, &mut rng).is_err(), "a replay is refused");
//! # Ok::<(), meow_proto::ratchet::RatchetError>(())
//! ```

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::crypto::{
    AeadKey, CryptoError, CryptoRng, DhSecret, HeaderKey, NONCE_LEN, PUBLIC_KEY_LEN, SecretKey, TAG_LEN, XNONCE_LEN,
    hkdf_sha256, hmac_sha256,
};

/// Most message keys one header may make the receiver skip (and keep) in one chain.
pub const MAX_SKIP: u32 = 1000;
/// Most skipped message keys kept in all (the oldest go first).
pub const MAX_SKIPPED: usize = 2000;
/// Length of a header in the clear: the sender's ratchet key, `pn` and `n` (fixed, so that its
/// length says nothing).
pub const HEADER_LEN: usize = PUBLIC_KEY_LEN + 4 + 4;
/// Length of an encrypted header.
pub const SEALED_HEADER_LEN: usize = XNONCE_LEN + HEADER_LEN + TAG_LEN;
/// What the ratchet adds to a plaintext: the encrypted header and the body's tag.
pub const OVERHEAD: usize = SEALED_HEADER_LEN + TAG_LEN;
/// Largest clear header of the compact form ([`Ratchet::seal_compact`]): the ratchet key and
/// two varints of at most 5 bytes.
pub const COMPACT_HEADER_MAX: usize = PUBLIC_KEY_LEN + 5 + 5;
/// Smallest compact message: a key, two one-byte numbers and a tag.
pub const COMPACT_MIN: usize = PUBLIC_KEY_LEN + 2 + TAG_LEN;

const KDF_RK_INFO: &[u8] = b"meow/v2/ratchet-root";
const MESSAGE_KEY_INFO: &[u8] = b"meow/v2/message-key";
const HEADER_KEYS_INFO: &[u8] = b"meow/v2/header-keys";
const STATE_VERSION: u8 = 1;

/// Why a message could not be sealed or opened. The state is unchanged in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RatchetError {
    /// The header opens under none of my header keys: not for this conversation, a forgery, or
    /// a message older than every key I still hold.
    #[error("not a message of this conversation (or one whose keys are already erased)")]
    NotForUs,
    /// The header is mine but its message key was used already: a duplicate or a replay.
    #[error("a message already received (duplicate or replay)")]
    Replay,
    /// The header asks to skip more message keys than a conversation keeps.
    #[error("the message is more than {MAX_SKIP} messages ahead of the last one received")]
    TooFarAhead,
    /// The header opened but the body did not: the message was changed in transit.
    #[error("the message body does not decrypt (tampered)")]
    Tampered,
    /// Shorter than a header and a tag.
    #[error("too short to be a ratchet message")]
    Malformed,
    /// The peer's ratchet key is not a usable X25519 key.
    #[error("the peer's ratchet key is not usable")]
    BadKey,
    /// 2^32 messages in one chain.
    #[error("the sending chain is exhausted")]
    Exhausted,
}

impl From<CryptoError> for RatchetError {
    fn from(_: CryptoError) -> Self {
        RatchetError::BadKey
    }
}

/// The decrypted header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    dh: [u8; PUBLIC_KEY_LEN],
    pn: u32,
    n: u32,
}

impl Header {
    fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..32].copy_from_slice(&self.dh);
        out[32..36].copy_from_slice(&self.pn.to_be_bytes());
        out[36..].copy_from_slice(&self.n.to_be_bytes());
        out
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != HEADER_LEN {
            return None;
        }
        Some(Self {
            dh: b[..32].try_into().ok()?,
            pn: u32::from_be_bytes(b[32..36].try_into().ok()?),
            n: u32::from_be_bytes(b[36..].try_into().ok()?),
        })
    }
}

/// The message keys skipped in one receiving chain, by message number, under its header key.
#[derive(Clone)]
struct Skipped {
    header_key: SecretKey,
    keys: BTreeMap<u32, SecretKey>,
}

/// One side's state of a Double Ratchet (the specification's `state`; names follow it).
#[derive(Clone)]
pub struct Ratchet {
    /// DHRs: my current ratchet key pair.
    dh_self: DhSecret,
    /// DHRr: the peer's current ratchet public key.
    dh_remote: Option<[u8; PUBLIC_KEY_LEN]>,
    /// RK.
    root: SecretKey,
    /// CKs and CKr.
    send: Option<SecretKey>,
    recv: Option<SecretKey>,
    /// Ns, Nr, PN.
    ns: u32,
    nr: u32,
    pn: u32,
    /// HKs, HKr, NHKs, NHKr.
    hk_send: Option<SecretKey>,
    hk_recv: Option<SecretKey>,
    nhk_send: SecretKey,
    nhk_recv: SecretKey,
    /// MKSKIPPED, oldest chain first.
    skipped: Vec<Skipped>,
}

impl std::fmt::Debug for Ratchet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Ratchet(sent {} in this chain, received {}, {} skipped keys)",
            self.ns,
            self.nr,
            self.skipped_count()
        )
    }
}

/// KDF_RK_HE: a new root key, chain key and next header key from the root key and a DH output.
fn kdf_rk(root: &SecretKey, dh_out: &SecretKey) -> (SecretKey, SecretKey, SecretKey) {
    let mut out = Zeroizing::new([0u8; 96]);
    hkdf_sha256(
        Some(root.as_bytes()),
        dh_out.as_bytes(),
        KDF_RK_INFO,
        out.as_mut_slice(),
    );
    (split32(&out[..32]), split32(&out[32..64]), split32(&out[64..]))
}

/// KDF_CK: the next chain key and this message's key (HMAC-SHA256 with constants 0x02, 0x01).
fn kdf_ck(chain: &SecretKey) -> (SecretKey, SecretKey) {
    (hmac_sha256(chain, &[0x02]), hmac_sha256(chain, &[0x01]))
}

fn split32(b: &[u8]) -> SecretKey {
    let mut k = [0u8; 32];
    k.copy_from_slice(b);
    SecretKey::from_bytes(k)
}

/// ENCRYPT's key and nonce: HKDF of the message key (used once, so the nonce may be derived).
fn body_cipher(mk: &SecretKey) -> (AeadKey, [u8; NONCE_LEN]) {
    let mut out = Zeroizing::new([0u8; 32 + NONCE_LEN]);
    hkdf_sha256(Some(&[0u8; 32]), mk.as_bytes(), MESSAGE_KEY_INFO, out.as_mut_slice());
    let key = split32(&out[..32]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&out[32..]);
    (AeadKey::new(&key), nonce)
}

fn aad(ad: &[u8], sealed_header: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(ad.len() + sealed_header.len());
    v.extend_from_slice(ad);
    v.extend_from_slice(sealed_header);
    v
}

/// The two shared header keys of a start (the specification's `shared_hka`, `shared_nhkb`),
/// derived from the start's secret.
fn header_keys(root: &SecretKey) -> (SecretKey, SecretKey) {
    let mut out = Zeroizing::new([0u8; 64]);
    hkdf_sha256(Some(&[0u8; 32]), root.as_bytes(), HEADER_KEYS_INFO, out.as_mut_slice());
    (split32(&out[..32]), split32(&out[32..]))
}

impl Ratchet {
    /// The side that sends first ("Alice", RatchetInitAlice with header encryption): `own` is
    /// the ratchet key whose public part the other side already has, `remote` the other side's.
    pub fn start_first(root: &SecretKey, own: DhSecret, remote: [u8; PUBLIC_KEY_LEN]) -> Result<Self, RatchetError> {
        let (hka, nhkb) = header_keys(root);
        let (root, send, nhk_send) = kdf_rk(root, &own.agree(&remote)?);
        Ok(Self {
            dh_self: own,
            dh_remote: Some(remote),
            root,
            send: Some(send),
            recv: None,
            ns: 0,
            nr: 0,
            pn: 0,
            hk_send: Some(hka),
            hk_recv: None,
            nhk_send,
            nhk_recv: nhkb,
            skipped: Vec::new(),
        })
    }

    /// The other side ("Bob", RatchetInitBob with header encryption), followed at once by the
    /// DH ratchet step for the first sender's key `remote`, so that it can send first too.
    pub fn start_second(
        root: &SecretKey,
        own: DhSecret,
        remote: [u8; PUBLIC_KEY_LEN],
        rng: &mut impl CryptoRng,
    ) -> Result<Self, RatchetError> {
        let (hka, nhkb) = header_keys(root);
        let mut r = Self {
            dh_self: own,
            dh_remote: None,
            root: root.clone(),
            send: None,
            recv: None,
            ns: 0,
            nr: 0,
            pn: 0,
            hk_send: None,
            hk_recv: None,
            nhk_send: nhkb,
            nhk_recv: hka,
            skipped: Vec::new(),
        };
        r.dh_step(remote, rng)?;
        Ok(r)
    }

    /// RatchetEncryptHE: `sealed header || body ciphertext || tag`; `ad` is authenticated, not
    /// sent.
    pub fn seal(&mut self, ad: &[u8], plaintext: &[u8], rng: &mut impl CryptoRng) -> Result<Vec<u8>, RatchetError> {
        let (Some(chain), Some(hk)) = (&self.send, &self.hk_send) else {
            return Err(RatchetError::NotForUs);
        };
        let n = self.ns;
        let next_n = n.checked_add(1).ok_or(RatchetError::Exhausted)?;
        let keys = kdf_ck(chain);
        let header = Header {
            dh: self.dh_self.public(),
            pn: self.pn,
            n,
        };
        let out = HeaderKey::new(hk).seal(ad, &header.to_bytes(), rng);
        Ok(self.seal_body(out, ad, plaintext, keys, next_n))
    }

    /// Both forms, once the header is written: appends the body sealed with message key `mk`
    /// and steps the sending chain to `next`, number `next_n`.
    fn seal_body(
        &mut self,
        mut out: Vec<u8>,
        ad: &[u8],
        plaintext: &[u8],
        (next, mk): (SecretKey, SecretKey),
        next_n: u32,
    ) -> Vec<u8> {
        let (cipher, nonce) = body_cipher(&mk);
        let body = cipher.seal(&nonce, &aad(ad, &out), plaintext);
        out.extend_from_slice(&body);
        self.send = Some(next);
        self.ns = next_n;
        out
    }

    /// RatchetDecryptHE: the plaintext, or why not (the state is then unchanged).
    pub fn open(
        &mut self,
        ad: &[u8],
        message: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Result<Zeroizing<Vec<u8>>, RatchetError> {
        if message.len() < OVERHEAD {
            return Err(RatchetError::Malformed);
        }
        let mut next = self.clone();
        let plain = next.open_inner(ad, message, rng)?;
        *self = next;
        Ok(plain)
    }

    fn open_inner(
        &mut self,
        ad: &[u8],
        message: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Result<Zeroizing<Vec<u8>>, RatchetError> {
        let (sealed_header, body) = message.split_at(SEALED_HEADER_LEN);
        if let Some(mk) = self.take_skipped(ad, sealed_header) {
            return open_body(&mk, ad, sealed_header, body);
        }
        let (header, new_chain) = self.read_header(ad, sealed_header)?;
        if new_chain {
            self.skip_keys(header.pn)?;
            self.dh_step(header.dh, rng)?;
        } else if header.n < self.nr {
            return Err(RatchetError::Replay);
        }
        self.open_in_chain(header.n, ad, sealed_header, body)
    }

    /// Both forms, once the receiving chain is the message's: keeps the keys of the messages
    /// before number `n`, steps the chain past `n`, and opens the body with `n`'s key.
    fn open_in_chain(
        &mut self,
        n: u32,
        ad: &[u8],
        header_bytes: &[u8],
        body: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, RatchetError> {
        self.skip_keys(n)?;
        let chain = self.recv.as_ref().ok_or(RatchetError::NotForUs)?;
        let (next, mk) = kdf_ck(chain);
        self.recv = Some(next);
        self.nr = self.nr.checked_add(1).ok_or(RatchetError::Exhausted)?;
        open_body(&mk, ad, header_bytes, body)
    }

    /// TrySkippedMessageKeysHE: the key of a skipped message, taken out of the store.
    fn take_skipped(&mut self, ad: &[u8], sealed_header: &[u8]) -> Option<SecretKey> {
        let (i, n) = self.skipped.iter().enumerate().find_map(|(i, s)| {
            let plain = HeaderKey::new(&s.header_key).open(ad, sealed_header).ok()?;
            let h = Header::from_bytes(&plain)?;
            s.keys.contains_key(&h.n).then_some((i, h.n))
        })?;
        let mk = self.skipped[i].keys.remove(&n);
        if self.skipped[i].keys.is_empty() {
            self.skipped.remove(i);
        }
        mk
    }

    /// DecryptHeader: the header, and whether it starts a new receiving chain.
    fn read_header(&self, ad: &[u8], sealed_header: &[u8]) -> Result<(Header, bool), RatchetError> {
        let try_key = |k: &SecretKey| {
            HeaderKey::new(k)
                .open(ad, sealed_header)
                .ok()
                .and_then(|p| Header::from_bytes(&p))
        };
        if let Some(h) = self.hk_recv.as_ref().and_then(try_key) {
            return Ok((h, false));
        }
        try_key(&self.nhk_recv).map(|h| (h, true)).ok_or(RatchetError::NotForUs)
    }

    /// SkipMessageKeysHE: keeps the keys of the messages before `until` in the receiving chain.
    fn skip_keys(&mut self, until: u32) -> Result<(), RatchetError> {
        if until > self.nr.saturating_add(MAX_SKIP) {
            return Err(RatchetError::TooFarAhead);
        }
        let (Some(mut chain), Some(hk)) = (self.recv.clone(), self.hk_recv.clone()) else {
            return Ok(());
        };
        if self.nr >= until {
            return Ok(());
        }
        let mut keys = BTreeMap::new();
        while self.nr < until {
            let (next, mk) = kdf_ck(&chain);
            keys.insert(self.nr, mk);
            chain = next;
            self.nr += 1;
        }
        self.recv = Some(chain);
        match self.skipped.iter_mut().find(|s| s.header_key == hk) {
            Some(s) => s.keys.extend(keys),
            None => self.skipped.push(Skipped { header_key: hk, keys }),
        }
        self.forget_oldest();
        Ok(())
    }

    fn forget_oldest(&mut self) {
        while self.skipped_count() > MAX_SKIPPED {
            let Some(first) = self.skipped.first_mut() else { return };
            first.keys.pop_first();
            if first.keys.is_empty() {
                self.skipped.remove(0);
            }
        }
    }

    fn skipped_count(&self) -> usize {
        self.skipped.iter().map(|s| s.keys.len()).sum()
    }

    /// DHRatchetHE: a new receiving chain for the peer's new key, then a new ratchet key of mine
    /// and a new sending chain.
    fn dh_step(&mut self, remote: [u8; PUBLIC_KEY_LEN], rng: &mut impl CryptoRng) -> Result<(), RatchetError> {
        let (root, recv, nhk_recv) = kdf_rk(&self.root, &self.dh_self.agree(&remote)?);
        let dh_self = DhSecret::generate(rng);
        let (root, send, nhk_send) = kdf_rk(&root, &dh_self.agree(&remote)?);
        self.pn = self.ns;
        self.ns = 0;
        self.nr = 0;
        self.hk_send = Some(std::mem::replace(&mut self.nhk_send, nhk_send));
        self.hk_recv = Some(std::mem::replace(&mut self.nhk_recv, nhk_recv));
        self.dh_remote = Some(remote);
        self.root = root;
        self.recv = Some(recv);
        self.send = Some(send);
        self.dh_self = dh_self;
        Ok(())
    }

    /// RatchetEncrypt without header encryption (the specification's §3.4), for links where every
    /// byte counts: `ratchet key:[32] | pn:varint | n:varint | body ciphertext || tag`, the
    /// header authenticated as associated data. Same chains and keys as [`Ratchet::seal`]: a
    /// conversation may mix both forms. The header is in the clear, so whoever stores it can link
    /// the messages of one sending chain (docs/PROTOCOL.md §17.5 says when that is acceptable).
    pub fn seal_compact(&mut self, ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, RatchetError> {
        let Some(chain) = &self.send else {
            return Err(RatchetError::NotForUs);
        };
        let n = self.ns;
        let next_n = n.checked_add(1).ok_or(RatchetError::Exhausted)?;
        let keys = kdf_ck(chain);
        let mut w = Writer::with_capacity(COMPACT_HEADER_MAX + plaintext.len() + TAG_LEN);
        w.raw(&self.dh_self.public()).varint(self.pn.into()).varint(n.into());
        Ok(self.seal_body(w.into_bytes(), ad, plaintext, keys, next_n))
    }

    /// RatchetDecrypt for [`Ratchet::seal_compact`]'s form: the plaintext, or why not (the
    /// state is then unchanged).
    pub fn open_compact(
        &mut self,
        ad: &[u8],
        message: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Result<Zeroizing<Vec<u8>>, RatchetError> {
        let mut r = Reader::new(message);
        let read = |r: &mut Reader<'_>| -> Result<Header, DecodeError> {
            Ok(Header {
                dh: r.array("ratchet key")?,
                pn: u32_field(r, "pn")?,
                n: u32_field(r, "n")?,
            })
        };
        let header = read(&mut r).map_err(|_| RatchetError::Malformed)?;
        let (clear, body) = message.split_at(message.len() - r.remaining());
        if body.len() < TAG_LEN {
            return Err(RatchetError::Malformed);
        }
        let mut next = self.clone();
        let plain = next.open_compact_inner(ad, header, clear, body, rng)?;
        *self = next;
        Ok(plain)
    }

    fn open_compact_inner(
        &mut self,
        ad: &[u8],
        header: Header,
        clear: &[u8],
        body: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Result<Zeroizing<Vec<u8>>, RatchetError> {
        let current = self.dh_remote == Some(header.dh) && self.recv.is_some();
        if current && header.n < self.nr {
            let hk = self.hk_recv.clone().ok_or(RatchetError::NotForUs)?;
            let mk = self.take_skipped_in(&hk, header.n).ok_or(RatchetError::Replay)?;
            return open_body(&mk, ad, clear, body);
        }
        if !current {
            // An older chain's skipped key (tried by decrypting: the header names no chain), or
            // the first message of the peer's next chain.
            if let Some(plain) = self.try_skipped_number(header.n, ad, clear, body) {
                return Ok(plain);
            }
            self.skip_keys(header.pn)?;
            self.dh_step(header.dh, rng)?;
        }
        self.open_in_chain(header.n, ad, clear, body)
    }

    /// The skipped key of message `n` in the chain under header key `hk`, taken out of the store.
    fn take_skipped_in(&mut self, hk: &SecretKey, n: u32) -> Option<SecretKey> {
        let i = self.skipped.iter().position(|s| &s.header_key == hk)?;
        let mk = self.skipped[i].keys.remove(&n);
        if self.skipped[i].keys.is_empty() {
            self.skipped.remove(i);
        }
        mk
    }

    /// Opens `body` with the skipped key of number `n` of whichever chain it belongs to.
    fn try_skipped_number(&mut self, n: u32, ad: &[u8], clear: &[u8], body: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let (hk, plain) = self.skipped.iter().find_map(|s| {
            let mk = s.keys.get(&n)?;
            let plain = open_body(mk, ad, clear, body).ok()?;
            Some((s.header_key.clone(), plain))
        })?;
        self.take_skipped_in(&hk, n);
        Some(plain)
    }

    /// My current ratchet public key (what my next message's header carries).
    pub fn public(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.dh_self.public()
    }
}

fn open_body(mk: &SecretKey, ad: &[u8], sealed_header: &[u8], body: &[u8]) -> Result<Zeroizing<Vec<u8>>, RatchetError> {
    let (cipher, nonce) = body_cipher(mk);
    cipher
        .open(&nonce, &aad(ad, sealed_header), body)
        .map(Zeroizing::new)
        .map_err(|_| RatchetError::Tampered)
}

// ---------------------------------------------------------------- stored form (in the vault)

fn put_key(w: &mut Writer, k: &SecretKey) {
    w.raw(k.as_bytes());
}

fn put_opt(w: &mut Writer, k: &Option<SecretKey>) {
    w.option(k.as_ref(), put_key);
}

fn get_key(r: &mut Reader<'_>, what: &'static str) -> Result<SecretKey, DecodeError> {
    Ok(SecretKey::from_bytes(r.array(what)?))
}

fn get_opt(r: &mut Reader<'_>, what: &'static str) -> Result<Option<SecretKey>, DecodeError> {
    r.option(what, |r| get_key(r, what))
}

impl Encode for Ratchet {
    fn encode(&self, w: &mut Writer) {
        w.u8(STATE_VERSION);
        w.raw(self.dh_self.to_bytes().as_slice());
        w.option(self.dh_remote.as_ref(), |w, k| {
            w.raw(k);
        });
        put_key(w, &self.root);
        put_opt(w, &self.send);
        put_opt(w, &self.recv);
        w.varint(self.ns.into()).varint(self.nr.into()).varint(self.pn.into());
        put_opt(w, &self.hk_send);
        put_opt(w, &self.hk_recv);
        put_key(w, &self.nhk_send);
        put_key(w, &self.nhk_recv);
        w.varint(self.skipped.len() as u64);
        for s in &self.skipped {
            put_key(w, &s.header_key);
            w.varint(s.keys.len() as u64);
            for (n, k) in &s.keys {
                w.varint((*n).into());
                put_key(w, k);
            }
        }
    }
}

fn u32_field(r: &mut Reader<'_>, what: &'static str) -> Result<u32, DecodeError> {
    u32::try_from(r.varint(what)?).map_err(|_| DecodeError::Invalid {
        what,
        reason: "above 2^32",
    })
}

impl Decode for Ratchet {
    const WHAT: &'static str = "ratchet state";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8("ratchet state version")?;
        if version != STATE_VERSION {
            return Err(DecodeError::UnknownValue {
                what: "ratchet state version",
                value: version.into(),
            });
        }
        let dh_self = DhSecret::from_bytes(r.array("ratchet key")?);
        let dh_remote = r.option("peer ratchet key", |r| r.array("peer ratchet key"))?;
        let root = get_key(r, "root key")?;
        let send = get_opt(r, "sending chain")?;
        let recv = get_opt(r, "receiving chain")?;
        let ns = u32_field(r, "ns")?;
        let nr = u32_field(r, "nr")?;
        let pn = u32_field(r, "pn")?;
        let hk_send = get_opt(r, "sending header key")?;
        let hk_recv = get_opt(r, "receiving header key")?;
        let nhk_send = get_key(r, "next sending header key")?;
        let nhk_recv = get_key(r, "next receiving header key")?;
        let chains = r.varint("skipped chains")?;
        let mut skipped = Vec::new();
        let mut total = 0usize;
        for _ in 0..chains {
            let header_key = get_key(r, "skipped header key")?;
            let count = r.varint("skipped keys")?;
            let mut keys = BTreeMap::new();
            for _ in 0..count {
                total += 1;
                if total > MAX_SKIPPED {
                    return Err(DecodeError::Invalid {
                        what: "skipped keys",
                        reason: "more than a conversation keeps",
                    });
                }
                let n = u32_field(r, "skipped message number")?;
                keys.insert(n, get_key(r, "skipped message key")?);
            }
            skipped.push(Skipped { header_key, keys });
        }
        Ok(Self {
            dh_self,
            dh_remote,
            root,
            send,
            recv,
            ns,
            nr,
            pn,
            hk_send,
            hk_recv,
            nhk_send,
            nhk_recv,
            skipped,
        })
    }
}

#[cfg(test)]
mod tests;
