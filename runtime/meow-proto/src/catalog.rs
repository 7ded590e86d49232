//! The server catalog (spec §5.1): signed server descriptors, and the set of them a server or a
//! home keeps, merged lazily from what other servers tell.
//!
//! ```text
//! descriptor = "MEOW" 'D' version:u8 (=1) | identity:[32] | name:string(max 64)
//!              | addresses:list<address>(max 4) | session_key:[32]
//!              | issued_at:varint | sequence:varint | expires_at:varint (Unix s)
//!              | relay:option<max_delay_ms:varint | epoch_secs:varint
//!                             | keys:list<epoch:varint | key:[32]>(max 8)>
//!              | signature:[64]
//! signature  = Ed25519(identity, "meow/v1/server-descriptor" 0x00 | every byte before it)
//! ```
//!
//! A descriptor is unusable ([`UncheckedDescriptor`]) until its signature, its times and its
//! relay keys are checked. The catalog keeps one descriptor per identity, the one with the
//! highest sequence number, and forgets it when it expires; a server that stops re-issuing its
//! descriptor drops out of every catalog within a descriptor's lifetime.
//!
//! ```
//! use meow_proto::catalog::{Catalog, Offer, ServerDescriptor, DescriptorBody};
//! use meow_proto::{ServerIdentity, ServerKey};
//!
//! let mut rng = meow_proto::os_rng();
//! let identity = ServerIdentity::generate(&mut rng);
//! let body = DescriptorBody {
//!     name: "home".into(),
//!     addresses: vec!["192.0.2.7:7070".parse()?],
//!     session_key: ServerKey::generate(&mut rng).public(),
//!     issued_at: 1_000,
//!     sequence: 1,
//!     expires_at: 1_000 + 3 * 3600,
//!     relay: None,
//! };
//! let d = ServerDescriptor::sign(&identity, body);
//! let mut catalog = Catalog::new(512);
//! let unchecked = meow_proto::catalog::UncheckedDescriptor::from_bytes(&d.to_bytes())?;
//! assert_eq!(catalog.offer(unchecked, 1_000), Offer::Added);
//! assert_eq!(catalog.len(), 1);
//! catalog.expire(1_000 + 3 * 3600);
//! assert!(catalog.is_empty());
//! # use meow_proto::codec::{Decode, Encode};
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;

use crate::address::Address;
use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::crypto::{CryptoRng, Domain, SIGNATURE_LEN, random_below};
use crate::keys::{RelayPublic, ServerIdentity, ServerIdentityPublic, ServerPublic, Signature};

const MAGIC: &[u8; 5] = b"MEOWD";
const VERSION: u8 = 1;
/// Longest server name.
pub const MAX_NAME: usize = 64;
/// Most addresses in a descriptor.
pub const MAX_ADDRESSES: usize = 4;
/// Most relay keys in a descriptor.
pub const MAX_RELAY_KEYS: usize = 8;
/// Longest lifetime a descriptor may claim: a week.
pub const MAX_LIFETIME_SECS: u64 = 7 * 86_400;
/// How far in the future a descriptor may be issued (clocks differ).
pub const CLOCK_SKEW_SECS: u64 = 600;
/// Shortest relay key epoch.
pub const MIN_EPOCH_SECS: u32 = 60;
/// Most descriptors in one catalog answer.
pub const MAX_CATALOG_ANSWER: usize = 256;

/// Why a descriptor is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DescriptorError {
    /// The signature does not verify under the identity it names.
    #[error("server descriptor signature does not verify")]
    BadSignature,
    /// It expired, or lives longer than allowed.
    #[error("server descriptor expired or with an impossible lifetime")]
    Expired,
    /// It is issued in the future (beyond the clock skew allowed).
    #[error("server descriptor issued in the future")]
    FromTheFuture,
    /// Its relay keys are out of order, duplicated, or the epoch length is too short.
    #[error("server descriptor relay keys are not in increasing epochs, or epochs are shorter than {MIN_EPOCH_SECS} s")]
    BadRelayKeys,
    /// It has no address to reach the server on.
    #[error("server descriptor has no address")]
    NoAddress,
}

/// What a server offers as a relay: its bounds and its keys, one per epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayInfo {
    /// The longest delay it holds a packet for; longer requests are cut to it.
    pub max_delay_ms: u32,
    /// The length of a key epoch: epoch `n` runs from `n * epoch_secs` to `(n + 1) * epoch_secs`.
    pub epoch_secs: u32,
    /// Its relay keys by epoch, increasing.
    pub keys: Vec<(u64, RelayPublic)>,
}

impl RelayInfo {
    /// The epoch a moment (Unix ms) is in.
    pub fn epoch_at(&self, at_ms: u64) -> u64 {
        at_ms / 1000 / u64::from(self.epoch_secs.max(1))
    }

    /// The relay key for a packet reaching the relay at `at_ms`, if the descriptor lists it.
    pub fn key_at(&self, at_ms: u64) -> Option<RelayPublic> {
        let epoch = self.epoch_at(at_ms);
        self.keys.iter().find(|(e, _)| *e == epoch).map(|(_, k)| *k)
    }
}

/// Everything a descriptor says, before its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorBody {
    /// The server's name (not unique: people compare keys).
    pub name: String,
    /// Where it is reached, most preferred first.
    pub addresses: Vec<Address>,
    /// Its session key (the key on its server card).
    pub session_key: ServerPublic,
    /// When it was issued, Unix s.
    pub issued_at: u64,
    /// Grows with each new descriptor of the same server; the catalog keeps the highest.
    pub sequence: u64,
    /// When it stops being valid, Unix s.
    pub expires_at: u64,
    /// Its relay service, if it relays Matriochka packets.
    pub relay: Option<RelayInfo>,
}

impl DescriptorBody {
    fn encode_signed(&self, identity: &ServerIdentityPublic, w: &mut Writer) {
        w.raw(MAGIC).u8(VERSION);
        identity.encode(w);
        w.string(&self.name);
        w.list(&self.addresses, |w, a| a.encode(w));
        self.session_key.encode(w);
        w.varint(self.issued_at).varint(self.sequence).varint(self.expires_at);
        w.option(self.relay.as_ref(), |w, r| {
            w.varint(r.max_delay_ms.into()).varint(r.epoch_secs.into());
            w.list(&r.keys, |w, (epoch, key)| {
                w.varint(*epoch);
                key.encode(w);
            });
        });
    }
}

/// A checked descriptor: its signature verified, valid at the time it was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerDescriptor {
    /// The key that signed it: the server's identity in catalogs.
    pub identity: ServerIdentityPublic,
    /// What it says.
    pub body: DescriptorBody,
    signature: Signature,
}

impl ServerDescriptor {
    /// Signs a descriptor.
    pub fn sign(identity: &ServerIdentity, body: DescriptorBody) -> Self {
        let public = identity.public();
        let mut w = Writer::new();
        body.encode_signed(&public, &mut w);
        let signature = identity.sign(Domain::SERVER_DESCRIPTOR, &[w.as_slice()]);
        Self {
            identity: public,
            body,
            signature,
        }
    }

    /// Whether it is still valid at `now` (Unix s).
    pub fn is_current(&self, now: u64) -> bool {
        now < self.body.expires_at
    }

    /// Whether it offers relaying.
    pub fn relays(&self) -> bool {
        self.body.relay.is_some()
    }
}

impl Encode for ServerDescriptor {
    fn encode(&self, w: &mut Writer) {
        self.body.encode_signed(&self.identity, w);
        w.raw(&self.signature);
    }
}

/// A descriptor as read from the wire: nothing in it may be used before [`check`](Self::check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UncheckedDescriptor(ServerDescriptor);

impl From<ServerDescriptor> for UncheckedDescriptor {
    fn from(d: ServerDescriptor) -> Self {
        Self(d)
    }
}

impl UncheckedDescriptor {
    /// Checks the signature, the times at `now` (Unix s) and the relay keys.
    pub fn check(self, now: u64) -> Result<ServerDescriptor, DescriptorError> {
        let d = self.0;
        let mut w = Writer::new();
        d.body.encode_signed(&d.identity, &mut w);
        d.identity
            .verify(Domain::SERVER_DESCRIPTOR, &[w.as_slice()], &d.signature)
            .map_err(|_| DescriptorError::BadSignature)?;
        let b = &d.body;
        if b.issued_at > now + CLOCK_SKEW_SECS {
            return Err(DescriptorError::FromTheFuture);
        }
        if now >= b.expires_at || b.expires_at <= b.issued_at || b.expires_at - b.issued_at > MAX_LIFETIME_SECS {
            return Err(DescriptorError::Expired);
        }
        if b.addresses.is_empty() {
            return Err(DescriptorError::NoAddress);
        }
        if let Some(r) = &b.relay {
            let increasing = r.keys.windows(2).all(|w| w[0].0 < w[1].0);
            if !increasing || r.keys.is_empty() || r.epoch_secs < MIN_EPOCH_SECS {
                return Err(DescriptorError::BadRelayKeys);
            }
        }
        Ok(d)
    }

    /// The identity it claims (unverified: for rate limits and logs only).
    pub fn claimed_identity(&self) -> &ServerIdentityPublic {
        &self.0.identity
    }
}

impl Encode for UncheckedDescriptor {
    fn encode(&self, w: &mut Writer) {
        self.0.encode(w);
    }
}

impl Decode for UncheckedDescriptor {
    const WHAT: &'static str = "server descriptor";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if r.take(MAGIC.len(), "descriptor magic")? != MAGIC {
            return Err(DecodeError::BadMagic { what: Self::WHAT });
        }
        let version = r.u8("descriptor version")?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: Self::WHAT,
                version,
            });
        }
        let identity = ServerIdentityPublic::decode(r)?;
        let body = DescriptorBody {
            name: r.string(MAX_NAME, "server name")?.to_owned(),
            addresses: r.list(MAX_ADDRESSES, "server addresses", Address::decode)?,
            session_key: ServerPublic::decode(r)?,
            issued_at: r.varint("issued at")?,
            sequence: r.varint("sequence")?,
            expires_at: r.varint("expires at")?,
            relay: r.option("relay", |r| {
                Ok(RelayInfo {
                    max_delay_ms: r.varint_max(u32::MAX.into(), "max delay")? as u32,
                    epoch_secs: r.varint_max(u32::MAX.into(), "epoch length")? as u32,
                    keys: r.list(MAX_RELAY_KEYS, "relay keys", |r| {
                        Ok((r.varint("epoch")?, RelayPublic::decode(r)?))
                    })?,
                })
            })?,
        };
        let signature = r.array::<SIGNATURE_LEN>("descriptor signature")?;
        Ok(Self(ServerDescriptor {
            identity,
            body,
            signature,
        }))
    }
}

/// What became of a descriptor offered to a catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// A server the catalog did not know.
    Added,
    /// A newer descriptor of a known server.
    Updated,
    /// The catalog already has this one or a newer one.
    Stale,
    /// The catalog is full of servers that are still current.
    Full,
    /// It does not check out.
    Refused(DescriptorError),
}

/// The servers one party knows, one current descriptor per identity.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    entries: BTreeMap<ServerIdentityPublic, ServerDescriptor>,
    max: usize,
}

impl Catalog {
    /// An empty catalog holding at most `max` servers.
    pub fn new(max: usize) -> Self {
        Self {
            entries: BTreeMap::new(),
            max,
        }
    }

    /// Checks a descriptor at `now` and keeps it if it is new or newer than the one known. A
    /// full catalog first drops what expired, then refuses new identities.
    pub fn offer(&mut self, d: UncheckedDescriptor, now: u64) -> Offer {
        let d = match d.check(now) {
            Ok(d) => d,
            Err(e) => return Offer::Refused(e),
        };
        match self.entries.get(&d.identity) {
            Some(known) if known.body.sequence >= d.body.sequence => return Offer::Stale,
            Some(_) => {
                self.entries.insert(d.identity, d);
                return Offer::Updated;
            }
            None => {}
        }
        if self.entries.len() >= self.max {
            self.expire(now);
            if self.entries.len() >= self.max {
                return Offer::Full;
            }
        }
        self.entries.insert(d.identity, d);
        Offer::Added
    }

    /// Drops what expired at `now`; returns the identities dropped.
    pub fn expire(&mut self, now: u64) -> Vec<ServerIdentityPublic> {
        let gone: Vec<_> = self
            .entries
            .values()
            .filter(|d| !d.is_current(now))
            .map(|d| d.identity)
            .collect();
        for id in &gone {
            self.entries.remove(id);
        }
        gone
    }

    /// Every descriptor, by identity.
    pub fn descriptors(&self) -> impl Iterator<Item = &ServerDescriptor> {
        self.entries.values()
    }

    /// The descriptor of a server, by identity.
    pub fn get(&self, identity: &ServerIdentityPublic) -> Option<&ServerDescriptor> {
        self.entries.get(identity)
    }

    /// The descriptor whose session key is `key` (the key of a server card).
    pub fn by_session_key(&self, key: &ServerPublic) -> Option<&ServerDescriptor> {
        self.entries.values().find(|d| d.body.session_key == *key)
    }

    /// How many servers it knows.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it knows none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A server to gossip with, at random among those other than `me`.
    pub fn pick_peer(&self, me: &ServerIdentityPublic, rng: &mut impl CryptoRng) -> Option<&ServerDescriptor> {
        let others: Vec<&ServerDescriptor> = self.entries.values().filter(|d| d.identity != *me).collect();
        (!others.is_empty()).then(|| others[random_below(others.len(), rng)])
    }
}

#[cfg(test)]
mod tests;
