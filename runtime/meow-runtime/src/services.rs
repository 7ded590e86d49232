//! What plugin instances may ask of the runtime: queue messages, their key-value store, timers,
//! node information and logging. Calls return at once; the runtime's command loop does the slow
//! part. Every call that makes work is checked against its limits first (send rate, outbox
//! quota, the automatic-reply budget per contact, the command queue), and the excess is refused
//! with the WIT `quota` error: a plugin that loops on `send` gets errors, not the daemon's memory.

use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meow_clock::SharedClock;
use meow_node::{Node, Table};
use meow_plugin::{DirectoryListing, HostError, HttpRequest, HttpResponse, Level, NodeInfo, OutgoingFile, Services};
use meow_store::vault::{Compartment, Vault};
use smol::channel::Sender;

use crate::config::{InstanceConfig, RuntimeLimits};
use meow_clock::rate::{Bucket, Windows};

/// Work the plugins hand to the runtime loop.
#[derive(Debug)]
#[non_exhaustive]
pub enum Command {
    /// Send to a contact.
    Send {
        /// Who asked.
        instance: String,
        /// The contact.
        to: String,
        /// The content type.
        content_type: meow_proto::ContentType,
        /// The content.
        body: Vec<u8>,
        /// The message it answers.
        reply_to: Option<meow_proto::MessageId>,
    },
    /// Send text to a group.
    GroupSend {
        /// Who asked.
        instance: String,
        /// The group.
        group: String,
        /// The text.
        text: String,
    },
    /// Publish an emergency broadcast.
    Broadcast {
        /// Who asked.
        instance: String,
        /// The text.
        text: String,
    },
    /// Publish the directory entry.
    DirectoryPublish {
        /// Who asked.
        instance: String,
        /// The description.
        description: String,
        /// The tags.
        tags: Vec<String>,
    },
    /// Withdraw the directory entry.
    DirectoryWithdraw {
        /// Who asked.
        instance: String,
    },
    /// Send a file (described already: its id went back to the plugin).
    SendFile {
        /// Who asked.
        instance: String,
        /// The contact.
        to: String,
        /// What the file is.
        meta: meow_proto::file::FileMeta,
        /// Its bytes.
        data: Vec<u8>,
    },
    /// A plugin timer fired.
    Timer {
        /// Whose.
        instance: String,
        /// Its id.
        id: u64,
        /// Its name.
        name: String,
    },
}

/// Key length limit.
const MAX_KEY: usize = 256;
/// Value size limit.
const MAX_VALUE: usize = 64 * 1024;
/// Keys per instance.
const MAX_KEYS: usize = 10_000;
/// Timers per instance.
const MAX_TIMERS: usize = 256;
/// Shortest timer period.
const MIN_TIMER_MS: u64 = 10;
/// Log lines per instance per second (burst of the same size).
const LOG_RATE: f64 = 50.0;
/// Recent message ids remembered for replies.
const RECENT: usize = 4096;

/// Default send rate, burst and outbox quota of an instance.
pub const DEFAULT_SENDS_PER_SECOND: f64 = 10.0;
/// See [`DEFAULT_SENDS_PER_SECOND`].
pub const DEFAULT_SEND_BURST: u32 = 50;
/// See [`DEFAULT_SENDS_PER_SECOND`].
pub const DEFAULT_INSTANCE_OUTBOX: usize = 200;
/// The largest file an instance sends unless its `limits.file_size` says otherwise.
pub const DEFAULT_INSTANCE_FILE: u64 = 8 << 20;

/// One instance's sending limits.
#[derive(Debug)]
struct SendLimits {
    bucket: Bucket,
    outbox: usize,
    file_size: u64,
}

/// The automatic-message budget per contact, shared by plugins and recipes.
#[derive(Debug)]
pub struct AutoBudget {
    windows: Mutex<Windows<String>>,
    max: u32,
    window: Duration,
    clock: SharedClock,
}

impl AutoBudget {
    /// A budget of `max` automatic messages per contact per `window`.
    pub fn new(max: u32, window: Duration, clock: SharedClock) -> Self {
        Self {
            windows: Mutex::new(Windows::new(max, window.as_millis() as u64)),
            max,
            window,
            clock,
        }
    }

    /// Counts one automatic message to `contact`, or says why it is refused.
    pub fn take(&self, contact: &str) -> Result<(), crate::RuntimeError> {
        if self.windows.lock().take(&contact.to_owned(), self.clock.now_ms()) {
            Ok(())
        } else {
            Err(crate::RuntimeError::AutoReplies {
                contact: contact.to_owned(),
                max: self.max,
                window_secs: self.window.as_secs(),
            })
        }
    }
}

struct LogBucket {
    bucket: Bucket,
    dropped: u64,
}

/// The runtime's side of the plugin host API.
pub struct RuntimeServices {
    node: Arc<smol::lock::Mutex<Node>>,
    vault: Arc<Vault>,
    commands: Sender<Command>,
    clock: SharedClock,
    /// The contacts plugins may address, with the hidden compartment of each hidden one.
    contacts: RwLock<Vec<(String, Option<Compartment>)>>,
    /// Each contact's privacy policy by name, for plugins and recipes.
    policies: RwLock<std::collections::HashMap<String, String>>,
    nickname: Option<String>,
    fingerprint: String,
    recent: Mutex<(HashMap<String, String>, VecDeque<String>)>,
    timers: Mutex<HashMap<u64, (String, smol::Task<()>)>>,
    next_timer: AtomicU64,
    logs: Mutex<HashMap<String, LogBucket>>,
    kv_counts: Mutex<HashMap<String, usize>>,
    /// Instances whose key-value store syncs to the user's other devices.
    synced: Mutex<std::collections::HashSet<String>>,
    sending: Mutex<HashMap<String, SendLimits>>,
    auto: Arc<AutoBudget>,
    http: Option<Arc<crate::http::HttpClient>>,
    mqtt: Option<Arc<crate::mqtt::Mqtt>>,
}

impl std::fmt::Debug for RuntimeServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RuntimeServices")
    }
}

fn content_type(name: &str) -> Result<meow_proto::ContentType, HostError> {
    use meow_proto::ContentType as C;
    match name {
        "text" => Ok(C::TEXT),
        "json" => Ok(C::JSON),
        "binary" => Ok(C::BINARY),
        other => other
            .strip_prefix("type-")
            .and_then(|n| n.parse::<u16>().ok())
            .filter(|&n| n >= 16)
            .map(meow_proto::ContentType)
            .ok_or_else(|| {
                HostError::Invalid(format!(
                    "content type {other:?} (use text, json, binary or type-N with N >= 16)"
                ))
            }),
    }
}

/// The contacts of a node that plugins may address, with the compartment of hidden ones.
/// Each contact's privacy policy by name.
pub(crate) fn policies(node: &Node) -> std::collections::HashMap<String, String> {
    node.contacts()
        .iter()
        .map(|c| (c.name.clone(), c.policy.name().to_owned()))
        .collect()
}

pub(crate) fn addressable(node: &Node) -> Vec<(String, Option<Compartment>)> {
    node.contacts()
        .iter()
        .map(|c| (c.name.clone(), node.hidden_in(c.id)))
        .collect()
}

fn kv_key(instance: &str, key: &str) -> Vec<u8> {
    let mut k = instance.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// The name an instance's messages carry in the outbox (`plugin:NAME`).
pub fn plugin_sender(instance: &str) -> String {
    format!("plugin:{instance}")
}

/// What the services are built from.
pub(crate) struct ServicesSetup {
    /// The home.
    pub node: Arc<smol::lock::Mutex<Node>>,
    /// Its vault.
    pub vault: Arc<Vault>,
    /// Where plugin actions go.
    pub commands: Sender<Command>,
    /// The clock.
    pub clock: SharedClock,
    /// The home's nickname.
    pub nickname: Option<String>,
    /// The home's fingerprint.
    pub fingerprint: String,
    /// The automatic-message budget (shared with recipes).
    pub auto: Arc<AutoBudget>,
    /// The `http` capability's client (`http:` in meow.yaml), if any host is allowed.
    pub http: Option<Arc<crate::http::HttpClient>>,
    /// The MQTT bridge (`mqtt:` in meow.yaml), if a broker is named.
    pub mqtt: Option<Arc<crate::mqtt::Mqtt>>,
}

/// When a plugin's timer fires.
enum When {
    /// Once, after this many ms.
    Once(u64),
    /// Every this many ms.
    Every(u64),
    /// At the times of a cron schedule.
    Cron(meow_recipe::Schedule),
}

impl When {
    /// The next firing after `now_ms`, in ms on the runtime's clock.
    fn next(&self, now_ms: u64) -> Option<u64> {
        match self {
            // A plugin may ask for u64::MAX ms: it never fires, and nothing overflows.
            When::Once(ms) | When::Every(ms) => Some(now_ms.saturating_add(*ms)),
            When::Cron(s) => Some(s.next_after(crate::recipes::local(now_ms))?.timestamp_millis().max(0) as u64),
        }
    }
}

impl RuntimeServices {
    /// Starts a plugin's timer: it sends a `Timer` command at each firing of `when`.
    fn spawn_timer(&self, instance: &str, name: &str, when: When) -> Result<u64, HostError> {
        let mut timers = self.timers.lock();
        if timers.values().filter(|(owner, _)| owner == instance).count() >= MAX_TIMERS {
            return Err(HostError::Quota(format!("at most {MAX_TIMERS} timers per instance")));
        }
        let id = self.next_timer.fetch_add(1, Ordering::Relaxed);
        let (tx, inst, name, clock) = (
            self.commands.clone(),
            instance.to_owned(),
            name.to_owned(),
            self.clock.clone(),
        );
        // The first deadline counts from now, not from when the task first runs.
        let mut next = when.next(clock.now_ms());
        let task = smol::spawn(async move {
            while let Some(at) = next {
                clock.sleep_until(at).await;
                let fired = Command::Timer {
                    instance: inst.clone(),
                    id,
                    name: name.clone(),
                };
                // A full queue skips this firing: a repeating timer fires again next time.
                let queued = tx.try_send(fired);
                if matches!(queued, Err(smol::channel::TrySendError::Closed(_))) || matches!(when, When::Once(_)) {
                    return;
                }
                // From the deadline (no drift); a deadline a stall has already passed is
                // skipped, and the timer goes on from now (no burst of catch-ups).
                let now = clock.now_ms();
                next = when
                    .next(at)
                    .map(|n| if n < now { when.next(now).unwrap_or(n) } else { n });
            }
        });
        timers.insert(id, (instance.to_owned(), task));
        Ok(id)
    }

    /// Services over the home's vault, handing work to `commands`.
    pub(crate) fn new(setup: ServicesSetup) -> Self {
        Self {
            node: setup.node,
            vault: setup.vault,
            commands: setup.commands,
            clock: setup.clock,
            contacts: RwLock::new(Vec::new()),
            policies: RwLock::default(),
            nickname: setup.nickname,
            fingerprint: setup.fingerprint,
            recent: Mutex::new((HashMap::new(), VecDeque::new())),
            timers: Mutex::new(HashMap::new()),
            next_timer: AtomicU64::new(1),
            logs: Mutex::new(HashMap::new()),
            kv_counts: Mutex::new(HashMap::new()),
            synced: Mutex::new(Default::default()),
            sending: Mutex::new(HashMap::new()),
            auto: setup.auto,
            http: setup.http,
            mqtt: setup.mqtt,
        }
    }

    /// Sets an instance's sending limits (from its `limits:` in meow.yaml).
    pub fn configure(&self, inst: &InstanceConfig) {
        let l = &inst.limits;
        let limits = SendLimits {
            bucket: Bucket::new(
                l.sends_per_second.unwrap_or(DEFAULT_SENDS_PER_SECOND),
                l.send_burst.unwrap_or(DEFAULT_SEND_BURST),
                self.clock.now_ms(),
            ),
            outbox: l.outbox.unwrap_or(DEFAULT_INSTANCE_OUTBOX),
            file_size: l.file_size_bytes().unwrap_or(DEFAULT_INSTANCE_FILE),
        };
        self.sending.lock().insert(inst.name.clone(), limits);
        let mut synced = self.synced.lock();
        if inst.sync {
            synced.insert(inst.name.clone());
        } else {
            synced.remove(&inst.name);
        }
    }

    /// Writes a key-value change in `b` for the user's other devices, if `instance` syncs and
    /// the key is not a hidden contact's.
    fn sync_kv(&self, b: &mut meow_node::VaultBatch<'_>, instance: &str, key: &str, value: Option<&[u8]>) {
        if !self.synced.lock().contains(instance) || self.kv_compartment(key).is_some() {
            return;
        }
        // Held only for this write: the node's lock is never held across a plugin call.
        self.node.lock_blocking().sync_kv(b, &kv_key(instance, key), value);
    }

    /// The contacts plugins may address (names, and the compartment of hidden ones).
    pub fn set_contacts(&self, contacts: Vec<(String, Option<Compartment>)>) {
        *self.contacts.write() = contacts;
    }

    /// Each contact's privacy policy, by name.
    pub fn set_policies(&self, policies: std::collections::HashMap<String, String>) {
        *self.policies.write() = policies;
    }

    /// A contact's privacy policy (`server`, `direct`, `matriochka`).
    pub fn policy_of(&self, contact: &str) -> Option<String> {
        self.policies.read().get(contact).cloned()
    }

    /// The hidden compartment a key-value key belongs in: that of a hidden contact it names.
    fn kv_compartment(&self, key: &str) -> Option<Compartment> {
        self.contacts
            .read()
            .iter()
            .find(|(name, c)| c.is_some() && meow_node::compartments::kv_key_mentions(key, name))
            .and_then(|(_, c)| *c)
    }

    /// Remembers who sent a message, so plugins can reply to it.
    pub fn remember(&self, message_id: &str, contact: &str) {
        let mut r = self.recent.lock();
        let (map, order) = &mut *r;
        if map.insert(message_id.to_owned(), contact.to_owned()).is_none() {
            order.push_back(message_id.to_owned());
        }
        while order.len() > RECENT {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }

    /// Cancels every timer and MQTT subscription of an instance (it stopped or was reloaded:
    /// it sets them again as it starts).
    pub fn forget_instance(&self, instance: &str) {
        self.timers.lock().retain(|_, (owner, _)| owner != instance);
        if let Some(mqtt) = &self.mqtt {
            mqtt.forget(instance);
        }
    }

    /// The MQTT bridge, or why there is none.
    fn mqtt(&self) -> Result<&crate::mqtt::Mqtt, HostError> {
        self.mqtt.as_deref().ok_or_else(|| {
            HostError::Failed("mqtt: no broker: add `mqtt: { broker: \"mqtt://HOST:1883\" }` to meow.yaml".into())
        })
    }

    fn queue(&self, cmd: Command) -> Result<(), HostError> {
        self.commands.try_send(cmd).map_err(|e| match e {
            smol::channel::TrySendError::Full(_) => HostError::Quota(format!(
                "the runtime has {} actions waiting: try again later",
                self.commands.capacity().unwrap_or(0)
            )),
            smol::channel::TrySendError::Closed(_) => HostError::Failed("the runtime is shutting down".into()),
        })
    }

    fn known(&self, to: &str) -> Result<(), HostError> {
        let known = self.contacts.read().iter().any(|(n, _)| n == to);
        if known {
            Ok(())
        } else {
            Err(HostError::NotFound(format!("no contact named {to:?}")))
        }
    }

    /// Queues a message of a plugin: the contact must be addressable, the content fit one
    /// message, and the instance within its rate, quota and automatic-message budget.
    fn queue_send(
        &self,
        instance: &str,
        to: &str,
        content_type: meow_proto::ContentType,
        body: Vec<u8>,
        reply_to: Option<meow_proto::MessageId>,
    ) -> Result<(), HostError> {
        self.known(to)?;
        if body.len() > meow_proto::envelope::max_content_len() {
            return Err(HostError::Quota(format!(
                "message of {} bytes is too large",
                body.len()
            )));
        }
        self.may_send(instance, 1)?;
        self.auto.take(to).map_err(|e| HostError::Quota(e.to_string()))?;
        self.queue(Command::Send {
            instance: instance.to_owned(),
            to: to.to_owned(),
            content_type,
            body,
            reply_to,
        })
    }

    /// The largest file `instance` may send.
    fn file_cap(&self, instance: &str) -> u64 {
        self.sending
            .lock()
            .get(instance)
            .map_or(DEFAULT_INSTANCE_FILE, |l| l.file_size)
    }

    /// Applies an instance's send rate and outbox quota.
    /// Takes one send from the instance's rate (`limits.sends_per_second`); returns its outbox
    /// quota.
    fn take_send(&self, instance: &str) -> Result<usize, HostError> {
        let now = self.clock.now_ms();
        let mut sending = self.sending.lock();
        let limits = sending.entry(instance.to_owned()).or_insert_with(|| SendLimits {
            bucket: Bucket::new(DEFAULT_SENDS_PER_SECOND, DEFAULT_SEND_BURST, now),
            outbox: DEFAULT_INSTANCE_OUTBOX,
            file_size: DEFAULT_INSTANCE_FILE,
        });
        if !limits.bucket.take(now) {
            return Err(HostError::Quota(format!(
                "instance {instance} sends faster than its limit (limits.sends_per_second in meow.yaml)"
            )));
        }
        Ok(limits.outbox)
    }

    fn may_send(&self, instance: &str, copies: usize) -> Result<(), HostError> {
        let quota = self.take_send(instance)?;
        let waiting = self.node.lock_blocking().outbox_len(Some(&plugin_sender(instance)));
        if waiting + copies > quota {
            return Err(HostError::Quota(format!(
                "instance {instance} has {waiting} messages waiting in the outbox, its quota is {quota}"
            )));
        }
        Ok(())
    }

    fn kv_count(&self, instance: &str) -> Result<usize, HostError> {
        // A synced store also changes by the other devices' writes: counted each time.
        let cached = !self.synced.lock().contains(instance);
        if cached && let Some(n) = self.kv_counts.lock().get(instance) {
            return Ok(*n);
        }
        let n = self.kv_list(instance, "")?.len();
        self.kv_counts.lock().insert(instance.to_owned(), n);
        Ok(n)
    }

    fn adjust_count(&self, instance: &str, delta: isize) {
        if let Some(n) = self.kv_counts.lock().get_mut(instance) {
            *n = n.saturating_add_signed(delta);
        }
    }
}

/// A file error as plugins see it.
fn file_err(e: meow_node::NodeError) -> HostError {
    use meow_node::NodeError as E;
    match e {
        E::UnknownFile(_) => HostError::NotFound(e.to_string()),
        E::AmbiguousFile(_) | E::File(_) => HostError::Invalid(e.to_string()),
        E::FileTooLarge { .. } => HostError::Quota(e.to_string()),
        e => HostError::Failed(e.to_string()),
    }
}

fn mqtt_err(e: crate::mqtt::MqttError) -> HostError {
    use crate::mqtt::MqttError;
    match e {
        MqttError::Topic(..) | MqttError::Payload(_) => HostError::Invalid(e.to_string()),
        MqttError::Full { .. } => HostError::Quota(e.to_string()),
        e => HostError::Failed(e.to_string()),
    }
}

fn store_err(e: meow_store::StoreError) -> HostError {
    HostError::Failed(format!("storage: {e}"))
}

impl Services for RuntimeServices {
    fn send(&self, instance: &str, to: &str, ct: &str, body: Vec<u8>) -> Result<(), HostError> {
        self.queue_send(instance, to, content_type(ct)?, body, None)
    }

    fn reply(&self, instance: &str, message_id: &str, text: &str) -> Result<(), HostError> {
        let to = self
            .recent
            .lock()
            .0
            .get(message_id)
            .cloned()
            .ok_or_else(|| HostError::NotFound(format!("no recent message with id {message_id}")))?;
        let id = meow_proto::MessageId::from_hex(message_id);
        self.queue_send(
            instance,
            &to,
            meow_proto::ContentType::TEXT,
            text.as_bytes().to_vec(),
            id,
        )
    }

    fn kv_get(&self, instance: &str, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        Ok(self
            .vault
            .get(Table::Kv, &kv_key(instance, key))
            .map_err(store_err)?
            .map(|v| v.to_vec()))
    }

    fn kv_set(&self, instance: &str, key: &str, value: &[u8]) -> Result<(), HostError> {
        if key.is_empty() || key.len() > MAX_KEY {
            return Err(HostError::Invalid(format!("keys are 1 to {MAX_KEY} bytes")));
        }
        if value.len() > MAX_VALUE {
            return Err(HostError::Quota(format!("values are at most {MAX_VALUE} bytes")));
        }
        let exists = self.kv_get(instance, key)?.is_some();
        if !exists && self.kv_count(instance)? >= MAX_KEYS {
            return Err(HostError::Quota(format!("at most {MAX_KEYS} keys per instance")));
        }
        let mut b = self.vault.batch();
        let (k, rng) = (kv_key(instance, key), &mut meow_proto::os_rng());
        match self.kv_compartment(key) {
            Some(c) => b.put_in(c, Table::Kv, &k, value, rng),
            None => b.put(Table::Kv, &k, value, rng),
        }
        self.sync_kv(&mut b, instance, key, Some(value));
        b.commit().map_err(store_err)?;
        if !exists {
            self.adjust_count(instance, 1);
        }
        Ok(())
    }

    fn kv_delete(&self, instance: &str, key: &str) -> Result<(), HostError> {
        let exists = self.kv_get(instance, key)?.is_some();
        let mut b = self.vault.batch();
        b.delete(Table::Kv, &kv_key(instance, key));
        self.sync_kv(&mut b, instance, key, None);
        b.commit().map_err(store_err)?;
        if exists {
            self.adjust_count(instance, -1);
        }
        Ok(())
    }

    fn kv_list(&self, instance: &str, prefix: &str) -> Result<Vec<String>, HostError> {
        let full = kv_key(instance, prefix);
        let mut keys: Vec<String> = self
            .vault
            .scan(Table::Kv)
            .map_err(store_err)?
            .into_iter()
            .filter(|(k, _)| k.starts_with(&full))
            .filter_map(|(k, _)| String::from_utf8(k[instance.len() + 1..].to_vec()).ok())
            .collect();
        keys.sort();
        Ok(keys)
    }

    fn set_timer(&self, instance: &str, name: &str, after_ms: u64, repeat: bool) -> Result<u64, HostError> {
        if after_ms < MIN_TIMER_MS {
            return Err(HostError::Invalid(format!(
                "timers fire after at least {MIN_TIMER_MS} ms"
            )));
        }
        let when = if repeat {
            When::Every(after_ms)
        } else {
            When::Once(after_ms)
        };
        self.spawn_timer(instance, name, when)
    }

    fn set_cron_timer(&self, instance: &str, name: &str, expression: &str) -> Result<u64, HostError> {
        let schedule = meow_recipe::Schedule::cron(expression).map_err(HostError::Invalid)?;
        self.spawn_timer(instance, name, When::Cron(schedule))
    }

    fn cancel_timer(&self, instance: &str, id: u64) -> Result<(), HostError> {
        let mut timers = self.timers.lock();
        match timers.get(&id) {
            Some((owner, _)) if owner == instance => {
                timers.remove(&id);
                Ok(())
            }
            _ => Err(HostError::NotFound(format!("no timer {id}"))),
        }
    }

    fn contact_policy(&self, _instance: &str, contact: &str) -> Option<String> {
        self.policy_of(contact)
    }

    fn devices(&self, _instance: &str) -> Result<Vec<meow_plugin::DeviceView>, HostError> {
        // Held only to read the list: the node's lock is never held across a plugin call.
        let list = self.node.lock_blocking().devices();
        Ok(list
            .into_iter()
            .map(|d| meow_plugin::DeviceView {
                id: d.id,
                name: d.name,
                this: d.this,
                last_seen: d.last_seen_ms,
            })
            .collect())
    }

    fn node_info(&self, instance: &str) -> NodeInfo {
        NodeInfo {
            instance: instance.to_owned(),
            nickname: self.nickname.clone(),
            fingerprint: self.fingerprint.clone(),
            contacts: self.contacts.read().iter().map(|(n, _)| n.clone()).collect(),
            now: self.clock.now_ms(),
        }
    }

    fn group_send(&self, instance: &str, group: &str, text: &str) -> Result<(), HostError> {
        let members = self.group_members(instance, group)?;
        self.may_send(instance, members.len().max(1))?;
        self.queue(Command::GroupSend {
            instance: instance.to_owned(),
            group: group.to_owned(),
            text: text.to_owned(),
        })
    }

    fn group_names(&self, _: &str) -> Result<Vec<String>, HostError> {
        let groups = self
            .node
            .lock_blocking()
            .groups()
            .map_err(|e| HostError::Failed(e.to_string()))?;
        Ok(groups.into_iter().filter(|g| !g.left).map(|g| g.name).collect())
    }

    fn group_members(&self, _: &str, group: &str) -> Result<Vec<String>, HostError> {
        let groups = self
            .node
            .lock_blocking()
            .groups()
            .map_err(|e| HostError::Failed(e.to_string()))?;
        groups
            .into_iter()
            .find(|g| g.name == group && !g.left)
            .map(|g| meow_node::groups::member_names(&g))
            .ok_or_else(|| HostError::NotFound(format!("no group named {group:?}")))
    }

    fn broadcast(&self, instance: &str, text: &str) -> Result<(), HostError> {
        if text.len() > meow_proto::broadcast::MAX_BROADCAST_TEXT {
            return Err(HostError::Invalid("a broadcast is at most 1024 bytes".into()));
        }
        self.may_send(instance, 0)?;
        self.queue(Command::Broadcast {
            instance: instance.to_owned(),
            text: text.to_owned(),
        })
    }

    fn directory_publish(&self, instance: &str, description: &str, tags: Vec<String>) -> Result<(), HostError> {
        if description.len() > meow_proto::directory::MAX_DESCRIPTION {
            return Err(HostError::Invalid("a description is at most 280 bytes".into()));
        }
        self.may_send(instance, 0)?;
        self.queue(Command::DirectoryPublish {
            instance: instance.to_owned(),
            description: description.to_owned(),
            tags,
        })
    }

    fn directory_withdraw(&self, instance: &str) -> Result<(), HostError> {
        self.may_send(instance, 0)?;
        self.queue(Command::DirectoryWithdraw {
            instance: instance.to_owned(),
        })
    }

    fn file_send(&self, instance: &str, file: OutgoingFile) -> Result<String, HostError> {
        use meow_proto::file::{FileMeta, TransferId};
        self.known(&file.to)?;
        let cap = self.file_cap(instance);
        if file.data.len() as u64 > cap {
            return Err(HostError::Quota(format!(
                "a file of {} bytes is larger than instance {instance} may send ({cap} bytes; limits.file_size in meow.yaml)",
                file.data.len()
            )));
        }
        let media_type = match file.media_type.as_str() {
            "" => meow_proto::file::media_type_for(&file.name),
            given => given,
        };
        let id = TransferId::random(&mut meow_proto::os_rng());
        let meta = FileMeta::describe(id, &file.name, media_type, &file.data)
            .map_err(|e| file_err(meow_node::NodeError::File(e)))?;
        self.may_send(instance, meta.chunks() as usize)?;
        self.auto.take(&file.to).map_err(|e| HostError::Quota(e.to_string()))?;
        self.queue(Command::SendFile {
            instance: instance.to_owned(),
            to: file.to,
            meta,
            data: file.data,
        })?;
        Ok(id.to_hex())
    }

    fn http(&self, instance: &str, request: HttpRequest) -> Result<HttpResponse, HostError> {
        match &self.http {
            Some(client) => client.fetch(instance, request),
            None => Err(HostError::Denied(
                "http: no host is allowed: add `http: { allow: [HOST] }` to meow.yaml".into(),
            )),
        }
    }

    fn mqtt_publish(&self, instance: &str, topic: &str, payload: &[u8], retain: bool) -> Result<(), HostError> {
        let mqtt = self.mqtt()?;
        // A publication counts against the instance's sending rate, as a message does.
        self.take_send(instance)?;
        mqtt.publish(topic, payload, retain).map_err(mqtt_err)?;
        tracing::debug!(plugin = instance, topic, "MQTT publish");
        Ok(())
    }

    fn mqtt_subscribe(&self, instance: &str, filter: &str, subscribe: bool) -> Result<(), HostError> {
        let mqtt = self.mqtt()?;
        if subscribe {
            mqtt.subscribe(instance, filter).map_err(mqtt_err)
        } else {
            mqtt.unsubscribe(instance, filter);
            Ok(())
        }
    }

    fn file_read(&self, _: &str, id: &str, offset: u64, len: u32) -> Result<Vec<u8>, HostError> {
        let record = meow_node::files::find(&self.vault, id).map_err(file_err)?;
        let len = len.min(meow_plugin::MAX_FILE_READ) as usize;
        meow_node::files::read_range(&self.vault, &record, offset, len).map_err(file_err)
    }

    fn directory_search(&self, _: &str, words: &str) -> Result<Vec<DirectoryListing>, HostError> {
        let found = smol::block_on(meow_node::sync::directory_search(&self.node, Some(words), 20))
            .map_err(|e| HostError::Failed(e.to_string()))?;
        Ok(found
            .into_iter()
            .map(|e| DirectoryListing {
                nickname: e.card.body.nickname.clone(),
                description: e.description.clone(),
                tags: e.tags.clone(),
                card: e.card.to_text(),
            })
            .collect())
    }

    fn log(&self, instance: &str, level: Level, message: &str) {
        let now = self.clock.now_ms();
        let mut logs = self.logs.lock();
        let b = logs.entry(instance.to_owned()).or_insert_with(|| LogBucket {
            bucket: Bucket::new(LOG_RATE, LOG_RATE as u32, now),
            dropped: 0,
        });
        if !b.bucket.take(now) {
            b.dropped += 1;
            return;
        }
        if b.dropped > 0 {
            tracing::warn!(
                plugin = instance,
                dropped = b.dropped,
                "log lines dropped (more than {LOG_RATE}/s)"
            );
            b.dropped = 0;
        }
        drop(logs);
        let message: String = message.chars().take(2000).collect();
        match level {
            Level::Trace => tracing::trace!(plugin = instance, "{message}"),
            Level::Debug => tracing::debug!(plugin = instance, "{message}"),
            Level::Info => tracing::info!(plugin = instance, "{message}"),
            Level::Warn => tracing::warn!(plugin = instance, "{message}"),
            Level::Error => tracing::error!(plugin = instance, "{message}"),
        }
    }
}

/// The limits of [`RuntimeLimits`] that live in the services.
pub fn auto_budget(limits: &RuntimeLimits, clock: SharedClock) -> AutoBudget {
    AutoBudget::new(limits.auto_replies_per_contact, limits.auto_window(), clock)
}
