//! The in-band move of a conversation from version 1 (HPKE and Ed25519 per message) to version 2
//! (the Double Ratchet, [`crate::ratchet`]), negotiated inside the conversation: no new card
//! exchange, and an old peer that does not know version 2 is never sent it.
//!
//! ```text
//! A (offers)                                    B (accepts)
//!   control v1: Offer { ratchet a, X-Wing pk } ->
//!                                               <- control v1: Accept { a, ratchet b, X-Wing enc }
//!                                                  B opens v2 from now on, still sends v1
//!   A starts its ratchet, sends v2 only  ------->  B's first v2 message from A: B sends v2 only
//! ```
//!
//! Both steps ride in [`crate::envelope::ContentType::CONTROL`] messages, whose content a
//! version-1 node ignores. The start secret mixes the X25519 agreement of the two ratchet keys
//! with the X-Wing (X25519 + ML-KEM-768) shared secret, so a recording of the exchange stays
//! closed to an adversary who later breaks X25519 alone. `--classic` offers (no X-Wing, for links
//! where 2.3 KB of keys do not fit) start with the X25519 agreement only.
//!
//! ```
//! use meow_proto::codec::{Decode, Encode};
//! use meow_proto::upgrade::UpgradeMessage;
//!
//! let offer = UpgradeMessage::Offer { ratchet: [7; 32], pq: None };
//! assert_eq!(UpgradeMessage::from_bytes(&offer.to_bytes())?, offer);
//! assert!(UpgradeMessage::from_bytes(b"").is_err(), "an empty control is not an upgrade step");
//! # Ok::<(), meow_proto::codec::DecodeError>(())
//! ```

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::crypto::{self, CryptoError, DhSecret, PQ_ENC_LEN, PQ_PUBLIC_LEN, PUBLIC_KEY_LEN, PqSecret, SecretKey};
use crate::keys::ContactPublic;
use crate::ratchet::{Ratchet, RatchetError};

const KIND_OFFER: u8 = 1;
const KIND_ACCEPT: u8 = 2;
const PQ_INFO: &[u8] = b"meow/v2/upgrade";
const START_LABEL: &[u8] = b"meow/v2/start";

/// One step of the upgrade, carried as the content of a control message.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpgradeMessage {
    /// "I speak version 2": my first ratchet key and, unless classic, my X-Wing public key.
    Offer {
        /// The offerer's first ratchet public key.
        ratchet: [u8; PUBLIC_KEY_LEN],
        /// The offerer's X-Wing public key ([`PQ_PUBLIC_LEN`] bytes), absent for a classic start.
        pq: Option<Vec<u8>>,
    },
    /// "So do I": which offer, my first ratchet key and the X-Wing encapsulation to the offer.
    Accept {
        /// The ratchet key of the offer accepted.
        offer: [u8; PUBLIC_KEY_LEN],
        /// The accepter's first ratchet public key.
        ratchet: [u8; PUBLIC_KEY_LEN],
        /// The encapsulation ([`PQ_ENC_LEN`] bytes), present exactly when the offer had a key.
        pq: Option<Vec<u8>>,
    },
}

impl core::fmt::Debug for UpgradeMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Offer { pq, .. } => write!(f, "Offer(post-quantum: {})", pq.is_some()),
            Self::Accept { pq, .. } => write!(f, "Accept(post-quantum: {})", pq.is_some()),
        }
    }
}

impl Encode for UpgradeMessage {
    fn encode(&self, w: &mut Writer) {
        match self {
            Self::Offer { ratchet, pq } => {
                w.u8(KIND_OFFER).raw(ratchet);
                w.option(pq.as_ref(), |w, k| {
                    w.raw(k);
                });
            }
            Self::Accept { offer, ratchet, pq } => {
                w.u8(KIND_ACCEPT).raw(offer).raw(ratchet);
                w.option(pq.as_ref(), |w, e| {
                    w.raw(e);
                });
            }
        }
    }
}

impl Decode for UpgradeMessage {
    const WHAT: &'static str = "upgrade step";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("upgrade step kind")? {
            KIND_OFFER => Ok(Self::Offer {
                ratchet: r.array("offered ratchet key")?,
                pq: r.option("X-Wing public key", |r| {
                    Ok(r.array::<PQ_PUBLIC_LEN>("X-Wing public key")?.to_vec())
                })?,
            }),
            KIND_ACCEPT => Ok(Self::Accept {
                offer: r.array("accepted offer")?,
                ratchet: r.array("accepting ratchet key")?,
                pq: r.option("X-Wing encapsulation", |r| {
                    Ok(r.array::<PQ_ENC_LEN>("X-Wing encapsulation")?.to_vec())
                })?,
            }),
            kind => Err(DecodeError::UnknownValue {
                what: "upgrade step kind",
                value: kind.into(),
            }),
        }
    }
}

/// My side of an offer I made: the secrets its public parts came from. Zeroized on drop.
#[derive(Debug, Clone)]
pub struct OfferSecrets {
    /// My first ratchet key.
    pub ratchet: DhSecret,
    /// My X-Wing key, unless the offer is classic.
    pub pq: Option<PqSecret>,
}

impl OfferSecrets {
    /// New secrets; `post_quantum` adds an X-Wing key.
    pub fn generate(post_quantum: bool, rng: &mut impl crypto::CryptoRng) -> Self {
        Self {
            ratchet: DhSecret::generate(rng),
            pq: post_quantum.then(|| PqSecret::generate(rng)),
        }
    }

    /// The offer to send.
    pub fn offer(&self) -> Result<UpgradeMessage, CryptoError> {
        Ok(UpgradeMessage::Offer {
            ratchet: self.ratchet.public(),
            pq: self.pq.as_ref().map(PqSecret::public).transpose()?,
        })
    }
}

/// Why an upgrade step could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// A ratchet or X-Wing key in the step is not usable.
    #[error("the contact's upgrade step carries an unusable key")]
    BadKey,
    /// An accept for an offer I did not make (or no longer hold), or whose post-quantum part
    /// does not match the offer.
    #[error("the contact accepted an offer I did not make")]
    NotMyOffer,
}

impl From<CryptoError> for UpgradeError {
    fn from(_: CryptoError) -> Self {
        UpgradeError::BadKey
    }
}

impl From<RatchetError> for UpgradeError {
    fn from(_: RatchetError) -> Self {
        UpgradeError::BadKey
    }
}

/// The start secret: HKDF-SHA256 over the X25519 agreement and the X-Wing secret (when there is
/// one), bound to both contacts and every public value of the exchange.
fn start_secret(
    dh: &SecretKey,
    pq: Option<&SecretKey>,
    offerer: &ContactPublic,
    accepter: &ContactPublic,
    step: &UpgradeMessage,
) -> SecretKey {
    let mut ikm = zeroize::Zeroizing::new(Vec::with_capacity(64));
    ikm.extend_from_slice(dh.as_bytes());
    if let Some(pq) = pq {
        ikm.extend_from_slice(pq.as_bytes());
    }
    let transcript = crypto::sha256(&[START_LABEL, offerer.as_bytes(), accepter.as_bytes(), &step.to_bytes()]);
    let mut out = [0u8; 32];
    crypto::hkdf_sha256(Some(START_LABEL), &ikm, &transcript, &mut out);
    SecretKey::from_bytes(out)
}

/// The accepter's side: from the peer's offer, my ratchet (I may send first) and the accept.
pub fn accept(
    offer: &UpgradeMessage,
    offerer: &ContactPublic,
    me: &ContactPublic,
    rng: &mut impl crypto::CryptoRng,
) -> Result<(Ratchet, UpgradeMessage), UpgradeError> {
    let UpgradeMessage::Offer { ratchet: a_pub, pq } = offer else {
        return Err(UpgradeError::NotMyOffer);
    };
    let own = DhSecret::generate(rng);
    let dh = own.agree(a_pub)?;
    let (enc, pq_secret) = match pq {
        Some(pk) => {
            let (enc, secret) = crypto::pq_encapsulate(pk, PQ_INFO, START_LABEL, rng)?;
            (Some(enc), Some(secret))
        }
        None => (None, None),
    };
    let step = UpgradeMessage::Accept {
        offer: *a_pub,
        ratchet: own.public(),
        pq: enc,
    };
    let root = start_secret(&dh, pq_secret.as_ref(), offerer, me, &step);
    Ok((Ratchet::start_first(&root, own, *a_pub)?, step))
}

/// The offerer's side: from my offer's secrets and the peer's accept, my ratchet.
pub fn complete(
    mine: OfferSecrets,
    accept: &UpgradeMessage,
    me: &ContactPublic,
    accepter: &ContactPublic,
    rng: &mut impl crypto::CryptoRng,
) -> Result<Ratchet, UpgradeError> {
    let UpgradeMessage::Accept {
        offer,
        ratchet: b_pub,
        pq,
    } = accept
    else {
        return Err(UpgradeError::NotMyOffer);
    };
    if *offer != mine.ratchet.public() || pq.is_some() != mine.pq.is_some() {
        return Err(UpgradeError::NotMyOffer);
    }
    let dh = mine.ratchet.agree(b_pub)?;
    let pq_secret = match (&mine.pq, pq) {
        (Some(secret), Some(enc)) => Some(crypto::pq_decapsulate(secret, enc, PQ_INFO, START_LABEL)?),
        _ => None,
    };
    let root = start_secret(&dh, pq_secret.as_ref(), me, accepter, accept);
    Ok(Ratchet::start_second(&root, mine.ratchet, *b_pub, rng)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::keys::ContactKey;
    use crate::testing::TestRng;

    fn contacts(rng: &mut TestRng) -> (ContactPublic, ContactPublic) {
        (ContactKey::generate(rng).public(), ContactKey::generate(rng).public())
    }

    #[test]
    fn both_sides_reach_the_same_ratchet_with_and_without_x_wing() {
        for pq in [true, false] {
            let mut rng = TestRng::new(u64::from(pq));
            let (a, b) = contacts(&mut rng);
            let mine = OfferSecrets::generate(pq, &mut rng);
            let offer = UpgradeMessage::from_bytes(&mine.offer().unwrap().to_bytes()).unwrap();
            let (mut bob, acc) = accept(&offer, &a, &b, &mut rng).unwrap();
            let acc = UpgradeMessage::from_bytes(&acc.to_bytes()).unwrap();
            let mut alice = complete(mine, &acc, &a, &b, &mut rng).unwrap();
            let m = bob.seal(b"ad", b"first", &mut rng).unwrap();
            assert_eq!(alice.open(b"ad", &m, &mut rng).unwrap().as_slice(), b"first");
            let m = alice.seal(b"ad", b"second", &mut rng).unwrap();
            assert_eq!(bob.open(b"ad", &m, &mut rng).unwrap().as_slice(), b"second");
        }
    }

    #[test]
    fn a_changed_accept_gives_no_common_secret() {
        let mut rng = TestRng::new(3);
        let (a, b) = contacts(&mut rng);
        let mine = OfferSecrets::generate(true, &mut rng);
        let (mut bob, acc) = accept(&mine.offer().unwrap(), &a, &b, &mut rng).unwrap();
        let UpgradeMessage::Accept { offer, ratchet, pq } = acc else {
            panic!()
        };
        let mut enc = pq.unwrap();
        enc[5] ^= 1;
        let changed = UpgradeMessage::Accept {
            offer,
            ratchet,
            pq: Some(enc),
        };
        // X-Wing decapsulation never fails (implicit rejection): the secrets differ instead.
        let mut alice = complete(mine.clone(), &changed, &a, &b, &mut rng).unwrap();
        let m = bob.seal(b"ad", b"x", &mut rng).unwrap();
        assert!(alice.open(b"ad", &m, &mut rng).is_err());
        // An accept that drops the post-quantum part is refused outright (no silent downgrade).
        let classic = UpgradeMessage::Accept {
            offer,
            ratchet,
            pq: None,
        };
        assert_eq!(
            complete(mine, &classic, &a, &b, &mut rng).err(),
            Some(UpgradeError::NotMyOffer)
        );
    }

    #[test]
    fn an_accept_of_another_offer_is_refused() {
        let mut rng = TestRng::new(4);
        let (a, b) = contacts(&mut rng);
        let old = OfferSecrets::generate(false, &mut rng);
        let new = OfferSecrets::generate(false, &mut rng);
        let (_, acc) = accept(&old.offer().unwrap(), &a, &b, &mut rng).unwrap();
        assert_eq!(
            complete(new, &acc, &a, &b, &mut rng).err(),
            Some(UpgradeError::NotMyOffer)
        );
    }

    #[test]
    fn malformed_steps_are_refused() {
        for bad in [&[][..], &[9][..], &[1, 0][..], &[2; 70][..]] {
            assert!(UpgradeMessage::from_bytes(bad).is_err(), "{bad:?}");
        }
        let offer = UpgradeMessage::Offer {
            ratchet: [1; 32],
            pq: Some(vec![0; PQ_PUBLIC_LEN]),
        };
        let bytes = offer.to_bytes();
        assert_eq!(bytes.len(), 1 + 32 + 1 + PQ_PUBLIC_LEN);
        assert!(UpgradeMessage::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }
}
