//! Requests a client sends to a server and the server's responses (spec §4.2).
//!
//! These travel inside an encrypted [`crate::session`] (stream transports) or a sealed
//! [`crate::datagram`] (connectionless links); the server alone can read them.
//!
//! ```text
//! request frame  = request_id:varint | kind:u8 | fields
//! response frame = request_id:varint | kind:u8 | fields
//! ```
//! A client may pipeline requests; responses carry the id of the request they answer and may come
//! back in any order.

use crate::broadcast::UncheckedBroadcast;
use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::crypto::{Domain, SIGNATURE_LEN};
use crate::directory::{UncheckedEntry, Withdrawal};
use crate::keys::{LookupKey, LookupPublic, MailboxId, Signature};
use crate::lease::{LeaseAnswer, LeaseOp};
use crate::padding::MAX_ENVELOPE;
use crate::sync::DeviceId;

/// Most mailboxes in one poll or ack.
pub const MAX_MAILBOXES_PER_REQUEST: usize = 1024;
/// Most sequence numbers acknowledged for one mailbox in one request.
pub const MAX_ACKS_PER_MAILBOX: usize = 4096;
/// Most messages in one poll response.
pub const MAX_POLL_MESSAGES: usize = 4096;
/// Longest error text.
pub const MAX_ERROR_TEXT: usize = 512;
/// Most directory entries in a response.
pub const MAX_DIRECTORY_RESULTS: usize = 64;
/// Longest Matriochka packet (the largest size class's).
pub const MAX_ONION_PACKET: usize = MAX_ENVELOPE + crate::onion::ROUTING_SPACE + 2 + 32 + 32;
/// Longest encoded server descriptor.
pub const MAX_DESCRIPTOR: usize = 2048;

/// Access to one mailbox: its lookup key, and a proof of owning it unless already given in this
/// session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxAuth {
    /// The mailbox's lookup key.
    pub lookup: LookupPublic,
    /// `Ed25519(lookup key, "meow/v1/mailbox-proof" 0x00 | binding)`, where the binding is the
    /// session's channel binding or the datagram's encapsulated key. Unreplayable elsewhere.
    pub proof: Option<Signature>,
}

impl MailboxAuth {
    /// Access with a fresh proof bound to `binding`.
    pub fn prove(key: &LookupKey, binding: &[u8; 32]) -> Self {
        Self {
            lookup: key.public(),
            proof: Some(prove_mailbox(key, binding)),
        }
    }

    /// Access to a mailbox already proven in this session.
    pub fn proven(key: &LookupKey) -> Self {
        Self {
            lookup: key.public(),
            proof: None,
        }
    }

    /// The mailbox named.
    pub fn mailbox(&self) -> MailboxId {
        MailboxId::of(&self.lookup)
    }

    /// Checks the proof against `binding`; `false` if absent or wrong.
    pub fn verify(&self, binding: &[u8; 32]) -> bool {
        self.proof
            .as_ref()
            .is_some_and(|sig| self.lookup.verify(Domain::MAILBOX_PROOF, &[binding], sig).is_ok())
    }
}

/// The proof of owning a lookup key, bound to one session or datagram.
pub fn prove_mailbox(key: &LookupKey, binding: &[u8; 32]) -> Signature {
    key.sign(Domain::MAILBOX_PROOF, &[binding])
}

impl Encode for MailboxAuth {
    fn encode(&self, w: &mut Writer) {
        self.lookup.encode(w);
        w.option(self.proof.as_ref(), |w, s| {
            w.raw(s);
        });
    }
}

impl Decode for MailboxAuth {
    const WHAT: &'static str = "mailbox access";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let lookup = LookupPublic::decode(r)?;
        let proof = r.option("mailbox proof", |r| r.array::<SIGNATURE_LEN>("mailbox proof"))?;
        Ok(Self { lookup, proof })
    }
}

/// Acknowledgement of messages in one mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckItem {
    /// The mailbox.
    pub auth: MailboxAuth,
    /// The sequence numbers of the messages to delete.
    pub seqs: Vec<u64>,
}

/// A request to a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Store an envelope in a mailbox. Anyone who knows the mailbox may deposit.
    Deposit {
        /// Where.
        mailbox: MailboxId,
        /// What: an envelope of a padding class size.
        envelope: Vec<u8>,
    },
    /// Fetch messages from mailboxes I prove I own, plus broadcasts newer than `broadcasts_after`.
    Poll {
        /// The mailboxes.
        mailboxes: Vec<MailboxAuth>,
        /// Most messages to return.
        limit: u32,
        /// If nothing is waiting, wait up to this long for something to arrive.
        wait_ms: u32,
        /// Highest broadcast id already seen (0 for none).
        broadcasts_after: u64,
    },
    /// Delete delivered messages. Idempotent.
    Ack {
        /// Per mailbox, what to delete.
        items: Vec<AckItem>,
    },
    /// Publish an emergency broadcast.
    Broadcast(UncheckedBroadcast),
    /// Publish or replace a directory entry.
    DirectoryPublish(UncheckedEntry),
    /// Search the directory by words.
    DirectorySearch {
        /// Words, all of which must match.
        query: String,
        /// Most results.
        limit: u32,
    },
    /// Draw entries at random.
    DirectoryRandom {
        /// How many.
        count: u32,
    },
    /// Remove a directory entry.
    DirectoryWithdraw(Withdrawal),
    /// Ask for the server's name and limits.
    Info,
    /// Relay a Matriochka packet (docs/PROTOCOL.md §22): the server peels its layer and
    /// forwards or delivers what is inside after the delay it reads there.
    Forward {
        /// The packet, of one of the onion sizes.
        packet: Vec<u8>,
    },
    /// Ask for the server's catalog (docs/PROTOCOL.md §23), offering the asker's own
    /// descriptor if it is a server.
    Catalog {
        /// The asker's encoded descriptor.
        offer: Option<Vec<u8>>,
    },
    /// Take, renew or release a conversation lease (docs/PROTOCOL.md §25): a compare-and-swap on
    /// the lease named by a lookup key the asker proves it owns, like a mailbox.
    Lease {
        /// The lease's lookup key, with its proof.
        auth: MailboxAuth,
        /// The asking device.
        device: DeviceId,
        /// The epoch the device last saw (0 if none).
        expect: u64,
        /// Take or release.
        op: LeaseOp,
    },
}

/// A message held in a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The mailbox it is in.
    pub mailbox: MailboxId,
    /// Its number in the mailbox, for acknowledgement.
    pub seq: u64,
    /// When the server received it, Unix seconds.
    pub received_at: u64,
    /// The envelope.
    pub envelope: Vec<u8>,
}

/// A broadcast as delivered by a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastItem {
    /// Server-assigned id, increasing.
    pub id: u64,
    /// Whether the signer is the server's operator.
    pub from_operator: bool,
    /// The signed broadcast.
    pub broadcast: UncheckedBroadcast,
}

/// A server's description of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// The server's name.
    pub name: String,
    /// Largest envelope accepted.
    pub max_envelope: u32,
    /// How long messages are kept, seconds.
    pub message_ttl_secs: u64,
    /// Whether users other than the operator may broadcast.
    pub open_broadcast: bool,
}

/// Error codes a server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request could not be decoded.
    Malformed,
    /// A version this server does not speak.
    UnsupportedVersion,
    /// A mailbox proof or signature is missing or wrong.
    NotAuthorized,
    /// The mailbox holds its maximum of messages or bytes.
    MailboxFull,
    /// The envelope or request is larger than allowed.
    TooLarge,
    /// Too many mailboxes in this session or request.
    TooManyMailboxes,
    /// Slow down.
    RateLimited,
    /// This user may not broadcast.
    BroadcastRefused,
    /// No such entry.
    NotFound,
    /// The envelope is not a valid envelope (wrong version or not a size class).
    InvalidEnvelope,
    /// The directory entry is not valid.
    InvalidEntry,
    /// Something failed inside the server.
    Internal,
    /// The server is shutting down or overloaded: retry later.
    Unavailable,
    /// The server's storage quota is used up.
    StorageFull,
    /// The Matriochka packet was seen before and is dropped.
    Replayed,
    /// A code this version does not know (a newer server): shown with the server's message.
    Other(u8),
}

impl ErrorCode {
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            ErrorCode::Malformed => 1,
            ErrorCode::UnsupportedVersion => 2,
            ErrorCode::NotAuthorized => 3,
            ErrorCode::MailboxFull => 4,
            ErrorCode::TooLarge => 5,
            ErrorCode::TooManyMailboxes => 6,
            ErrorCode::RateLimited => 7,
            ErrorCode::BroadcastRefused => 8,
            ErrorCode::NotFound => 9,
            ErrorCode::InvalidEnvelope => 10,
            ErrorCode::InvalidEntry => 11,
            ErrorCode::Internal => 12,
            ErrorCode::Unavailable => 13,
            ErrorCode::StorageFull => 14,
            ErrorCode::Replayed => 15,
            ErrorCode::Other(v) => v,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Result<Self, DecodeError> {
        Ok(match v {
            1 => ErrorCode::Malformed,
            2 => ErrorCode::UnsupportedVersion,
            3 => ErrorCode::NotAuthorized,
            4 => ErrorCode::MailboxFull,
            5 => ErrorCode::TooLarge,
            6 => ErrorCode::TooManyMailboxes,
            7 => ErrorCode::RateLimited,
            8 => ErrorCode::BroadcastRefused,
            9 => ErrorCode::NotFound,
            10 => ErrorCode::InvalidEnvelope,
            11 => ErrorCode::InvalidEntry,
            12 => ErrorCode::Internal,
            13 => ErrorCode::Unavailable,
            14 => ErrorCode::StorageFull,
            15 => ErrorCode::Replayed,
            0 => {
                return Err(DecodeError::UnknownValue {
                    what: "error code",
                    value: 0,
                });
            }
            other => ErrorCode::Other(other),
        })
    }

    /// Whether retrying the same request later may succeed.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimited | ErrorCode::Internal | ErrorCode::Unavailable | ErrorCode::StorageFull
        )
    }
}

/// A server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The envelope is on disk.
    Deposited,
    /// Messages and broadcasts.
    Messages {
        /// Messages, oldest first per mailbox.
        items: Vec<StoredMessage>,
        /// Broadcasts newer than asked, oldest first.
        broadcasts: Vec<BroadcastItem>,
        /// More messages are waiting.
        more: bool,
    },
    /// Messages deleted (already-deleted ones count as done).
    Acked,
    /// The broadcast was accepted with this id.
    Broadcasted {
        /// Its id.
        id: u64,
    },
    /// The directory entry is published.
    Published,
    /// The directory entry was removed.
    Withdrawn,
    /// Directory entries (signed, to be checked by the client).
    Directory {
        /// The entries.
        entries: Vec<UncheckedEntry>,
    },
    /// The server's description.
    Info(ServerInfo),
    /// The packet is taken: it will be forwarded or delivered after its delay.
    Forwarded,
    /// The servers the server knows: encoded descriptors, to be checked by the reader.
    Catalog {
        /// Descriptors.
        descriptors: Vec<Vec<u8>>,
    },
    /// The lease as it is after a [`Request::Lease`], and whether the request was granted.
    Lease(LeaseAnswer),
    /// The request failed.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// A sentence for people.
        message: String,
    },
}

mod kind {
    pub const DEPOSIT: u8 = 1;
    pub const POLL: u8 = 2;
    pub const ACK: u8 = 3;
    pub const BROADCAST: u8 = 4;
    pub const DIR_PUBLISH: u8 = 5;
    pub const DIR_SEARCH: u8 = 6;
    pub const DIR_RANDOM: u8 = 7;
    pub const DIR_WITHDRAW: u8 = 8;
    pub const INFO: u8 = 9;
    pub const FORWARD: u8 = 10;
    pub const CATALOG: u8 = 11;
    pub const LEASE: u8 = 12;

    pub const R_DEPOSITED: u8 = 1;
    pub const R_MESSAGES: u8 = 2;
    pub const R_ACKED: u8 = 3;
    pub const R_BROADCASTED: u8 = 4;
    pub const R_PUBLISHED: u8 = 5;
    pub const R_WITHDRAWN: u8 = 6;
    pub const R_DIRECTORY: u8 = 7;
    pub const R_INFO: u8 = 8;
    pub const R_ERROR: u8 = 9;
    pub const R_FORWARDED: u8 = 10;
    pub const R_CATALOG: u8 = 11;
    pub const R_LEASE: u8 = 12;
}

impl Encode for Request {
    fn encode(&self, w: &mut Writer) {
        match self {
            Request::Deposit { mailbox, envelope } => {
                w.u8(kind::DEPOSIT);
                mailbox.encode(w);
                w.bytes(envelope);
            }
            Request::Poll {
                mailboxes,
                limit,
                wait_ms,
                broadcasts_after,
            } => {
                w.u8(kind::POLL);
                w.list(mailboxes, |w, m| m.encode(w));
                w.varint((*limit).into())
                    .varint((*wait_ms).into())
                    .varint(*broadcasts_after);
            }
            Request::Ack { items } => {
                w.u8(kind::ACK);
                w.list(items, |w, item| {
                    item.auth.encode(w);
                    w.list(&item.seqs, |w, s| {
                        w.varint(*s);
                    });
                });
            }
            Request::Broadcast(b) => {
                w.u8(kind::BROADCAST);
                b.encode(w);
            }
            Request::DirectoryPublish(e) => {
                w.u8(kind::DIR_PUBLISH);
                e.encode(w);
            }
            Request::DirectorySearch { query, limit } => {
                w.u8(kind::DIR_SEARCH).string(query).varint((*limit).into());
            }
            Request::DirectoryRandom { count } => {
                w.u8(kind::DIR_RANDOM).varint((*count).into());
            }
            Request::DirectoryWithdraw(wd) => {
                w.u8(kind::DIR_WITHDRAW);
                wd.encode(w);
            }
            Request::Info => {
                w.u8(kind::INFO);
            }
            Request::Forward { packet } => {
                w.u8(kind::FORWARD).bytes(packet);
            }
            Request::Catalog { offer } => {
                w.u8(kind::CATALOG);
                w.option(offer.as_ref(), |w, d| {
                    w.bytes(d);
                });
            }
            Request::Lease {
                auth,
                device,
                expect,
                op,
            } => {
                w.u8(kind::LEASE);
                auth.encode(w);
                w.raw(&device.0).varint(*expect);
                op.encode(w);
            }
        }
    }
}

fn u32_field(r: &mut Reader<'_>, what: &'static str) -> Result<u32, DecodeError> {
    Ok(r.varint_max(u32::MAX.into(), what)? as u32)
}

impl Decode for Request {
    const WHAT: &'static str = "request";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8("request kind")? {
            kind::DEPOSIT => Request::Deposit {
                mailbox: MailboxId::decode(r)?,
                envelope: r.bytes(MAX_ENVELOPE, "envelope")?.to_vec(),
            },
            kind::POLL => Request::Poll {
                mailboxes: r.list(MAX_MAILBOXES_PER_REQUEST, "poll mailboxes", MailboxAuth::decode)?,
                limit: u32_field(r, "poll limit")?,
                wait_ms: u32_field(r, "poll wait")?,
                broadcasts_after: r.varint("broadcasts after")?,
            },
            kind::ACK => Request::Ack {
                items: r.list(MAX_MAILBOXES_PER_REQUEST, "ack mailboxes", |r| {
                    Ok(AckItem {
                        auth: MailboxAuth::decode(r)?,
                        seqs: r.list(MAX_ACKS_PER_MAILBOX, "ack seqs", |r| r.varint("seq"))?,
                    })
                })?,
            },
            kind::BROADCAST => Request::Broadcast(UncheckedBroadcast::decode(r)?),
            kind::DIR_PUBLISH => Request::DirectoryPublish(UncheckedEntry::decode(r)?),
            kind::DIR_SEARCH => Request::DirectorySearch {
                query: r.string(256, "search words")?.to_owned(),
                limit: u32_field(r, "search limit")?,
            },
            kind::DIR_RANDOM => Request::DirectoryRandom {
                count: u32_field(r, "random count")?,
            },
            kind::DIR_WITHDRAW => Request::DirectoryWithdraw(Withdrawal::decode(r)?),
            kind::INFO => Request::Info,
            kind::FORWARD => Request::Forward {
                packet: r.bytes(MAX_ONION_PACKET, "onion packet")?.to_vec(),
            },
            kind::CATALOG => Request::Catalog {
                offer: r.option("catalog offer", |r| Ok(r.bytes(MAX_DESCRIPTOR, "descriptor")?.to_vec()))?,
            },
            kind::LEASE => Request::Lease {
                auth: MailboxAuth::decode(r)?,
                device: DeviceId(r.array::<8>("lease device")?),
                expect: r.varint("lease epoch")?,
                op: LeaseOp::decode(r)?,
            },
            value => {
                return Err(DecodeError::UnknownValue {
                    what: "request kind",
                    value: value.into(),
                });
            }
        })
    }
}

impl Encode for Response {
    fn encode(&self, w: &mut Writer) {
        match self {
            Response::Deposited => {
                w.u8(kind::R_DEPOSITED);
            }
            Response::Messages {
                items,
                broadcasts,
                more,
            } => {
                w.u8(kind::R_MESSAGES);
                w.list(items, |w, m| {
                    m.mailbox.encode(w);
                    w.varint(m.seq).varint(m.received_at).bytes(&m.envelope);
                });
                w.list(broadcasts, |w, b| {
                    w.varint(b.id).bool(b.from_operator);
                    b.broadcast.encode(w);
                });
                w.bool(*more);
            }
            Response::Acked => {
                w.u8(kind::R_ACKED);
            }
            Response::Broadcasted { id } => {
                w.u8(kind::R_BROADCASTED).varint(*id);
            }
            Response::Published => {
                w.u8(kind::R_PUBLISHED);
            }
            Response::Withdrawn => {
                w.u8(kind::R_WITHDRAWN);
            }
            Response::Directory { entries } => {
                w.u8(kind::R_DIRECTORY);
                w.list(entries, |w, e| e.encode(w));
            }
            Response::Info(info) => {
                w.u8(kind::R_INFO).string(&info.name).varint(info.max_envelope.into());
                w.varint(info.message_ttl_secs).bool(info.open_broadcast);
            }
            Response::Forwarded => {
                w.u8(kind::R_FORWARDED);
            }
            Response::Catalog { descriptors } => {
                w.u8(kind::R_CATALOG);
                w.list(descriptors, |w, d| {
                    w.bytes(d);
                });
            }
            Response::Lease(answer) => {
                w.u8(kind::R_LEASE);
                answer.encode(w);
            }
            Response::Error { code, message } => {
                w.u8(kind::R_ERROR).u8(code.to_u8()).string(message);
            }
        }
    }
}

impl Decode for Response {
    const WHAT: &'static str = "response";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8("response kind")? {
            kind::R_DEPOSITED => Response::Deposited,
            kind::R_MESSAGES => Response::Messages {
                items: r.list(MAX_POLL_MESSAGES, "messages", |r| {
                    Ok(StoredMessage {
                        mailbox: MailboxId::decode(r)?,
                        seq: r.varint("seq")?,
                        received_at: r.varint("received at")?,
                        envelope: r.bytes(MAX_ENVELOPE, "envelope")?.to_vec(),
                    })
                })?,
                broadcasts: r.list(MAX_POLL_MESSAGES, "broadcasts", |r| {
                    Ok(BroadcastItem {
                        id: r.varint("broadcast id")?,
                        from_operator: r.bool("from operator")?,
                        broadcast: UncheckedBroadcast::decode(r)?,
                    })
                })?,
                more: r.bool("more")?,
            },
            kind::R_ACKED => Response::Acked,
            kind::R_BROADCASTED => Response::Broadcasted {
                id: r.varint("broadcast id")?,
            },
            kind::R_PUBLISHED => Response::Published,
            kind::R_WITHDRAWN => Response::Withdrawn,
            kind::R_DIRECTORY => Response::Directory {
                entries: r.list(MAX_DIRECTORY_RESULTS, "directory entries", UncheckedEntry::decode)?,
            },
            kind::R_INFO => Response::Info(ServerInfo {
                name: r.string(64, "server name")?.to_owned(),
                max_envelope: u32_field(r, "max envelope")?,
                message_ttl_secs: r.varint("message ttl")?,
                open_broadcast: r.bool("open broadcast")?,
            }),
            kind::R_FORWARDED => Response::Forwarded,
            kind::R_CATALOG => Response::Catalog {
                descriptors: r.list(crate::catalog::MAX_CATALOG_ANSWER, "catalog", |r| {
                    Ok(r.bytes(MAX_DESCRIPTOR, "descriptor")?.to_vec())
                })?,
            },
            kind::R_LEASE => Response::Lease(LeaseAnswer::decode(r)?),
            kind::R_ERROR => Response::Error {
                code: ErrorCode::from_u8(r.u8("error code")?)?,
                message: r.string(MAX_ERROR_TEXT, "error text")?.to_owned(),
            },
            value => {
                return Err(DecodeError::UnknownValue {
                    what: "response kind",
                    value: value.into(),
                });
            }
        })
    }
}

/// A request with the id its response will carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFrame {
    /// Chosen by the client; echoed in the response.
    pub id: u64,
    /// The request.
    pub request: Request,
}

/// A response to the request with the same id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseFrame {
    /// The request's id.
    pub id: u64,
    /// The answer.
    pub response: Response,
}

impl Encode for RequestFrame {
    fn encode(&self, w: &mut Writer) {
        w.varint(self.id);
        self.request.encode(w);
    }
}

impl Decode for RequestFrame {
    const WHAT: &'static str = "request frame";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            id: r.varint("request id")?,
            request: Request::decode(r)?,
        })
    }
}

impl Encode for ResponseFrame {
    fn encode(&self, w: &mut Writer) {
        w.varint(self.id);
        self.response.encode(w);
    }
}

impl Decode for ResponseFrame {
    const WHAT: &'static str = "response frame";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            id: r.varint("request id")?,
            response: Response::decode(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestRng;

    #[test]
    fn mailbox_proofs_are_bound() {
        let key = LookupKey::generate(&mut TestRng::new(3));
        let auth = MailboxAuth::prove(&key, &[1; 32]);
        assert!(auth.verify(&[1; 32]));
        assert!(!auth.verify(&[2; 32]), "a proof from another session does not work");
        assert!(!MailboxAuth::proven(&key).verify(&[1; 32]));
    }

    #[test]
    fn unknown_kinds_are_errors() {
        assert!(matches!(
            Request::from_bytes(&[99]),
            Err(DecodeError::UnknownValue { .. })
        ));
        assert!(matches!(
            Response::from_bytes(&[0]),
            Err(DecodeError::UnknownValue { .. })
        ));
        // An error code from a newer server is still an error the client can show.
        assert!(matches!(
            Response::from_bytes(&[9, 99, 0]),
            Ok(Response::Error {
                code: ErrorCode::Other(99),
                ..
            })
        ));
        assert!(matches!(
            Response::from_bytes(&[9, 0, 0]),
            Err(DecodeError::UnknownValue { .. })
        ));
    }
}
