//! Linking a new device to a home (docs/DEVICES.md, "Linking a device"), the parts that need no
//! network: the existing device makes a link card, opens the join request and builds the
//! welcome; the new device seals its request and becomes a home from the welcome. The network
//! steps are in [`super::net`].
//!
//! The welcome is everything the new device needs, sealed to its own X25519 key: the user's
//! profile (its keys), the servers, the shared sync secret, and every record of the sync log
//! (contacts, their conversations, the inbox, the devices).

use std::path::Path;

use meow_proto::codec::{Decode, DecodeError, Encode, Reader, Writer};
use meow_proto::crypto::random_bytes;
use meow_proto::devices::RevocationKey;
use meow_proto::devices::link::{JoinRequest, LinkCard, LinkSecret, SealedJoin, ShortCode};
use meow_proto::envelope::{self, UnverifiedMessage};
use meow_proto::sync::Kind;
use meow_proto::sync::batch::{Batch, Part, Reassembly};
use meow_proto::{ContactPublic, ConversationKey, ConversationPublic, DeviceKey, LookupKey, LookupPublic, MailboxId};
use zeroize::Zeroizing;

use super::{DeviceEntry, DeviceState, ThisDevice, channel, device_setting};
use crate::records::Profile;
use crate::{Env, InitOptions, Node, NodeError, Result};

const WELCOME_FORMAT: u8 = 1;

/// What the new device receives: the home, sealed to it.
pub(crate) struct Welcome {
    profile: Zeroizing<Vec<u8>>,
    servers: Vec<Vec<u8>>,
    sync_secret: Zeroizing<[u8; 32]>,
    batch: Batch,
}

impl Encode for Welcome {
    fn encode(&self, w: &mut Writer) {
        w.u8(WELCOME_FORMAT).bytes(&self.profile);
        w.list(&self.servers, |w, s| {
            w.bytes(s);
        });
        w.raw(self.sync_secret.as_slice());
        self.batch.encode(w);
    }
}

impl Decode for Welcome {
    const WHAT: &'static str = "device welcome";
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        r.version(WELCOME_FORMAT, "device welcome")?;
        Ok(Self {
            profile: Zeroizing::new(r.bytes(64 * 1024, "profile")?.to_vec()),
            servers: r.list(64, "servers", |r| Ok(r.bytes(64 * 1024, "server")?.to_vec()))?,
            sync_secret: Zeroizing::new(r.array("sync secret")?),
            batch: Batch::decode(r)?,
        })
    }
}

/// A device on its way in: its keys, made before it has a home.
pub struct Joining {
    key: DeviceKey,
    dh: ConversationKey,
    mailbox_key: LookupKey,
    name: String,
    card: LinkCard,
    parts: Reassembly,
    /// The parts in so far, by payload id, to verify once the welcome names its signers.
    unverified: Vec<([u8; 8], UnverifiedMessage)>,
}

impl std::fmt::Debug for Joining {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Joining({})", self.name)
    }
}

impl Joining {
    /// New device keys, and the join request for `card` in an envelope for the link mailbox,
    /// with the short code to show.
    pub fn start(card: LinkCard, name: &str, env: &Env) -> Result<(Self, MailboxId, Vec<u8>, ShortCode)> {
        super::check_device_name(name)?;
        let mut rng = env.rng();
        let key = DeviceKey::generate(&mut rng);
        let dh = ConversationKey::generate(&mut rng);
        let mailbox_key = LookupKey::generate(&mut rng);
        let now = env.now_ms();
        let ask = JoinRequest {
            device: key.public(),
            dh: *dh.public().as_bytes(),
            mailbox: *mailbox_key.public().as_bytes(),
            name: name.to_owned(),
        };
        let (sealed, code) = ask
            .seal(&card, now, &mut rng)
            .map_err(|e| NodeError::Device(format!("this link card cannot be used: {e}")))?;
        let to = ConversationPublic::from_bytes(card.key)
            .map_err(|_| NodeError::Device("the link card's key is not usable".into()))?;
        let envelope = channel::seal(sealed.to_bytes(), &key, &to, now, &mut rng)?;
        let mailbox = MailboxId::of(&channel::link_mailbox(&card.secret, b"join").public());
        let joining = Self {
            key,
            dh,
            mailbox_key,
            name: name.to_owned(),
            card,
            parts: Reassembly::default(),
            unverified: Vec::new(),
        };
        Ok((joining, mailbox, envelope, code))
    }

    /// The server the card names, where the welcome comes.
    pub fn server(&self) -> Result<meow_proto::ServerCard> {
        meow_proto::ServerCard::from_text(&self.card.server)
            .map_err(|e| NodeError::Device(format!("the link card's server: {e}")))
    }

    /// The key of the mailbox the welcome comes to.
    pub fn welcome_mailbox(&self) -> meow_proto::LookupKey {
        channel::link_mailbox(&self.card.secret, b"welcome")
    }

    /// Takes in an envelope from the welcome mailbox; returns the welcome once every part is in
    /// and every part of it is signed by a device the welcome names. Anything else in the
    /// mailbox (a malformed part, parts of another payload) is left aside.
    pub fn take_part(&mut self, envelope: &[u8]) -> Result<Option<Vec<u8>>> {
        let Ok(unverified) = envelope::open(envelope, &self.dh) else {
            return Ok(None);
        };
        let Some(part) = unverified.peek_sync_part() else {
            return Ok(None);
        };
        let Ok(id) = Part::from_bytes(&part).map(|p| p.batch) else {
            return Ok(None);
        };
        let whole = match self.parts.add(&part) {
            Ok(whole) => whole,
            Err(e) => {
                tracing::info!(error = %e, "a part in the welcome mailbox is malformed; ignored");
                return Ok(None);
            }
        };
        // What is kept to verify follows what is reassembled, and its bounds.
        let parts = &self.parts;
        self.unverified
            .retain(|(batch, _)| *batch == id || parts.is_open(batch));
        self.unverified.push((id, unverified));
        let Some(whole) = whole else {
            return Ok(None);
        };
        let welcome = Welcome::from_bytes(&whole)?;
        let signers: Vec<ContactPublic> = welcome
            .batch
            .records
            .iter()
            .filter(|r| r.kind == Kind::Setting && r.key.starts_with(super::DEVICE_SETTING))
            .filter_map(|r| DeviceEntry::from_bytes(r.value.as_deref()?).ok())
            .filter_map(|e| channel::as_sender(&e.public))
            .collect();
        let (parts, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unverified)
            .into_iter()
            .partition(|(batch, _)| *batch == id);
        self.unverified = others;
        let signed = parts
            .into_iter()
            .all(|(_, u)| signers.iter().any(|s| u.clone().verify(s).is_ok()));
        if !signed {
            return Err(NodeError::Device(
                "a part of the welcome is not signed by a device of this home".into(),
            ));
        }
        Ok(Some(whole))
    }

    /// Makes the home in `dir` from a complete welcome, under `password`. The home is built
    /// aside (`dir/.joining`) and moved in whole, its vault's header last: a crash midway leaves
    /// no home, and joining again starts over.
    pub fn finish(self, dir: &Path, password: &[u8], welcome: &[u8], opts: InitOptions, env: Env) -> Result<Node> {
        let staging = dir.join(".joining");
        remove_if_there(&staging)?;
        {
            let node = self.build(&staging, password, welcome, opts, env.clone())?;
            drop(node);
        }
        move_in(&staging, dir)?;
        Node::open_with(dir, password, env)
    }

    fn build(self, dir: &Path, password: &[u8], welcome: &[u8], opts: InitOptions, env: Env) -> Result<Node> {
        let welcome = Welcome::from_bytes(welcome)?;
        let profile = Profile::from_bytes(&welcome.profile)?;
        let revocation = welcome
            .batch
            .records
            .iter()
            .rev()
            .find(|r| r.kind == Kind::Setting && r.key == super::REVOCATION_KEY)
            .and_then(|r| r.value.as_deref()?.try_into().ok())
            .ok_or_else(|| NodeError::Device("the welcome has no revocation key".into()))?;
        let this = ThisDevice {
            key: self.key,
            dh: self.dh,
            mailbox: self.mailbox_key,
            sync_secret: welcome.sync_secret,
            revocation,
        };
        let state = DeviceState::create(this, profile.user_key.public());
        let me = state.this.id();
        let listed = welcome
            .batch
            .records
            .iter()
            .any(|r| r.kind == Kind::Setting && r.key == device_setting(me));
        if !listed {
            return Err(NodeError::Device("the welcome does not list this device".into()));
        }
        let mut node = Node::init_joined(dir, password, opts, env.clone(), profile, &welcome.servers)?;
        let vault = node.vault.clone();
        let mut b = vault.batch();
        state.put_this(&mut b, &mut env.rng());
        b.commit()?;
        node.devices = Some(std::sync::Mutex::new(state));
        let from = welcome.batch.records.first().map(|r| r.device);
        if let Some(from) = from {
            node.apply_batch(from, welcome.batch)?;
        }
        Ok(node)
    }
}

fn io_error(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> NodeError {
    let what = format!("{what} {}", path.display());
    move |e| NodeError::Device(format!("{what}: {e}"))
}

fn remove_if_there(path: &Path) -> Result<()> {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error("removing", path)(e)),
        _ => Ok(()),
    }
}

/// Moves what `staging` holds into `dir`, the vault's header last (until it is there, `dir`
/// holds no home), then removes `staging`.
fn move_in(staging: &Path, dir: &Path) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(staging)
        .map_err(io_error("reading", staging))?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    entries.sort_by_key(|name| name == meow_store::vault::META_FILE);
    for name in entries {
        let (from, to) = (staging.join(&name), dir.join(&name));
        remove_if_there(&to)?;
        std::fs::rename(&from, &to).map_err(io_error("moving", &from))?;
    }
    std::fs::remove_dir(staging).map_err(io_error("removing", staging))
}

/// A link card this device made, waiting for its join request.
pub struct Linking {
    /// The card to show.
    pub card: LinkCard,
    secret: LinkSecret,
}

impl std::fmt::Debug for Linking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Linking({})", self.card.server)
    }
}

impl Linking {
    /// The key of the mailbox the join request comes to.
    pub fn join_mailbox(&self) -> meow_proto::LookupKey {
        channel::link_mailbox(&self.card.secret, b"join")
    }

    /// Opens a join request (the envelope from the join mailbox): the request and the short
    /// code to show, or `None` for anything else.
    pub fn open(&self, envelope: &[u8], now_ms: u64) -> Option<(JoinRequest, ShortCode)> {
        let unverified = envelope::open(envelope, &self.secret.envelope_key()).ok()?;
        let sealed = SealedJoin::from_bytes(&unverified.peek_sync_part()?).ok()?;
        let (request, code) = JoinRequest::open(&self.card, &self.secret, &sealed, now_ms).ok()?;
        // The envelope must be signed by the device the request names.
        unverified.verify(&channel::as_sender(&request.device)?).ok()?;
        Some((request, code))
    }
}

impl Node {
    /// Checks that `password` is the home's (linking gives a device the whole home).
    pub fn check_home_password(&self, password: &[u8]) -> Result<()> {
        if self.vault.is_main_password(password)? {
            Ok(())
        } else {
            Err(NodeError::Device(
                "wrong password: linking needs the home's password".into(),
            ))
        }
    }

    /// Makes a one-time link card for a new device, naming this home's first server.
    pub fn start_link(&self) -> Result<Linking> {
        let server = self.servers().into_iter().next().ok_or(NodeError::NoServers)?;
        let (card, secret) = LinkCard::new(&server.to_text(), self.env.now_ms(), &mut self.env.rng());
        Ok(Linking { card, secret })
    }

    /// After the person confirmed the short code: adds the device of `request` to the home and
    /// returns the welcome's envelopes and the mailbox they go to ([`super::net::link_welcome`]
    /// gives the home its device keys first).
    pub(crate) fn welcome(&mut self, linking: &Linking, request: &JoinRequest) -> Result<(MailboxId, Vec<Vec<u8>>)> {
        let unusable = |_| NodeError::Device("the new device's keys are not usable".into());
        let dh = ConversationPublic::from_bytes(request.dh).map_err(unusable)?;
        let mailbox = LookupPublic::from_bytes(request.mailbox).map_err(unusable)?;
        if self.devices.is_none() {
            return Err(NodeError::Internal("welcome before the home has device keys"));
        }
        let entry = DeviceEntry {
            public: request.device,
            dh,
            mailbox,
            name: request.name.clone(),
            added_ms: self.env.now_ms(),
        };
        if self.devices().iter().any(|d| d.name == entry.name) {
            return Err(NodeError::Device(format!(
                "a device is already called {}: join with another --name",
                entry.name
            )));
        }
        self.commit_sync(Kind::Setting, &device_setting(entry.id()), Some(entry.to_bytes()), 0)?;
        self.tell_device_news()?;
        let payload = self.welcome_bytes()?;
        let d = self
            .device_state()
            .ok_or(NodeError::Internal("no device state after linking"))?;
        let now = self.env.now_ms();
        let mut rng = self.env.rng();
        let envelopes = channel::seal_payload(&payload, &d.this.key, &dh, now, &mut rng)?;
        let mailbox = MailboxId::of(&channel::link_mailbox(&linking.card.secret, b"welcome").public());
        Ok((mailbox, envelopes))
    }

    fn welcome_bytes(&self) -> Result<Vec<u8>> {
        let d = self.device_state().ok_or(NodeError::Internal("no device state"))?;
        let records = d.replica.missing_for(&Default::default());
        let welcome = Welcome {
            profile: Zeroizing::new(self.profile.to_bytes()),
            servers: self.servers_records().iter().map(Encode::to_bytes).collect(),
            sync_secret: Zeroizing::new(*d.this.sync_secret),
            batch: Batch {
                known: d.replica.known(),
                records,
            },
        };
        Ok(welcome.to_bytes())
    }

    /// The first link: this home gets device keys and a sync secret, derives the revocation
    /// key from `password` (only its public half is kept), names itself in the log, and writes
    /// a record of everything another device must see.
    pub(crate) fn become_multi_device(&mut self, password: &[u8]) -> Result<()> {
        if self.devices.is_some() {
            return Ok(());
        }
        // The revocation key derives from this password for good: it must be the home's.
        self.check_home_password(password)?;
        let revocation = RevocationKey::derive(password, &self.user_public(), self.vault.kdf_params())
            .map_err(|e| NodeError::Device(format!("deriving the revocation key: {e}")))?
            .public();
        let mut rng = self.env.rng();
        let this = ThisDevice {
            key: DeviceKey::generate(&mut rng),
            dh: ConversationKey::generate(&mut rng),
            mailbox: LookupKey::generate(&mut rng),
            sync_secret: Zeroizing::new(random_bytes(&mut rng)),
            revocation,
        };
        let entry = this.entry(default_device_name(), self.profile.created_ms);
        let state = DeviceState::create(this, self.user_public());
        let vault = self.vault.clone();
        let mut b = vault.batch();
        state.put_this(&mut b, &mut rng);
        self.devices = Some(std::sync::Mutex::new(state));
        self.note_sync(
            &mut b,
            Kind::Setting,
            &device_setting(entry.id()),
            Some(entry.to_bytes()),
        );
        self.note_sync(&mut b, Kind::Setting, super::REVOCATION_KEY, Some(revocation.to_vec()));
        let contacts: Vec<_> = self.contacts.values().cloned().collect();
        for c in &contacts {
            self.sync_contact(&mut b, c);
        }
        for item in self.inbox(false)? {
            self.sync_inbox(&mut b, &item);
        }
        for g in self.groups()? {
            if self.group_compartment(&g).is_none() {
                self.sync_group(&mut b, &g);
            }
        }
        b.commit()?;
        if let Some(mut d) = self.device_state() {
            d.news.clear(); // this device naming itself is no news
        }
        self.rebuild_routes();
        Ok(())
    }
}

/// This machine's name, as a first device's default name.
fn default_device_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host = host.trim();
    if super::check_device_name(host).is_ok() {
        host.to_owned()
    } else {
        "first device".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meow_proto::sync::batch::{Part, split};

    fn joining() -> Joining {
        let mut rng = meow_proto::testing::TestRng::new(5);
        let server = meow_proto::ServerCard {
            name: "home".into(),
            address: "127.0.0.1:7070".parse().unwrap(),
            key: meow_proto::ServerKey::generate(&mut rng).public(),
        };
        let env = Env::system();
        let (card, _) = LinkCard::new(&server.to_text(), env.now_ms(), &mut rng);
        Joining::start(card, "laptop", &env).map(|(j, ..)| j).unwrap()
    }

    /// What the welcome mailbox may hold besides the welcome: a malformed part, a part of
    /// another payload, something not signed by a listed device. None of it stops the join or
    /// completes it.
    #[test]
    fn junk_in_the_welcome_mailbox_is_left_aside() {
        let mut j = joining();
        let mut rng = meow_proto::testing::TestRng::new(6);
        let stranger = DeviceKey::generate(&mut rng);
        let to = j.dh.public();
        let bad_part = vec![1, 2, 3];
        let other = Part {
            batch: [9; 8],
            index: 0,
            count: 2,
            data: vec![0; 10],
        }
        .to_bytes();
        for junk in [bad_part, other] {
            let e = channel::seal(junk, &stranger, &to, 1, &mut rng).unwrap();
            assert_eq!(j.take_part(&e).unwrap(), None);
        }
        assert_eq!(j.take_part(&[0; 200]).unwrap(), None, "not an envelope");
        // A whole payload from a key the welcome does not list is refused, with a reason.
        let welcome = Welcome {
            profile: Zeroizing::new(vec![1]),
            servers: vec![],
            sync_secret: Zeroizing::new([0; 32]),
            batch: Batch::default(),
        };
        let part = split(&welcome.to_bytes(), [4; 8], 1 << 16).remove(0);
        let e = channel::seal(part, &stranger, &to, 1, &mut rng).unwrap();
        let err = j.take_part(&e).unwrap_err().to_string();
        assert!(err.contains("not signed by a device"), "{err}");
    }
}
