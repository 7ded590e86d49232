//! Revoking a device (docs/DEVICES.md, "Revocation"): the proof, what it changes, and the
//! revoked device wiping itself when it hears of it.
//!
//! A revocation is signed by the revocation key (derived from the password, never kept) and by
//! the `UserKey`, and checked by every device against the revocation key it pinned when it
//! joined: a stolen device holds the `UserKey` but not the password, so it cannot revoke
//! anyone. Once revoked, a device is no peer any more (nothing more is sent to it, nothing from
//! it is read), the lease secret changes (its leases name nothing), and every conversation owes
//! a rotation, done by its holder: new keys the revoked device never sees.

use meow_proto::UserPublic;
use meow_proto::codec::{Decode, DecodeError, Encode, Reader, Writer};
use meow_proto::crypto::random_bytes;
use meow_proto::devices::{Revocation, RevocationKey, Roster, UncheckedRevocation, UncheckedRoster};
use meow_proto::envelope::ContentType;
use meow_proto::sync::{DeviceId, Kind, SyncRecord};

use super::{DeviceEntry, LEASE_SECRET};
use crate::{Node, NodeError, Result};

/// Prefix of the sync-log keys of revocations (kind setting): `revoked/<device id>`.
pub(crate) const REVOKED_SETTING: &[u8] = b"revoked/";
/// Prefix of the sync-log keys of rotations owed (kind setting): `rotate/<contact key hex>`.
const ROTATE_SETTING: &[u8] = b"rotate/";

/// A revocation as the log carries it.
fn encode(roster: &UncheckedRoster, revocation: &UncheckedRevocation, entry: &DeviceEntry) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(1)
        .bytes(&roster.to_bytes())
        .bytes(&revocation.to_bytes())
        .bytes(&entry.to_bytes());
    w.into_bytes()
}

/// Checks a revocation from the log: the roster signed by `user` with the pinned revocation key,
/// the revocation signed by both; returns the revoked device.
pub(crate) fn check(v: &[u8], user: &UserPublic, pinned: &[u8; 32]) -> std::result::Result<DeviceEntry, String> {
    let read = |v: &[u8]| -> std::result::Result<_, DecodeError> {
        let mut r = Reader::new(v);
        r.version(1, "revocation record")?;
        let roster = UncheckedRoster::from_bytes(r.bytes(64 * 1024, "roster")?)?;
        let revocation = UncheckedRevocation::from_bytes(r.bytes(1024, "revocation")?)?;
        let entry = DeviceEntry::from_bytes(r.bytes(1024, "revoked device")?)?;
        Ok((roster, revocation, entry))
    };
    let (roster, revocation, entry) = read(v).map_err(|e| e.to_string())?;
    let roster = roster.check(user).map_err(|e| e.to_string())?;
    if &roster.revocation != pinned {
        return Err("its roster names another revocation key than the one this device trusts".into());
    }
    let revocation = revocation.check(&roster, user).map_err(|e| e.to_string())?;
    if revocation.revoked != entry.public {
        return Err("it names another device than the one it carries".into());
    }
    Ok(entry)
}

fn revoked_key(id: DeviceId) -> Vec<u8> {
    [REVOKED_SETTING, id.to_hex().as_bytes()].concat()
}

/// Whether `batch` carries a revocation of `me` that checks: then this device wipes itself,
/// whatever the order of the records (a revoked device may have missed some).
pub(crate) fn revokes_me(records: &[SyncRecord], me: DeviceId, user: &UserPublic, pinned: &[u8; 32]) -> bool {
    let key = revoked_key(me);
    records
        .iter()
        .filter(|r| r.kind == Kind::Setting && r.key == key)
        .filter_map(|r| r.value.as_deref())
        .any(|v| check(v, user, pinned).is_ok_and(|e| e.id() == me))
}

impl Node {
    /// Revokes device `which` (its name or the start of its id) with the key derived from
    /// `password` (the home's password when its second device was linked). Returns the revoked
    /// device and the record that tells it, for [`super::net::revoke`] to send it.
    pub(crate) fn revoke_device(&mut self, which: &str, password: &[u8]) -> Result<(DeviceEntry, SyncRecord)> {
        let entry = self.find_device(which)?;
        let (me, pinned, devices) = {
            let d = self.device_state().ok_or(NodeError::Internal("no device state"))?;
            let devices: Vec<_> = d.entries().into_iter().map(|e| (e.public, e.name)).collect();
            (d.this.id(), d.this.revocation, devices)
        };
        if entry.id() == me {
            return Err(NodeError::Device(
                "a device cannot revoke itself: revoke it from another of your devices".into(),
            ));
        }
        let key = RevocationKey::derive(password, &self.user_public(), self.vault.kdf_params())
            .map_err(|e| NodeError::Device(format!("deriving the revocation key: {e}")))?;
        if key.public() != pinned {
            return Err(NodeError::Device(
                "wrong password: a revocation needs the password this home had when its second device was linked"
                    .into(),
            ));
        }
        let now = self.env.now_ms();
        let invalid = |e: meow_proto::devices::DeviceError| NodeError::Device(e.to_string());
        let roster = Roster::sign(now, &self.profile.user_key, pinned, devices).map_err(invalid)?;
        let checked = roster.clone().check(&self.user_public()).map_err(invalid)?;
        let revocation = Revocation::sign(&checked, &self.profile.user_key, &key, entry.public, now);
        let value = encode(&roster, &revocation, &entry);
        let vault = self.vault.clone();
        let mut b = vault.batch();
        let record = self
            .note_sync(&mut b, Kind::Setting, &revoked_key(entry.id()), Some(value))
            .ok_or(NodeError::Internal("no device state"))?;
        // A new lease secret: writing it drops this device's leases too (`observe`).
        let secret: [u8; 32] = random_bytes(&mut self.env.rng());
        self.note_sync(&mut b, Kind::Setting, LEASE_SECRET, Some(secret.to_vec()));
        let peers: Vec<_> = self
            .contacts
            .values()
            .filter(|c| self.hidden_in(c.id).is_none())
            .map(|c| c.conversation.peer)
            .collect();
        for peer in peers {
            let key = [ROTATE_SETTING, meow_proto::codec::to_hex(peer.as_bytes()).as_bytes()].concat();
            self.note_sync(&mut b, Kind::Setting, &key, Some(entry.id().0.to_vec()));
        }
        b.commit()?;
        self.rebuild_routes();
        self.tell_device_news()?;
        tracing::info!(device = %entry.name, "device revoked");
        Ok((entry, record))
    }

    /// Rotates the conversations this device holds that owe a rotation since a revocation, and
    /// queues the control message that carries each offer. Returns how many.
    pub(crate) fn rotate_owed(&mut self) -> Result<usize> {
        let owed: Vec<(Vec<u8>, String)> = {
            let Some(d) = self.device_state() else { return Ok(0) };
            let now = self.env.now_ms();
            d.replica
                .values(Kind::Setting)
                .filter(|(key, _)| key.starts_with(ROTATE_SETTING))
                .filter_map(|(key, _)| {
                    let hex = std::str::from_utf8(&key[ROTATE_SETTING.len()..]).ok()?;
                    let c = self
                        .contacts
                        .values()
                        .find(|c| meow_proto::codec::to_hex(c.conversation.peer.as_bytes()) == hex)?;
                    d.holds(&c.conversation.peer, now)
                        .then(|| (key.to_vec(), c.name.clone()))
                })
                .collect()
        };
        for (key, name) in &owed {
            self.rotate(name)?;
            let id = self.contact_id(name)?;
            self.queue_to(id, ContentType::CONTROL, Vec::new())?;
            self.commit_sync(Kind::Setting, key, None, 0)?;
            tracing::info!(contact = %name, "keys rotated after a revocation");
        }
        Ok(owed.len())
    }

    /// This device was revoked: its vault is destroyed (the key that opens it is overwritten),
    /// and every later call fails.
    pub(crate) fn wipe_revoked(&mut self) -> NodeError {
        tracing::warn!("this device was revoked by another device of its user: wiping its home");
        if let Err(e) = self.vault.destroy() {
            tracing::error!(error = %e, "wiping the revoked home failed");
        }
        self.contacts.clear();
        self.devices = None;
        NodeError::Device("this device was revoked by another of your devices: its home is wiped".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meow_proto::crypto::KdfParams;
    use meow_proto::testing::TestRng;
    use meow_proto::{ConversationKey, DeviceKey, LookupKey, UserKey};

    fn device(rng: &mut TestRng, name: &str) -> DeviceEntry {
        DeviceEntry {
            public: DeviceKey::generate(rng).public(),
            dh: ConversationKey::generate(rng).public(),
            mailbox: LookupKey::generate(rng).public(),
            name: name.into(),
            added_ms: 1,
        }
    }

    /// A record signed by `signer` revoking `victim`, the roster naming `signer`'s public key.
    fn record(user: &UserKey, signer: &RevocationKey, victim: &DeviceEntry, others: &[&DeviceEntry]) -> Vec<u8> {
        let devices = others
            .iter()
            .chain([&victim])
            .map(|e| (e.public, e.name.clone()))
            .collect();
        let roster = Roster::sign(7, user, signer.public(), devices).unwrap();
        let checked = roster.clone().check(&user.public()).unwrap();
        let revocation = Revocation::sign(&checked, user, signer, victim.public, 9);
        encode(&roster, &revocation, victim)
    }

    #[test]
    fn only_the_pinned_revocation_key_revokes() {
        let mut rng = TestRng::new(3);
        let user = UserKey::generate(&mut rng);
        let (a, b) = (device(&mut rng, "a"), device(&mut rng, "b"));
        let params = KdfParams::TESTING;
        let real = RevocationKey::derive(b"the password", &user.public(), params).unwrap();
        let pinned = real.public();
        let good = record(&user, &real, &b, &[&a]);
        assert_eq!(check(&good, &user.public(), &pinned).unwrap(), b);
        // A stolen device holds the user key but not the password: whatever key it derives,
        // its roster names another revocation key than the pinned one.
        let guessed = RevocationKey::derive(b"a guess", &user.public(), params).unwrap();
        let forged = record(&user, &guessed, &a, &[&b]);
        let err = check(&forged, &user.public(), &pinned).unwrap_err();
        assert!(err.contains("another revocation key"), "{err}");
        // Another user's revocation does not check either, nor garbage.
        let stranger = UserKey::generate(&mut rng);
        assert!(check(&good, &stranger.public(), &pinned).is_err());
        assert!(check(&[1, 2, 3], &user.public(), &pinned).is_err());
    }
}
