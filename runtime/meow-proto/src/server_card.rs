//! Server cards: how a server is introduced to clients (name, address, public key).
//!
//! ```text
//! server card = "MEOW" 'S' version:u8 (=2) | name:bytes | address | key:[32]
//!   (version 1, still read: the address is a plain TCP `host:port` string)
//! text form   = "meow:server:" base64url(server card)
//! ```
//! A server card is not signed: its integrity comes from the channel it is shared on (like an SSH
//! host key fingerprint). The session handshake then proves the server holds the key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::address::Address;
use crate::card::{MAGIC, ServerRef};
use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::keys::ServerPublic;

const SERVER_TYPE: u8 = b'S';
const SERVER_CARD_VERSION: u8 = 2;
/// Prefix of the text form.
pub const SERVER_TEXT_PREFIX: &str = "meow:server:";
/// Longest server name.
pub const MAX_SERVER_NAME: usize = 64;

/// A server's name, address and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCard {
    /// A name for people.
    pub name: String,
    /// Where and how it is reached.
    pub address: Address,
    /// The server's public key.
    pub key: ServerPublic,
}

/// A server card text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerCardError {
    /// Not `meow:server:` followed by base64url.
    #[error("not a MEOW server card (expected text starting with \"{SERVER_TEXT_PREFIX}\")")]
    BadText,
    /// The content does not decode.
    #[error("malformed server card: {0}")]
    Malformed(#[from] DecodeError),
}

impl ServerCard {
    /// The text form.
    pub fn to_text(&self) -> String {
        format!("{SERVER_TEXT_PREFIX}{}", URL_SAFE_NO_PAD.encode(self.to_bytes()))
    }

    /// Reads the text form (whitespace ignored).
    pub fn from_text(text: &str) -> Result<Self, ServerCardError> {
        let compact: String = text.split_whitespace().collect();
        let body = compact
            .strip_prefix(SERVER_TEXT_PREFIX)
            .ok_or(ServerCardError::BadText)?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| ServerCardError::BadText)?;
        Ok(Self::from_bytes(&bytes)?)
    }

    /// The address and key, as listed on rendez-vous cards.
    pub fn server_ref(&self) -> ServerRef {
        ServerRef {
            address: self.address.clone(),
            key: self.key,
        }
    }
}

impl Encode for ServerCard {
    fn encode(&self, w: &mut Writer) {
        w.raw(MAGIC).u8(SERVER_TYPE).u8(SERVER_CARD_VERSION);
        w.string(&self.name);
        self.address.encode(w);
        self.key.encode(w);
    }
}

impl Decode for ServerCard {
    const WHAT: &'static str = "server card";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if &r.array::<4>("magic")? != MAGIC || r.u8("type")? != SERVER_TYPE {
            return Err(DecodeError::BadMagic { what: "server card" });
        }
        let version = r.u8("version")?;
        if !(1..=SERVER_CARD_VERSION).contains(&version) {
            return Err(DecodeError::UnsupportedVersion {
                what: "server card",
                version,
            });
        }
        let name = r.string(MAX_SERVER_NAME, "server name")?.to_owned();
        let address = if version == 1 {
            Address::decode_v1(r)?
        } else {
            Address::decode(r)?
        };
        Ok(Self {
            name,
            address,
            key: ServerPublic::decode(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ServerKey;
    use crate::testing::TestRng;

    #[test]
    fn text_round_trip() {
        let card = ServerCard {
            name: "home".into(),
            address: Address::Tcp("127.0.0.1:7070".into()),
            key: ServerKey::generate(&mut TestRng::new(1)).public(),
        };
        let text = card.to_text();
        assert!(text.starts_with(SERVER_TEXT_PREFIX));
        assert_eq!(ServerCard::from_text(&format!("{text}\n")).unwrap(), card);
        assert_eq!(ServerCard::from_text("meow:card:xyz"), Err(ServerCardError::BadText));
    }
}
