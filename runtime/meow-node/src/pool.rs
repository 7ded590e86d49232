//! Connections to servers, opened on first use and reused while they stay healthy.

use std::collections::HashMap;
use std::sync::Arc;

use meow_net::{ClientError, ServerClient};
use meow_proto::ServerPublic;
use smol::lock::Mutex;

/// Open sessions by server address.
#[derive(Debug, Default)]
pub struct Pool {
    clients: Mutex<HashMap<String, Arc<ServerClient>>>,
}

impl Pool {
    /// A session with the server at `address` holding `key` (reconnecting if the last one failed).
    pub async fn get(&self, address: &str, key: &ServerPublic) -> Result<Arc<ServerClient>, ClientError> {
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(address)
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        let c = Arc::new(ServerClient::connect(address, key).await?);
        clients.insert(address.to_owned(), c.clone());
        Ok(c)
    }

    /// Forgets a session (after an error on it).
    pub async fn drop_client(&self, address: &str) {
        self.clients.lock().await.remove(address);
    }
}
