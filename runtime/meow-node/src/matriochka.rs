//! Matriochka routes (spec §1.2.2, §1.2.4; docs/PROTOCOL.md §22–§23) for contacts whose policy
//! is `matriochka`: the server catalog this home keeps (with when it was fetched), which
//! servers it trusts, and the route each message takes.
//!
//! A route is drawn afresh for every attempt: the first relay at random among the trusted
//! relays (the home's own servers, unless untrusted, and those marked with `meow servers
//! trust`), the middle ones at random from the catalog (never the home's own servers nor the
//! contact's), and the last one the contact's server when it relays (it stores the envelope
//! itself) or else a random relay that deposits it there. Each relay holds the packet for a
//! delay drawn from an exponential distribution of the contact's mean, cut to what the relay
//! accepts. With no usable route the message waits in the outbox: it never goes any other way.

use meow_proto::catalog::{Catalog, MAX_CATALOG_ANSWER, ServerDescriptor, UncheckedDescriptor};
use meow_proto::codec::{Decode, Encode, Reader, Writer};
use meow_proto::crypto::{CryptoRng, random_below, random_bytes};
use meow_proto::onion::{self, Instruction, RouteHop};
use meow_proto::{Address, LookupKey, MailboxId, ServerPublic};

use crate::records::{OutboxItem, PrivacyPolicy, RouteOptions};
use crate::{Node, NodeError, Result, Table};

const CATALOG_KEY: &[u8] = b"catalog";
const TRUST_KEY: &[u8] = b"server-trust";
const DEFAULT_POLICY_KEY: &[u8] = b"default-policy";
/// A catalog older than this is fetched again before a route is drawn from it.
pub const CATALOG_STALE_MS: u64 = 3_600_000;

/// What a home keeps for Matriochka routes.
#[derive(Debug, Clone, Default)]
pub(crate) struct State {
    catalog: Catalog,
    fetched_ms: u64,
    trusted: Vec<ServerPublic>,
    untrusted: Vec<ServerPublic>,
    default_policy: (PrivacyPolicy, RouteOptions),
}

/// A server of the catalog, as shown to people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// The descriptor.
    pub descriptor: ServerDescriptor,
    /// Whether routes may start at it.
    pub trusted: bool,
    /// Whether it is one of this home's servers.
    pub mine: bool,
}

/// A packet ready for its first relay.
#[derive(Debug, Clone)]
pub struct OnionPlan {
    /// The first relay: where, and its session key.
    pub first: (Address, ServerPublic),
    /// The packet.
    pub packet: Vec<u8>,
    /// The relays' names, in order (for logs and people).
    pub relays: Vec<String>,
}

fn keys(r: &mut Reader<'_>) -> std::result::Result<Vec<ServerPublic>, meow_proto::DecodeError> {
    r.list(256, "servers", ServerPublic::decode)
}

impl State {
    pub(crate) fn load(vault: &meow_store::vault::Vault, now_ms: u64) -> Result<Self> {
        let mut s = State {
            catalog: Catalog::new(MAX_CATALOG_ANSWER),
            ..State::default()
        };
        if let Some(b) = vault.get(Table::State, CATALOG_KEY)? {
            let mut r = Reader::new(&b);
            s.fetched_ms = r.varint("catalog fetched")?;
            for d in r.list(MAX_CATALOG_ANSWER, "catalog", UncheckedDescriptor::decode)? {
                s.catalog.offer(d, now_ms / 1000);
            }
        }
        if let Some(b) = vault.get(Table::State, TRUST_KEY)? {
            let mut r = Reader::new(&b);
            s.trusted = keys(&mut r)?;
            s.untrusted = keys(&mut r)?;
        }
        if let Some(b) = vault.get(Table::State, DEFAULT_POLICY_KEY)? {
            let mut r = Reader::new(&b);
            s.default_policy = (PrivacyPolicy::from_u8(r.u8("policy")?)?, RouteOptions::decode(&mut r)?);
        }
        Ok(s)
    }
}

/// An exponential delay of mean `mean_ms`, at most `cap_ms` (and at most ten means).
fn exponential(mean_ms: u32, cap_ms: u32, rng: &mut impl CryptoRng) -> u32 {
    let u = (u64::from_le_bytes(random_bytes(rng)) >> 11) as f64 / (1u64 << 53) as f64;
    let d = -(1.0 - u).ln() * f64::from(mean_ms);
    d.min(f64::from(mean_ms) * 10.0).min(f64::from(cap_ms)) as u32
}

impl Node {
    /// The policy and route options new contacts get.
    pub fn default_policy(&self) -> (PrivacyPolicy, RouteOptions) {
        self.matriochka.default_policy
    }

    /// Sets the policy and route options new contacts get.
    pub fn set_default_policy(&mut self, policy: PrivacyPolicy, route: RouteOptions) -> Result<()> {
        let route = route.check().map_err(NodeError::Invalid)?;
        let mut w = Writer::new();
        w.u8(policy.to_u8());
        route.encode(&mut w);
        let mut b = self.vault.batch();
        b.put(Table::State, DEFAULT_POLICY_KEY, w.as_slice(), &mut self.env.rng());
        b.commit()?;
        self.matriochka.default_policy = (policy, route);
        Ok(())
    }

    /// The route options of contact `name`.
    pub fn route_options(&self, name: &str) -> Result<RouteOptions> {
        Ok(self.contacts[&self.contact_id(name)?].route)
    }

    /// Sets the shape of Matriochka routes to `name`.
    pub fn set_route_options(&mut self, name: &str, route: RouteOptions) -> Result<()> {
        let route = route.check().map_err(NodeError::Invalid)?;
        let id = self.contact_id(name)?;
        let mut c = self.contacts[&id].clone();
        c.route = route;
        let mut b = self.vault.batch();
        self.put_contact(&mut b, &c);
        b.commit()?;
        self.contacts.insert(id, c);
        Ok(())
    }

    /// Whether routes may start at the server whose session key is `key`: one of my servers
    /// that I did not untrust, or one I marked trusted.
    pub fn is_trusted(&self, key: &ServerPublic) -> bool {
        let mine = self.servers.iter().any(|s| s.card.key == *key);
        (mine && !self.matriochka.untrusted.contains(key)) || self.matriochka.trusted.contains(key)
    }

    /// Marks a server (one of mine, or of the catalog, by name, address or key fingerprint) as
    /// trusted or not; returns its name.
    pub fn set_trust(&mut self, which: &str, trusted: bool) -> Result<String> {
        let (name, key) = self.find_server(which)?;
        let m = &mut self.matriochka;
        m.trusted.retain(|k| *k != key);
        m.untrusted.retain(|k| *k != key);
        if trusted {
            m.trusted.push(key);
        } else {
            m.untrusted.push(key);
        }
        let mut w = Writer::new();
        w.list(&m.trusted, |w, k| k.encode(w));
        w.list(&m.untrusted, |w, k| k.encode(w));
        let mut b = self.vault.batch();
        b.put(Table::State, TRUST_KEY, w.as_slice(), &mut self.env.rng());
        b.commit()?;
        Ok(name)
    }

    fn find_server(&self, which: &str) -> Result<(String, ServerPublic)> {
        let mine = self
            .servers
            .iter()
            .map(|s| (s.card.name.clone(), s.card.address.clone(), s.card.key));
        let known = self.matriochka.catalog.descriptors().map(|d| {
            let address = d.body.addresses[0].clone();
            (d.body.name.clone(), address, d.body.session_key)
        });
        let matches: Vec<(String, ServerPublic)> = mine
            .chain(known)
            .filter(|(name, address, key)| {
                name == which || address.to_string() == which || key.fingerprint() == which || key.to_text() == which
            })
            .map(|(n, _, k)| (n, k))
            .collect();
        match matches.as_slice() {
            [] => Err(NodeError::UnknownServer(which.to_owned())),
            [(n, k), rest @ ..] if rest.iter().all(|(_, k2)| k2 == k) => Ok((n.clone(), *k)),
            _ => Err(NodeError::Invalid(format!(
                "{which:?} names several servers: use the address or the key fingerprint"
            ))),
        }
    }

    /// The catalog, with its servers' trust, and when it was fetched (Unix ms, 0: never).
    pub fn catalog(&self) -> (Vec<CatalogEntry>, u64) {
        let now = self.env.now_ms() / 1000;
        let entries = self
            .matriochka
            .catalog
            .descriptors()
            .filter(|d| d.is_current(now))
            .map(|d| CatalogEntry {
                descriptor: d.clone(),
                trusted: self.is_trusted(&d.body.session_key),
                mine: self.servers.iter().any(|s| s.card.key == d.body.session_key),
            })
            .collect();
        (entries, self.matriochka.fetched_ms)
    }

    /// Whether the catalog should be fetched again.
    pub fn catalog_stale(&self) -> bool {
        self.env.now_ms().saturating_sub(self.matriochka.fetched_ms) >= CATALOG_STALE_MS
    }

    /// Takes a catalog answer from one of my servers: checks every descriptor, keeps the valid
    /// ones, forgets the expired, and saves it; how many servers it now holds.
    pub fn take_catalog(&mut self, descriptors: &[Vec<u8>]) -> Result<usize> {
        let now_ms = self.env.now_ms();
        let m = &mut self.matriochka;
        m.catalog.expire(now_ms / 1000);
        for bytes in descriptors {
            match UncheckedDescriptor::from_bytes(bytes) {
                Ok(d) => {
                    m.catalog.offer(d, now_ms / 1000);
                }
                Err(e) => tracing::debug!(error = %e, "an unreadable descriptor in a catalog answer"),
            }
        }
        m.fetched_ms = now_ms;
        let mut w = Writer::new();
        w.varint(now_ms);
        let all: Vec<&ServerDescriptor> = m.catalog.descriptors().collect();
        w.list(&all, |w, d| d.encode(w));
        let mut b = self.vault.batch();
        b.put(Table::State, CATALOG_KEY, w.as_slice(), &mut self.env.rng());
        b.commit()?;
        Ok(self.matriochka.catalog.len())
    }

    /// The keys of `keys` to poll on the server whose session key is `server`: all of them on a
    /// trusted server; on another, none of a `matriochka` contact's mailboxes (polling them
    /// there would show that server when I read that contact's mail).
    pub fn poll_keys_for(&self, server: &ServerPublic, keys: &[LookupKey]) -> Vec<LookupKey> {
        if self.is_trusted(server) {
            return keys.to_vec();
        }
        let onion = |k: &LookupKey| {
            self.routes.get(&MailboxId::of(&k.public())).is_some_and(|routes| {
                routes.iter().any(|r| {
                    matches!(r, crate::Route::Contact(c)
                        if self.contacts.get(c).is_some_and(|c| c.policy == PrivacyPolicy::Matriochka))
                })
            })
        };
        keys.iter().filter(|k| !onion(k)).cloned().collect()
    }

    /// The policy of the contact an outbox item goes to (`server` for invitation answers).
    pub fn item_policy(&self, item: &OutboxItem) -> PrivacyPolicy {
        self.contacts
            .get(&item.contact)
            .map_or(PrivacyPolicy::ServerBased, |c| c.policy)
    }

    /// Draws a route for `item` and wraps its envelope; why not, when no route can be made
    /// (the item then waits in the outbox).
    pub fn onion_plan(&self, item: &OutboxItem) -> std::result::Result<OnionPlan, String> {
        let c = self.contacts.get(&item.contact).ok_or("not a contact's message")?;
        let opts = c.route;
        let now_ms = self.env.now_ms();
        let mut rng = self.env.rng();
        let relays: Vec<&ServerDescriptor> = self
            .matriochka
            .catalog
            .descriptors()
            .filter(|d| d.is_current(now_ms / 1000) && d.relays())
            .collect();
        let theirs = |d: &ServerDescriptor| item.servers.iter().any(|s| s.key == d.body.session_key);
        let mine = |d: &ServerDescriptor| self.servers.iter().any(|s| s.card.key == d.body.session_key);
        let trusted: Vec<&ServerDescriptor> = relays
            .iter()
            .copied()
            .filter(|d| self.is_trusted(&d.body.session_key))
            .collect();
        if relays.is_empty() {
            return Err("the server catalog lists no relay: `meow servers catalog --refresh` (your servers learn relays from their --peer servers)".into());
        }
        if trusted.is_empty() {
            return Err("no trusted relay: run your server with --relay, or mark a relay with `meow servers trust NAME` (see `meow servers catalog`)".into());
        }
        let first = trusted[random_below(trusted.len(), &mut rng)];
        // The contact's server ends the route when it relays: it stores the envelope itself.
        let exit = relays
            .iter()
            .copied()
            .find(|d| theirs(d) && d.identity != first.identity);
        let wanted = usize::from(opts.hops);
        let middles_needed = wanted.saturating_sub(1 + usize::from(exit.is_some()));
        let mut pool: Vec<&ServerDescriptor> = relays
            .iter()
            .copied()
            .filter(|d| !mine(d) && !theirs(d) && d.identity != first.identity)
            .collect();
        let mut route = vec![first];
        for _ in 0..middles_needed {
            if pool.is_empty() {
                return Err(format!(
                    "the catalog has too few relays for {wanted} hops (`meow servers catalog --refresh`)"
                ));
            }
            route.push(pool.swap_remove(random_below(pool.len(), &mut rng)));
        }
        if wanted > 1 {
            route.extend(exit);
        }
        self.wrap_route(&route, item, opts, exit.is_some() && wanted > 1, now_ms, &mut rng)
    }

    fn wrap_route(
        &self,
        route: &[&ServerDescriptor],
        item: &OutboxItem,
        opts: RouteOptions,
        exit_is_theirs: bool,
        now_ms: u64,
        rng: &mut impl CryptoRng,
    ) -> std::result::Result<OnionPlan, String> {
        let target = item.servers.first().ok_or("the contact has no server")?;
        let mut hops = Vec::with_capacity(route.len());
        let mut at_ms = now_ms;
        for (i, d) in route.iter().enumerate() {
            let relay = d.body.relay.as_ref().ok_or("not a relay")?;
            let key = relay
                .key_at(at_ms)
                .ok_or_else(|| format!("relay {} publishes no key for now: refresh the catalog", d.body.name))?;
            let delay_ms = exponential(opts.mean_delay_ms, relay.max_delay_ms, rng);
            at_ms += u64::from(delay_ms);
            let instruction = match route.get(i + 1) {
                Some(next) => Instruction::Forward {
                    next: next.body.session_key,
                    address: next.body.addresses[0].clone(),
                    delay_ms,
                },
                None => Instruction::Deliver {
                    delay_ms,
                    target: (!exit_is_theirs).then(|| (target.key, target.address.clone())),
                    mailbox: item.mailbox,
                    envelope: item.envelope.clone(),
                },
            };
            hops.push(RouteHop {
                relay: key,
                instruction,
            });
        }
        let packet = onion::wrap(&hops, rng).map_err(|e| e.to_string())?;
        Ok(OnionPlan {
            first: (route[0].body.addresses[0].clone(), route[0].body.session_key),
            packet: packet.into_bytes(),
            relays: route.iter().map(|d| d.body.name.clone()).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_delays_have_the_mean_asked_and_respect_the_cap() {
        let mut rng = meow_proto::testing::TestRng::new(5);
        let n = 20_000;
        let sum: u64 = (0..n).map(|_| u64::from(exponential(100, u32::MAX, &mut rng))).sum();
        let mean = sum as f64 / n as f64;
        assert!((90.0..110.0).contains(&mean), "mean {mean}");
        assert!((0..1000).all(|_| exponential(100, 30, &mut rng) <= 30));
    }
}
