//! Matriochka packets (spec §1.2.2, §4.3): a message wrapped in one layer per relay, so that
//! each relay learns only the hop before it and the hop after it.
//!
//! The construction is Sphinx in the form BOLT #4 specifies for the Lightning onion
//! ([`sphinx`]), on X25519 instead of secp256k1, with MEOW's envelopes as the last hop's
//! payload:
//!
//! ```text
//! packet      = version:u8 (=1) | class:u8 | ephemeral:[32] | routing:[field_len(class)] | hmac:[32]
//! field_len   = the class's envelope size + 768 (room for up to 5 hops' instructions)
//! associated  = "meow/v1/onion" | version | class       (bound into every hop's HMAC)
//! instruction = 1 forward: next:[32] (the next server's session key) | address (§4) | delay_ms:varint
//!             | 2 deliver: delay_ms:varint | target:option<(key:[32] | address)> | mailbox:[16] | envelope:bytes
//! ```
//!
//! A packet is the same size at every hop (the class fixes it), so a relay cannot tell where on
//! the route it is; every byte is under the hop's MAC, so a changed packet dies at the next honest
//! relay; each relay opens a packet with its relay key of the current epoch ([`crate::RelayKey`]),
//! and remembers the packet's [`ReplayTag`] for as long as that key lives, so a packet sent again
//! is dropped. `deliver` with no target deposits into the relay's own store (the relay is the
//! recipient's message server); with a target, the relay deposits on that server.
//!
//! ```
//! use meow_proto::onion::{self, Instruction, RouteHop};
//! use meow_proto::{Address, MailboxId, RelayKey, ServerKey};
//!
//! let mut rng = meow_proto::os_rng();
//! let (r1, r2) = (RelayKey::generate(&mut rng), RelayKey::generate(&mut rng));
//! let r2_server = ServerKey::generate(&mut rng).public();
//! let route = [
//!     RouteHop {
//!         relay: r1.public(),
//!         instruction: Instruction::Forward { next: r2_server, address: "192.0.2.9:7070".parse()?, delay_ms: 40 },
//!     },
//!     RouteHop {
//!         relay: r2.public(),
//!         instruction: Instruction::Deliver { delay_ms: 0, target: None, mailbox: MailboxId([7; 16]), envelope: vec![0; 176] },
//!     },
//! ];
//! let packet = onion::wrap(&route, &mut rng)?;
//! let at_r1 = onion::peel(&packet, &r1)?;
//! assert!(matches!(at_r1.instruction, Instruction::Forward { delay_ms: 40, .. }));
//! let next = at_r1.next.expect("r1 forwards");
//! assert_eq!(next.as_bytes().len(), packet.as_bytes().len(), "the same size at every hop");
//! let at_r2 = onion::peel(&next, &r2)?;
//! assert!(matches!(at_r2.instruction, Instruction::Deliver { .. }) && at_r2.next.is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod sphinx;

use zeroize::Zeroizing;

use crate::address::Address;
use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::crypto::onion::{MAC_LEN, X25519Group};
use crate::crypto::{self, CryptoRng};
use crate::keys::{MailboxId, RelayKey, RelayPublic, ServerPublic};
use crate::padding::{MAX_ENVELOPE, SIZE_CLASSES, class_for};

pub use sphinx::SphinxError;

/// The packet format's version.
pub const VERSION: u8 = 1;
/// Most relays on a route.
pub const MAX_HOPS: usize = 5;
/// Bytes of the routing field beyond the envelope: the instructions of up to [`MAX_HOPS`] hops.
pub const ROUTING_SPACE: usize = 768;
/// Longest address in an instruction (a longer one could crowd out a 5-hop route).
pub const MAX_HOP_ADDRESS: usize = 64;
/// Bytes before the routing field: version, class, ephemeral key.
const HEAD: usize = 2 + 32;

const INSTR_FORWARD: u8 = 1;
const INSTR_DELIVER: u8 = 2;

/// Why an onion could not be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OnionError {
    /// A route has no hop, or more than [`MAX_HOPS`].
    #[error("a route has 1 to {MAX_HOPS} relays, not {0}")]
    RouteLength(usize),
    /// Only the last hop delivers, and the last hop must.
    #[error("only the last hop of a route delivers, and it must")]
    RouteShape,
    /// The envelope is larger than the largest class.
    #[error("an envelope of {0} bytes is larger than the largest class ({MAX_ENVELOPE})")]
    TooLarge(usize),
    /// An address is too long for an onion instruction.
    #[error("address {0} is longer than {MAX_HOP_ADDRESS} bytes, too long for an onion hop")]
    LongAddress(String),
    /// The packet is not an onion packet of a known version and class size.
    #[error("not a Matriochka packet: {0}")]
    Packet(&'static str),
    /// The Sphinx layer failed (for peeling: not for this relay key, or changed on the way).
    #[error(transparent)]
    Sphinx(#[from] SphinxError),
    /// The instruction inside is malformed (the sender is broken or hostile).
    #[error("bad instruction in the onion: {0}")]
    Instruction(#[from] DecodeError),
}

/// What a relay is told to do with a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// Hold the packet `delay_ms`, then hand the inner packet to the next server.
    Forward {
        /// The next server's session key (its card's key): the connection to it proves it.
        next: ServerPublic,
        /// Where it is reached.
        address: Address,
        /// How long to hold the packet first.
        delay_ms: u32,
    },
    /// Hold it `delay_ms`, then deposit the envelope into `mailbox`: here, or on `target`.
    Deliver {
        /// How long to hold it first.
        delay_ms: u32,
        /// The server to deposit on; `None`: this relay's own store.
        target: Option<(ServerPublic, Address)>,
        /// The recipient's mailbox.
        mailbox: MailboxId,
        /// The envelope, as a plain deposit would carry it.
        envelope: Vec<u8>,
    },
}

impl Instruction {
    /// How long the relay holds the packet.
    pub fn delay_ms(&self) -> u32 {
        match self {
            Instruction::Forward { delay_ms, .. } | Instruction::Deliver { delay_ms, .. } => *delay_ms,
        }
    }
}

fn check_address(a: &Address) -> Result<(), OnionError> {
    let mut w = Writer::new();
    a.encode(&mut w);
    if w.len() > MAX_HOP_ADDRESS + 2 {
        return Err(OnionError::LongAddress(a.to_string()));
    }
    Ok(())
}

impl Encode for Instruction {
    fn encode(&self, w: &mut Writer) {
        match self {
            Instruction::Forward {
                next,
                address,
                delay_ms,
            } => {
                w.u8(INSTR_FORWARD);
                next.encode(w);
                address.encode(w);
                w.varint((*delay_ms).into());
            }
            Instruction::Deliver {
                delay_ms,
                target,
                mailbox,
                envelope,
            } => {
                w.u8(INSTR_DELIVER).varint((*delay_ms).into());
                w.option(target.as_ref(), |w, (key, address)| {
                    key.encode(w);
                    address.encode(w);
                });
                mailbox.encode(w);
                w.bytes(envelope);
            }
        }
    }
}

fn hop_address(r: &mut Reader<'_>) -> Result<Address, DecodeError> {
    let a = Address::decode(r)?;
    check_address(&a).map_err(|_| DecodeError::Invalid {
        what: "onion hop address",
        reason: "longer than 64 bytes",
    })?;
    Ok(a)
}

impl Decode for Instruction {
    const WHAT: &'static str = "onion instruction";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let delay = |r: &mut Reader<'_>| Ok::<_, DecodeError>(r.varint_max(u32::MAX.into(), "onion delay")? as u32);
        Ok(match r.u8("onion instruction")? {
            INSTR_FORWARD => Instruction::Forward {
                next: ServerPublic::decode(r)?,
                address: hop_address(r)?,
                delay_ms: delay(r)?,
            },
            INSTR_DELIVER => Instruction::Deliver {
                delay_ms: delay(r)?,
                target: r.option("onion target", |r| Ok((ServerPublic::decode(r)?, hop_address(r)?)))?,
                mailbox: MailboxId::decode(r)?,
                envelope: r.bytes(MAX_ENVELOPE, "onion envelope")?.to_vec(),
            },
            value => {
                return Err(DecodeError::UnknownValue {
                    what: "onion instruction",
                    value: value.into(),
                });
            }
        })
    }
}

/// The length of the routing field of a packet of a class (an index into [`SIZE_CLASSES`]).
pub fn field_len(class: u8) -> Option<usize> {
    SIZE_CLASSES.get(usize::from(class)).map(|e| e + ROUTING_SPACE)
}

/// The length of a packet of a class.
pub fn packet_len(class: u8) -> Option<usize> {
    field_len(class).map(|f| HEAD + f + MAC_LEN)
}

/// Whether `len` is the length of an onion packet of some class.
pub fn is_packet_len(len: usize) -> bool {
    (0..SIZE_CLASSES.len() as u8).any(|c| packet_len(c) == Some(len))
}

fn associated(class: u8) -> [u8; 15] {
    let mut ad = [0u8; 15];
    ad[..13].copy_from_slice(b"meow/v1/onion");
    ad[13] = VERSION;
    ad[14] = class;
    ad
}

/// An onion packet of a known version and class: a whole number of bytes, always the same for
/// its class.
#[derive(Clone, PartialEq, Eq)]
pub struct OnionPacket {
    bytes: Vec<u8>,
}

impl std::fmt::Debug for OnionPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OnionPacket(class {}, {} bytes)", self.class(), self.bytes.len())
    }
}

impl OnionPacket {
    /// Reads a packet: the version, a class, and exactly the class's length.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, OnionError> {
        match bytes.first() {
            None => return Err(OnionError::Packet("empty")),
            Some(&v) if v != VERSION => return Err(OnionError::Packet("unknown version")),
            Some(_) => {}
        }
        let class = *bytes.get(1).ok_or(OnionError::Packet("truncated"))?;
        let len = packet_len(class).ok_or(OnionError::Packet("unknown size class"))?;
        if bytes.len() != len {
            return Err(OnionError::Packet("not the length of its class"));
        }
        Ok(Self { bytes })
    }

    /// The bytes on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes on the wire.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The size class (0 for the smallest envelopes).
    pub fn class(&self) -> u8 {
        self.bytes[1]
    }

    fn onion(&self) -> sphinx::Onion {
        let end = self.bytes.len() - MAC_LEN;
        let mut hmac = [0u8; MAC_LEN];
        hmac.copy_from_slice(&self.bytes[end..]);
        sphinx::Onion {
            point: self.bytes[2..HEAD].to_vec(),
            field: self.bytes[HEAD..end].to_vec(),
            hmac,
        }
    }

    fn from_onion(class: u8, o: &sphinx::Onion) -> Self {
        let mut bytes = Vec::with_capacity(HEAD + o.field.len() + MAC_LEN);
        bytes.extend_from_slice(&[VERSION, class]);
        bytes.extend_from_slice(&o.point);
        bytes.extend_from_slice(&o.field);
        bytes.extend_from_slice(&o.hmac);
        Self { bytes }
    }
}

/// One relay of a route and what it is told.
#[derive(Debug, Clone)]
pub struct RouteHop {
    /// The relay key of the relay's epoch in which the packet will reach it.
    pub relay: RelayPublic,
    /// What it is told to do.
    pub instruction: Instruction,
}

/// Wraps a route into a packet for its first relay; the last hop's instruction is the deliver
/// one, and its envelope's size picks the class.
pub fn wrap(route: &[RouteHop], rng: &mut impl CryptoRng) -> Result<OnionPacket, OnionError> {
    wrap_with_session(route, &Zeroizing::new(crypto::random_bytes(rng)))
}

/// [`wrap`] with a chosen session key (test vectors only: a reused session key links packets).
pub fn wrap_with_session(route: &[RouteHop], session: &[u8; 32]) -> Result<OnionPacket, OnionError> {
    if route.is_empty() || route.len() > MAX_HOPS {
        return Err(OnionError::RouteLength(route.len()));
    }
    let last = route.len() - 1;
    let mut envelope_len = 0;
    for (i, hop) in route.iter().enumerate() {
        match (&hop.instruction, i == last) {
            (Instruction::Forward { address, .. }, false) => check_address(address)?,
            (Instruction::Deliver { target, envelope, .. }, true) => {
                if let Some((_, a)) = target {
                    check_address(a)?;
                }
                envelope_len = envelope.len();
            }
            _ => return Err(OnionError::RouteShape),
        }
    }
    let size = class_for(envelope_len).ok_or(OnionError::TooLarge(envelope_len))?;
    let class = SIZE_CLASSES.iter().position(|&c| c == size).unwrap_or_default() as u8;
    let payloads: Vec<Vec<u8>> = route.iter().map(|h| h.instruction.to_bytes()).collect();
    let hops: Vec<sphinx::Hop<'_>> = route
        .iter()
        .zip(&payloads)
        .map(|(h, p)| sphinx::Hop {
            public: h.relay.as_bytes(),
            payload: p,
        })
        .collect();
    let field = field_len(class).ok_or(OnionError::Packet("unknown size class"))?;
    let onion = sphinx::construct::<X25519Group>(session, &hops, &associated(class), field)?;
    Ok(OnionPacket::from_onion(class, &onion))
}

/// A relay's memory of a packet it opened: a hash of the secret it shares with the sender, the
/// same whichever way the packet was sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplayTag(pub [u8; 16]);

/// What a relay reads in a packet.
#[derive(Debug)]
pub struct Peeled {
    /// What to do.
    pub instruction: Instruction,
    /// The packet for the next server, for a forward.
    pub next: Option<OnionPacket>,
    /// Remembered for as long as the relay key lives: a packet with the same tag is a replay.
    pub tag: ReplayTag,
}

/// Opens the layer of `packet` for the holder of `key`. A forward must carry a next packet and
/// a deliver must be the last layer: anything else is refused.
pub fn peel(packet: &OnionPacket, key: &RelayKey) -> Result<Peeled, OnionError> {
    let class = packet.class();
    let secret = key.secret_bytes();
    let peeled = sphinx::peel::<X25519Group>(&secret, &packet.onion(), &associated(class))?;
    let instruction = Instruction::from_bytes(&peeled.payload)?;
    let next = peeled.next.map(|o| OnionPacket::from_onion(class, &o));
    if matches!(instruction, Instruction::Forward { .. }) != next.is_some() {
        return Err(OnionError::Packet("the instruction and the layers disagree"));
    }
    let digest = crypto::sha256(&[b"meow/v1/onion-replay\0", peeled.shared_secret.as_slice()]);
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&digest[..16]);
    Ok(Peeled {
        instruction,
        next,
        tag: ReplayTag(tag),
    })
}

#[cfg(test)]
mod tests;
