//! Connections to servers, opened on first use and reused while they stay healthy (a home
//! talking to its servers, a relay forwarding to the next).

use std::collections::HashMap;
use std::sync::Arc;

use crate::{ClientError, ClientOptions, ServerClient};
use meow_proto::{Address, ServerPublic};
use smol::lock::Mutex;

/// Open sessions by server address, over the transports of the home's environment.
#[derive(Debug)]
pub struct Pool {
    clients: Mutex<HashMap<Address, Arc<ServerClient>>>,
    options: ClientOptions,
}

impl Pool {
    /// A pool whose sessions use `options`.
    pub fn new(options: ClientOptions) -> Self {
        Self {
            clients: Mutex::new(HashMap::new()),
            options,
        }
    }

    /// A session with the server at `address` holding `key` (reconnecting if the last one failed).
    pub async fn get(&self, address: &Address, key: &ServerPublic) -> Result<Arc<ServerClient>, ClientError> {
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(address)
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        let c = Arc::new(ServerClient::connect_with(address, key, &self.options).await?);
        clients.insert(address.clone(), c.clone());
        Ok(c)
    }

    /// Forgets a session (after an error on it).
    pub async fn drop_client(&self, address: &Address) {
        self.clients.lock().await.remove(address);
    }
}
