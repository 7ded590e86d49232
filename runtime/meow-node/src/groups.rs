//! Groups (spec §1.6): the owner keeps the member list and relays; every copy travels through the
//! pairwise conversation of owner and member, so it is sealed for that member alone.
//!
//! - The owner creates a group, adds and removes members (each change bumps the epoch and sends
//!   the signed group information to every member; a removed member gets a last one without
//!   itself, and nothing after).
//! - A member's message goes to the owner, who stores it and relays it to every other member.
//! - A member may leave; the owner then updates the others.

use meow_proto::codec::{Decode, DecodeError, Encode, Reader, Writer};
use meow_proto::envelope::ContentType;
use meow_proto::group::{GroupId, GroupInfo, GroupPayload};
use meow_proto::{GroupKey, GroupPublic};

use crate::messaging::Queued;
use crate::records::{InboxItem, Origin, OutboxItem};
use crate::{Node, NodeError, NodeEvent, Result, Table, check_name};

/// A group as this home sees it.
#[derive(Debug, Clone)]
pub struct GroupRecord {
    /// Its id.
    pub id: GroupId,
    /// Its name.
    pub name: String,
    /// The owner's key (mine if I own it).
    pub owner_key: GroupPublic,
    /// My group key, if I am the owner.
    pub key: Option<GroupKey>,
    /// The owner's contact id (0 if I am the owner).
    pub owner_contact: u64,
    /// Membership version.
    pub epoch: u64,
    /// Members: names, and (for the owner) contact ids.
    pub members: Vec<(String, u64)>,
    /// I left or was removed.
    pub left: bool,
}

impl GroupRecord {
    /// Whether I own it.
    pub fn is_owner(&self) -> bool {
        self.key.is_some()
    }

    /// Where a message in this group comes from, for the inbox.
    fn origin(&self) -> Origin {
        Origin::Group {
            group: self.id,
            name: self.name.clone(),
        }
    }
}

impl Encode for GroupRecord {
    fn encode(&self, w: &mut Writer) {
        w.u8(1).raw(&self.id).string(&self.name);
        self.owner_key.encode(w);
        w.option(self.key.as_ref(), |w, k| {
            w.raw(k.seed().as_slice());
        });
        w.varint(self.owner_contact).varint(self.epoch);
        w.list(&self.members, |w, (n, c)| {
            w.string(n).varint(*c);
        });
        w.bool(self.left);
    }
}

impl Decode for GroupRecord {
    const WHAT: &'static str = "group record";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if r.u8("group record version")? != 1 {
            return Err(DecodeError::Invalid {
                what: "group record",
                reason: "unknown version",
            });
        }
        Ok(Self {
            id: r.array("group id")?,
            name: r.string(64, "group name")?.to_owned(),
            owner_key: GroupPublic::decode(r)?,
            key: r.option("group key", |r| Ok(GroupKey::from_seed(&r.array("group key")?)))?,
            owner_contact: r.varint("owner")?,
            epoch: r.varint("epoch")?,
            members: r.list(meow_proto::group::MAX_MEMBERS, "members", |r| {
                Ok((r.string(64, "member")?.to_owned(), r.varint("member contact")?))
            })?,
            left: r.bool("left")?,
        })
    }
}

/// What the receive path asks to send after a group message.
pub(crate) struct GroupOutcome {
    pub item: Option<InboxItem>,
    pub events: Vec<NodeEvent>,
    /// (contact id, automatic, payload) to queue once the received batch is stored.
    pub sends: Vec<(u64, bool, GroupPayload)>,
}

impl Node {
    /// All groups I am (or was) in.
    pub fn groups(&self) -> Result<Vec<GroupRecord>> {
        let mut v: Vec<GroupRecord> = self
            .vault
            .scan(Table::Groups)?
            .iter()
            .map(|(_, v)| GroupRecord::from_bytes(v))
            .collect::<Result<_, _>>()?;
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    fn group_by_name(&self, name: &str) -> Result<GroupRecord> {
        self.groups()?
            .into_iter()
            .filter(|g| g.name == name)
            .min_by_key(|g| g.left)
            .ok_or_else(|| NodeError::UnknownGroup(name.to_owned()))
    }

    pub(crate) fn group_by_id(&self, id: &GroupId) -> Result<Option<GroupRecord>> {
        Ok(match self.vault.get(Table::Groups, id)? {
            Some(v) => Some(GroupRecord::from_bytes(&v)?),
            None => None,
        })
    }

    /// The hidden compartment a group belongs in: that of a hidden contact in it, if any.
    pub(crate) fn group_compartment(&self, g: &GroupRecord) -> Option<meow_store::vault::Compartment> {
        std::iter::once(g.owner_contact)
            .chain(g.members.iter().map(|(_, c)| *c))
            .filter(|c| *c != 0)
            .find_map(|c| self.hidden_in(c))
    }

    /// Stores a group: with a hidden contact in it, in that contact's compartment (a group is
    /// hidden with its members, docs/HIDDEN.md).
    fn save_group(&self, g: &GroupRecord) -> Result<()> {
        let mut b = self.vault.batch();
        match self.group_compartment(g) {
            Some(c) => b.put_in(c, Table::Groups, &g.id, &g.to_bytes(), &mut self.env.rng()),
            None => {
                b.put(Table::Groups, &g.id, &g.to_bytes(), &mut self.env.rng());
                self.sync_group(&mut b, g);
            }
        }
        b.commit()?;
        Ok(())
    }

    /// Creates a group I own.
    pub fn create_group(&mut self, name: &str) -> Result<GroupRecord> {
        check_name(name)?;
        if self.groups()?.iter().any(|g| g.name == name && !g.left) {
            return Err(NodeError::GroupExists(name.to_owned()));
        }
        let key = GroupKey::generate(&mut self.env.rng());
        let g = GroupRecord {
            id: meow_proto::crypto::random_bytes(&mut self.env.rng()),
            name: name.to_owned(),
            owner_key: key.public(),
            key: Some(key),
            owner_contact: 0,
            epoch: 0,
            members: Vec::new(),
            left: false,
        };
        self.save_group(&g)?;
        Ok(g)
    }

    fn owned(&self, group: &str) -> Result<GroupRecord> {
        let g = self.group_by_name(group)?;
        if !g.is_owner() || g.left {
            return Err(NodeError::NotGroupOwner(group.to_owned()));
        }
        Ok(g)
    }

    fn info_for(g: &GroupRecord, you: &str) -> Option<GroupPayload> {
        let key = g.key.as_ref()?;
        let names = g.members.iter().map(|(n, _)| n.clone()).collect();
        Some(GroupPayload::Info(GroupInfo::sign(
            key, g.id, &g.name, g.epoch, names, you,
        )))
    }

    /// Sends the current information of a group I own to every member (and to `also`).
    fn announce(&mut self, g: &GroupRecord, also: Option<(String, u64)>) -> Result<Vec<OutboxItem>> {
        let copies = g
            .members
            .iter()
            .cloned()
            .chain(also)
            .filter_map(|(name, cid)| Self::info_for(g, &name).map(|p| (cid, p)))
            .collect();
        self.queue_group_many(copies)
    }

    fn queue_group_many(&mut self, copies: Vec<(u64, GroupPayload)>) -> Result<Vec<OutboxItem>> {
        self.queue_many(
            copies
                .into_iter()
                .map(|(cid, p)| (cid, ContentType::GROUP, p.to_bytes()))
                .collect(),
        )
    }

    pub(crate) fn queue_group(&mut self, contact: u64, p: &GroupPayload) -> Result<OutboxItem> {
        self.queue_to(contact, ContentType::GROUP, p.to_bytes())
    }

    /// Adds a contact to a group I own; returns what to deliver.
    pub fn group_add(&mut self, group: &str, contact: &str) -> Result<Vec<OutboxItem>> {
        let mut g = self.owned(group)?;
        let cid = self.contact_id(contact)?;
        if g.members.iter().any(|(_, c)| *c == cid) {
            return Err(NodeError::AlreadyMember {
                contact: contact.to_owned(),
                group: group.to_owned(),
            });
        }
        g.members.push((contact.to_owned(), cid));
        g.epoch += 1;
        self.save_group(&g)?;
        self.announce(&g, None)
    }

    /// Removes a member from a group I own; they get a last update without themselves.
    pub fn group_remove(&mut self, group: &str, contact: &str) -> Result<Vec<OutboxItem>> {
        let mut g = self.owned(group)?;
        let pos = g
            .members
            .iter()
            .position(|(n, _)| n == contact)
            .ok_or_else(|| NodeError::NotMember {
                contact: contact.to_owned(),
                group: group.to_owned(),
            })?;
        let removed = g.members.remove(pos);
        g.epoch += 1;
        self.save_group(&g)?;
        self.announce(&g, Some(removed))
    }

    /// Leaves a group (as owner: dissolves it, every member is told).
    pub fn group_leave(&mut self, group: &str) -> Result<Vec<OutboxItem>> {
        let mut g = self.group_by_name(group)?;
        if g.left {
            return Err(NodeError::LeftGroup(group.to_owned()));
        }
        let out = if g.is_owner() {
            let members = std::mem::take(&mut g.members);
            g.epoch += 1;
            let copies = members
                .into_iter()
                .filter_map(|(name, cid)| Self::info_for(&g, &name).map(|p| (cid, p)))
                .collect();
            self.queue_group_many(copies)?
        } else {
            vec![self.queue_group(g.owner_contact, &GroupPayload::Leave { group: g.id })?]
        };
        g.left = true;
        self.save_group(&g)?;
        Ok(out)
    }

    /// Sends content to a group: to every member if I own it, else to the owner, who relays.
    pub fn group_post(&mut self, group: &str, content_type: ContentType, content: Vec<u8>) -> Result<Vec<OutboxItem>> {
        self.group_post_as(group, content_type, content, None)
    }

    /// [`Node::group_post`] for a program: marked automatic, counted against `by`'s quota.
    pub fn group_post_as(
        &mut self,
        group: &str,
        content_type: ContentType,
        content: Vec<u8>,
        by: Option<&str>,
    ) -> Result<Vec<OutboxItem>> {
        let g = self.group_by_name(group)?;
        if g.left {
            return Err(NodeError::LeftGroup(group.to_owned()));
        }
        let copies: Vec<(u64, GroupPayload)> = if g.is_owner() {
            let from = self.display_name().unwrap_or("owner").to_owned();
            g.members
                .iter()
                .map(|(_, cid)| {
                    let p = GroupPayload::Relay {
                        group: g.id,
                        from: from.clone(),
                        content_type,
                        content: content.clone(),
                    };
                    (*cid, p)
                })
                .collect()
        } else {
            let p = GroupPayload::Post {
                group: g.id,
                content_type,
                content,
            };
            vec![(g.owner_contact, p)]
        };
        self.queue_all(
            copies
                .into_iter()
                .map(|(cid, p)| Queued {
                    automatic: by.is_some(),
                    by: by.map(str::to_owned),
                    ..Queued::new(cid, ContentType::GROUP, p.to_bytes())
                })
                .collect(),
        )
    }

    /// Applies a group message from contact `cid` (called while receiving).
    pub(crate) fn take_group(
        &mut self,
        cid: u64,
        sender: &str,
        content: &[u8],
        base: &InboxItem,
    ) -> Result<GroupOutcome> {
        let mut out = GroupOutcome {
            item: None,
            events: Vec::new(),
            sends: Vec::new(),
        };
        let payload = match GroupPayload::from_bytes(content) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(contact = sender, "malformed group message discarded: {e}");
                return Ok(out);
            }
        };
        let known = self.group_by_id(payload.group())?;
        let changed = |g: &GroupRecord, what: String| NodeEvent::GroupChanged {
            group: g.name.clone(),
            change: what,
        };
        match (payload, known) {
            (GroupPayload::Info(info), None) => {
                if info.verify().is_err() || !info.includes_you() {
                    return Ok(out);
                }
                let g = GroupRecord {
                    id: info.id,
                    name: info.name.clone(),
                    owner_key: info.owner,
                    key: None,
                    owner_contact: cid,
                    epoch: info.epoch,
                    members: info.members.iter().map(|m| (m.clone(), 0)).collect(),
                    left: false,
                };
                self.save_group(&g)?;
                out.events.push(changed(
                    &g,
                    format!("{sender} added you (members: {})", info.members.join(", ")),
                ));
            }
            (GroupPayload::Info(info), Some(mut g)) => {
                let genuine = g.owner_contact == cid && info.owner == g.owner_key && info.verify().is_ok();
                if !genuine || info.epoch <= g.epoch || g.left {
                    return Ok(out);
                }
                g.epoch = info.epoch;
                g.members = info.members.iter().map(|m| (m.clone(), 0)).collect();
                let what = if info.includes_you() {
                    format!("members are now: {}", info.members.join(", "))
                } else {
                    g.left = true;
                    format!("{sender} removed you")
                };
                self.save_group(&g)?;
                out.events.push(changed(&g, what));
            }
            (
                GroupPayload::Relay {
                    from,
                    content_type,
                    content,
                    ..
                },
                Some(g),
            ) if g.owner_contact == cid && !g.left => {
                out.item = Some(InboxItem {
                    from,
                    content_type,
                    content,
                    origin: g.origin(),
                    ..base.clone()
                });
            }
            (
                GroupPayload::Post {
                    content_type, content, ..
                },
                Some(g),
            ) if g.is_owner() && !g.left => {
                if !g.members.iter().any(|(_, c)| *c == cid) {
                    return Ok(out);
                }
                for (_, other) in g.members.iter().filter(|(_, c)| *c != cid) {
                    let p = GroupPayload::Relay {
                        group: g.id,
                        from: sender.to_owned(),
                        content_type,
                        content: content.clone(),
                    };
                    out.sends.push((*other, base.automatic, p));
                }
                out.item = Some(InboxItem {
                    content_type,
                    content,
                    origin: g.origin(),
                    ..base.clone()
                });
            }
            (GroupPayload::Leave { .. }, Some(mut g)) if g.is_owner() && !g.left => {
                let before = g.members.len();
                g.members.retain(|(_, c)| *c != cid);
                if g.members.len() != before {
                    g.epoch += 1;
                    self.save_group(&g)?;
                    for (name, other) in &g.members {
                        if let Some(p) = Self::info_for(&g, name) {
                            out.sends.push((*other, false, p));
                        }
                    }
                    out.events.push(changed(&g, format!("{sender} left")));
                }
            }
            _ => tracing::debug!(
                contact = sender,
                "group message for an unknown group, or not from its owner: ignored"
            ),
        }
        Ok(out)
    }
}

/// Names of a group's members, for listing.
pub fn member_names(g: &GroupRecord) -> Vec<String> {
    g.members.iter().map(|(n, _)| n.clone()).collect()
}
