//! Group messages (spec §1.6), carried as the content of [`ContentType::GROUP`] messages between
//! contacts. A group has an owner; members talk to the owner, who relays to every other member,
//! one copy per member sealed for that member's conversation.
//!
//! ```text
//! payload = version:u8 (=1) | kind:u8 | group_id:[16] | fields
//!   1 info   = name:bytes | owner:[32] (GroupPublic) | epoch:varint | members:list<bytes>
//!              | you:bytes | signature:[64]   (owner → member)
//!   2 post   = content_type:varint | content:bytes                 (member → owner)
//!   3 relay  = from:bytes | content_type:varint | content:bytes    (owner → member)
//!   4 leave  = (nothing)                                            (member → owner)
//! info signature = Ed25519(GroupKey, "meow/v1/group" 0x00 | group_id | name | owner | epoch
//!                  | members | you)
//! ```
//! `epoch` increases with every membership change: a member applies an info only if it is newer,
//! signed by the key of the group's first info, and sent by the contact who owns the group.
//! `you` names the recipient as the group lists it; an info whose member list lacks `you` tells
//! a member it was removed.
//!
//! [`ContentType::GROUP`]: crate::envelope::ContentType::GROUP

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::crypto::{CryptoError, Domain, SIGNATURE_LEN};
use crate::envelope::ContentType;
use crate::keys::{GroupKey, GroupPublic, Signature};

/// Most members a group may have.
pub const MAX_MEMBERS: usize = 1024;
/// Longest group or member name.
pub const MAX_NAME: usize = 64;

/// A group's identifier, chosen at random by its owner.
pub type GroupId = [u8; 16];

/// A group's information, as signed by its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group.
    pub id: GroupId,
    /// Its name.
    pub name: String,
    /// The owner's group key.
    pub owner: GroupPublic,
    /// Membership version.
    pub epoch: u64,
    /// Member names.
    pub members: Vec<String>,
    /// The recipient's name in the group.
    pub you: String,
    signature: Signature,
}

fn info_fields(id: &GroupId, name: &str, owner: &GroupPublic, epoch: u64, members: &[String], you: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.raw(id).string(name);
    owner.encode(&mut w);
    w.varint(epoch);
    w.list(members, |w, m| {
        w.string(m);
    });
    w.string(you);
    w.into_bytes()
}

impl GroupInfo {
    /// Signs a group's information for one member.
    pub fn sign(key: &GroupKey, id: GroupId, name: &str, epoch: u64, members: Vec<String>, you: &str) -> Self {
        let owner = key.public();
        let signature = key.sign(Domain::GROUP, &[&info_fields(&id, name, &owner, epoch, &members, you)]);
        Self {
            id,
            name: name.to_owned(),
            owner,
            epoch,
            members,
            you: you.to_owned(),
            signature,
        }
    }

    /// Verifies the owner's signature.
    pub fn verify(&self) -> Result<(), CryptoError> {
        let fields = info_fields(&self.id, &self.name, &self.owner, self.epoch, &self.members, &self.you);
        self.owner.verify(Domain::GROUP, &[&fields], &self.signature)
    }

    /// Whether the recipient is still a member.
    pub fn includes_you(&self) -> bool {
        self.members.iter().any(|m| m == &self.you)
    }
}

/// What a group message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupPayload {
    /// The group's information (owner → member): invitation and membership changes.
    Info(GroupInfo),
    /// A message for the group (member → owner).
    Post {
        /// The group.
        group: GroupId,
        /// What the content is.
        content_type: ContentType,
        /// The content.
        content: Vec<u8>,
    },
    /// A message of the group relayed by its owner (owner → member).
    Relay {
        /// The group.
        group: GroupId,
        /// Who wrote it (their name in the group).
        from: String,
        /// What the content is.
        content_type: ContentType,
        /// The content.
        content: Vec<u8>,
    },
    /// The member leaves (member → owner).
    Leave {
        /// The group.
        group: GroupId,
    },
}

impl GroupPayload {
    /// The group it concerns.
    pub fn group(&self) -> &GroupId {
        match self {
            GroupPayload::Info(i) => &i.id,
            GroupPayload::Post { group, .. } | GroupPayload::Relay { group, .. } | GroupPayload::Leave { group } => {
                group
            }
        }
    }
}

impl Encode for GroupPayload {
    fn encode(&self, w: &mut Writer) {
        w.u8(1);
        match self {
            GroupPayload::Info(i) => {
                w.u8(1).raw(&i.id).string(&i.name);
                i.owner.encode(w);
                w.varint(i.epoch);
                w.list(&i.members, |w, m| {
                    w.string(m);
                });
                w.string(&i.you).raw(&i.signature);
            }
            GroupPayload::Post {
                group,
                content_type,
                content,
            } => {
                w.u8(2).raw(group).varint(content_type.0.into()).bytes(content);
            }
            GroupPayload::Relay {
                group,
                from,
                content_type,
                content,
            } => {
                w.u8(3)
                    .raw(group)
                    .string(from)
                    .varint(content_type.0.into())
                    .bytes(content);
            }
            GroupPayload::Leave { group } => {
                w.u8(4).raw(group);
            }
        }
    }
}

fn content_type(r: &mut Reader<'_>) -> Result<ContentType, DecodeError> {
    Ok(ContentType(r.varint_max(u16::MAX.into(), "content type")? as u16))
}

impl Decode for GroupPayload {
    const WHAT: &'static str = "group payload";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8("group version")?;
        if version != 1 {
            return Err(DecodeError::UnsupportedVersion {
                what: "group payload",
                version,
            });
        }
        let kind = r.u8("group kind")?;
        let group: GroupId = r.array("group id")?;
        Ok(match kind {
            1 => GroupPayload::Info(GroupInfo {
                id: group,
                name: r.string(MAX_NAME, "group name")?.to_owned(),
                owner: GroupPublic::decode(r)?,
                epoch: r.varint("epoch")?,
                members: r.list(MAX_MEMBERS, "members", |r| Ok(r.string(MAX_NAME, "member")?.to_owned()))?,
                you: r.string(MAX_NAME, "you")?.to_owned(),
                signature: r.array::<SIGNATURE_LEN>("group signature")?,
            }),
            2 => GroupPayload::Post {
                group,
                content_type: content_type(r)?,
                content: r.bytes(crate::padding::MAX_ENVELOPE, "content")?.to_vec(),
            },
            3 => GroupPayload::Relay {
                group,
                from: r.string(MAX_NAME, "from")?.to_owned(),
                content_type: content_type(r)?,
                content: r.bytes(crate::padding::MAX_ENVELOPE, "content")?.to_vec(),
            },
            4 => GroupPayload::Leave { group },
            value => {
                return Err(DecodeError::UnknownValue {
                    what: "group kind",
                    value: value.into(),
                });
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestRng;

    #[test]
    fn info_round_trips_and_verifies() {
        let key = GroupKey::generate(&mut TestRng::new(1));
        let info = GroupInfo::sign(&key, [3; 16], "friends", 2, vec!["bob".into(), "carol".into()], "bob");
        let p = GroupPayload::Info(info.clone());
        let back = GroupPayload::from_bytes(&p.to_bytes()).unwrap();
        assert_eq!(back, p);
        let GroupPayload::Info(i) = back else { panic!() };
        i.verify().unwrap();
        assert!(i.includes_you());
        let mut forged = info.clone();
        forged.members.push("mallory".into());
        assert!(forged.verify().is_err());
    }

    #[test]
    fn other_kinds_round_trip() {
        for p in [
            GroupPayload::Post {
                group: [1; 16],
                content_type: ContentType::TEXT,
                content: b"hi".to_vec(),
            },
            GroupPayload::Relay {
                group: [1; 16],
                from: "bob".into(),
                content_type: ContentType::JSON,
                content: b"{}".to_vec(),
            },
            GroupPayload::Leave { group: [2; 16] },
        ] {
            assert_eq!(GroupPayload::from_bytes(&p.to_bytes()).unwrap(), p);
        }
        assert!(GroupPayload::from_bytes(&[1, 9, 0]).is_err());
    }
}
