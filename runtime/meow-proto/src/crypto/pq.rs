//! The post-quantum start of a conversation: HPKE (RFC 9180) base mode with the X-Wing KEM
//! (X25519 + ML-KEM-768, IANA KEM id 0x647A, draft-connolly-cfrg-xwing-kem), HKDF-SHA256 and
//! AES-256-GCM. Only the exporter is used: the sender encapsulates to the recipient's X-Wing
//! key and both sides export the same 32-byte secret, which feeds the conversation's root key.
//! A recording of the exchange stays closed to whoever breaks X25519 alone, or ML-KEM alone.

use core::fmt;

use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use zeroize::Zeroizing;

use super::{CryptoError, CryptoRng, SecretKey};

type Kem = hpke::kem::XWing;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::AesGcm256;

/// Length of an X-Wing public (encapsulation) key.
pub const PQ_PUBLIC_LEN: usize = 1216;
/// Length of an X-Wing encapsulation (ciphertext).
pub const PQ_ENC_LEN: usize = 1120;

/// An X-Wing secret (decapsulation) key: a 32-byte seed. Zeroized on drop.
#[derive(Clone)]
pub struct PqSecret(Zeroizing<[u8; 32]>);

impl PqSecret {
    /// A new random key.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut_slice());
        Self(seed)
    }

    /// The key with this seed.
    pub fn from_bytes(seed: [u8; 32]) -> Self {
        Self(Zeroizing::new(seed))
    }

    /// The seed (secret!).
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        self.0.clone()
    }

    fn private(&self) -> Result<<Kem as hpke::Kem>::PrivateKey, CryptoError> {
        <Kem as hpke::Kem>::PrivateKey::from_bytes(self.0.as_slice()).map_err(|_| CryptoError::Decrypt)
    }

    /// The public key, [`PQ_PUBLIC_LEN`] bytes.
    pub fn public(&self) -> Result<Vec<u8>, CryptoError> {
        let pk = <Kem as hpke::Kem>::sk_to_pk(&self.private()?);
        Ok(pk.to_bytes().to_vec())
    }
}

impl fmt::Debug for PqSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PqSecret(<secret>)")
    }
}

/// Encapsulates to an X-Wing public key: the encapsulation to send ([`PQ_ENC_LEN`] bytes) and
/// the secret it carries, exported under `label`.
pub fn pq_encapsulate(
    public: &[u8],
    info: &[u8],
    label: &[u8],
    rng: &mut impl CryptoRng,
) -> Result<(Vec<u8>, SecretKey), CryptoError> {
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(public).map_err(|_| CryptoError::BadPublicKey)?;
    let (enc, ctx) = hpke::setup_sender_with_rng::<Aead, Kdf, Kem>(&OpModeS::Base, &pk, info, rng)
        .map_err(|_| CryptoError::BadPublicKey)?;
    let mut out = Zeroizing::new([0u8; 32]);
    ctx.export(label, out.as_mut_slice())
        .map_err(|_| CryptoError::Decrypt)?;
    Ok((enc.to_bytes().to_vec(), SecretKey::from_bytes(*out)))
}

/// Opens an encapsulation made by [`pq_encapsulate`] for my key.
pub fn pq_decapsulate(secret: &PqSecret, enc: &[u8], info: &[u8], label: &[u8]) -> Result<SecretKey, CryptoError> {
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| CryptoError::Decrypt)?;
    let ctx = hpke::setup_receiver::<Aead, Kdf, Kem>(&OpModeR::Base, &secret.private()?, &enc, info)
        .map_err(|_| CryptoError::Decrypt)?;
    let mut out = Zeroizing::new([0u8; 32]);
    ctx.export(label, out.as_mut_slice())
        .map_err(|_| CryptoError::Decrypt)?;
    Ok(SecretKey::from_bytes(*out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::crypto::CounterRng;

    #[test]
    fn both_sides_export_the_same_secret_and_a_wrong_key_another() {
        let mut rng = CounterRng::new(7);
        let bob = PqSecret::generate(&mut rng);
        let public = bob.public().unwrap();
        assert_eq!(public.len(), PQ_PUBLIC_LEN);
        let (enc, sent) = pq_encapsulate(&public, b"info", b"label", &mut rng).unwrap();
        assert_eq!(enc.len(), PQ_ENC_LEN);
        let got = pq_decapsulate(&bob, &enc, b"info", b"label").unwrap();
        assert_eq!(got.as_bytes(), sent.as_bytes());
        // X-Wing rejects implicitly: another key (or another info) yields another secret.
        let eve = PqSecret::generate(&mut rng);
        let wrong = pq_decapsulate(&eve, &enc, b"info", b"label").unwrap();
        assert_ne!(wrong.as_bytes(), sent.as_bytes());
        let other_info = pq_decapsulate(&bob, &enc, b"other", b"label").unwrap();
        assert_ne!(other_info.as_bytes(), sent.as_bytes());
        assert!(pq_encapsulate(&[0u8; 10], b"info", b"label", &mut rng).is_err());
        assert!(pq_decapsulate(&bob, &enc[..100], b"info", b"label").is_err());
    }
}
