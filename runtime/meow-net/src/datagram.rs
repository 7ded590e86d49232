//! Sealed datagrams over UDP: one request, one response, no session (see
//! `meow_proto::datagram`). For links where a handshake costs too much.

use std::time::Duration;

use futures_lite::FutureExt;
use meow_proto::datagram::DatagramSender;
use meow_proto::wire::{MailboxAuth, Request, Response};
use meow_proto::{LookupKey, ServerPublic};
use smol::net::UdpSocket;

use crate::client::ClientError;

/// Largest datagram read.
pub const MAX_DATAGRAM: usize = 65_507;

/// Sends one sealed request to `address` over UDP and waits for the response. `prove` lists lookup
/// keys whose mailbox proofs the request needs; `make` builds the request from those proofs.
pub async fn request(
    address: &meow_proto::Address,
    server: &ServerPublic,
    prove: &[&LookupKey],
    make: impl FnOnce(Vec<MailboxAuth>) -> Request,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let err = |e: std::io::Error| ClientError::Connect {
        address: address.to_string(),
        reason: e.to_string(),
    };
    let host_port = match address {
        meow_proto::Address::Udp(a) => a.as_str(),
        other => {
            return Err(ClientError::Connect {
                address: other.to_string(),
                reason: "sealed datagrams go to a udp: address".into(),
            });
        }
    };
    let sender =
        DatagramSender::new(server, &mut meow_proto::os_rng()).map_err(|e| ClientError::Protocol(e.to_string()))?;
    let binding = sender.binding();
    let auths = prove.iter().map(|k| MailboxAuth::prove(k, &binding)).collect();
    let (dgram, pending) = sender.seal_request(&make(auths), crate::now_secs());
    let socket = UdpSocket::bind("0.0.0.0:0").await.map_err(err)?;
    socket.connect(host_port).await.map_err(err)?;
    socket.send(&dgram).await.map_err(err)?;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let n = async { socket.recv(&mut buf).await.map_err(err) }
        .or(async {
            smol::Timer::after(timeout).await;
            Err(ClientError::Timeout)
        })
        .await?;
    pending
        .open_response(&buf[..n])
        .map_err(|e| ClientError::Protocol(e.to_string()))
}
