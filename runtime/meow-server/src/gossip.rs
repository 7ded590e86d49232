//! The server catalog service (spec §5.1, docs/PROTOCOL.md §23): the server's identity and its
//! own signed descriptor, re-issued every hour; the catalog of the servers it knows, offered by
//! clients and servers and kept in `catalog.bin`; and the gossip that spreads it lazily: every
//! round, one request to one peer at random, offering our descriptor and taking theirs.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use meow_clock::rate::Buckets;
use meow_proto::catalog::{Catalog, DescriptorBody, MAX_CATALOG_ANSWER, Offer, ServerDescriptor, UncheckedDescriptor};
use meow_proto::codec::{Decode, Encode};
use meow_proto::wire::{ErrorCode, Response};
use meow_proto::{ServerCard, ServerIdentity};
use parking_lot::Mutex;

use crate::relay::Relay;
use crate::writer::Refusal;

/// Bytes of descriptors in one catalog answer at most (a frame holds 256 KiB).
const MAX_ANSWER_BYTES: usize = 192 * 1024;

/// How the catalog is kept and spread.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// Time between two gossip rounds.
    pub interval: Duration,
    /// Servers asked first (a fresh server knows no one else).
    pub peers: Vec<ServerCard>,
    /// A descriptor's lifetime (re-issued at a third of it).
    pub lifetime: Duration,
    /// Servers kept at most.
    pub max_servers: usize,
    /// The address the descriptor gives (default: the card's).
    pub advertise: Option<meow_proto::Address>,
}

impl Default for GossipConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(300),
            peers: Vec::new(),
            lifetime: Duration::from_secs(3 * 3600),
            max_servers: MAX_CATALOG_ANSWER,
            advertise: None,
        }
    }
}

/// The server's own descriptor and the catalog of the others.
#[derive(Debug)]
pub struct CatalogService {
    identity: ServerIdentity,
    card: ServerCard,
    relay: Option<Arc<Relay>>,
    cfg: GossipConfig,
    path: PathBuf,
    own: Mutex<ServerDescriptor>,
    catalog: Mutex<Catalog>,
    offers: Mutex<Buckets<IpAddr>>,
}

/// The server's identity (`server-identity.key`), made on first use.
fn identity(dir: &Path) -> std::io::Result<ServerIdentity> {
    crate::load_or_create_secret(dir, "server-identity.key")
        .map(|seed| ServerIdentity::from_seed(&seed))
        .map_err(std::io::Error::other)
}

impl CatalogService {
    /// Loads (or creates) the identity and the saved catalog in `data_dir`, and issues the
    /// server's descriptor for `card` at `now_ms`.
    pub fn open(
        data_dir: &Path,
        cfg: GossipConfig,
        card: ServerCard,
        relay: Option<Arc<Relay>>,
        now_ms: u64,
    ) -> std::io::Result<Self> {
        let identity = identity(data_dir)?;
        let path = data_dir.join("catalog.bin");
        let mut catalog = Catalog::new(cfg.max_servers);
        if let Ok(bytes) = std::fs::read(&path) {
            let mut r = meow_proto::codec::Reader::new(&bytes);
            let saved = r.list(MAX_CATALOG_ANSWER, "saved catalog", UncheckedDescriptor::decode);
            for d in saved.unwrap_or_default() {
                catalog.offer(d, now_ms / 1000);
            }
        }
        let own = Self::issue(&identity, &card, relay.as_deref(), &cfg, now_ms, 0);
        Ok(Self {
            identity,
            card,
            relay,
            cfg,
            path,
            own: Mutex::new(own),
            catalog: Mutex::new(catalog),
            offers: Mutex::new(Buckets::new(1.0, 30)),
        })
    }

    fn issue(
        identity: &ServerIdentity,
        card: &ServerCard,
        relay: Option<&Relay>,
        cfg: &GossipConfig,
        now_ms: u64,
        last_sequence: u64,
    ) -> ServerDescriptor {
        let now = now_ms / 1000;
        let body = DescriptorBody {
            name: card.name.chars().take(meow_proto::catalog::MAX_NAME).collect(),
            addresses: vec![cfg.advertise.clone().unwrap_or_else(|| card.address.clone())],
            session_key: card.key,
            issued_at: now,
            sequence: now.max(last_sequence + 1),
            expires_at: now + cfg.lifetime.as_secs().max(60),
            relay: relay.map(|r| r.info(now_ms)),
        };
        ServerDescriptor::sign(identity, body)
    }

    /// Re-issues the descriptor if a third of its lifetime has passed (new relay keys too).
    pub fn refresh(&self, now_ms: u64) {
        let mut own = self.own.lock();
        let now = now_ms / 1000;
        let third = self.cfg.lifetime.as_secs().max(60) / 3;
        if now >= own.body.issued_at + third {
            *own = Self::issue(
                &self.identity,
                &self.card,
                self.relay.as_deref(),
                &self.cfg,
                now_ms,
                own.body.sequence,
            );
        }
    }

    /// The server's current descriptor.
    pub fn own(&self) -> ServerDescriptor {
        self.own.lock().clone()
    }

    /// Every server known (not ours), current at `now_ms`.
    pub fn known(&self, now_ms: u64) -> Vec<ServerDescriptor> {
        let mut c = self.catalog.lock();
        c.expire(now_ms / 1000);
        c.descriptors().cloned().collect()
    }

    /// Takes an offered descriptor and answers with ours and the catalog (a `Catalog` request).
    pub fn answer(&self, now_ms: u64, ip: IpAddr, offer: Option<Vec<u8>>) -> Result<Response, Refusal> {
        if !self.offers.lock().take(&ip, now_ms) {
            return Err((ErrorCode::RateLimited, "ask for the catalog less often".into()));
        }
        if let Some(bytes) = offer {
            let d = UncheckedDescriptor::from_bytes(&bytes).map_err(|e| (ErrorCode::Malformed, e.to_string()))?;
            self.take(d, now_ms).map_err(|e| (ErrorCode::InvalidEntry, e))?;
        }
        let mut descriptors = vec![self.own().to_bytes()];
        let mut bytes = descriptors[0].len();
        for d in self.known(now_ms) {
            let encoded = d.to_bytes();
            bytes += encoded.len() + 3;
            if bytes > MAX_ANSWER_BYTES || descriptors.len() >= MAX_CATALOG_ANSWER {
                break;
            }
            descriptors.push(encoded);
        }
        Ok(Response::Catalog { descriptors })
    }

    /// Offers one descriptor to the catalog (ours is never taken in).
    fn take(&self, d: UncheckedDescriptor, now_ms: u64) -> Result<Offer, String> {
        if *d.claimed_identity() == self.identity.public() {
            return Ok(Offer::Stale);
        }
        match self.catalog.lock().offer(d, now_ms / 1000) {
            Offer::Refused(e) => Err(e.to_string()),
            other => Ok(other),
        }
    }

    /// Takes what a peer answered; how many descriptors were new or newer.
    pub fn merge(&self, descriptors: Vec<Vec<u8>>, now_ms: u64) -> usize {
        descriptors
            .iter()
            .filter_map(|b| UncheckedDescriptor::from_bytes(b).ok())
            .filter(|d| matches!(self.take(d.clone(), now_ms), Ok(Offer::Added | Offer::Updated)))
            .count()
    }

    /// Saves the catalog (best effort: it is rebuilt by gossip anyway).
    pub fn save(&self) {
        let c = self.catalog.lock();
        let mut w = meow_proto::codec::Writer::new();
        let all: Vec<&ServerDescriptor> = c.descriptors().collect();
        w.list(&all, |w, d| d.encode(w));
        if let Err(e) = crate::write_private(&self.path, w.as_slice()) {
            tracing::warn!(error = %e, "saving the server catalog failed");
        }
    }

    /// One gossip round's peer: a configured peer or a known server, at random.
    fn pick(&self, round: u64) -> Option<ServerCard> {
        let mut rng = meow_proto::os_rng();
        let c = self.catalog.lock();
        let known = c.pick_peer(&self.identity.public(), &mut rng).map(|d| ServerCard {
            name: d.body.name.clone(),
            address: d.body.addresses[0].clone(),
            key: d.body.session_key,
        });
        // Configured peers are asked on even rounds while there are any; known servers otherwise.
        let seeded = (!self.cfg.peers.is_empty() && (round.is_multiple_of(2) || known.is_none()))
            .then(|| self.cfg.peers[meow_proto::crypto::random_below(self.cfg.peers.len(), &mut rng)].clone());
        seeded.or(known)
    }
}

/// Gossips forever: a round at start, then one per interval.
pub async fn run(service: Arc<CatalogService>, pool: Arc<meow_net::Pool>, clock: meow_clock::SharedClock) {
    let mut round = 0u64;
    loop {
        service.refresh(clock.now_ms());
        if let Some(peer) = service.pick(round) {
            match exchange(&service, &pool, &peer, clock.now_ms()).await {
                Ok(n) => tracing::debug!(peer = %peer.address, new = n, "catalog gossip"),
                Err(e) => {
                    pool.drop_client(&peer.address).await;
                    tracing::debug!(peer = %peer.address, error = %e, "catalog gossip failed");
                }
            }
            service.save();
        }
        round += 1;
        clock.sleep(service.cfg.interval).await;
    }
}

/// One exchange with `peer`: our descriptor offered, their catalog merged.
pub async fn exchange(
    service: &CatalogService,
    pool: &meow_net::Pool,
    peer: &ServerCard,
    now_ms: u64,
) -> Result<usize, String> {
    let client = pool.get(&peer.address, &peer.key).await.map_err(|e| e.to_string())?;
    let descriptors = client
        .catalog(Some(service.own().to_bytes()))
        .await
        .map_err(|e| e.to_string())?;
    Ok(service.merge(descriptors, now_ms))
}

#[cfg(test)]
mod tests;
