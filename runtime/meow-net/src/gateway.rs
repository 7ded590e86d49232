//! A link session with a gateway server over UDP (`meow_proto::link`): the client side of the
//! compact path for radio links. It opens a session on first use (and again when the gateway
//! has forgotten it or a new mailbox is needed), then deposits each envelope in one frame and
//! reads the one-status answer. It counts every byte it sends and receives, which is what a
//! radio would carry.

use std::time::Duration;

use futures_lite::FutureExt;
use meow_proto::link::{self, ClientLink, LinkError, LinkOpener, LinkStatus};
use meow_proto::{Address, MailboxId, ServerPublic};
use smol::net::UdpSocket;

use crate::client::ClientError;
use crate::datagram::MAX_DATAGRAM;

/// Bytes that crossed the link for one deposit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Airtime {
    /// The open and its answer, when this deposit needed a new session.
    pub open: Option<(usize, usize)>,
    /// The deposit frame.
    pub frame: usize,
    /// Its answer.
    pub answer: usize,
}

/// A UDP socket to one gateway and the session in use.
pub struct GatewayClient {
    socket: UdpSocket,
    address: String,
    server: ServerPublic,
    link: Option<ClientLink>,
    mailboxes: Vec<MailboxId>,
    timeout: Duration,
}

impl std::fmt::Debug for GatewayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GatewayClient({}, {:?})", self.address, self.link)
    }
}

fn protocol(e: LinkError) -> ClientError {
    ClientError::Protocol(e.to_string())
}

impl GatewayClient {
    /// A client for the gateway at `address` (a `udp:` address) holding `server`'s key.
    pub async fn connect(address: &Address, server: ServerPublic, timeout: Duration) -> Result<Self, ClientError> {
        let Address::Udp(host_port) = address else {
            return Err(ClientError::Connect {
                address: address.to_string(),
                reason: "a gateway link goes to a udp: address".into(),
            });
        };
        let err = |e: std::io::Error| ClientError::Connect {
            address: address.to_string(),
            reason: e.to_string(),
        };
        let target = smol::net::resolve(host_port.as_str())
            .await
            .map_err(err)?
            .into_iter()
            .next()
            .ok_or_else(|| err(std::io::Error::other("the name resolves to no address")))?;
        let local = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        let socket = UdpSocket::bind(local).await.map_err(err)?;
        socket.connect(target).await.map_err(err)?;
        Ok(Self {
            socket,
            address: address.to_string(),
            server,
            link: None,
            mailboxes: Vec::new(),
            timeout,
        })
    }

    /// Deposits `envelope` in `mailbox` through the session (opening one if needed). A gateway
    /// that forgot the session is given a new one and the frame is sent again, once.
    pub async fn deposit(&mut self, mailbox: MailboxId, envelope: &[u8]) -> Result<Airtime, ClientError> {
        let mut air = Airtime::default();
        for _ in 0..2 {
            if self.link.as_ref().and_then(|l| l.alias(&mailbox)).is_none() {
                air.open = Some(self.open(mailbox).await?);
            }
            let link = self
                .link
                .as_mut()
                .ok_or(ClientError::Protocol("no link session".into()))?;
            let alias = link.alias(&mailbox).ok_or(ClientError::Protocol("no alias".into()))?;
            let (counter, frame) = link.deposit(alias, envelope).map_err(protocol)?;
            air.frame = frame.len();
            let answer = self
                .exchange(&frame, |a| a.get(5..9) == Some(&counter.to_be_bytes()))
                .await?;
            air.answer = answer.len();
            let link = self
                .link
                .as_ref()
                .ok_or(ClientError::Protocol("no link session".into()))?;
            match link.read_answer(counter, &answer) {
                Ok(LinkStatus::Deposited) => return Ok(air),
                Ok(LinkStatus::Refused(code)) => {
                    return Err(ClientError::Server {
                        code,
                        message: "the gateway refused the deposit".into(),
                    });
                }
                Err(LinkError::UnknownSession) => self.link = None,
                Err(e) => return Err(protocol(e)),
            }
        }
        Err(ClientError::Protocol("the gateway forgot two sessions in a row".into()))
    }

    /// Opens a session naming `mailbox` and the most recent others (at most eight).
    async fn open(&mut self, mailbox: MailboxId) -> Result<(usize, usize), ClientError> {
        self.mailboxes.retain(|m| *m != mailbox);
        self.mailboxes.insert(0, mailbox);
        self.mailboxes.truncate(link::MAX_MAILBOXES);
        let (opener, open) = LinkOpener::new(
            &self.server,
            self.mailboxes.clone(),
            crate::now_secs(),
            &mut meow_proto::os_rng(),
        )
        .map_err(protocol)?;
        let answer = self.exchange(&open, |a| a.first() == Some(&link::OPENED)).await?;
        self.link = Some(opener.finish(&answer).map_err(protocol)?);
        Ok((open.len(), answer.len()))
    }

    /// Sends `datagram` and waits for the first answer `wanted` accepts.
    async fn exchange(&self, datagram: &[u8], wanted: impl Fn(&[u8]) -> bool) -> Result<Vec<u8>, ClientError> {
        let err = |e: std::io::Error| ClientError::Connect {
            address: self.address.clone(),
            reason: e.to_string(),
        };
        self.socket.send(datagram).await.map_err(err)?;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        async {
            loop {
                let n = self.socket.recv(&mut buf).await.map_err(err)?;
                if wanted(&buf[..n]) {
                    return Ok(buf[..n].to_vec());
                }
            }
        }
        .or(async {
            smol::Timer::after(self.timeout).await;
            Err(ClientError::Timeout)
        })
        .await
    }
}
