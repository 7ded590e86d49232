//! Presence (spec §1.2.3): where a home can be reached directly and under which key, sent to
//! one contact inside their conversation (PROTOCOL §20). The conversation authenticates and
//! hides it; this is only its encoding.

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::{Address, ServerPublic};

/// Version of the presence payload.
const PRESENCE_VERSION: u8 = 1;
/// Most addresses one presence lists.
const MAX_ADDRESSES: usize = 8;

/// Where a home can be reached directly, and under which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// The key the direct listener answers this contact under (fresh for each run).
    pub key: ServerPublic,
    /// Where it listens.
    pub addresses: Vec<Address>,
    /// Until when this holds, Unix ms.
    pub expires_ms: u64,
}

impl Encode for Presence {
    fn encode(&self, w: &mut Writer) {
        w.u8(PRESENCE_VERSION);
        w.raw(self.key.as_bytes());
        w.list(&self.addresses, |w, a| a.encode(w));
        w.u64(self.expires_ms);
    }
}

impl Decode for Presence {
    const WHAT: &'static str = "presence";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("presence version")? {
            PRESENCE_VERSION => {}
            version => {
                return Err(DecodeError::UnsupportedVersion {
                    what: "presence",
                    version,
                });
            }
        }
        let key = ServerPublic::from_bytes(r.array("direct key")?).map_err(|_| DecodeError::UnknownValue {
            what: "direct key",
            value: 0,
        })?;
        Ok(Self {
            key,
            addresses: r.list(MAX_ADDRESSES, "addresses", Address::decode)?,
            expires_ms: r.u64("expires")?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn presence_round_trips_and_bad_versions_are_refused() {
        let key = crate::ServerKey::generate(&mut crate::os_rng()).public();
        let p = Presence {
            key,
            addresses: vec![Address::Tcp("192.168.1.20:7071".into())],
            expires_ms: 1_700_000_000_000,
        };
        let bytes = p.to_bytes();
        assert_eq!(Presence::from_bytes(&bytes).unwrap(), p);
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert!(Presence::from_bytes(&bad).is_err());
        assert!(Presence::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }
}
