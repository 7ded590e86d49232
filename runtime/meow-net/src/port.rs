//! Datagram ports: links that carry whole datagrams rather than a stream, one trait for all of
//! them. UDP is one; a bare serial line (KISS with a CRC), an RNode or KISS TNC, and a
//! Meshtastic device are the others (`crate::radio`). The server answers sealed datagrams and
//! link sessions on any port; the gateway client (`crate::gateway`) deposits through any port.
//! A [`LinkAddress`] names a port the way a user writes it on the command line.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use smol::net::UdpSocket;

use crate::datagram::MAX_DATAGRAM;
use crate::radio::RadioOptions;
use crate::serial::SerialSpec;

/// What a port's operations return.
pub type PortFuture<'a, T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send + 'a>>;

/// Who sent a datagram, or where one goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortPeer {
    /// A UDP peer.
    Ip(SocketAddr),
    /// The other end of a point-to-point line (a serial cable, an RNode's radio channel).
    Line,
    /// A node of a Meshtastic mesh, by node number (`BROADCAST` for every node).
    Node(u32),
}

impl PortPeer {
    /// The address used for per-address quotas: a line or a mesh counts as one address.
    pub fn ip(&self) -> IpAddr {
        match self {
            PortPeer::Ip(a) => a.ip(),
            PortPeer::Line | PortPeer::Node(_) => IpAddr::from([0, 0, 0, 0]),
        }
    }
}

impl fmt::Display for PortPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortPeer::Ip(a) => write!(f, "{a}"),
            PortPeer::Line => write!(f, "the line"),
            PortPeer::Node(n) => write!(f, "node !{n:08x}"),
        }
    }
}

/// What a port has done, for `meow status` and benchmarks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PortStatus {
    /// Datagrams sent and their bytes (as the link carries them: framing included).
    pub sent: (u64, u64),
    /// Datagrams received and their bytes.
    pub received: (u64, u64),
    /// Frames dropped: bad CRC, bad framing, incomplete fragments.
    pub dropped: u64,
    /// Datagrams waiting for airtime.
    pub queued: usize,
    /// Airtime used, for a radio.
    pub airtime_used: Duration,
    /// Airtime left in the current hour and the hourly budget, for a radio.
    pub airtime: Option<(Duration, Duration)>,
}

/// A link that carries whole datagrams.
pub trait DatagramPort: Send + Sync + fmt::Debug {
    /// The largest datagram it carries (fragmented underneath if the medium needs it).
    fn mtu(&self) -> usize;
    /// Sends `datagram` to `to`; on a radio, resolves once it went on the air (which may wait
    /// for the duty cycle).
    fn send_to<'a>(&'a self, datagram: &'a [u8], to: PortPeer) -> PortFuture<'a, ()>;
    /// The next datagram and its sender. An error is the port failing, not a bad datagram
    /// (those are dropped and counted).
    fn recv_from(&self) -> PortFuture<'_, (Vec<u8>, PortPeer)>;
    /// Counters and the airtime budget.
    fn status(&self) -> PortStatus {
        PortStatus::default()
    }
}

/// A UDP socket as a port.
#[derive(Debug)]
pub struct UdpPort {
    socket: UdpSocket,
}

impl UdpPort {
    /// A port over a bound socket.
    pub fn new(socket: UdpSocket) -> Self {
        Self { socket }
    }
}

impl DatagramPort for UdpPort {
    fn mtu(&self) -> usize {
        MAX_DATAGRAM
    }

    fn send_to<'a>(&'a self, datagram: &'a [u8], to: PortPeer) -> PortFuture<'a, ()> {
        Box::pin(async move {
            let PortPeer::Ip(addr) = to else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("udp cannot reach {to}"),
                ));
            };
            self.socket.send_to(datagram, addr).await.map(|_| ())
        })
    }

    fn recv_from(&self) -> PortFuture<'_, (Vec<u8>, PortPeer)> {
        Box::pin(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM + 1];
            let (n, from) = self.socket.recv_from(&mut buf).await?;
            buf.truncate(n);
            Ok((buf, PortPeer::Ip(from)))
        })
    }
}

/// A datagram link as a user names it.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkAddress {
    /// `udp:HOST:PORT`
    Udp(String),
    /// `serial:PATH[:BAUD]`: a bare serial line, KISS frames with a CRC-16.
    Serial(SerialSpec),
    /// `rnode:PATH[:BAUD][,option=value…]`: an RNode or a KISS TNC speaking RNode's commands.
    Rnode(SerialSpec, RadioOptions),
    /// `meshtastic:PATH[:BAUD][,option=value…]`: a Meshtastic device's serial stream API.
    Meshtastic(SerialSpec, RadioOptions),
}

/// What `LinkAddress::parse` accepts, for error messages and `--help`.
pub const LINK_FORMS: &str = "udp:HOST:PORT, serial:PATH[:BAUD], rnode:PATH[:BAUD][,sf=…,bw=…,cr=…,freq=…,power=…,duty=…] or meshtastic:PATH[:BAUD][,channel=…,to=…,duty=…]";

impl LinkAddress {
    /// Parses a link as written on the command line.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not a link: use {LINK_FORMS}"))?;
        let (device, options) = match rest.split_once(',') {
            Some((d, o)) => (d, o),
            None => (rest, ""),
        };
        let no_options = |kind: &str| {
            if options.is_empty() {
                Ok(())
            } else {
                Err(format!("a {kind}: link takes no options ({options:?})"))
            }
        };
        match kind {
            "udp" => {
                no_options("udp")?;
                if !rest.contains(':') {
                    return Err(format!("udp:{rest} needs a port, e.g. udp:{rest}:7070"));
                }
                Ok(Self::Udp(rest.to_owned()))
            }
            "serial" => {
                no_options("serial")?;
                Ok(Self::Serial(SerialSpec::parse(device)?))
            }
            "rnode" => Ok(Self::Rnode(
                SerialSpec::parse(device)?,
                RadioOptions::parse(options, true)?,
            )),
            "meshtastic" => Ok(Self::Meshtastic(
                SerialSpec::parse(device)?,
                RadioOptions::parse(options, false)?,
            )),
            other => Err(format!("unknown link kind {other:?}: use {LINK_FORMS}")),
        }
    }

    /// Whether the link is a radio with a duty cycle (its answers can take a while).
    pub fn is_radio(&self) -> bool {
        matches!(self, Self::Rnode(..) | Self::Meshtastic(..))
    }
}

impl fmt::Display for LinkAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Udp(a) => write!(f, "udp:{a}"),
            Self::Serial(s) => write!(f, "serial:{s}"),
            Self::Rnode(s, _) => write!(f, "rnode:{s}"),
            Self::Meshtastic(s, _) => write!(f, "meshtastic:{s}"),
        }
    }
}

impl std::str::FromStr for LinkAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn links_parse_as_written() {
        assert_eq!(
            LinkAddress::parse("udp:127.0.0.1:7070").unwrap(),
            LinkAddress::Udp("127.0.0.1:7070".into())
        );
        assert_eq!(
            LinkAddress::parse("serial:/dev/ttyUSB0:57600").unwrap(),
            LinkAddress::Serial(SerialSpec {
                path: "/dev/ttyUSB0".into(),
                baud: 57600
            })
        );
        let LinkAddress::Rnode(spec, radio) = LinkAddress::parse("rnode:/dev/ttyACM0,sf=12,bw=125k,duty=10%").unwrap()
        else {
            panic!("an rnode")
        };
        assert_eq!(spec.baud, crate::serial::DEFAULT_BAUD);
        assert_eq!(radio.lora.spreading_factor, 12);
        assert!((radio.duty - 0.1).abs() < 1e-9);
        for (bad, says) in [
            ("tcp:1.2.3.4:5", "unknown link kind"),
            ("udp:host", "needs a port"),
            ("serial:/dev/x,sf=7", "takes no options"),
            ("rnode:/dev/x,sf=13", "spreading factor 13"),
            ("rnode:/dev/x,colour=red", "unknown radio option"),
            ("nothing", "is not a link"),
        ] {
            let e = LinkAddress::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
