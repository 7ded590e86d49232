//! The one module that names cryptographic crates.
//!
//! Everything else in MEOW goes through these functions, so a change of primitive or crate happens
//! here only. The constructions are standard ones:
//! - signatures: Ed25519 (RFC 8032, strict verification) over `domain || 0x00 || message`, with a
//!   distinct domain string for every kind of signed object ([`Domain`]);
//! - sealing to a public key: HPKE (RFC 9180) base mode, suite DHKEM(X25519, HKDF-SHA256),
//!   HKDF-SHA256, AES-256-GCM;
//! - the post-quantum start of a conversation: HPKE with the X-Wing KEM ([`pq_encapsulate`], [`PqSecret`]);
//! - key agreement: X25519 (RFC 7748), refusing non-contributory results;
//! - symmetric encryption: AES-256-GCM with 96-bit nonces; XChaCha20-Poly1305 with random
//!   192-bit nonces where one key seals many messages with nonces that cannot be counted
//!   ([`HeaderKey`], the Double Ratchet's header encryption);
//! - key derivation: HKDF-SHA256 (RFC 5869), HMAC-SHA256 (RFC 2104); passwords: Argon2id
//!   (RFC 9106).
//!
//! Secrets zeroize on drop and their `Debug` output never shows key bytes.

pub mod onion;
mod pq;

pub use pq::{PQ_ENC_LEN, PQ_PUBLIC_LEN, PqSecret, pq_decapsulate, pq_encapsulate};

use core::convert::Infallible;
use core::fmt;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use zeroize::{Zeroize, Zeroizing};

pub use rand_core::CryptoRng;
use rand_core::{TryCryptoRng, TryRng};

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type HpkeAead = hpke::aead::AesGcm256;

/// Length of an Ed25519 or X25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of an HPKE encapsulated key for DHKEM(X25519).
pub const ENC_LEN: usize = 32;
/// Length of an AES-GCM tag.
pub const TAG_LEN: usize = 16;
/// Length of an AES-GCM nonce.
pub const NONCE_LEN: usize = 12;

/// A failed cryptographic operation. Deliberately says little: the caller knows what it tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// A signature does not verify under the given key and domain.
    #[error("signature does not verify")]
    BadSignature,
    /// Authenticated decryption failed: wrong key, or the data was changed.
    #[error("decryption failed (wrong key or tampered data)")]
    Decrypt,
    /// A public key is not a valid point.
    #[error("invalid public key")]
    BadPublicKey,
    /// Password hashing parameters are out of range.
    #[error("invalid password hashing parameters")]
    BadKdfParams,
}

/// A domain-separation string: every signature and derived key names what it is for, so a
/// signature made for one kind of object can never be accepted as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Domain(&'static str);

impl Domain {
    /// Rendez-vous cards.
    pub const CARD: Domain = Domain("meow/v1/card");
    /// User messages inside an envelope.
    pub const MESSAGE: Domain = Domain("meow/v1/message");
    /// Proof of a lookup key's possession, bound to one session or one datagram.
    pub const MAILBOX_PROOF: Domain = Domain("meow/v1/mailbox-proof");
    /// Emergency broadcasts.
    pub const BROADCAST: Domain = Domain("meow/v1/broadcast");
    /// "Free for chat" directory entries.
    pub const DIRECTORY_ENTRY: Domain = Domain("meow/v1/directory-entry");
    /// Withdrawal of a directory entry.
    pub const DIRECTORY_WITHDRAW: Domain = Domain("meow/v1/directory-withdraw");
    /// Group control messages (membership), signed by the group owner.
    pub const GROUP: Domain = Domain("meow/v1/group");
    /// Server descriptors of the server catalog, signed by the server's identity key.
    pub const SERVER_DESCRIPTOR: Domain = Domain("meow/v1/server-descriptor");
    /// A user's device roster, signed by the user key (docs/DEVICES.md).
    pub const DEVICE_ROSTER: Domain = Domain("meow/v1/device-roster");
    /// The revocation of a device, signed by the password's revocation key and the user key.
    pub const DEVICE_REVOCATION: Domain = Domain("meow/v1/device-revocation");

    /// The string itself.
    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

/// Fills `out` with random bytes from `rng`.
pub fn random_bytes<const N: usize>(rng: &mut impl CryptoRng) -> [u8; N] {
    let mut out = [0u8; N];
    rng.fill_bytes(&mut out);
    out
}

/// A random index below `n` (which must be above zero), from 64 random bits: the bias is at
/// most `n / 2^64`, nothing for the small counts this picks among.
pub fn random_below(n: usize, rng: &mut impl CryptoRng) -> usize {
    (u64::from_le_bytes(random_bytes(rng)) % n.max(1) as u64) as usize
}

// ---------------------------------------------------------------- random sources

/// SHA-256 in counter mode over a seed: reproducible bytes for tests, test vectors and simulations
/// (never for the keys of a real home).
#[derive(Debug, Clone)]
pub struct CounterRng {
    seed: u64,
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl CounterRng {
    /// A generator for `seed`; equal seeds give equal streams.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }
}

impl TryRng for CounterRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for byte in dst {
            if self.used == 32 {
                self.block = sha256(&[b"meow test rng", &self.seed.to_le_bytes(), &self.counter.to_le_bytes()]);
                self.counter += 1;
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
        Ok(())
    }
}

impl TryCryptoRng for CounterRng {}

/// Where a shared generator takes its bytes.
trait Source: Send + Sync + fmt::Debug {
    fn fill(&self, dst: &mut [u8]);
}

#[derive(Debug)]
struct Os;

impl Source for Os {
    fn fill(&self, dst: &mut [u8]) {
        rand_core::Rng::fill_bytes(&mut os_rng(), dst);
    }
}

#[derive(Debug)]
struct Seeded(parking_lot::Mutex<CounterRng>);

impl Source for Seeded {
    fn fill(&self, dst: &mut [u8]) {
        let mut rng = self.0.lock();
        let Ok(()) = rng.try_fill_bytes(dst);
    }
}

/// A random generator that can be cloned and shared: the operating system's, or a seeded stream
/// for simulations, so that a home under a virtual clock behaves the same on every run.
#[derive(Debug, Clone)]
pub struct SharedRng(std::sync::Arc<dyn Source>);

impl SharedRng {
    /// The operating system's generator.
    pub fn os() -> Self {
        Self(std::sync::Arc::new(Os))
    }

    /// A reproducible stream, for simulations and tests only: never for keys or nonces that
    /// outlive the test (the same seed gives the same nonces again).
    pub fn seeded(seed: u64) -> Self {
        Self(std::sync::Arc::new(Seeded(parking_lot::Mutex::new(CounterRng::new(
            seed,
        )))))
    }
}

impl TryRng for SharedRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill(dst);
        Ok(())
    }
}

impl TryCryptoRng for SharedRng {}

/// The operating system's random generator, for the I/O shells (the core takes an rng argument).
pub fn os_rng() -> impl CryptoRng {
    rand_core::UnwrapErr(getrandom::SysRng)
}

// ---------------------------------------------------------------- signatures

/// An Ed25519 secret key. Zeroized on drop.
#[derive(Clone)]
pub struct SigningSecret(SigningKey);

impl SigningSecret {
    /// A new random key.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        Self(SigningKey::generate(rng))
    }

    /// The key for a 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The 32-byte seed (secret!).
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public key.
    pub fn public(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.0.verifying_key().to_bytes()
    }

    /// Signs `domain || 0x00 || parts...`.
    pub fn sign(&self, domain: Domain, parts: &[&[u8]]) -> [u8; SIGNATURE_LEN] {
        self.0.sign(&signed_message(domain, parts)).to_bytes()
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(<secret>)")
    }
}

fn signed_message(domain: Domain, parts: &[&[u8]]) -> Vec<u8> {
    let len = domain.0.len() + 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(domain.0.as_bytes());
    msg.push(0);
    for p in parts {
        msg.extend_from_slice(p);
    }
    msg
}

/// Whether `public` is a valid Ed25519 public key.
pub fn is_valid_verifying_key(public: &[u8; PUBLIC_KEY_LEN]) -> bool {
    VerifyingKey::from_bytes(public).is_ok_and(|k| !k.is_weak())
}

/// Verifies an Ed25519 signature over `domain || 0x00 || parts...` (strict: no weak keys, no
/// malleable signatures).
pub fn verify(
    public: &[u8; PUBLIC_KEY_LEN],
    domain: Domain,
    parts: &[&[u8]],
    signature: &[u8; SIGNATURE_LEN],
) -> Result<(), CryptoError> {
    let key = VerifyingKey::from_bytes(public).map_err(|_| CryptoError::BadSignature)?;
    let sig = ed25519_dalek::Signature::from_bytes(signature);
    key.verify_strict(&signed_message(domain, parts), &sig)
        .map_err(|_| CryptoError::BadSignature)
}

// ---------------------------------------------------------------- key agreement and HPKE

/// An X25519 secret key. Zeroized on drop.
#[derive(Clone)]
pub struct DhSecret(x25519_dalek::StaticSecret);

impl DhSecret {
    /// A new random key.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        Self(x25519_dalek::StaticSecret::random_from_rng(rng))
    }

    /// The key with these secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(x25519_dalek::StaticSecret::from(bytes))
    }

    /// The secret bytes (secret!).
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public key.
    pub fn public(&self) -> [u8; PUBLIC_KEY_LEN] {
        x25519_dalek::PublicKey::from(&self.0).to_bytes()
    }

    /// X25519 with a peer's public key. A result of all zeros (the peer sent a point of small
    /// order, which would make the secret known to anyone) is refused.
    pub fn agree(&self, public: &[u8; PUBLIC_KEY_LEN]) -> Result<SecretKey, CryptoError> {
        let shared = self.0.diffie_hellman(&x25519_dalek::PublicKey::from(*public));
        if !shared.was_contributory() {
            return Err(CryptoError::BadPublicKey);
        }
        Ok(SecretKey::from_bytes(shared.to_bytes()))
    }

    fn hpke_private(&self) -> Result<<Kem as hpke::Kem>::PrivateKey, CryptoError> {
        <Kem as hpke::Kem>::PrivateKey::from_bytes(self.to_bytes().as_slice()).map_err(|_| CryptoError::Decrypt)
    }
}

impl fmt::Debug for DhSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DhSecret(<secret>)")
    }
}

fn hpke_public(public: &[u8; PUBLIC_KEY_LEN]) -> Result<<Kem as hpke::Kem>::PublicKey, CryptoError> {
    <Kem as hpke::Kem>::PublicKey::from_bytes(public).map_err(|_| CryptoError::BadPublicKey)
}

fn hpke_enc(enc: &[u8; ENC_LEN]) -> Result<<Kem as hpke::Kem>::EncappedKey, CryptoError> {
    <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| CryptoError::Decrypt)
}

/// The sending side of an HPKE context (RFC 9180 §5.1, base mode).
pub struct HpkeSender {
    ctx: hpke::aead::AeadCtxS<HpkeAead, Kdf, Kem>,
}

impl fmt::Debug for HpkeSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HpkeSender(<context>)")
    }
}

impl HpkeSender {
    /// Sets up a context to `recipient`; returns the encapsulated key to send along.
    pub fn new(
        recipient: &[u8; PUBLIC_KEY_LEN],
        info: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Result<([u8; ENC_LEN], Self), CryptoError> {
        let pk = hpke_public(recipient)?;
        let (enc, ctx) = hpke::setup_sender_with_rng::<HpkeAead, Kdf, Kem>(&OpModeS::Base, &pk, info, rng)
            .map_err(|_| CryptoError::BadPublicKey)?;
        let mut enc_bytes = [0u8; ENC_LEN];
        enc_bytes.copy_from_slice(&enc.to_bytes());
        Ok((enc_bytes, Self { ctx }))
    }

    /// Encrypts the next message of this context (appends the tag).
    pub fn seal(&mut self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        // Sealing fails only after 2^96 messages on one context.
        self.ctx.seal(plaintext, aad).unwrap_or_default()
    }

    /// Derives a secret from this context (RFC 9180 §5.3).
    pub fn export(&self, label: &[u8]) -> SecretKey {
        let mut out = [0u8; 32];
        // Export of 32 bytes is always within HKDF-SHA256 limits.
        let _ = self.ctx.export(label, &mut out);
        SecretKey::from_bytes(out)
    }
}

/// The receiving side of an HPKE context.
pub struct HpkeReceiver {
    ctx: hpke::aead::AeadCtxR<HpkeAead, Kdf, Kem>,
}

impl fmt::Debug for HpkeReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HpkeReceiver(<context>)")
    }
}

impl HpkeReceiver {
    /// Sets up the context matching a sender's encapsulated key.
    pub fn new(secret: &DhSecret, enc: &[u8; ENC_LEN], info: &[u8]) -> Result<Self, CryptoError> {
        let ctx =
            hpke::setup_receiver::<HpkeAead, Kdf, Kem>(&OpModeR::Base, &secret.hpke_private()?, &hpke_enc(enc)?, info)
                .map_err(|_| CryptoError::Decrypt)?;
        Ok(Self { ctx })
    }

    /// Decrypts the next message of this context.
    pub fn open(&mut self, aad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.ctx.open(ciphertext, aad).map_err(|_| CryptoError::Decrypt)
    }

    /// Derives a secret from this context (RFC 9180 §5.3).
    pub fn export(&self, label: &[u8]) -> SecretKey {
        let mut out = [0u8; 32];
        let _ = self.ctx.export(label, &mut out);
        SecretKey::from_bytes(out)
    }
}

/// Single-shot HPKE seal to `recipient`: returns `(enc, ciphertext || tag)`.
pub fn hpke_seal(
    recipient: &[u8; PUBLIC_KEY_LEN],
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
    rng: &mut impl CryptoRng,
) -> Result<([u8; ENC_LEN], Vec<u8>), CryptoError> {
    let (enc, mut ctx) = HpkeSender::new(recipient, info, rng)?;
    Ok((enc, ctx.seal(aad, plaintext)))
}

/// Single-shot HPKE open.
pub fn hpke_open(
    secret: &DhSecret,
    enc: &[u8; ENC_LEN],
    info: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    HpkeReceiver::new(secret, enc, info)?.open(aad, ciphertext)
}

// ---------------------------------------------------------------- symmetric

/// A 256-bit secret. Zeroized on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(Zeroizing<[u8; 32]>);

impl SecretKey {
    /// Wraps secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A new random secret.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut k = Self::from_bytes([0u8; 32]);
        rng.fill_bytes(k.0.as_mut_slice());
        k
    }

    /// The secret bytes (secret!).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// HKDF-Expand (RFC 5869 §2.3) with this key as the pseudorandom key.
    pub fn expand(&self, info: &[u8]) -> SecretKey {
        let mut out = Self::from_bytes([0u8; 32]);
        // A 32-byte PRK is valid for SHA-256 and 32 bytes of output always fit.
        if let Ok(hk) = hkdf::Hkdf::<sha2::Sha256>::from_prk(self.as_bytes()) {
            let _ = hk.expand(info, out.0.as_mut_slice());
        }
        out
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<secret>)")
    }
}

/// An AES-256-GCM key with its expanded schedule (zeroized on drop by the `aes` crate).
#[derive(Clone)]
pub struct AeadKey(Aes256Gcm);

impl fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AeadKey(<secret>)")
    }
}

impl AeadKey {
    /// The cipher for a 256-bit key.
    pub fn new(key: &SecretKey) -> Self {
        Self(Aes256Gcm::new(key.as_bytes().into()))
    }

    /// Encrypts `buf[start..]` in place and appends the tag.
    pub fn seal_in_place(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut Vec<u8>, start: usize) {
        let nonce = Nonce::from(*nonce);
        let tag = self
            .0
            .encrypt_inout_detached(&nonce, aad, (&mut buf[start..]).into())
            .unwrap_or_default();
        buf.extend_from_slice(&tag);
    }

    /// Decrypts `buf[start..]` (ciphertext || tag) in place and removes the tag.
    pub fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
        start: usize,
    ) -> Result<(), CryptoError> {
        if buf.len() < start + TAG_LEN {
            return Err(CryptoError::Decrypt);
        }
        let tag_at = buf.len() - TAG_LEN;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&buf[tag_at..]);
        buf.truncate(tag_at);
        let nonce = Nonce::from(*nonce);
        let res = self
            .0
            .decrypt_inout_detached(&nonce, aad, (&mut buf[start..]).into(), &tag.into());
        if res.is_err() {
            // Leave no partially decrypted bytes behind.
            buf[start..].zeroize();
            return Err(CryptoError::Decrypt);
        }
        Ok(())
    }

    /// Encrypts into a new buffer: `ciphertext || tag`.
    pub fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
        buf.extend_from_slice(plaintext);
        self.seal_in_place(nonce, aad, &mut buf, 0);
        buf
    }

    /// Decrypts `ciphertext || tag` into a new buffer.
    pub fn open(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut buf = sealed.to_vec();
        self.open_in_place(nonce, aad, &mut buf, 0)?;
        Ok(buf)
    }
}

/// Length of an XChaCha20-Poly1305 nonce.
pub const XNONCE_LEN: usize = 24;

/// An XChaCha20-Poly1305 key (draft-irtf-cfrg-xchacha) that seals with random 192-bit nonces,
/// carried in front of the ciphertext. For keys that seal many messages without a counter both
/// sides share (the Double Ratchet's header keys: the spec asks for random nonces of at least
/// 128 bits there).
#[derive(Clone)]
pub struct HeaderKey(chacha20poly1305::XChaCha20Poly1305);

impl fmt::Debug for HeaderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HeaderKey(<secret>)")
    }
}

impl HeaderKey {
    /// The cipher for a 256-bit key.
    pub fn new(key: &SecretKey) -> Self {
        use chacha20poly1305::KeyInit as _;
        Self(chacha20poly1305::XChaCha20Poly1305::new(key.as_bytes().into()))
    }

    /// `nonce || ciphertext || tag`, with a fresh random nonce.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8], rng: &mut impl CryptoRng) -> Vec<u8> {
        use chacha20poly1305::AeadInOut as _;
        let nonce: [u8; XNONCE_LEN] = random_bytes(rng);
        let mut out = Vec::with_capacity(XNONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .0
            .encrypt_inout_detached(&nonce.into(), aad, (&mut out[XNONCE_LEN..]).into())
            .unwrap_or_default();
        out.extend_from_slice(&tag);
        out
    }

    /// Opens what [`HeaderKey::seal`] made.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        use chacha20poly1305::AeadInOut as _;
        if sealed.len() < XNONCE_LEN + TAG_LEN {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, rest) = sealed.split_at(XNONCE_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut buf = Zeroizing::new(ct.to_vec());
        let nonce: [u8; XNONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Decrypt)?;
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| CryptoError::Decrypt)?;
        self.0
            .decrypt_inout_detached(&nonce.into(), aad, buf.as_mut_slice().into(), &tag.into())
            .map_err(|_| CryptoError::Decrypt)?;
        Ok(buf)
    }
}

/// HMAC-SHA256 (RFC 2104) of `data` under a 256-bit key, computed as HKDF-Extract with the key
/// as salt, which RFC 5869 (§2.2) defines as exactly that HMAC.
pub fn hmac_sha256(key: &SecretKey, data: &[u8]) -> SecretKey {
    let (prk, _) = hkdf::Hkdf::<sha2::Sha256>::extract(Some(key.as_bytes()), data);
    SecretKey::from_bytes(prk.into())
}

/// HKDF-SHA256 extract-and-expand into `out` (at most 8160 bytes).
pub fn hkdf_sha256(salt: Option<&[u8]>, ikm: &[u8], info: &[u8], out: &mut [u8]) {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(salt, ikm);
    // Only fails for outputs over 255 * 32 bytes, which no caller asks for.
    let _ = hk.expand(info, out);
}

/// SHA-256 of the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

// ---------------------------------------------------------------- passwords

/// Argon2id cost parameters, stored beside what they protect so they can be tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// The defaults for a vault: 64 MiB, 3 passes, 1 lane (well above OWASP's minimum).
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 1,
    };
    /// Small but real parameters for tests and demos: 256 KiB, 1 pass.
    pub const TESTING: KdfParams = KdfParams {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    };
}

/// Derives a 256-bit key from a password with Argon2id (version 0x13).
pub fn argon2id(password: &[u8], salt: &[u8; 16], params: KdfParams) -> Result<SecretKey, CryptoError> {
    let p = argon2::Params::new(params.memory_kib, params.iterations, params.parallelism, Some(32))
        .map_err(|_| CryptoError::BadKdfParams)?;
    let blocks = p.block_count();
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut memory = vec![argon2::Block::default(); blocks];
    let mut out = SecretKey::from_bytes([0u8; 32]);
    let res = a.hash_password_into_with_memory(password, salt, out.0.as_mut_slice(), &mut memory);
    for b in memory.iter_mut() {
        *b = argon2::Block::default();
    }
    res.map_err(|_| CryptoError::BadKdfParams)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestRng;

    #[test]
    fn signatures_are_domain_separated() {
        let k = SigningSecret::from_seed(&[7; 32]);
        let sig = k.sign(Domain::CARD, &[b"hello"]);
        verify(&k.public(), Domain::CARD, &[b"hello"], &sig).unwrap();
        assert_eq!(
            verify(&k.public(), Domain::MESSAGE, &[b"hello"], &sig),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            verify(&k.public(), Domain::CARD, &[b"hellO"], &sig),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn hpke_round_trip_and_tamper() {
        let mut rng = TestRng::new(1);
        let sk = DhSecret::generate(&mut rng);
        let (enc, ct) = hpke_seal(&sk.public(), b"info", b"aad", b"secret text", &mut rng).unwrap();
        assert_eq!(hpke_open(&sk, &enc, b"info", b"aad", &ct).unwrap(), b"secret text");
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert_eq!(hpke_open(&sk, &enc, b"info", b"aad", &bad), Err(CryptoError::Decrypt));
        assert_eq!(hpke_open(&sk, &enc, b"other", b"aad", &ct), Err(CryptoError::Decrypt));
    }

    #[test]
    fn aead_in_place_round_trip() {
        let key = AeadKey::new(&SecretKey::from_bytes([3; 32]));
        let mut buf = b"head".to_vec();
        buf.extend_from_slice(b"body");
        key.seal_in_place(&[0; 12], b"", &mut buf, 4);
        assert_eq!(buf.len(), 8 + TAG_LEN);
        key.open_in_place(&[0; 12], b"", &mut buf, 4).unwrap();
        assert_eq!(buf, b"headbody");
        key.seal_in_place(&[0; 12], b"", &mut buf, 4);
        assert!(key.open_in_place(&[1; 12], b"", &mut buf, 4).is_err());
    }

    #[test]
    fn argon2id_is_deterministic_and_salted() {
        let a = argon2id(b"pw", &[1; 16], KdfParams::TESTING).unwrap();
        let b = argon2id(b"pw", &[1; 16], KdfParams::TESTING).unwrap();
        let c = argon2id(b"pw", &[2; 16], KdfParams::TESTING).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
