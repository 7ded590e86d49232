//! Transport addresses: where a server (or, later, a peer) is reached, and over what kind of
//! link. Cards carry them typed, so a client picks the transport by the address's kind.
//!
//! ```text
//! address = kind:u8 | value:bytes(max 255)
//!   kind 1 tcp     value "host:port"        a session over a byte stream (§9)
//!   kind 2 udp     value "host:port"        sealed datagrams (§10)
//!   kind 3 memory  value a name             an in-process link (tests, simulations)
//!   other kinds    kept as they are: a newer client's transport, shown but not used
//! text    = "host:port" (tcp) | "tcp:host:port" | "udp:host:port" | "mem:name"
//! ```
//!
//! ```
//! use meow_proto::address::Address;
//!
//! let a: Address = "udp:192.0.2.7:7070".parse().unwrap();
//! assert_eq!(a, Address::Udp("192.0.2.7:7070".into()));
//! assert_eq!("127.0.0.1:7070".parse::<Address>().unwrap().to_string(), "127.0.0.1:7070");
//! ```

use core::fmt;
use core::str::FromStr;

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};

/// Longest address value.
pub const MAX_ADDRESS_LEN: usize = 255;

/// Where a server is reached, and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Address {
    /// A TCP `host:port`: encrypted sessions (docs/PROTOCOL.md §9).
    Tcp(String),
    /// A UDP `host:port`: sealed datagrams (§10).
    Udp(String),
    /// An in-process link by name (the test kit's simulated network).
    Memory(String),
    /// A kind this version does not know: kept so a card stays readable, never connected to.
    Other {
        /// The kind byte.
        kind: u8,
        /// The value.
        value: Vec<u8>,
    },
}

/// How a transport carries frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// An ordered byte stream (sessions).
    Stream,
    /// Separate datagrams, each sealed on its own.
    Datagram,
}

impl Address {
    /// The kind byte.
    pub fn kind(&self) -> u8 {
        match self {
            Address::Tcp(_) => 1,
            Address::Udp(_) => 2,
            Address::Memory(_) => 3,
            Address::Other { kind, .. } => *kind,
        }
    }

    /// Whether this transport carries a stream or datagrams (`None`: unknown).
    pub fn link(&self) -> Option<LinkKind> {
        match self {
            Address::Tcp(_) | Address::Memory(_) => Some(LinkKind::Stream),
            Address::Udp(_) => Some(LinkKind::Datagram),
            Address::Other { .. } => None,
        }
    }

    fn value(&self) -> &[u8] {
        match self {
            Address::Tcp(v) | Address::Udp(v) | Address::Memory(v) => v.as_bytes(),
            Address::Other { value, .. } => value,
        }
    }

    /// Reads a version-1 card's address: a plain `host:port` string, which was always TCP.
    pub fn decode_v1(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let text = r.string(MAX_ADDRESS_LEN, "server address")?;
        if !is_host_port(text) {
            return Err(DecodeError::Invalid {
                what: "server address",
                reason: "not host:port",
            });
        }
        Ok(Address::Tcp(text.to_owned()))
    }
}

/// `host:port`, the host a name, an IPv4 address or a bracketed IPv6 one. A host never holds a
/// bare `:`, so the text form of an address is unambiguous: `udp:…` or `mem:…` cannot be read as
/// a TCP host, whichever form (text or binary) it arrived in.
fn is_host_port(v: &str) -> bool {
    let Some((host, port)) = v.rsplit_once(':') else {
        return false;
    };
    let bracketed =
        host.len() > 2 && host.starts_with('[') && host.ends_with(']') && !host[1..host.len() - 1].contains(['[', ']']);
    v.len() <= MAX_ADDRESS_LEN
        && !host.is_empty()
        && (bracketed || !host.contains([':', '[', ']']))
        && !host.chars().any(|c| c.is_whitespace() || c.is_control())
        && port.parse::<u16>().is_ok()
}

impl Encode for Address {
    fn encode(&self, w: &mut Writer) {
        w.u8(self.kind()).bytes(self.value());
    }
}

impl Decode for Address {
    const WHAT: &'static str = "address";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let kind = r.u8("address kind")?;
        let value = r.bytes(MAX_ADDRESS_LEN, "address")?;
        if value.is_empty() {
            return Err(DecodeError::Invalid {
                what: "address",
                reason: "empty",
            });
        }
        let text = || {
            core::str::from_utf8(value)
                .map(str::to_owned)
                .map_err(|_| DecodeError::Invalid {
                    what: "address",
                    reason: "not UTF-8",
                })
        };
        let host_port = || {
            let t = text()?;
            if is_host_port(&t) {
                Ok(t)
            } else {
                Err(DecodeError::Invalid {
                    what: "address",
                    reason: "not host:port",
                })
            }
        };
        Ok(match kind {
            1 => Address::Tcp(host_port()?),
            2 => Address::Udp(host_port()?),
            3 => Address::Memory(text()?),
            0 => {
                return Err(DecodeError::UnknownValue {
                    what: "address kind",
                    value: 0,
                });
            }
            kind => Address::Other {
                kind,
                value: value.to_vec(),
            },
        })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => f.write_str(a),
            Address::Udp(a) => write!(f, "udp:{a}"),
            Address::Memory(n) => write!(f, "mem:{n}"),
            Address::Other { kind, value } => write!(f, "kind-{kind}:{}", String::from_utf8_lossy(value)),
        }
    }
}

/// Why an address text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {0:?} (examples: 192.0.2.7:7070, udp:192.0.2.7:7070, mem:home)")]
pub struct AddressError(pub String);

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || AddressError(s.to_owned());
        let host_port = |v: &str| if is_host_port(v) { Ok(v.to_owned()) } else { Err(bad()) };
        if let Some(v) = s.strip_prefix("udp:") {
            return Ok(Address::Udp(host_port(v)?));
        }
        if let Some(v) = s.strip_prefix("mem:") {
            if v.is_empty() || v.len() > MAX_ADDRESS_LEN {
                return Err(bad());
            }
            return Ok(Address::Memory(v.to_owned()));
        }
        Ok(Address::Tcp(host_port(s.strip_prefix("tcp:").unwrap_or(s))?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_in_text_and_binary() {
        for text in [
            "127.0.0.1:7070",
            "udp:192.0.2.7:9",
            "mem:hub",
            "[::1]:7070",
            "example.org:443",
        ] {
            let a: Address = text.parse().unwrap();
            assert_eq!(a.to_string(), text);
            assert_eq!(Address::from_bytes(&a.to_bytes()).unwrap(), a);
        }
        assert_eq!(
            "tcp:10.0.0.1:1".parse::<Address>().unwrap(),
            Address::Tcp("10.0.0.1:1".into())
        );
        for bad in [
            "",
            "nohost",
            ":7070",
            "udp:x",
            "host:99999",
            "mem:",
            "::1:7070",
            "a b:1",
            "[]:1",
        ] {
            assert!(bad.parse::<Address>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_tcp_host_cannot_pose_as_another_kind() {
        // Kind 1 (TCP) with the value "mem:hub:1" would print as a memory address.
        let mut forged = vec![1, 9];
        forged.extend_from_slice(b"mem:hub:1");
        assert!(Address::from_bytes(&forged).is_err());
        let mut forged = vec![1, 14];
        forged.extend_from_slice(b"udp:10.0.0.1:9");
        assert!(Address::from_bytes(&forged).is_err());
        // Every address that decodes prints a text that reads back as itself.
        for a in ["127.0.0.1:7070", "udp:[::1]:9", "mem:a:b"] {
            let a: Address = a.parse().unwrap();
            assert_eq!(a.to_string().parse::<Address>().unwrap(), a);
        }
    }

    #[test]
    fn unknown_kinds_are_kept_and_empty_values_refused() {
        let other = Address::from_bytes(&[9, 3, b'a', b'b', b'c']).unwrap();
        assert_eq!(
            other,
            Address::Other {
                kind: 9,
                value: b"abc".to_vec()
            }
        );
        assert_eq!(other.link(), None);
        assert_eq!(other.to_bytes(), [9, 3, b'a', b'b', b'c']);
        assert!(Address::from_bytes(&[1, 0]).is_err());
        assert!(Address::from_bytes(&[0, 1, b'a']).is_err());
    }
}
