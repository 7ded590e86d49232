//! The MQTT bridge: recipes publish to the broker named in meow.yaml (`mqtt:`), so what arrives
//! over MEOW shows up as MQTT topics (Home Assistant, Node-RED, Mosquitto's own tools), and
//! recipes with an `mqtt` trigger and plugins with the `mqtt` capability hear the topics they
//! name (subscribed again after every reconnection), and plugins publish too.
//!
//! The client is rumqttc's: its event loop runs on a thread of its own (rumqttc drives it with
//! a small tokio runtime of its own there), reconnects with a backoff, and resends what the
//! broker has not acknowledged (QoS 1). The rest of the runtime stays on smol and hands it
//! messages through a bounded queue: a publish never waits, and fails with a clear reason when
//! the queue is full.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{Client, ConnectionError, Event, MqttOptions, Packet, QoS};

use crate::config::MqttSettings;

/// Messages waiting for the broker at most (beyond them, a publish fails).
const QUEUE: usize = 1024;
/// The longest payload a recipe or plugin may publish.
pub const MAX_PAYLOAD: usize = 256 * 1024;
/// Messages heard and not yet taken by the recipes at most (beyond them, they are dropped and
/// counted).
pub const INCOMING: usize = 256;
/// The longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why the bridge could not start or publish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MqttError {
    /// The broker URL is not `mqtt://[user[:password]@]host[:port]`.
    #[error("mqtt.broker {0:?}: {1}")]
    Broker(String, String),
    /// The password file could not be read.
    #[error("mqtt.password_file {0}: {1}")]
    Password(String, String),
    /// The CA file could not be used.
    #[error("mqtt.ca_file {0}: {1}")]
    Ca(String, String),
    /// A topic (or filter) a recipe or plugin named is not one MQTT allows.
    #[error("MQTT topic {0:?}: {1}")]
    Topic(String, &'static str),
    /// The payload is too large.
    #[error("MQTT payload of {0} bytes: at most {MAX_PAYLOAD}")]
    Payload(usize),
    /// The bridge's queue is full (the broker is away or slow).
    #[error("the MQTT queue is full ({QUEUE} messages wait for the broker, which is {state})")]
    Full {
        /// Connected or not.
        state: &'static str,
    },
    /// The bridge stopped.
    #[error("the MQTT bridge stopped")]
    Stopped,
}

/// Where the broker is: host, port, TLS and credentials from
/// `mqtt[s]://[user[:password]@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Broker {
    host: String,
    port: u16,
    tls: bool,
    user: Option<String>,
    password: Option<String>,
}

fn parse_broker(url: &str) -> Result<Broker, MqttError> {
    let bad = |why: &str| MqttError::Broker(url.to_owned(), why.to_owned());
    let (rest, tls) = match (url.strip_prefix("mqtt://"), url.strip_prefix("mqtts://")) {
        (Some(rest), _) => (rest, false),
        (_, Some(rest)) => (rest, true),
        _ => return Err(bad("expected mqtt://host[:port], or mqtts://host[:port] for TLS")),
    };
    let (auth, hostport) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let hostport = hostport.trim_end_matches('/');
    // An IPv6 address is bracketed ([::1]:1883): its colons are not the port's.
    let (host, port) = match hostport.strip_prefix('[').and_then(|h| h.split_once(']')) {
        Some((h, rest)) => (h, rest.strip_prefix(':')),
        None => match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        },
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| bad("the port is not a number from 1 to 65535"))?,
        None if tls => 8883,
        None => 1883,
    };
    if host.is_empty() || port == 0 {
        return Err(bad("no host"));
    }
    let (user, password) = match auth.map(|a| a.split_once(':').map_or((a, None), |(u, p)| (u, Some(p)))) {
        Some((u, p)) => (Some(u.to_owned()), p.map(str::to_owned)),
        None => (None, None),
    };
    Ok(Broker {
        host: host.to_owned(),
        port,
        tls,
        user,
        password,
    })
}

/// The TLS client configuration for an `mqtts://` broker: rustls with its ring provider, the
/// server checked against `ca` (a PEM file) or, without one, the Mozilla roots.
fn tls_config(ca: Option<&Path>) -> Result<rustls::ClientConfig, MqttError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let shown = path.display().to_string();
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| MqttError::Ca(shown.clone(), e.to_string()))?;
            if certs.is_empty() {
                return Err(MqttError::Ca(shown, "no certificate in it".into()));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| MqttError::Ca(shown.clone(), e.to_string()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    // ring has no post-quantum key exchange (rustls deprecates its provider for that); the
    // provider that has one, aws-lc-rs, needs a C toolchain and cmake to build. A broker link is
    // classical TLS 1.2/1.3 (docs/THREAT-MODEL.md), like the `http` capability's.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttError::Ca("(none)".into(), e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Checks a topic a recipe publishes to (MQTT 3.1.1 §4.7): not empty, no wildcards, no NUL,
/// at most 65 535 bytes.
pub fn check_topic(topic: &str) -> Result<(), MqttError> {
    let bad = |why| Err(MqttError::Topic(topic.to_owned(), why));
    if topic.is_empty() {
        return bad("empty");
    }
    if topic.contains(['+', '#']) {
        return bad("a topic to publish to has no wildcards (+, #)");
    }
    if topic.contains('\0') {
        return bad("contains NUL");
    }
    if topic.len() > usize::from(u16::MAX) {
        return bad("longer than 65535 bytes");
    }
    Ok(())
}

/// A message heard on a subscribed topic: the topic and the payload.
pub type Heard = (String, Vec<u8>);

/// The most topic filters one plugin instance may subscribe to.
pub const MAX_PLUGIN_FILTERS: usize = 32;

/// Who listens to which topic filters.
#[derive(Debug, Default)]
struct Listeners {
    /// The recipes' filters.
    recipes: Vec<String>,
    /// Each plugin instance's filters.
    plugins: BTreeMap<String, BTreeSet<String>>,
}

impl Listeners {
    /// Every filter, each once.
    fn all(&self) -> Vec<String> {
        let mut all: BTreeSet<&String> = self.recipes.iter().collect();
        all.extend(self.plugins.values().flatten());
        all.into_iter().cloned().collect()
    }
}

/// A running bridge to one broker.
pub struct Mqtt {
    client: Client,
    /// The topic filters recipes and plugins listen to, each once (subscribed on every
    /// connection).
    topics: Arc<parking_lot::Mutex<Vec<String>>>,
    listeners: parking_lot::Mutex<Listeners>,
    connected: Arc<AtomicBool>,
    /// Set when the bridge is dropped: the event loop's thread ends even while the broker is
    /// away (it would otherwise retry for as long as the process lives).
    stopped: Arc<AtomicBool>,
}

impl std::fmt::Debug for Mqtt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mqtt(connected: {})", self.connected.load(Ordering::Relaxed))
    }
}

impl Mqtt {
    /// Starts the bridge (it connects in the background; publishing before it is connected
    /// queues). `base` is the folder relative paths of the settings start from; what is heard
    /// on `topics` goes to `heard`.
    pub fn start(
        settings: &MqttSettings,
        base: &Path,
        topics: Vec<String>,
        heard: smol::channel::Sender<Heard>,
    ) -> Result<Self, MqttError> {
        let broker = parse_broker(&settings.broker)?;
        let id = settings
            .client_id
            .clone()
            .unwrap_or_else(|| format!("meow-{}", std::process::id()));
        let mut options = MqttOptions::new(id, broker.host.clone(), broker.port);
        options.set_keep_alive(Duration::from_secs(30));
        // A payload, a topic of the largest length and the packet's own header.
        let packet = MAX_PAYLOAD + usize::from(u16::MAX) + 16;
        options.set_max_packet_size(packet, packet);
        let password = match &settings.password_file {
            Some(file) => {
                let path = base.join(file);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| MqttError::Password(path.display().to_string(), e.to_string()))?;
                Some(text.trim_end_matches(['\r', '\n']).to_owned())
            }
            None => broker.password.clone(),
        };
        if let Some(user) = settings.username.clone().or(broker.user.clone()) {
            options.set_credentials(user, password.unwrap_or_default());
        }
        if broker.tls {
            let config = tls_config(settings.ca_file.as_deref().map(|f| base.join(f)).as_deref())?;
            options.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(
                Arc::new(config),
            )));
        }
        let (client, connection) = Client::new(options, QUEUE);
        let (connected, stopped) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let listeners = parking_lot::Mutex::new(Listeners {
            recipes: topics.clone(),
            plugins: BTreeMap::new(),
        });
        let topics = Arc::new(parking_lot::Mutex::new(topics));
        let loop_state = Loop {
            client: client.clone(),
            topics: topics.clone(),
            heard,
            dropped: AtomicU64::new(0),
            connected: connected.clone(),
            stopped: stopped.clone(),
            address: format!("{}:{}", broker.host, broker.port),
        };
        std::thread::Builder::new()
            .name("meow-mqtt".into())
            .spawn(move || loop_state.drive(connection))
            .map_err(|e| MqttError::Broker(settings.broker.clone(), e.to_string()))?;
        Ok(Self {
            client,
            topics,
            listeners,
            connected,
            stopped,
        })
    }

    /// The recipes listen to `topics` from now on (they were reloaded).
    pub fn set_recipe_topics(&self, topics: Vec<String>) {
        let mut listeners = self.listeners.lock();
        listeners.recipes = topics;
        self.listen_to(listeners.all());
    }

    /// Plugin instance `instance` listens to `filter` too (at most [`MAX_PLUGIN_FILTERS`]).
    pub fn subscribe(&self, instance: &str, filter: &str) -> Result<(), MqttError> {
        meow_recipe::check_filter(filter).map_err(|why| MqttError::Topic(filter.to_owned(), why))?;
        let mut listeners = self.listeners.lock();
        let filters = listeners.plugins.entry(instance.to_owned()).or_default();
        if filters.len() >= MAX_PLUGIN_FILTERS && !filters.contains(filter) {
            return Err(MqttError::Topic(
                filter.to_owned(),
                "an instance subscribes to at most 32 filters",
            ));
        }
        filters.insert(filter.to_owned());
        self.listen_to(listeners.all());
        Ok(())
    }

    /// Plugin instance `instance` no longer listens to `filter`.
    pub fn unsubscribe(&self, instance: &str, filter: &str) {
        let mut listeners = self.listeners.lock();
        if let Some(filters) = listeners.plugins.get_mut(instance) {
            filters.remove(filter);
        }
        self.listen_to(listeners.all());
    }

    /// Plugin instance `instance` listens to nothing any more (it stopped or restarts: it
    /// subscribes again as it starts).
    pub fn forget(&self, instance: &str) {
        let mut listeners = self.listeners.lock();
        if listeners.plugins.remove(instance).is_some() {
            self.listen_to(listeners.all());
        }
    }

    /// The plugin instances listening to a filter `topic` matches.
    pub fn plugins_hearing(&self, topic: &str) -> Vec<String> {
        let listeners = self.listeners.lock();
        listeners
            .plugins
            .iter()
            .filter(|(_, filters)| filters.iter().any(|f| meow_recipe::topic_matches(f, topic)))
            .map(|(instance, _)| instance.clone())
            .collect()
    }

    /// Listens to `topics` from now on: new filters are subscribed, dropped ones unsubscribed.
    fn listen_to(&self, topics: Vec<String>) {
        let mut current = self.topics.lock();
        for gone in current.iter().filter(|t| !topics.contains(t)) {
            // Not unsubscribed (the request queue is full): what arrives on it matches no
            // recipe, and the next connection does not subscribe it again.
            if let Err(e) = self.client.try_unsubscribe(gone.clone()) {
                tracing::debug!(topic = %gone, "MQTT: cannot unsubscribe now ({e})");
            }
        }
        for new in topics.iter().filter(|t| !current.contains(t)) {
            if let Err(e) = self.client.try_subscribe(new.clone(), QoS::AtLeastOnce) {
                tracing::warn!(topic = %new, "MQTT: cannot subscribe now ({e}); on the next connection");
            }
        }
        *current = topics;
    }

    /// Whether the broker has accepted the connection (and not lost it since).
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Queues `payload` for `topic`, at least once (QoS 1); never waits.
    pub fn publish(&self, topic: &str, payload: &[u8], retain: bool) -> Result<(), MqttError> {
        check_topic(topic)?;
        if payload.len() > MAX_PAYLOAD {
            return Err(MqttError::Payload(payload.len()));
        }
        self.client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload.to_vec())
            .map_err(|e| match e {
                rumqttc::ClientError::TryRequest(_) => MqttError::Full {
                    state: if self.connected() { "connected" } else { "not connected" },
                },
                _ => MqttError::Stopped,
            })
    }
}

impl Drop for Mqtt {
    fn drop(&mut self) {
        // Ends the event loop's thread once what is queued has gone (or the broker is away).
        self.stopped.store(true, Ordering::Relaxed);
        let _ = self.client.try_disconnect();
    }
}

/// What the event loop's thread holds.
struct Loop {
    client: Client,
    topics: Arc<parking_lot::Mutex<Vec<String>>>,
    heard: smol::channel::Sender<Heard>,
    /// Messages heard while the recipes' queue was full.
    dropped: AtomicU64,
    connected: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
    address: String,
}

impl Loop {
    /// Connects, reconnects with a backoff (saying so in the log once per change), subscribes
    /// on every connection, hands on what it hears, and ends when the client is gone.
    fn drive(self, mut connection: rumqttc::Connection) {
        let address = &self.address;
        let mut backoff = Duration::from_secs(1);
        // The first failure is said at warn (a wrong address, a certificate that does not check),
        // the retries after it at debug.
        let mut said = false;
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    self.connected.store(true, Ordering::Relaxed);
                    backoff = Duration::from_secs(1);
                    said = false;
                    tracing::info!(broker = %address, "MQTT: connected");
                    self.subscribe_all();
                }
                Ok(Event::Incoming(Packet::Publish(p))) => self.hand_on(p.topic, p.payload.to_vec()),
                Ok(_) => {}
                Err(ConnectionError::RequestsDone) => return,
                Err(_) if self.stopped.load(Ordering::Relaxed) => return,
                Err(e) => {
                    if self.connected.swap(false, Ordering::Relaxed) {
                        tracing::warn!(broker = %address, "MQTT: connection lost ({e}); reconnecting");
                    } else if !std::mem::replace(&mut said, true) {
                        tracing::warn!(broker = %address, "MQTT: cannot connect ({e}); retrying with a backoff");
                    } else {
                        tracing::debug!(broker = %address, "MQTT: cannot connect ({e}); next try in {}s", backoff.as_secs());
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn subscribe_all(&self) {
        for topic in self.topics.lock().iter() {
            if let Err(e) = self.client.try_subscribe(topic.clone(), QoS::AtLeastOnce) {
                tracing::warn!(topic = %topic, "MQTT: cannot subscribe ({e})");
            }
        }
    }

    fn hand_on(&self, topic: String, payload: Vec<u8>) {
        if self.heard.try_send((topic, payload)).is_err() {
            // Said once per power of two, so a flood costs a few lines.
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n,
                    "MQTT: recipes and plugins are behind; messages heard are dropped"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_hear_the_filters_they_subscribe_to_until_they_restart() {
        let settings = MqttSettings {
            // Nothing listens there: the bridge keeps trying in the background.
            broker: "mqtt://127.0.0.1:1".into(),
            client_id: None,
            username: None,
            password_file: None,
            ca_file: None,
        };
        let (tx, _rx) = smol::channel::bounded(1);
        let mqtt = Mqtt::start(&settings, Path::new("."), vec!["recipes/#".into()], tx).unwrap();
        mqtt.subscribe("lights", "home/+/light").unwrap();
        mqtt.subscribe("all", "home/#").unwrap();
        assert_eq!(mqtt.plugins_hearing("home/kitchen/light"), ["all", "lights"]);
        assert_eq!(mqtt.plugins_hearing("home/kitchen/door"), ["all"]);
        assert!(
            mqtt.plugins_hearing("recipes/x").is_empty(),
            "the recipes' filters are theirs"
        );
        assert_eq!(*mqtt.topics.lock(), ["home/#", "home/+/light", "recipes/#"]);
        let bad = mqtt.subscribe("all", "home/#/x").unwrap_err().to_string();
        assert!(bad.contains("# stands alone"), "{bad}");
        for i in 1..MAX_PLUGIN_FILTERS {
            mqtt.subscribe("all", &format!("f/{i}")).unwrap();
        }
        let full = mqtt.subscribe("all", "one/more").unwrap_err().to_string();
        assert!(full.contains("at most 32"), "{full}");
        mqtt.subscribe("all", "home/#").unwrap(); // one it has is no new one
        mqtt.unsubscribe("lights", "home/+/light");
        assert_eq!(mqtt.plugins_hearing("home/kitchen/light"), ["all"]);
        mqtt.forget("all");
        assert!(mqtt.plugins_hearing("home/kitchen/light").is_empty());
        mqtt.set_recipe_topics(vec!["sensors/#".into()]);
        assert_eq!(*mqtt.topics.lock(), ["sensors/#"]);
    }

    #[test]
    fn broker_urls_name_host_port_and_credentials() {
        let b = parse_broker("mqtt://127.0.0.1:1884").unwrap();
        assert_eq!((b.host.as_str(), b.port, b.user), ("127.0.0.1", 1884, None));
        let b = parse_broker("mqtt://ha:secret@homeassistant.local").unwrap();
        assert_eq!(b.host, "homeassistant.local");
        assert_eq!(b.port, 1883);
        assert_eq!((b.user.as_deref(), b.password.as_deref()), (Some("ha"), Some("secret")));
        assert_eq!(parse_broker("mqtt://[::1]:1883").unwrap().host, "::1");
        assert_eq!(parse_broker("mqtt://[::1]").unwrap().port, 1883);
        let tls = parse_broker("mqtts://broker.example").unwrap();
        assert_eq!((tls.port, tls.tls), (8883, true));
        assert!(!parse_broker("mqtt://x").unwrap().tls);
        for bad in ["tcp://x", "mqtt://", "mqtt://x:port", "mqtt://x:0", "mqtts://"] {
            assert!(parse_broker(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_ca_file_that_is_missing_or_holds_no_certificate_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = tls_config(Some(&dir.path().join("nope.pem"))).unwrap_err().to_string();
        assert!(
            missing.starts_with("mqtt.ca_file ") && missing.contains("nope.pem"),
            "{missing}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = tls_config(Some(&empty)).unwrap_err().to_string();
        assert!(err.contains("no certificate in it"), "{err}");
        assert!(tls_config(None).is_ok(), "the Mozilla roots");
    }

    #[test]
    fn topics_to_publish_to_have_no_wildcards() {
        assert!(check_topic("meow/sensor/kitchen").is_ok());
        for bad in ["", "meow/+/x", "meow/#", "a\0b"] {
            assert!(check_topic(bad).is_err(), "{bad:?}");
        }
    }
}
