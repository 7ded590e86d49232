//! The gateway's link sessions (`meow_proto::link`): each opened by one sealed datagram, kept in
//! memory only (a restart forgets them and clients open new ones, losing nothing), bounded in
//! number (the least recently used goes first) and forgotten after a week unused.

use std::collections::HashMap;

use meow_proto::CryptoRng;
use meow_proto::keys::{MailboxId, ServerKey};
use meow_proto::link::{self, LinkError, LinkRequest, ServerLink, SessionId};

/// Most sessions a gateway keeps.
pub const MAX_LINKS: usize = 4096;
/// Sessions unused this long are forgotten, seconds.
pub const IDLE_SECS: u64 = 7 * 24 * 3600;

/// A frame opened in a known session: what to deposit where.
#[derive(Debug)]
pub struct Deposit {
    /// The frame's counter (the answer carries it).
    pub counter: u32,
    /// The mailbox its alias names, if it names one.
    pub mailbox: Option<MailboxId>,
    /// The envelope.
    pub envelope: Vec<u8>,
    /// The session's binding (its open's `enc`).
    pub binding: [u8; 32],
}

/// The sessions, by id, with the time each was last used.
#[derive(Debug, Default)]
pub struct Links {
    map: HashMap<SessionId, (ServerLink, u64)>,
}

impl Links {
    /// Accepts an open: a new session under an unused id; returns the answer to send, or `None`
    /// when `fresh` says the open's `enc` was seen already (a replay).
    pub fn open(
        &mut self,
        key: &ServerKey,
        datagram: &[u8],
        now_secs: u64,
        rng: &mut impl CryptoRng,
        fresh: impl FnOnce([u8; 32]) -> bool,
    ) -> Result<Option<Vec<u8>>, LinkError> {
        let id = loop {
            let id = SessionId(meow_proto::crypto::random_bytes(rng));
            if !self.map.contains_key(&id) {
                break id;
            }
        };
        let opened = link::accept(key, datagram, now_secs, id)?;
        if !fresh(opened.link.binding) {
            return Ok(None);
        }
        self.make_room(now_secs);
        self.map.insert(id, (opened.link, now_secs));
        Ok(Some(opened.answer))
    }

    /// Opens a frame of a known session; `Err(UnknownSession)` for any other.
    pub fn frame(&mut self, frame: &[u8], now_secs: u64) -> Result<(SessionId, Deposit), LinkError> {
        let (_, id, _) = link::read_header(frame).ok_or(LinkError::BadHeader)?;
        let (link, used) = self.map.get_mut(&id).ok_or(LinkError::UnknownSession)?;
        let (counter, request) = link.open_frame(frame)?;
        *used = now_secs;
        let deposit = match request {
            LinkRequest::Deposit { alias, envelope } => Deposit {
                counter,
                mailbox: link.mailbox(alias),
                envelope,
                binding: link.binding,
            },
            _ => return Err(LinkError::BadHeader),
        };
        Ok((id, deposit))
    }

    /// The answer to frame `counter` of session `id` (if the session is still known).
    pub fn answer(&self, id: SessionId, counter: u32, status: link::LinkStatus) -> Option<Vec<u8>> {
        self.map.get(&id).map(|(l, _)| l.answer(counter, status))
    }

    /// How many sessions are kept.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no session is kept.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn make_room(&mut self, now_secs: u64) {
        self.map
            .retain(|_, (_, used)| now_secs.saturating_sub(*used) < IDLE_SECS);
        while self.map.len() >= MAX_LINKS {
            let Some(oldest) = self.map.iter().min_by_key(|(_, (_, used))| *used).map(|(id, _)| *id) else {
                return;
            };
            self.map.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use meow_proto::crypto::CounterRng;
    use meow_proto::link::LinkOpener;

    #[test]
    fn sessions_are_bounded_and_the_least_recently_used_goes() {
        let mut rng = CounterRng::new(1);
        let key = ServerKey::generate(&mut rng);
        let mut links = Links::default();
        let mut clients = Vec::new();
        for i in 0..(MAX_LINKS as u64 + 1) {
            let (opener, open) = LinkOpener::new(&key.public(), vec![MailboxId([1; 16])], 1000 + i, &mut rng).unwrap();
            let answer = links.open(&key, &open, 1000 + i, &mut rng, |_| true).unwrap().unwrap();
            if i == 0 || i == MAX_LINKS as u64 {
                clients.push(opener.finish(&answer).unwrap());
            }
        }
        assert_eq!(links.len(), MAX_LINKS);
        let (_, first) = clients[0].deposit(0, b"x").unwrap();
        assert_eq!(links.frame(&first, 5000).err(), Some(LinkError::UnknownSession));
        let (_, last) = clients[1].deposit(0, b"x").unwrap();
        let (_, d) = links.frame(&last, 5000).unwrap();
        assert_eq!(d.mailbox, Some(MailboxId([1; 16])));
        assert_eq!(links.frame(&last, 5000).err(), Some(LinkError::Replay));
    }

    #[test]
    fn idle_sessions_are_forgotten() {
        let mut rng = CounterRng::new(2);
        let key = ServerKey::generate(&mut rng);
        let mut links = Links::default();
        let (_, open) = LinkOpener::new(&key.public(), vec![], 1000, &mut rng).unwrap();
        links.open(&key, &open, 1000, &mut rng, |_| true).unwrap();
        let later = 1000 + IDLE_SECS;
        let (_, open) = LinkOpener::new(&key.public(), vec![], later, &mut rng).unwrap();
        links.open(&key, &open, later, &mut rng, |_| true).unwrap();
        assert_eq!(
            links.open(&key, &open, later, &mut rng, |_| false).unwrap(),
            None,
            "a replayed open"
        );
        assert_eq!(links.len(), 1);
    }
}
