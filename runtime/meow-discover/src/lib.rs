//! Servers on the local network, for isolated Wi-Fi with no internet (spec §1.8): a server
//! announces itself with DNS-SD over multicast DNS (RFC 6762, RFC 6763) as a `_meow._tcp`
//! service whose TXT record carries its card, and a home browses for them. The `mdns-sd`
//! crate does the multicast DNS on a thread of its own.
//!
//! Discovery finds; it does not vouch. Anyone on the network can announce anything, so a
//! found card is only a candidate: the caller checks that the server at the address answers
//! under the card's key (a handshake, `meow servers discover` does it), and the person
//! compares the key's fingerprint with the one the server's owner shows before adding it.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use meow_proto::{Address, ServerCard};

/// The DNS-SD service type.
pub const SERVICE: &str = "_meow._tcp.local.";

/// Discovery errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoverError {
    /// Multicast DNS could not start or answer.
    #[error("multicast DNS: {0}")]
    Mdns(#[from] mdns_sd::Error),
}

/// Where announcements go and browsing listens: the loopback interface only (for a server
/// listening on 127.0.0.1, and tests), or every interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// 127.0.0.1 only.
    Loopback,
    /// Every interface.
    Network,
}

impl Scope {
    /// The scope that reaches the clients of a server listening on `listen`.
    pub fn for_listen(listen: SocketAddr) -> Self {
        if listen.ip().is_loopback() {
            Scope::Loopback
        } else {
            Scope::Network
        }
    }
}

fn daemon(scope: Scope) -> Result<ServiceDaemon, DiscoverError> {
    let d = ServiceDaemon::new()?;
    if scope == Scope::Loopback {
        d.disable_interface(IfKind::All)?;
        d.enable_interface(IfKind::LoopbackV4)?;
    }
    Ok(d)
}

/// A DNS label from a server name: letters, digits and dashes, at most 40 characters.
fn label(name: &str) -> String {
    let l: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    if l.is_empty() { "meow".into() } else { l }
}

/// An announcement, withdrawn when dropped.
pub struct Announcement {
    daemon: ServiceDaemon,
    fullname: String,
}

impl std::fmt::Debug for Announcement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Announcement({})", self.fullname)
    }
}

/// Announces the server of `card`, listening on `listen`, in `scope`.
pub fn announce(card: &ServerCard, listen: SocketAddr, scope: Scope) -> Result<Announcement, DiscoverError> {
    let daemon = daemon(scope)?;
    let fp = card.key.fingerprint();
    let short: String = fp.chars().filter(char::is_ascii_alphanumeric).take(8).collect();
    let instance = format!("{}-{short}", label(&card.name));
    let host = format!("{instance}.local.");
    let text = card.to_text();
    let properties = [("v", "1"), ("card", text.as_str())];
    let info = if listen.ip().is_unspecified() {
        ServiceInfo::new(SERVICE, &instance, &host, "", listen.port(), &properties[..])?.enable_addr_auto()
    } else {
        ServiceInfo::new(SERVICE, &instance, &host, listen.ip(), listen.port(), &properties[..])?
    };
    let fullname = info.get_fullname().to_owned();
    daemon.register(info)?;
    tracing::info!(service = %fullname, "announced on the local network");
    Ok(Announcement { daemon, fullname })
}

impl Drop for Announcement {
    fn drop(&mut self) {
        let _ = self.daemon.unregister(&self.fullname);
        let _ = self.daemon.shutdown();
    }
}

/// A server found on the local network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The card it announced, with the address it was found at (a card naming an unspecified
    /// address, a server listening on every interface, gets the one it answered from).
    pub card: ServerCard,
    /// The DNS-SD instance name.
    pub instance: String,
}

/// Browses for servers during `wait`; each one once, by instance name.
pub fn discover(wait: Duration, scope: Scope) -> Result<Vec<Found>, DiscoverError> {
    let daemon = daemon(scope)?;
    let events = daemon.browse(SERVICE)?;
    let deadline = Instant::now() + wait;
    let mut found = BTreeMap::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(event) = events.recv_timeout(left) else { break };
        if let ServiceEvent::ServiceResolved(s) = event {
            let addresses: Vec<IpAddr> = s.addresses.iter().map(|a| a.to_ip_addr()).collect();
            match read_card(s.txt_properties.get_property_val_str("card"), &addresses, s.port) {
                Some(card) => {
                    found.insert(
                        s.fullname.clone(),
                        Found {
                            card,
                            instance: s.fullname.clone(),
                        },
                    );
                }
                None => tracing::debug!(service = %s.fullname, "an announcement without a readable card"),
            }
        }
    }
    let _ = daemon.shutdown();
    Ok(found.into_values().collect())
}

/// The announced card, its address made reachable when it names none.
fn read_card(text: Option<&str>, addresses: &[IpAddr], port: u16) -> Option<ServerCard> {
    let mut card = ServerCard::from_text(text?).ok()?;
    let unspecified = match &card.address {
        Address::Tcp(a) => a.parse::<SocketAddr>().is_ok_and(|a| a.ip().is_unspecified()),
        _ => false,
    };
    if unspecified {
        let ip = addresses.iter().find(|a| a.is_ipv4()).or(addresses.first())?;
        card.address = Address::Tcp(SocketAddr::new(*ip, port).to_string());
    }
    Some(card)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_become_labels_and_unspecified_addresses_are_filled_in() {
        assert_eq!(label("home server #1"), "home-server--1");
        assert_eq!(label(""), "meow");
        let key = meow_proto::ServerKey::generate(&mut meow_proto::os_rng()).public();
        let card = ServerCard {
            name: "hub".into(),
            address: Address::Tcp("0.0.0.0:7070".into()),
            key,
        };
        let ip: IpAddr = "192.168.4.1".parse().unwrap();
        let got = read_card(Some(&card.to_text()), &[ip], 7070).unwrap();
        assert_eq!(got.address, Address::Tcp("192.168.4.1:7070".into()));
        assert_eq!(got.key, card.key);
        assert_eq!(read_card(Some("not a card"), &[ip], 1), None);
        assert_eq!(read_card(None, &[ip], 1), None);
    }

    #[test]
    fn an_announced_server_is_found_on_loopback() {
        let key = meow_proto::ServerKey::generate(&mut meow_proto::os_rng()).public();
        let card = ServerCard {
            name: "unit-test".into(),
            address: Address::Tcp("127.0.0.1:17070".into()),
            key,
        };
        let _a = announce(&card, "127.0.0.1:17070".parse().unwrap(), Scope::Loopback).unwrap();
        let found = discover(Duration::from_secs(3), Scope::Loopback).unwrap();
        assert!(found.iter().any(|f| f.card == card), "{found:?}");
    }
}
