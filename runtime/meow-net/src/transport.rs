//! Transports behind one type: a [`Link`] is a connected byte stream with its MTU, whatever
//! carries it. [`Transports`] connects to an [`Address`] by its kind: TCP, or an in-process
//! [`MemoryNetwork`] (the test kit's simulated network; a program can run a home and a server
//! in one process without sockets). Datagram links (UDP now, serial and radio later) carry
//! sealed datagrams instead (`crate::datagram`).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use futures_lite::{AsyncRead, AsyncWrite};
use meow_proto::Address;
use smol::channel::{Receiver, Sender, bounded};

/// Bytes in flight in one direction of a memory link.
const MEMORY_PIPE: usize = 256 * 1024;

/// The half of a link that reads what the peer sends.
pub type LinkReader = Pin<Box<dyn AsyncRead + Send>>;
/// The half of a link that writes to the peer.
pub type LinkWriter = Pin<Box<dyn AsyncWrite + Send>>;
/// Shuts a link down both ways.
pub type Closer = Box<dyn Fn() + Send + Sync>;

/// A connected byte stream.
pub struct Link {
    /// What the peer sends.
    pub reader: LinkReader,
    /// What goes to the peer.
    pub writer: LinkWriter,
    /// The largest frame the link carries in one piece (a stream carries any size).
    pub mtu: usize,
    /// Where the bytes come from (for rate limits and logs).
    pub peer: std::net::IpAddr,
    close: Closer,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Link(peer {}, mtu {})", self.peer, self.mtu)
    }
}

impl Link {
    /// A link over a TCP stream.
    pub fn tcp(stream: smol::net::TcpStream) -> io::Result<Link> {
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr()?.ip();
        let closer = stream.clone();
        Ok(Link {
            reader: Box::pin(stream.clone()),
            writer: Box::pin(stream),
            mtu: usize::MAX,
            peer,
            close: Box::new(move || {
                let _ = closer.shutdown(std::net::Shutdown::Both);
            }),
        })
    }

    /// A link over an already opened byte stream (a serial line, a pipe).
    pub fn from_stream(reader: LinkReader, writer: LinkWriter, mtu: usize, close: Closer) -> Link {
        Link {
            reader,
            writer,
            mtu,
            peer: std::net::IpAddr::from([0, 0, 0, 0]),
            close,
        }
    }

    /// Shuts the link down both ways: the peer sees the end, and so does our own reader.
    pub fn closer(&self) -> impl Fn() + Send + Sync + '_ {
        &self.close
    }

    /// Splits the link into its halves and its closer.
    pub fn split(self) -> (LinkReader, LinkWriter, Closer) {
        (self.reader, self.writer, self.close)
    }
}

/// A pair of connected memory links. Each side ends the other's reading when dropped; its
/// closer does nothing (a memory peer cannot stop reading while we wait on it for long: the
/// shells' write timeouts then drop the link). Also a null-modem cable for tests of the
/// serial and radio ports.
pub fn memory_pair() -> (Link, Link) {
    let (a_reader, b_writer) = piper::pipe(MEMORY_PIPE);
    let (b_reader, a_writer) = piper::pipe(MEMORY_PIPE);
    let local = std::net::IpAddr::from([127, 0, 0, 1]);
    let link = |reader: piper::Reader, writer: piper::Writer| Link {
        reader: Box::pin(reader),
        writer: Box::pin(writer),
        mtu: usize::MAX,
        peer: local,
        close: Box::new(|| {}),
    };
    (link(a_reader, a_writer), link(b_reader, b_writer))
}

/// An in-process network: servers listen under names, clients connect to `mem:NAME`.
#[derive(Debug, Clone, Default)]
pub struct MemoryNetwork {
    listeners: Arc<Mutex<HashMap<String, Sender<Link>>>>,
}

/// A server's end of the memory network.
#[derive(Debug)]
pub struct MemoryListener {
    name: String,
    incoming: Receiver<Link>,
    network: MemoryNetwork,
}

impl MemoryNetwork {
    /// A new, empty network.
    pub fn new() -> Self {
        Self::default()
    }

    /// Listens under `name` (replacing an earlier listener of that name).
    pub fn listen(&self, name: &str) -> MemoryListener {
        let (tx, rx) = bounded(1024);
        self.listeners.lock().insert(name.to_owned(), tx);
        MemoryListener {
            name: name.to_owned(),
            incoming: rx,
            network: self.clone(),
        }
    }

    /// Connects to the listener `name`.
    pub async fn connect(&self, name: &str) -> io::Result<Link> {
        let tx = self.listeners.lock().get(name).cloned().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("nothing listens on mem:{name}"),
            )
        })?;
        let (client, server) = memory_pair();
        tx.send(server)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::ConnectionRefused, format!("mem:{name} is closed")))?;
        Ok(client)
    }
}

impl MemoryListener {
    /// The next connection; `None` once the listener is closed.
    pub async fn accept(&self) -> Option<Link> {
        self.incoming.recv().await.ok()
    }

    /// The address clients use.
    pub fn address(&self) -> Address {
        Address::Memory(self.name.clone())
    }
}

impl Drop for MemoryListener {
    fn drop(&mut self) {
        self.network.listeners.lock().remove(&self.name);
    }
}

/// The transports a program can use, chosen by an address's kind.
#[derive(Debug, Clone, Default)]
pub struct Transports {
    memory: Option<MemoryNetwork>,
}

impl Transports {
    /// TCP only.
    pub fn system() -> Self {
        Self::default()
    }

    /// TCP, and `mem:` addresses on `network`.
    pub fn with_memory(network: MemoryNetwork) -> Self {
        Self { memory: Some(network) }
    }

    /// Connects a stream link to `address`.
    pub async fn connect(&self, address: &Address) -> io::Result<Link> {
        match address {
            Address::Tcp(a) => Link::tcp(smol::net::TcpStream::connect(a.as_str()).await?),
            Address::Memory(name) => match &self.memory {
                Some(net) => net.connect(name).await,
                None => Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "this program has no in-process network (mem: addresses)",
                )),
            },
            Address::Udp(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a udp: address carries sealed datagrams, not sessions",
            )),
            other => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("unknown transport ({other}): a newer meow may know it"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn memory_links_carry_bytes_both_ways_and_end_when_dropped() {
        smol::block_on(async {
            let net = MemoryNetwork::new();
            let listener = net.listen("hub");
            let mut client = net.connect("hub").await.unwrap();
            let mut server = listener.accept().await.unwrap();
            client.writer.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            server.reader.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
            server.writer.write_all(b"pong").await.unwrap();
            client.reader.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"pong");
            drop(server);
            let mut rest = Vec::new();
            assert_eq!(
                client.reader.read_to_end(&mut rest).await.unwrap(),
                0,
                "the end of the stream"
            );
            drop(listener);
            assert!(net.connect("hub").await.is_err(), "nothing listens any more");
            let t = Transports::system();
            assert!(t.connect(&Address::Memory("hub".into())).await.is_err());
        });
    }
}
