//! A user's devices (spec §1.3, §2.6; design in docs/DEVICES.md): the signed roster of their
//! [`DevicePublic`] keys, and the revocation of one of them, which only someone who knows the
//! password can sign.
//!
//! The proof a stolen device alone cannot give is a signature by the [`RevocationKey`]: an
//! Ed25519 key whose seed is Argon2id of the password under a salt of its own. A device keeps
//! the vault key (another Argon2id output, under another salt) while it is unlocked, but never
//! the password nor this key; the key exists only while someone types the password to revoke. A
//! revocation also carries the `UserKey`'s signature, so a password alone (without any device)
//! signs nothing either. Roster and revocation are checked objects: usable only once
//! [`UncheckedRoster::check`] and [`UncheckedRevocation::check`] have verified them.
//!
//! ```
//! use meow_proto::crypto::{Domain, KdfParams};
//! use meow_proto::devices::{Revocation, RevocationKey, Roster};
//! use meow_proto::{DeviceKey, UserKey};
//!
//! let mut rng = meow_proto::os_rng();
//! let user = UserKey::generate(&mut rng);
//! let revoke = RevocationKey::derive(b"correct horse", &user.public(), KdfParams::TESTING).unwrap();
//! let (phone, laptop) = (DeviceKey::generate(&mut rng), DeviceKey::generate(&mut rng));
//! let roster = Roster::sign(1, &user, revoke.public(), vec![(phone.public(), "phone".into()), (laptop.public(), "laptop".into())])
//!     .unwrap()
//!     .check(&user.public())
//!     .unwrap();
//! let lost = Revocation::sign(&roster, &user, &revoke, phone.public(), 1_700_000_000_000);
//! assert_eq!(lost.check(&roster, &user.public()).unwrap().revoked, phone.public());
//! ```

pub mod link;

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::crypto::{self, CryptoError, Domain, KdfParams, SIGNATURE_LEN, SigningSecret};
use crate::keys::{DevicePublic, UserKey, UserPublic};

/// Most devices in a roster.
pub const MAX_DEVICES: usize = 16;
/// Longest device name, in bytes.
pub const MAX_NAME: usize = 64;
/// Version of the roster and revocation formats.
const FORMAT: u8 = 1;

/// Why a roster or a revocation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// A signature does not verify.
    #[error("{0}: the signature does not verify")]
    BadSignature(&'static str),
    /// The revocation names another roster version, or a device not in the roster.
    #[error("the revocation does not fit this roster: {0}")]
    NotInRoster(&'static str),
    /// The roster's contents are not acceptable.
    #[error("roster: {0}")]
    BadRoster(&'static str),
    /// The password could not be turned into a key.
    #[error("password hashing: {0}")]
    Kdf(#[from] CryptoError),
}

/// The key that signs revocations, derived from the password (see the module documentation).
/// Zeroized on drop.
pub struct RevocationKey(SigningSecret);

impl RevocationKey {
    /// The key for `password` and this user: Argon2id with the salt
    /// `SHA-256("meow/v1/device-revocation-key" || 0x00 || user public key)[..16]`.
    pub fn derive(password: &[u8], user: &UserPublic, params: KdfParams) -> Result<Self, DeviceError> {
        let digest = crypto::sha256(&[b"meow/v1/device-revocation-key", &[0], user.as_bytes()]);
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&digest[..16]);
        let seed = crypto::argon2id(password, &salt, params)?;
        Ok(Self(SigningSecret::from_seed(seed.as_bytes())))
    }

    /// Its public half, which the roster carries.
    pub fn public(&self) -> [u8; 32] {
        self.0.public()
    }
}

impl std::fmt::Debug for RevocationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RevocationKey(<secret>)")
    }
}

/// A user's devices, as the `UserKey` signed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roster {
    /// Increases with every change.
    pub version: u64,
    /// The public half of the [`RevocationKey`].
    pub revocation: [u8; 32],
    /// Each device and its name.
    pub devices: Vec<(DevicePublic, String)>,
}

/// A roster as received: [`UncheckedRoster::check`] makes it usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UncheckedRoster {
    roster: Roster,
    signature: [u8; SIGNATURE_LEN],
}

impl Roster {
    /// Signs a roster with the user's key.
    pub fn sign(
        version: u64,
        user: &UserKey,
        revocation: [u8; 32],
        devices: Vec<(DevicePublic, String)>,
    ) -> Result<UncheckedRoster, DeviceError> {
        let roster = Roster {
            version,
            revocation,
            devices,
        };
        roster.check_contents()?;
        let signature = user.sign(Domain::DEVICE_ROSTER, &[&roster.body()]);
        Ok(UncheckedRoster { roster, signature })
    }

    /// The signed part.
    fn body(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(FORMAT).varint(self.version).raw(&self.revocation);
        w.varint(self.devices.len() as u64);
        for (key, name) in &self.devices {
            w.raw(key.as_bytes()).string(name);
        }
        w.into_bytes()
    }

    fn check_contents(&self) -> Result<(), DeviceError> {
        if self.devices.is_empty() || self.devices.len() > MAX_DEVICES {
            return Err(DeviceError::BadRoster("1 to 16 devices"));
        }
        if self.devices.iter().any(|(_, n)| n.is_empty() || n.len() > MAX_NAME) {
            return Err(DeviceError::BadRoster("a device name is 1 to 64 bytes"));
        }
        let mut keys: Vec<_> = self.devices.iter().map(|(k, _)| k.as_bytes()).collect();
        keys.sort();
        keys.dedup();
        if keys.len() != self.devices.len() {
            return Err(DeviceError::BadRoster("a device is listed twice"));
        }
        Ok(())
    }

    /// Whether `device` is in the roster.
    pub fn has(&self, device: &DevicePublic) -> bool {
        self.devices.iter().any(|(k, _)| k == device)
    }
}

impl UncheckedRoster {
    /// Verifies the user's signature and the contents.
    pub fn check(self, user: &UserPublic) -> Result<Roster, DeviceError> {
        user.verify(Domain::DEVICE_ROSTER, &[&self.roster.body()], &self.signature)
            .map_err(|_| DeviceError::BadSignature("roster"))?;
        self.roster.check_contents()?;
        Ok(self.roster)
    }
}

impl Encode for UncheckedRoster {
    fn encode(&self, w: &mut Writer) {
        w.raw(&self.roster.body()).raw(&self.signature);
    }
}

impl Decode for UncheckedRoster {
    const WHAT: &'static str = "device roster";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version(FORMAT, "device roster")?;
        let version = r.varint("roster version")?;
        let revocation = r.array("revocation key")?;
        let count = r.varint_max(MAX_DEVICES as u64, "device count")?;
        let mut devices = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let key = DevicePublic::decode(r)?;
            let name = r.string(MAX_NAME, "device name")?.to_owned();
            devices.push((key, name));
        }
        let signature = r.array("roster signature")?;
        Ok(Self {
            roster: Roster {
                version,
                revocation,
                devices,
            },
            signature,
        })
    }
}

/// One device revoked, under a given roster version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The roster version it applies to.
    pub roster_version: u64,
    /// The device revoked.
    pub revoked: DevicePublic,
    /// When, Unix milliseconds.
    pub at_ms: u64,
}

/// A revocation as received: [`UncheckedRevocation::check`] makes it usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UncheckedRevocation {
    revocation: Revocation,
    by_password: [u8; SIGNATURE_LEN],
    by_user: [u8; SIGNATURE_LEN],
}

impl Revocation {
    /// Signs the revocation of `revoked` with the password's key and the user's key.
    pub fn sign(
        roster: &Roster,
        user: &UserKey,
        key: &RevocationKey,
        revoked: DevicePublic,
        at_ms: u64,
    ) -> UncheckedRevocation {
        let revocation = Revocation {
            roster_version: roster.version,
            revoked,
            at_ms,
        };
        let body = revocation.body();
        UncheckedRevocation {
            by_password: key.0.sign(Domain::DEVICE_REVOCATION, &[&body]),
            by_user: user.sign(Domain::DEVICE_REVOCATION, &[&body]),
            revocation,
        }
    }

    fn body(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(FORMAT)
            .varint(self.roster_version)
            .raw(self.revoked.as_bytes())
            .u64(self.at_ms);
        w.into_bytes()
    }
}

impl UncheckedRevocation {
    /// Verifies that the device is in `roster` (the one [`UncheckedRoster::check`] accepted
    /// under `user`), and both signatures: by the roster's revocation key and by `user`.
    pub fn check(self, roster: &Roster, user: &UserPublic) -> Result<Revocation, DeviceError> {
        let r = &self.revocation;
        if r.roster_version != roster.version {
            return Err(DeviceError::NotInRoster("another roster version"));
        }
        if !roster.has(&r.revoked) {
            return Err(DeviceError::NotInRoster("no such device"));
        }
        let body = r.body();
        crypto::verify(
            &roster.revocation,
            Domain::DEVICE_REVOCATION,
            &[&body],
            &self.by_password,
        )
        .map_err(|_| DeviceError::BadSignature("revocation (password key)"))?;
        user.verify(Domain::DEVICE_REVOCATION, &[&body], &self.by_user)
            .map_err(|_| DeviceError::BadSignature("revocation (user key)"))?;
        Ok(self.revocation)
    }
}

impl Encode for UncheckedRevocation {
    fn encode(&self, w: &mut Writer) {
        w.raw(&self.revocation.body()).raw(&self.by_password).raw(&self.by_user);
    }
}

impl Decode for UncheckedRevocation {
    const WHAT: &'static str = "device revocation";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version(FORMAT, "device revocation")?;
        let roster_version = r.varint("roster version")?;
        let revoked = DevicePublic::decode(r)?;
        let at_ms = r.u64("revocation time")?;
        Ok(Self {
            revocation: Revocation {
                roster_version,
                revoked,
                at_ms,
            },
            by_password: r.array("password key signature")?,
            by_user: r.array("user key signature")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::DeviceKey;
    use crate::testing::TestRng;

    struct Home {
        user: UserKey,
        devices: Vec<DeviceKey>,
        roster: Roster,
    }

    fn home(rng: &mut TestRng) -> Home {
        let user = UserKey::generate(rng);
        let key = RevocationKey::derive(b"password", &user.public(), KdfParams::TESTING).unwrap();
        let devices: Vec<DeviceKey> = (0..3).map(|_| DeviceKey::generate(rng)).collect();
        let names = devices
            .iter()
            .zip(["phone", "laptop", "board"])
            .map(|(d, n)| (d.public(), n.to_owned()))
            .collect();
        let roster = Roster::sign(4, &user, key.public(), names)
            .unwrap()
            .check(&user.public())
            .unwrap();
        Home { user, devices, roster }
    }

    #[test]
    fn a_stolen_device_cannot_revoke_the_others_without_the_password() {
        let mut rng = TestRng::new(1);
        let h = home(&mut rng);
        let key = RevocationKey::derive(b"password", &h.user.public(), KdfParams::TESTING).unwrap();
        let good = Revocation::sign(&h.roster, &h.user, &key, h.devices[1].public(), 5);
        let bytes = good.to_bytes();
        let again = UncheckedRevocation::from_bytes(&bytes).unwrap();
        assert_eq!(
            again.check(&h.roster, &h.user.public()).unwrap().revoked,
            h.devices[1].public()
        );
        // The thief holds the user key (an unlocked device) but guesses the password wrong, or
        // signs with a key of its own.
        let guessed = RevocationKey::derive(b"Password", &h.user.public(), KdfParams::TESTING).unwrap();
        let forged = Revocation::sign(&h.roster, &h.user, &guessed, h.devices[0].public(), 6);
        let e = forged.check(&h.roster, &h.user.public()).unwrap_err();
        assert_eq!(e, DeviceError::BadSignature("revocation (password key)"));
        // The password's key alone, with another user key, is refused too.
        let other = UserKey::generate(&mut rng);
        let without_user = Revocation::sign(&h.roster, &other, &key, h.devices[0].public(), 7);
        let e = without_user.check(&h.roster, &h.user.public()).unwrap_err();
        assert_eq!(e, DeviceError::BadSignature("revocation (user key)"));
    }

    #[test]
    fn a_revocation_fits_one_roster_version_and_its_devices() {
        let mut rng = TestRng::new(2);
        let h = home(&mut rng);
        let key = RevocationKey::derive(b"password", &h.user.public(), KdfParams::TESTING).unwrap();
        let stranger = DeviceKey::generate(&mut rng).public();
        let r = Revocation::sign(&h.roster, &h.user, &key, stranger, 1);
        let user = h.user.public();
        assert_eq!(
            r.check(&h.roster, &user).unwrap_err(),
            DeviceError::NotInRoster("no such device")
        );
        let old = Roster {
            version: 3,
            ..h.roster.clone()
        };
        let r = Revocation::sign(&old, &h.user, &key, h.devices[0].public(), 1);
        assert_eq!(
            r.check(&h.roster, &user).unwrap_err(),
            DeviceError::NotInRoster("another roster version")
        );
    }

    #[test]
    fn rosters_round_trip_and_a_changed_one_is_refused() {
        let mut rng = TestRng::new(3);
        let h = home(&mut rng);
        let signed = Roster::sign(h.roster.version, &h.user, h.roster.revocation, h.roster.devices.clone()).unwrap();
        let bytes = signed.to_bytes();
        assert_eq!(
            UncheckedRoster::from_bytes(&bytes)
                .unwrap()
                .check(&h.user.public())
                .unwrap(),
            h.roster
        );
        // A device added by someone without the user key.
        let mut tampered = bytes.clone();
        let name_at = bytes.len() - SIGNATURE_LEN - 1;
        tampered[name_at] ^= 1;
        let e = UncheckedRoster::from_bytes(&tampered)
            .unwrap()
            .check(&h.user.public())
            .unwrap_err();
        assert_eq!(e, DeviceError::BadSignature("roster"));
        // Rosters with no device or one device twice are not signed.
        let dup = vec![h.roster.devices[0].clone(), h.roster.devices[0].clone()];
        assert!(Roster::sign(1, &h.user, h.roster.revocation, dup).is_err());
        assert!(Roster::sign(1, &h.user, h.roster.revocation, vec![]).is_err());
    }

    #[test]
    fn the_password_key_depends_on_the_password_and_the_user() {
        let mut rng = TestRng::new(4);
        let (u1, u2) = (
            UserKey::generate(&mut rng).public(),
            UserKey::generate(&mut rng).public(),
        );
        let k = |p: &[u8], u: &UserPublic| RevocationKey::derive(p, u, KdfParams::TESTING).unwrap().public();
        assert_eq!(k(b"pw", &u1), k(b"pw", &u1));
        assert_ne!(k(b"pw", &u1), k(b"pw", &u2));
        assert_ne!(k(b"pw", &u1), k(b"pW", &u1));
    }
}
