//! The async shell around the server's rules: it reads the clock, sends changes to the writer
//! thread and waits for them to be durable, and holds long polls until a deposit wakes them or
//! their time is up. All decisions are [`Engine::handle`]'s.

use futures_lite::FutureExt;
use meow_proto::wire::{ErrorCode, Request, Response};
use smol::channel::{Sender, bounded};

use crate::engine::{Action, Engine, Parked, Peer};
use crate::shared::Shared;
use crate::writer::{Change, Outcome, Refusal, WriteOp};

/// What the shell needs: the rules, the writer's queue, the long-poll registry.
#[derive(Debug)]
pub struct Shell {
    /// The rules.
    pub engine: Engine,
    /// The writer's queue.
    pub writer: Sender<WriteOp>,
    /// Long-poll waiters and what the writer publishes.
    pub shared: std::sync::Arc<Shared>,
}

fn unavailable() -> Refusal {
    (ErrorCode::Unavailable, "server is shutting down".to_owned())
}

impl Shell {
    /// Answers one request.
    pub async fn answer(&self, peer: &Peer, request: Request) -> Response {
        let now = self.engine.config().clock.now_ms();
        match self.engine.handle(now, peer, request) {
            Action::Reply(r) => r,
            Action::Commit(change, answer) => answer.response(self.commit(change).await),
            Action::Park(parked) => self.wait(parked).await,
        }
    }

    /// Sends a change to the writer and waits until it is durable.
    pub async fn commit(&self, change: Change) -> Result<Outcome, Refusal> {
        let (tx, rx) = bounded(1);
        self.writer
            .send(WriteOp { change, done: Some(tx) })
            .await
            .map_err(|_| unavailable())?;
        rx.recv().await.map_err(|_| unavailable())?
    }

    /// Asks the writer to remove what expired, without waiting.
    pub fn sweep(&self) {
        let now = self.engine.config().clock.now_ms();
        let _ = self.writer.try_send(WriteOp {
            change: self.engine.sweep(now),
            done: None,
        });
    }

    /// Holds a long poll: registered first, then read once more (a deposit committed between the
    /// engine's read and the registration is not missed), then woken by a deposit or the deadline.
    async fn wait(&self, parked: Parked) -> Response {
        let clock = self.engine.config().clock.clone();
        let (tx, rx) = bounded(1);
        self.shared.register(&parked.mailboxes, &tx);
        let again = self.engine.read(clock.now_ms(), &parked);
        let empty =
            matches!(&again, Response::Messages { items, broadcasts, .. } if items.is_empty() && broadcasts.is_empty());
        if !empty {
            return again;
        }
        async {
            let _ = rx.recv().await;
        }
        .or(async {
            clock.sleep_until(parked.until_ms).await;
        })
        .await;
        self.engine.read(clock.now_ms(), &parked)
    }
}
