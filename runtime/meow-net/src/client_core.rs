//! The client side of a server session, sans-IO: request ids, which mailboxes this session has
//! proven, and each request's deadline. The async [`crate::ServerClient`] and the test kit's
//! simulated client both drive it; it reads no clock and touches no socket.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use meow_proto::wire::{MailboxAuth, Request, RequestFrame, ResponseFrame};
use meow_proto::{LookupKey, MailboxId};

/// The bookkeeping of one session.
#[derive(Debug)]
pub struct ClientCore {
    binding: [u8; 32],
    next_id: u64,
    proven: HashSet<MailboxId>,
    deadlines: BTreeMap<u64, u64>,
}

impl ClientCore {
    /// The state of a session with this channel binding.
    pub fn new(binding: [u8; 32]) -> Self {
        Self {
            binding,
            next_id: 1,
            proven: HashSet::new(),
            deadlines: BTreeMap::new(),
        }
    }

    /// The channel binding mailbox proofs sign.
    pub fn binding(&self) -> [u8; 32] {
        self.binding
    }

    /// What to send for `key`: a proof the first time on this session, the bare key after.
    pub fn auth(&self, key: &LookupKey) -> MailboxAuth {
        if self.proven.contains(&MailboxId::of(&key.public())) {
            MailboxAuth::proven(key)
        } else {
            MailboxAuth::prove(key, &self.binding)
        }
    }

    /// Records that the server accepted these keys' proofs.
    pub fn mark_proven<'a>(&mut self, keys: impl IntoIterator<Item = &'a LookupKey>) {
        self.proven.extend(keys.into_iter().map(|k| MailboxId::of(&k.public())));
    }

    /// Starts a request at `now_ms` that may wait up to `timeout` for its answer.
    pub fn start(&mut self, now_ms: u64, request: Request, timeout: Duration) -> RequestFrame {
        let id = self.next_id;
        self.next_id += 1;
        self.deadlines.insert(id, now_ms + timeout.as_millis() as u64);
        RequestFrame { id, request }
    }

    /// Takes a response: `true` if it answers a request still waiting (else it is dropped).
    pub fn finish(&mut self, frame: &ResponseFrame) -> bool {
        self.deadlines.remove(&frame.id).is_some()
    }

    /// Gives up on a request (its caller stopped waiting).
    pub fn forget(&mut self, id: u64) {
        self.deadlines.remove(&id);
    }

    /// The requests whose deadline has passed at `now_ms`, forgotten.
    pub fn expire(&mut self, now_ms: u64) -> Vec<u64> {
        let expired: Vec<u64> = self
            .deadlines
            .iter()
            .filter(|&(_, &d)| d <= now_ms)
            .map(|(&id, _)| id)
            .collect();
        for id in &expired {
            self.deadlines.remove(id);
        }
        expired
    }

    /// The earliest deadline of a waiting request.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.values().min().copied()
    }

    /// Requests waiting for their answer.
    pub fn waiting(&self) -> usize {
        self.deadlines.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use meow_proto::crypto::CounterRng as TestRng;
    use meow_proto::wire::Response;

    #[test]
    fn ids_proofs_and_deadlines() {
        let mut c = ClientCore::new([7; 32]);
        let key = LookupKey::generate(&mut TestRng::new(1));
        assert!(c.auth(&key).verify(&[7; 32]), "a proof the first time");
        c.mark_proven([&key]);
        assert!(!c.auth(&key).verify(&[7; 32]), "the bare key afterwards");
        let a = c.start(1000, Request::Info, Duration::from_secs(30));
        let b = c.start(1000, Request::Info, Duration::from_secs(10));
        assert_ne!(a.id, b.id);
        assert_eq!(c.next_deadline(), Some(11_000));
        assert_eq!(c.expire(11_000), vec![b.id]);
        assert!(
            !c.finish(&ResponseFrame {
                id: b.id,
                response: Response::Acked
            }),
            "too late"
        );
        assert!(c.finish(&ResponseFrame {
            id: a.id,
            response: Response::Acked
        }));
        assert_eq!(c.waiting(), 0);
    }
}
