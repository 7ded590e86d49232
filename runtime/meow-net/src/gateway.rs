//! A link session with a gateway server (`meow_proto::link`) over any datagram port (UDP, a
//! serial line, an RNode, a Meshtastic device): the client side of the compact path for radio
//! links. It opens a session on first use (and again when the gateway has forgotten it or a
//! new mailbox is needed), then deposits each envelope in one frame and reads the one-status
//! answer. It counts every byte it sends and receives, which is what a radio carries.

use std::time::Duration;

use std::sync::Arc;

use futures_lite::FutureExt;
use meow_clock::SharedClock;
use meow_proto::link::{self, ClientLink, LinkError, LinkOpener, LinkStatus};
use meow_proto::{MailboxId, ServerPublic};

use crate::client::ClientError;
use crate::port::{DatagramPort, LinkAddress, PortPeer, PortStatus};

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

/// A port to one gateway and the session in use.
pub struct GatewayClient {
    port: Arc<dyn DatagramPort>,
    peer: PortPeer,
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
    /// A client for the gateway at `address` holding `server`'s key; answers are awaited for
    /// `timeout` after each datagram went out (on a radio, after it went on the air).
    pub async fn connect(
        address: &LinkAddress,
        server: ServerPublic,
        timeout: Duration,
        clock: SharedClock,
    ) -> Result<Self, ClientError> {
        let opened = crate::radio::open(address, clock)
            .await
            .map_err(|e| ClientError::Connect {
                address: address.to_string(),
                reason: e.to_string(),
            })?;
        let (port, peer) = opened.spawned();
        Ok(Self::over(port, peer, address.to_string(), server, timeout))
    }

    /// A client over an open port, sending to `peer`.
    pub fn over(
        port: Arc<dyn DatagramPort>,
        peer: PortPeer,
        address: String,
        server: ServerPublic,
        timeout: Duration,
    ) -> Self {
        Self {
            port,
            peer,
            address,
            server,
            link: None,
            mailboxes: Vec::new(),
            timeout,
        }
    }

    /// The port's counters and airtime budget.
    pub fn status(&self) -> PortStatus {
        self.port.status()
    }

    /// The gateway server's key.
    pub fn server(&self) -> &ServerPublic {
        &self.server
    }

    /// The link, as the user wrote it.
    pub fn address(&self) -> &str {
        &self.address
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
        self.port.send_to(datagram, self.peer).await.map_err(err)?;
        async {
            loop {
                let (answer, from) = self.port.recv_from().await.map_err(err)?;
                let from_gateway = matches!(self.peer, PortPeer::Line | PortPeer::Node(_)) || from == self.peer;
                if from_gateway && wanted(&answer) {
                    return Ok(answer);
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
