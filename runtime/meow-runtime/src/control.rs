//! The typed control API. A request is a [`Request`], an answer a [`Response`] or a
//! [`ControlError`]: the same types whether a program calls [`crate::Runtime::request`] in
//! process, the `meow` CLI talks to a running daemon, or a command runs on a home directly.
//!
//! Over the control socket (a Unix socket `control.sock` in the home, owner-only), each
//! connection carries one JSON line `{"version": 1, "request": …}` and gets one JSON line back,
//! `{"ok": …}` or `{"error": …}`.

use std::path::{Path, PathBuf};

use futures_lite::io::BufReader;
use futures_lite::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};
use crate::recipes::Trace;
use crate::views::*;

/// The socket's file name in the home.
pub const SOCKET: &str = "control.sock";
/// The version of the socket protocol.
pub const VERSION: u32 = 1;
/// The largest request or answer line.
const MAX_LINE: u64 = 16 << 20;

/// What can be asked of a home.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Request {
    /// Add a server (its card text).
    ServerAdd {
        /// The card text.
        card: String,
        /// The link through which this home reaches it for link sessions (`serial:…`, …).
        #[serde(default)]
        via: Option<String>,
    },
    /// The servers.
    ServerList,
    /// Remove a server (address or name).
    ServerRemove {
        /// Which.
        server: String,
    },
    /// Make an invitation card.
    Invite {
        /// The name the contact will have.
        name: String,
        /// The card asks the contact for a classical start (a home behind a small link).
        #[serde(default)]
        classical_start: bool,
    },
    /// Accept a card (an invitation, or the answer to mine).
    Accept {
        /// The card (binary or text).
        card: Vec<u8>,
        /// The name to give the contact.
        name: Option<String>,
        /// My answer card asks the contact for a classical start.
        #[serde(default)]
        classical_start: bool,
    },
    /// Contacts and pending invitations.
    Contacts,
    /// Set how messages to a contact travel (`server`, `direct-preferred`, `matriochka`), or
    /// with `default`, what new contacts get.
    SetPolicy {
        /// The contact (ignored with `default`).
        #[serde(default)]
        name: String,
        /// The policy.
        policy: String,
        /// Matriochka relays per route (1 to 5; default: unchanged, 3 for a new setting).
        #[serde(default)]
        hops: Option<u8>,
        /// Mean delay per relay, ms.
        #[serde(default)]
        delay_ms: Option<u32>,
        /// Set the home's default for new contacts instead.
        #[serde(default)]
        default: bool,
    },
    /// The server catalog this home keeps (fetched from my servers first with `refresh`).
    ServerCatalog {
        /// Fetch it again now.
        #[serde(default)]
        refresh: bool,
    },
    /// Trust a server to start Matriochka routes, or stop trusting it.
    ServerTrust {
        /// Its name, address or key fingerprint.
        server: String,
        /// Trusted or not.
        trusted: bool,
    },
    /// Send a text.
    Send {
        /// The contact.
        to: String,
        /// The text.
        text: String,
        /// The message it answers: its id (hex), or the start of the id of a message from
        /// `to` in the inbox.
        #[serde(default)]
        reply_to: Option<String>,
    },
    /// Send a file from disk (read by the home: give an absolute path).
    SendFile {
        /// The contact.
        to: String,
        /// The file.
        path: PathBuf,
        /// The name the contact sees (default: the file's own).
        #[serde(default)]
        name: Option<String>,
        /// Its media type (default: guessed from the name).
        #[serde(default)]
        media_type: Option<String>,
    },
    /// Files received and on their way in.
    Files,
    /// Write a received file to disk (a folder: under its own name).
    FileSave {
        /// Its id, or the start of it.
        file: String,
        /// Where (absolute).
        path: PathBuf,
        /// Replace an existing file.
        #[serde(default)]
        overwrite: bool,
    },
    /// Delete a received file (or one on its way in).
    FileDelete {
        /// Its id, or the start of it.
        file: String,
    },
    /// Fetch and list messages.
    Inbox {
        /// Wait up to this long for something to arrive.
        wait_secs: u64,
        /// All stored messages, not only those not shown yet.
        all: bool,
    },
    /// Rotate my keys for a contact.
    Rotate {
        /// The contact.
        name: String,
    },
    /// Rename a contact.
    ContactRename {
        /// The contact.
        name: String,
        /// Its new name.
        new: String,
    },
    /// Forget a contact.
    ContactRemove {
        /// The contact.
        name: String,
    },
    /// The user's devices (docs/DEVICES.md).
    Devices,
    /// Rename one of the user's devices, on all of them.
    DeviceRename {
        /// Its name or the start of its id.
        device: String,
        /// The new name.
        name: String,
    },
    /// Make this device the holder of a conversation.
    DeviceTake {
        /// The contact.
        contact: String,
    },
    /// Give up holding a conversation, for another device to take.
    DeviceRelease {
        /// The contact.
        contact: String,
    },
    /// Start linking a new device through the running daemon: make a link card.
    DeviceLinkStart {
        /// The home's password (the first link derives the revocation key from it).
        password: Password,
    },
    /// Wait up to `wait_secs` (at most 20) for the new device's request.
    DeviceLinkWait {
        /// Seconds.
        wait_secs: u32,
    },
    /// The person compared the codes: welcome the device (`accept`), or drop the request.
    DeviceLinkConfirm {
        /// Whether the codes were the same.
        accept: bool,
    },
    /// Revoke one of the user's devices.
    DeviceRevoke {
        /// Its name or the start of its id.
        device: String,
        /// The password the revocation key derives from.
        password: Password,
    },
    /// Create a group.
    GroupCreate {
        /// Its name.
        name: String,
    },
    /// Add a member to a group I own.
    GroupAdd {
        /// The group.
        group: String,
        /// The contact.
        contact: String,
    },
    /// Remove a member from a group I own.
    GroupRemove {
        /// The group.
        group: String,
        /// The contact.
        contact: String,
    },
    /// Send text to a group.
    GroupSend {
        /// The group.
        group: String,
        /// The text.
        text: String,
    },
    /// Leave a group.
    GroupLeave {
        /// The group.
        group: String,
    },
    /// The groups.
    GroupList,
    /// Send an emergency broadcast.
    Broadcast {
        /// The text.
        text: String,
    },
    /// This home's broadcast key.
    BroadcastKey,
    /// Publish my directory entry.
    DirectoryPublish {
        /// The description.
        description: String,
        /// The tags.
        tags: Vec<String>,
    },
    /// Search the directory.
    DirectorySearch {
        /// The words.
        words: String,
    },
    /// Entries drawn at random.
    DirectoryRandom {
        /// How many.
        count: u32,
    },
    /// Withdraw my directory entry.
    DirectoryWithdraw,
    /// The last runs of a recipe.
    RecipeTrace {
        /// The recipe.
        name: String,
    },
    /// The loaded recipes (daemon only).
    RecipeList,
    /// Reload the recipe files (daemon only).
    RecipeReload,
    /// Check recipe files against the home.
    RecipeCheck {
        /// The files (absolute paths).
        files: Vec<PathBuf>,
    },
    /// Dry-run a recipe against a sample event.
    RecipeTest {
        /// The recipe file.
        file: PathBuf,
        /// The sample event file.
        event: PathBuf,
        /// When the event happens, Unix milliseconds (the home's clock when absent).
        #[serde(default)]
        at_ms: Option<u64>,
    },
    /// The plugin instances (daemon only).
    PluginList,
    /// Reload a plugin instance from disk (daemon only).
    PluginReload {
        /// The instance.
        name: String,
    },
    /// The daemon's state (daemon only).
    Status,
    /// Move a contact into the compartment a password opens (docs/HIDDEN.md).
    Hide {
        /// The contact.
        name: String,
        /// The compartment's password.
        password: Password,
        /// Make a new compartment if the password opens none.
        #[serde(default)]
        create: bool,
    },
    /// Unlock the compartment a password opens: its contacts are loaded, polled and shown.
    Unlock {
        /// The compartment's password.
        password: Password,
    },
    /// Lock every unlocked compartment (or, with a password, the one it opens).
    Lock {
        /// Only the compartment this opens.
        #[serde(default)]
        password: Option<Password>,
    },
}

/// A password on its way to the home: never printed, erased when dropped.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<secret>)")
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// How a card invitation was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum AcceptView {
    /// I answered their invitation.
    Answered {
        /// The new contact.
        name: String,
        /// My answer card (text form).
        answer: String,
        /// The answer reached their server.
        delivered: bool,
    },
    /// Their answer completed my invitation.
    Completed {
        /// The contact.
        name: String,
    },
    /// The answer had already arrived through my server.
    AlreadyDone {
        /// The contact.
        name: String,
    },
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Response {
    /// A server was added.
    ServerAdded(ServerView),
    /// The servers, most preferred first.
    Servers(Vec<ServerView>),
    /// A server was removed.
    ServerRemoved(ServerView),
    /// An invitation card.
    Invitation {
        /// The card (text form).
        card: String,
        /// Valid until, Unix seconds.
        expires: u64,
    },
    /// A card was accepted.
    Accepted(AcceptView),
    /// A contact's policy changed (or the default, with the name `*default*`).
    PolicySet {
        /// The contact.
        name: String,
        /// The policy before.
        before: String,
        /// The policy now.
        after: String,
        /// The Matriochka route shape now ("3 hops, mean delay 200 ms"), for `matriochka`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        route: Option<String>,
    },
    /// The server catalog.
    Catalog {
        /// The servers.
        servers: Vec<CatalogView>,
        /// When it was fetched, Unix ms (0: never).
        fetched_ms: u64,
    },
    /// A server's trust changed.
    ServerTrusted {
        /// Its name.
        name: String,
        /// Trusted now.
        trusted: bool,
    },
    /// Contacts and invitations.
    Contacts {
        /// The contacts.
        contacts: Vec<ContactView>,
        /// Invitations waiting for an answer.
        invitations: Vec<InvitationView>,
    },
    /// A message was sent.
    Sent {
        /// Queued messages delivered first.
        earlier: usize,
        /// What became of this one.
        delivery: DeliveryView,
    },
    /// A file was queued, and perhaps delivered.
    FileSent {
        /// The file.
        file: FileView,
        /// Queued messages delivered first.
        earlier: usize,
        /// What became of its last chunk.
        delivery: DeliveryView,
    },
    /// Files received and on their way in.
    Files(Vec<FileView>),
    /// A file was written to disk.
    FileSaved {
        /// The file.
        file: FileView,
        /// Where.
        path: PathBuf,
    },
    /// A file was deleted.
    FileDeleted(FileView),
    /// Messages.
    Inbox {
        /// The messages.
        items: Vec<MessageView>,
        /// Queued messages delivered first.
        earlier: usize,
        /// Contacts completed by answers that arrived.
        completed: Vec<String>,
        /// Servers that could not be reached, with the reason.
        unreachable: Vec<(String, String)>,
    },
    /// A contact was hidden.
    Hidden {
        /// The contact.
        name: String,
        /// A new compartment was made for it.
        created: bool,
        /// Records moved with it.
        moved: usize,
    },
    /// A compartment was unlocked.
    Unlocked {
        /// Its contacts, now shown.
        contacts: usize,
        /// It was unlocked already.
        already: bool,
    },
    /// Compartments were locked.
    Locked {
        /// How many.
        compartments: usize,
        /// Their contacts, now hidden again.
        contacts: usize,
    },
    /// A rotation started.
    Rotated {
        /// Its serial.
        serial: u32,
        /// The offer's delivery.
        delivery: DeliveryView,
    },
    /// A contact was renamed or removed.
    ContactChanged {
        /// What happened, for people.
        message: String,
    },
    /// The user's devices, this one first.
    Devices(Vec<meow_node::devices::DeviceInfo>),
    /// A link card, waiting for the new device.
    LinkCard {
        /// Its text.
        card: String,
    },
    /// A device asks to join, or not yet (`None`).
    LinkAsked {
        /// Its name and the code to compare.
        asked: Option<(String, String)>,
    },
    /// A device request was carried out.
    DeviceDone {
        /// What happened, for people.
        message: String,
    },
    /// A group was created.
    GroupCreated {
        /// Its name.
        name: String,
    },
    /// Copies of a group change or message went out.
    GroupDelivered {
        /// Each copy's fate.
        deliveries: Vec<DeliveryView>,
    },
    /// The groups.
    Groups(Vec<GroupView>),
    /// A broadcast was accepted.
    Broadcasted {
        /// By which server.
        server: String,
        /// Its id there.
        id: u64,
    },
    /// This home's broadcast key.
    BroadcastKey {
        /// The key (text form).
        key: String,
    },
    /// My directory entry was published.
    DirectoryPublished {
        /// Where.
        server: String,
        /// Its description.
        description: String,
        /// Its size.
        bytes: usize,
    },
    /// Directory entries.
    Directory(Vec<EntryView>),
    /// My directory entry was withdrawn.
    DirectoryWithdrawn {
        /// From where.
        server: String,
    },
    /// Recipe runs, oldest first.
    Traces(Vec<Trace>),
    /// The loaded recipes.
    Recipes(Vec<RecipeView>),
    /// The recipes now loaded.
    RecipesReloaded(Vec<String>),
    /// Recipe files checked.
    RecipeChecks {
        /// Each file.
        files: Vec<CheckView>,
        /// A note on what could not be checked.
        note: Option<String>,
    },
    /// A dry run.
    DryRun {
        /// The recipe.
        recipe: String,
        /// What it would do.
        report: String,
        /// It found errors.
        errors: bool,
    },
    /// The plugin instances.
    Plugins(Vec<InstanceView>),
    /// A plugin was reloaded.
    PluginReloaded {
        /// The instance.
        name: String,
        /// Its version now.
        version: String,
    },
    /// The daemon's state.
    Status(StatusView),
}

/// What kind of failure a [`ControlError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request cannot be done as given.
    Invalid,
    /// It needs a running daemon.
    NoDaemon,
    /// It failed; trying later may work.
    Failed,
}

/// A failed request, in one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ControlError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What went wrong, in one line.
    pub message: String,
}

impl From<RuntimeError> for ControlError {
    fn from(e: RuntimeError) -> Self {
        let kind = match &e {
            RuntimeError::NoDaemon(_) => ErrorKind::NoDaemon,
            RuntimeError::Node(meow_node::NodeError::Network(_)) | RuntimeError::Io { .. } | RuntimeError::Store(_) => {
                ErrorKind::Failed
            }
            _ => ErrorKind::Invalid,
        };
        ControlError {
            kind,
            message: e.to_string().replace('\n', " "),
        }
    }
}

/// The answer to a request.
pub type Answer = std::result::Result<Response, ControlError>;

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    version: u32,
    request: Request,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Reply {
    Ok(Response),
    Error(ControlError),
}

/// The socket path of a home.
pub fn socket_path(home: &Path) -> PathBuf {
    home.join(SOCKET)
}

/// Sends a request to the daemon running on `home`; `None` if there is none.
pub fn forward(home: &Path, request: &Request) -> Result<Option<Answer>> {
    use std::io::{BufRead, Write};
    let path = socket_path(home);
    if !path.exists() {
        return Ok(None);
    }
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(&path) else {
        // A socket left by a daemon that died: not ours to use.
        return Ok(None);
    };
    let mut line = serde_json::to_vec(&Envelope {
        version: VERSION,
        request: request.clone(),
    })
    .map_err(|e| RuntimeError::Control(e.to_string()))?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .map_err(RuntimeError::io("talking to the running meow"))?;
    let mut reply = String::new();
    std::io::BufReader::new(std::io::Read::take(stream, MAX_LINE))
        .read_line(&mut reply)
        .map_err(RuntimeError::io("reading the running meow's answer"))?;
    let reply: Reply = serde_json::from_str(&reply)
        .map_err(|e| RuntimeError::Control(format!("the running meow answered something unreadable: {e}")))?;
    Ok(Some(match reply {
        Reply::Ok(r) => Ok(r),
        Reply::Error(e) => Err(e),
    }))
}

/// Serves the socket: each connection carries one request, answered by `handle`.
pub async fn serve<F, Fut>(listener: smol::net::unix::UnixListener, handle: F)
where
    F: Fn(Request) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Answer> + Send,
{
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "control socket: accept failed");
                smol::Timer::after(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let handle = handle.clone();
        smol::spawn(async move {
            let mut reader = BufReader::new(stream.clone()).take(MAX_LINE);
            let mut line = String::new();
            if let Err(e) = reader.read_line(&mut line).await {
                tracing::debug!(error = %e, "control socket: unreadable request");
                return;
            }
            let reply = match serde_json::from_str::<Envelope>(&line) {
                Ok(env) if env.version == VERSION => match handle(env.request).await {
                    Ok(r) => Reply::Ok(r),
                    Err(e) => Reply::Error(e),
                },
                Ok(env) => Reply::Error(ControlError {
                    kind: ErrorKind::Invalid,
                    message: format!(
                        "control protocol version {} (this meow speaks {VERSION}): use the same meow for both",
                        env.version
                    ),
                }),
                Err(e) => Reply::Error(ControlError {
                    kind: ErrorKind::Invalid,
                    message: format!("bad control request: {e}"),
                }),
            };
            let mut out = match serde_json::to_vec(&reply) {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(error = %e, "control socket: cannot encode an answer");
                    return;
                }
            };
            out.push(b'\n');
            let mut w = stream;
            if let Err(e) = w.write_all(&out).await {
                tracing::debug!(error = %e, "control socket: the client left before the answer");
            }
        })
        .detach();
    }
}

/// Refuses a home whose daemon answers on its socket (before anything else starts, so a second
/// `meow run` says "already running" rather than failing on the server's port).
pub fn ensure_not_running(home: &Path) -> Result<()> {
    let path = socket_path(home);
    if path.exists() && std::os::unix::net::UnixStream::connect(&path).is_ok() {
        return Err(RuntimeError::AlreadyRunning(home.to_owned()));
    }
    Ok(())
}

/// Binds the socket (owner-only), replacing a stale one. The socket is what other programs wait
/// for, so the runtime binds it last, once its embedded server accepts connections.
pub fn bind(home: &Path) -> Result<smol::net::unix::UnixListener> {
    let path = socket_path(home);
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(RuntimeError::AlreadyRunning(home.to_owned()));
        }
        std::fs::remove_file(&path).map_err(RuntimeError::io(format!(
            "removing the stale socket {}",
            path.display()
        )))?;
    }
    let listener = std::os::unix::net::UnixListener::bind(&path)
        .map_err(RuntimeError::io(format!("creating {}", path.display())))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(RuntimeError::io(format!("restricting {}", path.display())))?;
    smol::net::unix::UnixListener::try_from(listener).map_err(RuntimeError::io("registering the control socket"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Every shape of answer survives the socket's JSON (sequences, tuples, nested tags).
    #[test]
    fn requests_and_answers_round_trip_through_json() {
        let answers = vec![
            Response::Servers(vec![]),
            Response::Inbox {
                items: vec![],
                earlier: 1,
                completed: vec!["bob".into()],
                unreachable: vec![("a:1".into(), "down".into())],
            },
            Response::Accepted(AcceptView::Completed { name: "bob".into() }),
            Response::Sent {
                earlier: 0,
                delivery: DeliveryView::Queued { reason: "down".into() },
            },
            Response::RecipesReloaded(vec!["x".into()]),
            Response::Traces(vec![]),
        ];
        for a in answers {
            let json = serde_json::to_string(&Reply::Ok(a.clone())).unwrap();
            match serde_json::from_str::<Reply>(&json).unwrap() {
                Reply::Ok(back) => assert_eq!(back, a),
                Reply::Error(e) => panic!("{e}"),
            }
        }
        let req = Request::Accept {
            card: vec![1, 2, 3],
            name: Some("bob".into()),
            classical_start: true,
        };
        let env = serde_json::to_string(&Envelope {
            version: VERSION,
            request: req.clone(),
        })
        .unwrap();
        assert_eq!(serde_json::from_str::<Envelope>(&env).unwrap().request, req);
    }
}
