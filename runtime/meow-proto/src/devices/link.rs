//! Linking a new device (docs/DEVICES.md, "Linking a device"): a one-time link card from a
//! device the user already has, a join request from the new one sealed to the card's key and
//! bound to its secret, a short code both screens show for the person to compare, and the
//! snapshot of the sync log sealed to the new device.
//!
//! Threats answered: whoever sees the card (a photographed QR code) can send a join request, but
//! their keys give another short code than the one on the new device's screen, and the person
//! confirms only when the codes match; a request without the card's secret does not open (the
//! secret is part of the HPKE `info`, so the AEAD refuses it in constant time); a card is good
//! for minutes ([`LINK_LIFETIME_MS`]) and its key is thrown away after one use.
//!
//! ```
//! use meow_proto::crypto::DhSecret;
//! use meow_proto::devices::link::{JoinRequest, LinkCard, LinkSecret};
//! use meow_proto::DeviceKey;
//!
//! let mut rng = meow_proto::os_rng();
//! let (card, secret) = LinkCard::new("home.example:7300", 1_000, &mut rng);
//! let text = card.to_text();
//! // On the new device:
//! let card = LinkCard::from_text(&text).unwrap();
//! let phone = DeviceKey::generate(&mut rng);
//! let phone_dh = DhSecret::generate(&mut rng);
//! let ask = JoinRequest { device: phone.public(), dh: phone_dh.public(), mailbox: [7; 32], name: "phone".into() };
//! let (sealed, phone_code) = ask.seal(&card, 2_000, &mut rng).unwrap();
//! // On the device that made the card:
//! let (request, code) = JoinRequest::open(&card, &secret, &sealed, 3_000).unwrap();
//! assert_eq!(code, phone_code, "the person compares these two codes");
//! assert_eq!(request.name, "phone");
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::crypto::{self, CryptoRng, DhSecret, ENC_LEN};
use crate::keys::DevicePublic;

/// How long a link card is good for.
pub const LINK_LIFETIME_MS: u64 = 10 * 60 * 1000;
/// Longest server address in a card.
const MAX_SERVER: usize = 255;
/// Longest device name in a request.
const MAX_NAME: usize = super::MAX_NAME;
/// Version of the card and request formats.
const FORMAT: u8 = 1;
/// The text form's prefix (as a rendez-vous card's `meow:card:`).
const TEXT_PREFIX: &str = "meow:link:";

/// Why a link step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The card's time is over.
    #[error("this link card expired: make a new one with `meow device link`")]
    Expired,
    /// The request does not open with this card (another card, or not its secret).
    #[error("the join request does not belong to this link card")]
    NotForThisCard,
    /// The bytes are not a card or a request.
    #[error("{0}")]
    Malformed(#[from] DecodeError),
    /// A key could not be used.
    #[error("a key of the link is not usable")]
    BadKey,
}

/// The secret half of a link card, kept by the device that made it (zeroized on drop).
pub struct LinkSecret {
    key: DhSecret,
}

impl LinkSecret {
    /// The card's key as an envelope recipient: the join request travels to the user's server
    /// inside an ordinary envelope sealed to it (a server stores nothing but envelopes).
    pub fn envelope_key(&self) -> crate::ConversationKey {
        crate::ConversationKey::from_secret_bytes(*self.key.to_bytes())
    }
}

impl std::fmt::Debug for LinkSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSecret(<secret>)")
    }
}

/// A one-time link card: what the new device needs to ask to join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkCard {
    /// The X25519 key the join request is sealed to (made for this card only).
    pub key: [u8; 32],
    /// The secret the request proves it knows (in the HPKE `info`).
    pub secret: [u8; 32],
    /// The user's server, where the request goes.
    pub server: String,
    /// Until when it is good, Unix milliseconds.
    pub expires_ms: u64,
}

impl LinkCard {
    /// A new card at `now_ms`, and the secret to open what it brings.
    pub fn new(server: &str, now_ms: u64, rng: &mut impl CryptoRng) -> (Self, LinkSecret) {
        let key = DhSecret::generate(rng);
        let card = LinkCard {
            key: key.public(),
            secret: crypto::random_bytes(rng),
            server: server.to_owned(),
            expires_ms: now_ms.saturating_add(LINK_LIFETIME_MS),
        };
        (card, LinkSecret { key })
    }

    /// `meow:link:` and the card in base64url, as a rendez-vous card's text: one line to paste
    /// or put in a QR code.
    pub fn to_text(&self) -> String {
        format!("{TEXT_PREFIX}{}", URL_SAFE_NO_PAD.encode(self.to_bytes()))
    }

    /// Reads the text form.
    pub fn from_text(text: &str) -> Result<Self, LinkError> {
        let body = text.trim().strip_prefix(TEXT_PREFIX).ok_or(DecodeError::Invalid {
            what: "link card",
            reason: "it does not start with meow:link:",
        })?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| DecodeError::Invalid {
            what: "link card",
            reason: "not base64url",
        })?;
        Ok(Self::from_bytes(&bytes)?)
    }

    fn info(&self) -> Vec<u8> {
        let mut info = b"meow/v1/device-link\x00".to_vec();
        info.extend_from_slice(&self.secret);
        info
    }

    fn check_time(&self, now_ms: u64) -> Result<(), LinkError> {
        if now_ms > self.expires_ms {
            return Err(LinkError::Expired);
        }
        Ok(())
    }
}

impl Encode for LinkCard {
    fn encode(&self, w: &mut Writer) {
        w.u8(FORMAT)
            .raw(&self.key)
            .raw(&self.secret)
            .string(&self.server)
            .u64(self.expires_ms);
    }
}

impl Decode for LinkCard {
    const WHAT: &'static str = "link card";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version(FORMAT, "link card")?;
        Ok(Self {
            key: r.array("link key")?,
            secret: r.array("link secret")?,
            server: r.string(MAX_SERVER, "link server")?.to_owned(),
            expires_ms: r.u64("link expiry")?,
        })
    }
}

/// What the new device asks: to be added as `device`, reachable for the snapshot at `dh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// The new device's key.
    pub device: DevicePublic,
    /// The new device's X25519 key, which the snapshot is sealed to.
    pub dh: [u8; 32],
    /// The lookup key (public) of the new device's own mailbox, where the others send it
    /// what they sync.
    pub mailbox: [u8; 32],
    /// The name the person gave it.
    pub name: String,
}

/// A join request as it travels: HPKE-sealed to the card's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedJoin {
    enc: [u8; ENC_LEN],
    ciphertext: Vec<u8>,
}

/// Six digits both devices show; the person confirms only if they are the same.
pub type ShortCode = String;

impl JoinRequest {
    /// Seals this request to `card` at `now_ms`; returns it and the short code to show.
    pub fn seal(
        &self,
        card: &LinkCard,
        now_ms: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<(SealedJoin, ShortCode), LinkError> {
        card.check_time(now_ms)?;
        let mut w = Writer::new();
        w.u8(FORMAT)
            .raw(self.device.as_bytes())
            .raw(&self.dh)
            .raw(&self.mailbox);
        w.string(&self.name);
        let (enc, ciphertext) =
            crypto::hpke_seal(&card.key, &card.info(), &[], &w.into_bytes(), rng).map_err(|_| LinkError::BadKey)?;
        Ok((SealedJoin { enc, ciphertext }, self.short_code(card)))
    }

    /// Opens a request with the card's secret at `now_ms`; returns it and the short code to
    /// show.
    pub fn open(
        card: &LinkCard,
        secret: &LinkSecret,
        sealed: &SealedJoin,
        now_ms: u64,
    ) -> Result<(JoinRequest, ShortCode), LinkError> {
        card.check_time(now_ms)?;
        let plain = crypto::hpke_open(&secret.key, &sealed.enc, &card.info(), &[], &sealed.ciphertext)
            .map_err(|_| LinkError::NotForThisCard)?;
        let mut r = Reader::new(&plain);
        r.version(FORMAT, "join request")?;
        let device = DevicePublic::decode(&mut r)?;
        let dh = r.array("join key")?;
        let mailbox = r.array("join mailbox")?;
        let name = r.string(MAX_NAME, "device name")?.to_owned();
        r.finish("join request")?;
        let request = JoinRequest {
            device,
            dh,
            mailbox,
            name,
        };
        let code = request.short_code(card);
        Ok((request, code))
    }

    /// `SHA-256("meow/v1/device-link-code" 0x00 | card key | secret | device | dh | mailbox)`, the first
    /// 4 bytes big-endian modulo 10^6, as six digits.
    fn short_code(&self, card: &LinkCard) -> ShortCode {
        let digest = crypto::sha256(&[
            b"meow/v1/device-link-code\x00",
            &card.key,
            &card.secret,
            self.device.as_bytes(),
            &self.dh,
            &self.mailbox,
        ]);
        let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % 1_000_000;
        format!("{n:06}")
    }
}

impl Encode for SealedJoin {
    fn encode(&self, w: &mut Writer) {
        w.raw(&self.enc).bytes(&self.ciphertext);
    }
}

impl Decode for SealedJoin {
    const WHAT: &'static str = "sealed join request";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            enc: r.array("join encapsulated key")?,
            ciphertext: r.bytes(1024, "join ciphertext")?.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::DeviceKey;
    use crate::testing::TestRng;

    fn new_device(rng: &mut TestRng) -> (DevicePublic, [u8; 32]) {
        (DeviceKey::generate(rng).public(), DhSecret::generate(rng).public())
    }

    fn ask(device: DevicePublic, dh: [u8; 32], name: &str) -> JoinRequest {
        JoinRequest {
            device,
            dh,
            mailbox: [5; 32],
            name: name.into(),
        }
    }

    #[test]
    fn both_screens_show_the_same_code_and_an_impostor_gets_another() {
        let mut rng = TestRng::new(1);
        let (card, secret) = LinkCard::new("home:7300", 0, &mut rng);
        let card = LinkCard::from_text(&card.to_text()).unwrap();
        let (device, dh) = new_device(&mut rng);
        let (sealed, shown_new) = ask(device, dh, "phone").seal(&card, 10, &mut rng).unwrap();
        let sealed = SealedJoin::from_bytes(&sealed.to_bytes()).unwrap();
        let (request, shown_old) = JoinRequest::open(&card, &secret, &sealed, 20).unwrap();
        assert_eq!(shown_old, shown_new);
        assert_eq!((request.device, request.dh), (device, dh));
        assert_eq!(shown_old.len(), 6);
        // Someone who photographed the card joins with keys of their own: another code.
        let (thief, thief_dh) = new_device(&mut rng);
        let (stolen, _) = ask(thief, thief_dh, "phone").seal(&card, 30, &mut rng).unwrap();
        let (_, thief_code) = JoinRequest::open(&card, &secret, &stolen, 40).unwrap();
        assert_ne!(thief_code, shown_new);
    }

    #[test]
    fn a_request_without_the_secret_or_after_the_expiry_is_refused() {
        let mut rng = TestRng::new(2);
        let (card, secret) = LinkCard::new("home:7300", 0, &mut rng);
        let (device, dh) = new_device(&mut rng);
        // The card's key without its secret (say, read from a server log): it does not open.
        let guessed = LinkCard {
            secret: [0; 32],
            ..card.clone()
        };
        let (sealed, _) = ask(device, dh, "x").seal(&guessed, 1, &mut rng).unwrap();
        assert_eq!(
            JoinRequest::open(&card, &secret, &sealed, 2).unwrap_err(),
            LinkError::NotForThisCard
        );
        let late = LINK_LIFETIME_MS + 1;
        assert_eq!(
            ask(device, dh, "x").seal(&card, late, &mut rng).unwrap_err(),
            LinkError::Expired
        );
        let (sealed, _) = ask(device, dh, "x").seal(&card, 1, &mut rng).unwrap();
        assert_eq!(
            JoinRequest::open(&card, &secret, &sealed, late).unwrap_err(),
            LinkError::Expired
        );
        // Another card's secret does not open it either.
        let (_, other_secret) = LinkCard::new("home:7300", 0, &mut rng);
        assert_eq!(
            JoinRequest::open(&card, &other_secret, &sealed, 2).unwrap_err(),
            LinkError::NotForThisCard
        );
    }

    #[test]
    fn card_texts_that_are_not_cards_say_why() {
        for bad in ["", "meow:link:!!", "meow:card:AQ", "meow:link:Ag"] {
            assert!(LinkCard::from_text(bad).is_err(), "{bad:?}");
        }
    }
}
