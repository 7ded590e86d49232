//! A serial or radio port that opens its device again when it fails: what a server keeps for
//! each of its links, so that a USB radio unplugged and plugged back, or a board that reset,
//! serves again without a restart.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meow_clock::SharedClock;

use super::open;
use crate::port::{DatagramPort, LinkAddress, PortPeer, PortStatus};

/// A serial or radio port that opens its device again when it fails (a USB radio unplugged
/// and plugged back, a board reset): receiving waits, retrying every second, until the device
/// at the same path answers again; sending meanwhile fails, which leaves datagrams in their
/// senders' outboxes. Counters restart with each new device.
pub struct Reopening {
    address: LinkAddress,
    clock: SharedClock,
    current: parking_lot::RwLock<Arc<dyn DatagramPort>>,
    reopened: AtomicU64,
}

impl std::fmt::Debug for Reopening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reopening({})", self.address)
    }
}

impl Reopening {
    /// Opens `address` (failing now if it cannot), to be opened again whenever it fails.
    pub async fn open(address: LinkAddress, clock: SharedClock) -> io::Result<Arc<Self>> {
        let (port, _) = open(&address, clock.clone()).await?.spawned();
        Ok(Arc::new(Self {
            address,
            clock,
            current: parking_lot::RwLock::new(port),
            reopened: AtomicU64::new(0),
        }))
    }

    /// How many times the device was opened again.
    pub fn reopened(&self) -> u64 {
        self.reopened.load(Ordering::Relaxed)
    }

    async fn reopen(&self, failure: io::Error) {
        tracing::warn!(link = %self.address, error = %failure, "link failed; opening it again every second");
        loop {
            self.clock.sleep(Duration::from_secs(1)).await;
            match open(&self.address, self.clock.clone()).await {
                Ok(opened) => {
                    *self.current.write() = opened.spawned().0;
                    self.reopened.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(link = %self.address, "link open again");
                    return;
                }
                Err(e) => tracing::debug!(link = %self.address, error = %e, "not back yet"),
            }
        }
    }
}

impl DatagramPort for Reopening {
    fn mtu(&self) -> usize {
        self.current.read().mtu()
    }

    fn send_to<'a>(&'a self, datagram: &'a [u8], to: PortPeer) -> crate::port::PortFuture<'a, ()> {
        let port = self.current.read().clone();
        Box::pin(async move { port.send_to(datagram, to).await })
    }

    fn recv_from(&self) -> crate::port::PortFuture<'_, (Vec<u8>, PortPeer)> {
        Box::pin(async move {
            loop {
                let port = self.current.read().clone();
                match port.recv_from().await {
                    Ok(got) => return Ok(got),
                    Err(e) => self.reopen(e).await,
                }
            }
        })
    }

    fn status(&self) -> PortStatus {
        self.current.read().status()
    }
}
