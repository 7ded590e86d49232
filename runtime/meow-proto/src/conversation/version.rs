//! Which protocol version a conversation speaks, and the in-band upgrade from version 1 to
//! version 2 ([`crate::upgrade`]) as states:
//!
//! - [`Version::V1`]: HPKE and Ed25519 per message; nothing offered yet.
//! - [`Version::Offered`]: I offered version 2; I keep the offer's secrets until the peer accepts.
//! - [`Version::Accepted`]: I accepted the peer's offer; I open version 2 but keep sending
//!   version 1 until the peer's first version-2 message shows it has its ratchet.
//! - [`Version::V2`]: both sides have the ratchet; I send version 2 only, and once the peer has
//!   sent version 2, its version-1 envelopes written after that are refused (no downgrade).

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::crypto::{DhSecret, PqSecret};
use crate::ratchet::Ratchet;
use crate::upgrade::{OfferSecrets, UpgradeMessage};

/// The conversation's version state (see the module documentation).
#[derive(Debug, Clone)]
pub(super) enum Version {
    V1,
    Offered {
        secrets: OfferSecrets,
        at_ms: u64,
    },
    Accepted {
        ratchet: Ratchet,
        accept: UpgradeMessage,
    },
    V2 {
        ratchet: Ratchet,
        /// When (by the peer's clock) the peer's first version-2 message was written.
        peer_v2_since_ms: Option<u64>,
        post_quantum: bool,
    },
}

/// What a user sees of a conversation's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VersionStatus {
    /// Version 1, no upgrade offered.
    V1,
    /// Version 1; version 2 offered at this time (Unix ms), no answer yet. A contact whose
    /// software predates version 2 stays here: it ignores the offer.
    Offered {
        /// When the offer was last sent.
        since_ms: u64,
        /// Whether the offer carries an X-Wing key.
        post_quantum: bool,
    },
    /// The contact's offer accepted; waiting for its first version-2 message.
    Accepted,
    /// Double Ratchet: forward secrecy and post-compromise security.
    V2 {
        /// Whether the start mixed in an X-Wing secret.
        post_quantum: bool,
    },
}

impl VersionStatus {
    /// A short description for people.
    pub fn describe(&self) -> &'static str {
        match self {
            VersionStatus::V1 => "v1 (no forward secrecy)",
            VersionStatus::Offered { .. } => "v1, v2 offered (waiting for the contact)",
            VersionStatus::Accepted => "v1, v2 accepted (waiting for the contact's first v2 message)",
            VersionStatus::V2 { post_quantum: true } => "v2 (double ratchet, post-quantum start)",
            VersionStatus::V2 { post_quantum: false } => "v2 (double ratchet, classical start)",
        }
    }
}

const TAG_V1: u8 = 0;
const TAG_OFFERED: u8 = 1;
const TAG_ACCEPTED: u8 = 2;
const TAG_V2: u8 = 3;

impl Version {
    pub(super) fn status(&self) -> VersionStatus {
        match self {
            Version::V1 => VersionStatus::V1,
            Version::Offered { secrets, at_ms } => VersionStatus::Offered {
                since_ms: *at_ms,
                post_quantum: secrets.pq.is_some(),
            },
            Version::Accepted { .. } => VersionStatus::Accepted,
            Version::V2 { post_quantum, .. } => VersionStatus::V2 {
                post_quantum: *post_quantum,
            },
        }
    }

    pub(super) fn encode(&self, w: &mut Writer) {
        match self {
            Version::V1 => {
                w.u8(TAG_V1);
            }
            Version::Offered { secrets, at_ms } => {
                w.u8(TAG_OFFERED).raw(secrets.ratchet.to_bytes().as_slice());
                w.option(secrets.pq.as_ref(), |w, k| {
                    w.raw(k.to_bytes().as_slice());
                });
                w.varint(*at_ms);
            }
            Version::Accepted { ratchet, accept } => {
                w.u8(TAG_ACCEPTED);
                ratchet.encode(w);
                w.bytes(&accept.to_bytes());
            }
            Version::V2 {
                ratchet,
                peer_v2_since_ms,
                post_quantum,
            } => {
                w.u8(TAG_V2);
                ratchet.encode(w);
                w.option(peer_v2_since_ms.as_ref(), |w, t| {
                    w.varint(*t);
                });
                w.bool(*post_quantum);
            }
        }
    }

    pub(super) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("conversation version state")? {
            TAG_V1 => Ok(Version::V1),
            TAG_OFFERED => Ok(Version::Offered {
                secrets: OfferSecrets {
                    ratchet: DhSecret::from_bytes(r.array("offered ratchet secret")?),
                    pq: r.option("offered X-Wing secret", |r| {
                        Ok(PqSecret::from_bytes(r.array("offered X-Wing secret")?))
                    })?,
                },
                at_ms: r.varint("offered at")?,
            }),
            TAG_ACCEPTED => Ok(Version::Accepted {
                ratchet: Ratchet::decode(r)?,
                accept: UpgradeMessage::from_bytes(r.bytes(4096, "sent accept")?)?,
            }),
            TAG_V2 => Ok(Version::V2 {
                ratchet: Ratchet::decode(r)?,
                peer_v2_since_ms: r.option("peer sends v2 since", |r| r.varint("peer sends v2 since"))?,
                post_quantum: r.bool("post-quantum start")?,
            }),
            tag => Err(DecodeError::UnknownValue {
                what: "conversation version state",
                value: tag.into(),
            }),
        }
    }
}
