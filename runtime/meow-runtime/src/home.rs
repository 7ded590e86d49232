//! The operations on a home behind the control API: one function per [`Request`], returning
//! typed data. The same code runs inside a daemon (for the control socket and for programs that
//! embed the runtime) and on a home opened directly by a one-shot `meow` command.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meow_node::sync::{self, Delivery};
use meow_node::{Accepted, Node, NodeEvent, PrivacyPolicy, RouteOptions};
use meow_proto::ContentType;
use meow_proto::codec::Encode;
use meow_recipe::{CheckContext, Recipe, dry_run, sample_event};
use smol::lock::Mutex;

use crate::control::{AcceptView, Request, Response};
use crate::core::Core;
use crate::error::{Result, RuntimeError};
use crate::views::*;

/// Runs `request` on `node`; `core` is the running daemon, if the home is held by one.
pub async fn handle(node: &Mutex<Node>, core: Option<&Arc<Core>>, request: Request) -> Result<Response> {
    match request {
        Request::ServerAdd { card, via } => {
            let via = via
                .as_deref()
                .map(meow_net::port::LinkAddress::parse)
                .transpose()
                .map_err(|e| RuntimeError::Invalid(format!("--via: {e}")))?;
            let mut n = node.lock().await;
            let card = n.add_server(&card)?;
            if let Some(via) = &via {
                n.set_server_via(&card.address, Some(via))?;
            }
            let mut view = ServerView::from(&card);
            view.via = via.map(|v| v.to_string());
            Ok(Response::ServerAdded(view))
        }
        Request::ServerList => {
            let n = node.lock().await;
            let views = n
                .servers()
                .iter()
                .map(|c| ServerView {
                    via: n.server_via(&c.key),
                    ..ServerView::from(c)
                })
                .collect();
            Ok(Response::Servers(views))
        }
        Request::ServerRemove { server } => {
            let card = node.lock().await.remove_server(&server)?;
            Ok(Response::ServerRemoved((&card).into()))
        }
        Request::Invite { name, classical_start } => {
            let card = node
                .lock()
                .await
                .with_classical_start(classical_start, |n| n.invite(&name, false))?;
            Ok(Response::Invitation {
                card: card.to_text(),
                expires: card.body.expires,
            })
        }
        Request::Accept {
            card,
            name,
            classical_start,
        } => accept(node, &card, name.as_deref(), classical_start).await,
        Request::Contacts => Ok(contacts(&*node.lock().await)),
        Request::SetPolicy {
            name,
            policy,
            hops,
            delay_ms,
            default,
        } => set_policy(node, name, &policy, hops, delay_ms, default).await,
        Request::ServerCatalog { refresh } => {
            if refresh {
                sync::refresh_catalog(node).await?;
            }
            let (entries, fetched_ms) = node.lock().await.catalog();
            Ok(Response::Catalog {
                servers: entries.iter().map(CatalogView::from).collect(),
                fetched_ms,
            })
        }
        Request::ServerTrust { server, trusted } => {
            let name = node.lock().await.set_trust(&server, trusted)?;
            Ok(Response::ServerTrusted { name, trusted })
        }
        Request::Send { to, text, reply_to } => send(node, &to, text, reply_to.as_deref()).await,
        Request::SendFile {
            to,
            path,
            name,
            media_type,
        } => {
            let out = crate::files::Outgoing {
                to: &to,
                path: &path,
                name: name.as_deref(),
                media_type: media_type.as_deref(),
                by: None,
            };
            let sent = crate::files::send(node, out).await?;
            Ok(Response::FileSent {
                file: sent.file,
                earlier: sent.earlier,
                delivery: sent.delivery,
            })
        }
        Request::Files => Ok(Response::Files(crate::files::list(&*node.lock().await)?)),
        Request::FileSave { file, path, overwrite } => {
            let (file, path) = crate::files::save(&*node.lock().await, &file, &path, overwrite)?;
            Ok(Response::FileSaved { file, path })
        }
        Request::FileDelete { file } => Ok(Response::FileDeleted(crate::files::delete(
            &mut *node.lock().await,
            &file,
        )?)),
        Request::Inbox { wait_secs, all } => inbox(node, Duration::from_secs(wait_secs), all).await,
        Request::Rotate { name } => rotate(node, &name).await,
        Request::ContactRename { name, new } => {
            node.lock().await.rename(&name, &new)?;
            tell_devices(node).await;
            Ok(Response::ContactChanged {
                message: format!("{name} is now called {new}"),
            })
        }
        Request::ContactRemove { name } => {
            node.lock().await.remove_contact(&name)?;
            tell_devices(node).await;
            Ok(Response::ContactChanged {
                message: format!("removed {name}; what they sent stays in the inbox"),
            })
        }
        Request::Devices => Ok(Response::Devices(node.lock().await.devices())),
        Request::DeviceRename { device, name } => {
            node.lock().await.rename_device(&device, &name)?;
            tell_devices(node).await;
            Ok(Response::DeviceDone {
                message: format!("renamed {device} to {name} on every device"),
            })
        }
        Request::DeviceTake { contact } => {
            meow_node::devices::net::take(node, &contact).await?;
            Ok(Response::DeviceDone {
                message: format!("this device now holds the conversation with {contact}"),
            })
        }
        Request::DeviceLinkStart { password } => link_start(node, core, password).await,
        Request::DeviceLinkWait { wait_secs } => link_wait(node, core, wait_secs).await,
        Request::DeviceLinkConfirm { accept } => link_confirm(node, core, accept).await,
        Request::DeviceRevoke { device, password } => {
            let name = meow_node::devices::net::revoke(node, &device, password.0.as_bytes()).await?;
            Ok(Response::DeviceDone {
                message: format!(
                    "revoked {name}: it is sent nothing more, every conversation's keys rotate away from it, \
                     and it wipes its home when it hears of it"
                ),
            })
        }
        Request::DeviceRelease { contact } => {
            meow_node::devices::net::release(node, &contact).await?;
            Ok(Response::DeviceDone {
                message: format!("released {contact}: another device may take it now (`meow device take {contact}`)"),
            })
        }
        Request::Hide { name, password, create } => {
            let hidden = node.lock().await.hide(&name, password.0.as_bytes(), create)?;
            Ok(Response::Hidden {
                name,
                created: hidden.created,
                moved: hidden.moved,
            })
        }
        Request::Unlock { password } => {
            let mut n = node.lock().await;
            let before = n.compartments();
            let (c, _) = n.unlock(password.0.as_bytes())?;
            Ok(Response::Unlocked {
                contacts: n.contacts_in(c),
                already: before.contains(&c),
            })
        }
        Request::Lock { password } => {
            let mut n = node.lock().await;
            let which = match password {
                None => n.compartments(),
                Some(p) => vec![n.unlock(p.0.as_bytes())?.0],
            };
            let mut contacts = 0;
            for c in &which {
                contacts += n.lock(*c)?;
            }
            Ok(Response::Locked {
                compartments: which.len(),
                contacts,
            })
        }
        Request::GroupCreate { name } => {
            node.lock().await.create_group(&name)?;
            Ok(Response::GroupCreated { name })
        }
        Request::GroupAdd { group, contact } => {
            let items = node.lock().await.group_add(&group, &contact)?;
            delivered(sync::deliver_all(node, items).await?)
        }
        Request::GroupRemove { group, contact } => {
            let items = node.lock().await.group_remove(&group, &contact)?;
            delivered(sync::deliver_all(node, items).await?)
        }
        Request::GroupSend { group, text } => {
            delivered(sync::group_send(node, &group, ContentType::TEXT, text.into_bytes()).await?)
        }
        Request::GroupLeave { group } => {
            let items = node.lock().await.group_leave(&group)?;
            delivered(sync::deliver_all(node, items).await?)
        }
        Request::GroupList => groups(node).await,
        Request::Broadcast { text } => {
            let (server, id) = sync::broadcast(node, &text).await?;
            Ok(Response::Broadcasted { server, id })
        }
        Request::BroadcastKey => Ok(Response::BroadcastKey {
            key: node.lock().await.broadcast_key().public().to_string(),
        }),
        Request::DirectoryPublish { description, tags } => {
            let (server, entry) = sync::directory_publish(node, &description, &tags).await?;
            Ok(Response::DirectoryPublished {
                server,
                description: entry.description.clone(),
                bytes: entry.to_bytes().len(),
            })
        }
        Request::DirectorySearch { words } => entries(sync::directory_search(node, Some(&words), 20).await?),
        Request::DirectoryRandom { count } => entries(sync::directory_search(node, None, count).await?),
        Request::DirectoryWithdraw => Ok(Response::DirectoryWithdrawn {
            server: sync::directory_withdraw(node).await?,
        }),
        Request::RecipeTrace { name } => {
            let vault = node.lock().await.vault();
            Ok(Response::Traces(crate::recipes::traces(&vault, &name)?))
        }
        Request::RecipeCheck { files } => {
            let ctx = check_context(node, core).await;
            Ok(recipe_check(&files, &ctx, None))
        }
        Request::RecipeTest { file, event, at_ms } => {
            let ctx = check_context(node, core).await;
            let at_ms = match at_ms {
                Some(t) => t,
                None => node.lock().await.env().now_ms(),
            };
            recipe_test(&file, &event, &ctx, at_ms)
        }
        Request::RecipeList => Ok(Response::Recipes(daemon(core, "recipes only run inside it")?.recipes())),
        Request::RecipeReload => Ok(Response::RecipesReloaded(
            daemon(core, "recipes only run inside it")?.reload_recipes().await?,
        )),
        Request::PluginList => Ok(Response::Plugins(
            daemon(core, "plugins only run inside it")?.instances(),
        )),
        Request::PluginReload { name } => {
            let version = daemon(core, "start it first")?.reload(&name)?;
            Ok(Response::PluginReloaded { name, version })
        }
        Request::Status => Ok(Response::Status(
            daemon(core, "start it with `meow run`")?.status().await,
        )),
    }
}

fn daemon<'a>(core: Option<&'a Arc<Core>>, why: &'static str) -> Result<&'a Arc<Core>> {
    core.ok_or(RuntimeError::NoDaemon(why))
}

fn delivered(d: Vec<Delivery>) -> Result<Response> {
    Ok(Response::GroupDelivered {
        deliveries: d.into_iter().map(DeliveryView::from).collect(),
    })
}

fn entries(found: Vec<meow_proto::directory::DirectoryEntry>) -> Result<Response> {
    Ok(Response::Directory(found.iter().map(EntryView::from).collect()))
}

async fn accept(node: &Mutex<Node>, card: &[u8], name: Option<&str>, classical_start: bool) -> Result<Response> {
    let accepted = node
        .lock()
        .await
        .with_classical_start(classical_start, |n| n.accept(card, name))?;
    Ok(Response::Accepted(match accepted {
        Accepted::Answered { name, answer } => {
            let report = sync::flush_outbox(node, false).await?;
            AcceptView::Answered {
                name,
                answer: answer.to_text(),
                delivered: report.queued.is_empty(),
            }
        }
        Accepted::Completed { name } => AcceptView::Completed { name },
        Accepted::AlreadyDone { name } => AcceptView::AlreadyDone { name },
    }))
}

async fn set_policy(
    node: &Mutex<Node>,
    name: String,
    policy: &str,
    hops: Option<u8>,
    delay_ms: Option<u32>,
    default: bool,
) -> Result<Response> {
    let policy = PrivacyPolicy::parse(policy).ok_or_else(|| {
        RuntimeError::Invalid(format!(
            "unknown policy {policy:?}: server, direct-preferred or matriochka"
        ))
    })?;
    let mut n = node.lock().await;
    let shape = |r: RouteOptions| RouteOptions {
        hops: hops.unwrap_or(r.hops),
        mean_delay_ms: delay_ms.unwrap_or(r.mean_delay_ms),
    };
    let (name, before, route) = if default {
        let (before, route) = n.default_policy();
        let route = shape(route);
        n.set_default_policy(policy, route)?;
        ("*default*".to_owned(), before, route)
    } else {
        let route = shape(n.route_options(&name)?);
        n.set_route_options(&name, route)?;
        let before = n.set_policy(&name, policy)?;
        (name, before, route)
    };
    Ok(Response::PolicySet {
        name,
        before: before.name().to_owned(),
        after: policy.name().to_owned(),
        route: (policy == PrivacyPolicy::Matriochka).then(|| describe_route(route)),
    })
}

fn contacts(n: &Node) -> Response {
    let contacts = n
        .contacts()
        .into_iter()
        .map(|c| {
            let conv = &c.conversation;
            ContactView {
                name: c.name.clone(),
                their_key: conv.peer.to_text(),
                fingerprint: conv.peer.fingerprint(),
                my_key: conv.contact_key.public().to_text(),
                servers: c.servers.iter().map(|s| s.address.to_string()).collect(),
                policy: c.policy.name().to_owned(),
                direct: n.direct_address(&c.name),
                key_serial: conv.current().serial,
                rotation_pending: conv.pending().map(|p| p.serial),
                dropped_unsigned: c.dropped_unsigned,
                protocol: conv.version_status().describe().to_owned(),
                via_directory: c.via_public_card,
                added_ms: c.added_ms,
                hidden: n.hidden_in(c.id).is_some(),
                hops: c.route.hops,
                mean_delay_ms: c.route.mean_delay_ms,
            }
        })
        .collect();
    let invitations = n
        .pending_invitations()
        .iter()
        .map(|p| InvitationView {
            name: p.name.clone(),
            public: p.public,
            expires: p.expires,
        })
        .collect();
    Response::Contacts { contacts, invitations }
}

async fn send(node: &Mutex<Node>, to: &str, text: String, reply_to: Option<&str>) -> Result<Response> {
    let reply_to = match reply_to {
        Some(id) => Some(replied(&*node.lock().await, to, id)?),
        None => None,
    };
    // Whatever waits in the outbox goes first.
    let earlier = sync::flush_outbox(node, false).await?;
    let delivery = match reply_to {
        Some(id) => {
            let items = node
                .lock()
                .await
                .queue_reply(to, (ContentType::TEXT, text.into_bytes()), id, None)?;
            sync::deliver_message(node, items).await?
        }
        None => sync::send(node, to, ContentType::TEXT, text.into_bytes()).await?,
    };
    Ok(Response::Sent {
        earlier: earlier.delivered,
        delivery: delivery.into(),
    })
}

/// The message `id` names for a reply to `to`: a whole id, or the start of the id of a message
/// from `to` in the inbox.
fn replied(node: &Node, to: &str, id: &str) -> Result<meow_proto::MessageId> {
    if let Some(whole) = meow_proto::MessageId::from_hex(id) {
        return Ok(whole);
    }
    let prefix = id.to_ascii_lowercase();
    let mut found = node
        .inbox(false)?
        .into_iter()
        .filter(|i| i.from == to && !prefix.is_empty() && i.message.to_hex().starts_with(&prefix));
    match (found.next(), found.next()) {
        (Some(i), None) => Ok(i.message),
        (None, _) => Err(RuntimeError::Invalid(format!(
            "--reply-to {id}: no message from {to} in the inbox has an id starting so (see `meow inbox --all --json`)"
        ))),
        (Some(_), Some(_)) => Err(RuntimeError::Invalid(format!(
            "--reply-to {id}: several messages from {to} start so: give more of the id"
        ))),
    }
}

async fn inbox(node: &Mutex<Node>, wait: Duration, all: bool) -> Result<Response> {
    let earlier = sync::flush_outbox(node, false).await?;
    // Wait (up to `wait`) for something to show: a poll may return with only key updates.
    let deadline = Instant::now() + wait;
    let report = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let report = sync::fetch(node, left).await?;
        let visible = report.events.iter().any(|e| matches!(e, NodeEvent::Message(_)));
        if visible || left.is_zero() || !report.unreachable.is_empty() || all {
            break report;
        }
    };
    let mut n = node.lock().await;
    let items = n.inbox(!all)?;
    n.mark_read(&items)?;
    Ok(Response::Inbox {
        items: items.iter().map(MessageView::from).collect(),
        earlier: earlier.delivered,
        completed: report
            .events
            .iter()
            .filter_map(|e| match e {
                NodeEvent::ContactAdded { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect(),
        unreachable: report.unreachable,
    })
}

const LINK_NEEDS_DAEMON: &str = "linking through a daemon needs `meow run` on this home";

/// A device being linked through a running daemon: its card, the request once it came, and the
/// home's password for the first link's revocation key (erased when dropped).
pub struct LinkSession {
    linking: meow_node::devices::link::Linking,
    asked: Option<meow_proto::devices::link::JoinRequest>,
    password: crate::control::Password,
}

impl std::fmt::Debug for LinkSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSession")
    }
}

async fn link_start(
    node: &Mutex<Node>,
    core: Option<&Arc<Core>>,
    password: crate::control::Password,
) -> Result<Response> {
    let core = daemon(core, LINK_NEEDS_DAEMON)?;
    let linking = {
        let n = node.lock().await;
        n.check_home_password(password.0.as_bytes())?;
        n.start_link()?
    };
    let card = linking.card.to_text();
    *core.linking.lock().await = Some(LinkSession {
        linking,
        asked: None,
        password,
    });
    Ok(Response::LinkCard { card })
}

async fn link_wait(node: &Mutex<Node>, core: Option<&Arc<Core>>, wait_secs: u32) -> Result<Response> {
    let core = daemon(core, LINK_NEEDS_DAEMON)?;
    let mut session = core.linking.lock().await;
    let s = session
        .as_mut()
        .ok_or_else(|| RuntimeError::Invalid("no link in progress: start with `meow device link`".into()))?;
    let wait = Duration::from_secs(wait_secs.min(20).into());
    let asked = meow_node::devices::net::link_poll(node, &s.linking, wait).await?;
    Ok(Response::LinkAsked {
        asked: asked.map(|(request, code)| {
            let name = request.name.clone();
            s.asked = Some(request);
            (name, code)
        }),
    })
}

async fn link_confirm(node: &Mutex<Node>, core: Option<&Arc<Core>>, accept: bool) -> Result<Response> {
    let core = daemon(core, LINK_NEEDS_DAEMON)?;
    let session = core
        .linking
        .lock()
        .await
        .take()
        .ok_or_else(|| RuntimeError::Invalid("no link in progress: start with `meow device link`".into()))?;
    let request = session
        .asked
        .ok_or_else(|| RuntimeError::Invalid("no device asked to join yet".into()))?;
    if !accept {
        return Ok(Response::DeviceDone {
            message: format!("not confirmed: {} was not linked", request.name),
        });
    }
    let bytes =
        meow_node::devices::net::link_welcome(node, &session.linking, &request, session.password.0.as_bytes()).await?;
    Ok(Response::DeviceDone {
        message: format!("linked {} (sent the home: {bytes} bytes)", request.name),
    })
}

/// Sends the user's other devices what changed now; if they cannot be reached, the change goes
/// with the next sync.
async fn tell_devices(node: &Mutex<Node>) {
    if let Err(e) = meow_node::devices::net::flush(node).await {
        tracing::info!(error = %e, "the other devices learn of this at the next sync");
    }
}

async fn rotate(node: &Mutex<Node>, name: &str) -> Result<Response> {
    let serial = node.lock().await.rotate(name)?;
    // The offer rides on a control message so the contact learns of it without waiting.
    let delivery = sync::send(node, name, ContentType::CONTROL, Vec::new()).await?;
    Ok(Response::Rotated {
        serial,
        delivery: delivery.into(),
    })
}

async fn groups(node: &Mutex<Node>) -> Result<Response> {
    let groups = node.lock().await.groups()?;
    Ok(Response::Groups(
        groups
            .iter()
            .map(|g| GroupView {
                name: g.name.clone(),
                owner: g.is_owner(),
                members: meow_node::groups::member_names(g),
                left: g.left,
                epoch: g.epoch,
            })
            .collect(),
    ))
}

/// What a home (and its daemon, if any) knows for recipe checks.
async fn check_context(node: &Mutex<Node>, core: Option<&Arc<Core>>) -> CheckContext {
    let n = node.lock().await;
    CheckContext {
        contacts: Some(n.contacts().iter().map(|c| c.name.clone()).collect()),
        groups: n
            .groups()
            .ok()
            .map(|g| g.into_iter().filter(|g| !g.left).map(|g| g.name).collect()),
        plugins: core.map(|c| c.instances().into_iter().map(|i| i.instance).collect()),
    }
}

/// Checks recipe files: each one loads, and no two share a name.
pub fn recipe_check(files: &[PathBuf], ctx: &CheckContext, note: Option<String>) -> Response {
    let mut names: std::collections::BTreeMap<String, PathBuf> = std::collections::BTreeMap::new();
    let checks = files
        .iter()
        .map(|f| {
            let mut view = CheckView {
                file: f.display().to_string(),
                recipe: None,
                triggers: Vec::new(),
                actions: 0,
                error: None,
            };
            match Recipe::load_file(f, ctx) {
                Ok(recipe) if names.contains_key(&recipe.name) => {
                    let e = RuntimeError::RecipeNameTaken {
                        file: f.clone(),
                        first: names[&recipe.name].clone(),
                        name: recipe.name,
                    };
                    view.error = Some(e.to_string());
                }
                Ok(recipe) => {
                    names.insert(recipe.name.clone(), f.clone());
                    view.triggers = recipe.trigger_kinds().into_iter().map(|k| k.to_string()).collect();
                    view.actions = recipe.action_count();
                    view.recipe = Some(recipe.name);
                }
                Err(e) => view.error = Some(e.to_string()),
            }
            view
        })
        .collect();
    Response::RecipeChecks { files: checks, note }
}

/// Dry-runs a recipe against a sample event file, as if it happened at `at_ms`.
pub fn recipe_test(file: &Path, event: &Path, ctx: &CheckContext, at_ms: u64) -> Result<Response> {
    let recipe = Recipe::load_file(file, ctx)?;
    let text = std::fs::read_to_string(event).map_err(RuntimeError::io(format!("reading {}", event.display())))?;
    let (ev, schedule) = sample_event(&text, &event.display().to_string())?;
    let run = dry_run(&recipe, &ev, schedule, crate::recipes::local(at_ms));
    Ok(Response::DryRun {
        recipe: recipe.name.clone(),
        report: run.to_string(),
        errors: run.has_errors(),
    })
}
