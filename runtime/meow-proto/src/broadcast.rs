//! Emergency broadcasts (spec §1.7): a short text for every user of one server, signed so that
//! recipients can tell the operator's broadcasts from others.
//!
//! ```text
//! broadcast = signer:[32] (BroadcastPublic) | sent_at:varint (Unix s) | text:bytes | signature:[64]
//! signature = Ed25519(BroadcastKey, "meow/v1/broadcast" 0x00 | signer | sent_at | text)
//! ```
//! Parsing gives an [`UncheckedBroadcast`]; only [`UncheckedBroadcast::check`] yields the text.

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::crypto::{CryptoError, Domain, SIGNATURE_LEN};
use crate::keys::{BroadcastKey, BroadcastPublic, Signature};

/// Longest broadcast text, in bytes.
pub const MAX_BROADCAST_TEXT: usize = 1024;

/// A verified broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    /// Who signed it.
    pub signer: BroadcastPublic,
    /// Sender's clock, Unix seconds.
    pub sent_at: u64,
    /// The text.
    pub text: String,
    signature: Signature,
}

fn signed_parts(signer: &BroadcastPublic, sent_at: u64, text: &str) -> Vec<u8> {
    let mut w = Writer::new();
    signer.encode(&mut w);
    w.varint(sent_at).string(text);
    w.into_bytes()
}

impl Broadcast {
    /// Signs a broadcast.
    pub fn sign(key: &BroadcastKey, sent_at: u64, text: &str) -> Self {
        let signer = key.public();
        let signature = key.sign(Domain::BROADCAST, &[&signed_parts(&signer, sent_at, text)]);
        Self {
            signer,
            sent_at,
            text: text.to_owned(),
            signature,
        }
    }
}

impl Encode for Broadcast {
    fn encode(&self, w: &mut Writer) {
        w.raw(&signed_parts(&self.signer, self.sent_at, &self.text))
            .raw(&self.signature);
    }
}

/// A broadcast read from the wire, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UncheckedBroadcast(Broadcast);

impl Encode for UncheckedBroadcast {
    fn encode(&self, w: &mut Writer) {
        self.0.encode(w);
    }
}

impl From<Broadcast> for UncheckedBroadcast {
    fn from(b: Broadcast) -> Self {
        Self(b)
    }
}

impl UncheckedBroadcast {
    /// Verifies the signature.
    pub fn check(self) -> Result<Broadcast, CryptoError> {
        let b = self.0;
        b.signer.verify(
            Domain::BROADCAST,
            &[&signed_parts(&b.signer, b.sent_at, &b.text)],
            &b.signature,
        )?;
        Ok(b)
    }
}

impl Decode for UncheckedBroadcast {
    const WHAT: &'static str = "broadcast";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let signer = BroadcastPublic::decode(r)?;
        let sent_at = r.varint("broadcast time")?;
        let text = r.string(MAX_BROADCAST_TEXT, "broadcast text")?.to_owned();
        let signature = r.array::<SIGNATURE_LEN>("broadcast signature")?;
        Ok(Self(Broadcast {
            signer,
            sent_at,
            text,
            signature,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestRng;

    #[test]
    fn sign_encode_check() {
        let key = BroadcastKey::generate(&mut TestRng::new(1));
        let b = Broadcast::sign(&key, 1_700_000_000, "flood warning: move uphill");
        let bytes = b.to_bytes();
        assert_eq!(UncheckedBroadcast::from_bytes(&bytes).unwrap().check().unwrap(), b);
        let mut bad = bytes.clone();
        let i = bad.len() - 70;
        bad[i] ^= 1;
        assert!(
            UncheckedBroadcast::from_bytes(&bad)
                .map(|u| u.check().is_err())
                .unwrap_or(true)
        );
    }
}
