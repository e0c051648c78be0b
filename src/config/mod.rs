//! Settings: the types, their embedded defaults, and how a TOML file and the environment layer
//! over them.
//!
//! Everything is checked once, here, at startup: an unknown key or a bad value is a
//! [`ConfigError`] that names the key, so `main` can exit with code 2 instead of panicking later.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::providers::registry::{self, Instance, ProviderKind, Section};
use crate::secret::Secret;

mod alerts;
mod delivery;
pub mod layers;
pub mod origin;
mod shared;
pub mod validate;
pub use crate::duration::{HumanDuration, MAX_DURATION};
pub use crate::shared::settings::{DedupBackend, DedupConfig, LimitsBackend, OnError, RedisConfig};
pub use alerts::{AlertRule, NotifierConfig, NotifierKind, RuleKind};
pub use delivery::{
    is_http_url, BreakerConfig, DeliveryConfig, RetentionConfig, RetryConfig, RetryOverride, Strategy, Targets,
};
pub use origin::Origins;

/// A configuration problem, always naming the key it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", if .key.is_empty() { "config".to_string() } else { format!("config key `{}`", .key) })]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { key: key.to_string(), message: message.into() }
}

/// The whole effective configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub limits: LimitsConfig,
    pub store: StoreConfig,
    pub retry: RetryConfig,
    pub circuit_breaker: BreakerConfig,
    pub delivery: DeliveryConfig,
    pub retention: RetentionConfig,
    pub isolation: IsolationConfig,
    pub redis: RedisConfig,
    pub dedup: DedupConfig,
    pub providers: ProvidersConfig,
    /// `[notifiers.<name>]`: where alerts are sent.
    pub notifiers: BTreeMap<String, NotifierConfig>,
    /// `[[alerts]]`: the rules the evaluator (`alerts/`) watches.
    pub alerts: Vec<AlertRule>,
}

/// `[isolation]`: what staging must never touch.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IsolationConfig {
    /// Host patterns (`*` matches any run of characters) no forward target may point at, on
    /// top of the providers' own API hosts, which are always refused.
    pub production_hosts: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port (tests, load scripts).
    pub bind: SocketAddr,
    /// Folder of the embedded database; created when missing.
    pub data_dir: PathBuf,
    /// This instance's name in `/stats`, the health check and the dashboard, so that replicas
    /// behind one load balancer can be told apart: 1 to 64 of `[A-Za-z0-9._-]`
    /// ([`valid_instance_id`]). Defaults to the host name ([`host_name`]), resolved once here,
    /// so everything reads the one value [`ServerConfig::instance_id`] gives.
    pub instance_id: String,
    /// The externally visible base URL (e.g. a tunnel); Twilio signs the URL it called, so when
    /// set, it replaces the scheme and host taken from the request. Also stagehook's own base URL
    /// ([`ServerConfig::base_url`]), and its host and origin count as this stagehook's.
    pub public_url: Option<String>,
    /// Further origins (`https://stagehook.example.com`) whose pages may make state-changing
    /// requests to the admin API and the dashboard, besides stagehook's own.
    pub allowed_origins: Vec<String>,
    /// Further host names or addresses that the admin API and the dashboard answer to in `Host`,
    /// besides loopback, the bind address and `public_url`'s host: a DNS-rebinding page arrives
    /// with a name of its own.
    pub allowed_hosts: Vec<String>,
    /// Peers whose `X-Forwarded-For` is believed: single addresses or CIDR ranges.
    pub trusted_proxies: Vec<String>,
    /// On SIGINT/SIGTERM, how long in-flight requests may take before the store closes anyway.
    pub shutdown_grace_seconds: u64,
    /// When set, every endpoint but ingest requires it (`Authorization: Bearer`, or the
    /// dashboard's session cookie).
    pub admin_token: Option<Secret>,
    /// How long a dashboard session lasts from sign-in, however much it is used; then the
    /// dashboard asks for the token again. Sessions live in memory and end at a restart.
    pub session_ttl: HumanDuration,
    /// From connect until the first request's headers are complete; then the connection is
    /// closed. Bounds slowloris-style clients that open connections and never finish a request.
    pub header_timeout: HumanDuration,
    /// From the end of a request's headers until its whole body has arrived; else `408`.
    pub body_timeout: HumanDuration,
    /// How long a kept-alive connection may wait between a response and the next request's
    /// complete headers (this also bounds a response the client does not read).
    pub idle_timeout: HumanDuration,
    /// Most connections open at once. Beyond it a new connection takes the place of the one
    /// that has waited longest for a request (if it has waited a second or more), or is refused
    /// at once; never queued. Kept below the open-file limit at startup.
    pub max_connections: usize,
    /// Largest request head (request line and headers) in bytes; larger ones get `431`.
    pub max_header_bytes: usize,
    /// An early refusal (413, 429, 401, ...) first reads and discards up to this many bytes of
    /// the unread body, so that a client that writes its whole body before reading gets the
    /// answer instead of a reset connection.
    pub refusal_drain_bytes: u64,
    /// And for at most this long.
    pub refusal_drain_timeout: HumanDuration,
    /// Bytes a second a request body must keep up once `body_rate_grace` has passed: it must
    /// have delivered this many bytes for every second beyond the grace, else `408
    /// body_too_slow`. A body that arrives whole at once is never timed. 0: no minimum.
    pub min_body_rate: u64,
    /// How long a body may arrive at any rate before `min_body_rate` applies.
    pub body_rate_grace: HumanDuration,
    /// The bytes of request bodies still arriving (held in memory until they are whole), summed
    /// over every connection; a body that would take the sum past it gets `503
    /// too_many_body_bytes`. At least `limits.max_body_bytes`.
    pub max_inflight_body_bytes: u64,
    /// When set, `GET /metrics` is also served on this address, alone and without the admin
    /// token or the `Host` check: for a scraper on a private interface.
    pub metrics_bind: Option<SocketAddr>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./stagehook-data"),
            instance_id: host_name().to_string(),
            public_url: None,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            trusted_proxies: Vec::new(),
            shutdown_grace_seconds: 10,
            admin_token: None,
            session_ttl: HumanDuration(std::time::Duration::from_secs(12 * 3600)),
            header_timeout: HumanDuration(std::time::Duration::from_secs(10)),
            body_timeout: HumanDuration(std::time::Duration::from_secs(30)),
            idle_timeout: HumanDuration(std::time::Duration::from_secs(60)),
            // 6 000 keeps a flood that holds the cap under 300 MB (each connection costs 14 to
            // 31 KB: 256 MB peak in the slow-body flood, against 383 MB at 10 000); a staging
            // receiver's genuine senders need a few dozen.
            max_connections: 6_000,
            max_header_bytes: 64 * 1024,
            refusal_drain_bytes: 4 * 1024 * 1024,
            refusal_drain_timeout: HumanDuration(std::time::Duration::from_secs(2)),
            min_body_rate: 1024,
            body_rate_grace: HumanDuration(std::time::Duration::from_secs(5)),
            max_inflight_body_bytes: 64 * 1024 * 1024,
            metrics_bind: None,
        }
    }
}

impl ServerConfig {
    /// This instance's id: `server.instance_id`, the host name by default.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// stagehook's own base URL, without a trailing `/`: `public_url` when set, else the address
    /// it listens on ([`ServerConfig::local_url`]). Every URL stagehook signs or prints for itself
    /// (the `curl` command, `/validate`'s default Twilio URL, `stagehook send`) is built from it,
    /// never from a request's `Host`, which is whatever the client wrote.
    pub fn base_url(&self, listening: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => ServerConfig::local_url(listening),
        }
    }

    /// `http://` and an address stagehook listens on, a 0.0.0.0 or [::] bind written as
    /// 127.0.0.1 or [::1]: "every interface" is not an address a client can call, and loopback
    /// is always one of them.
    pub fn local_url(mut listening: SocketAddr) -> String {
        match listening.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => listening.set_ip(Ipv4Addr::LOCALHOST.into()),
            IpAddr::V6(ip) if ip.is_unspecified() => listening.set_ip(Ipv6Addr::LOCALHOST.into()),
            _ => {}
        }
        format!("http://{listening}")
    }
}

/// An instance id: 1 to 64 ASCII letters, digits, `.`, `_` and `-`, which every host name is.
/// The id goes into log lines and, for instances that share state, into values other instances
/// read: a space, a colon or a control character there would split or forge a field.
pub fn valid_instance_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The id an instance takes when `server.instance_id` is not set: the machine's host name, or
/// `stagehook` when it cannot be read or is not a valid id ([`valid_instance_id`]; a host name
/// set by hand may hold anything), so that a default never stops startup. Read once.
pub fn host_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its whole length, which is what gethostname may write.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        // POSIX leaves a truncated name without its NUL: then there is none, and it is refused.
        let name = (rc == 0)
            .then(|| buf.iter().position(|&b| b == 0).map(|end| &buf[..end]))
            .flatten()
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .filter(|name| valid_instance_id(name));
        name.unwrap_or("stagehook").to_string()
    })
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest accepted request body, declared or streamed.
    pub max_body_bytes: u64,
    /// Requests per client IP in any 60 s window; 0 turns the limiter off.
    pub rate_limit_per_minute: u32,
    /// Most clients the limiter tracks at once; the least recently seen are evicted first.
    pub rate_limit_max_ips: usize,
    /// Leading bits of an IPv6 address that name one client for the limiter (1 to 128): one
    /// host commonly holds a whole /64 and could otherwise rotate through it.
    pub ipv6_prefix: u32,
    /// Where the counts live: `memory` (this instance alone) or `redis` (shared; see `[redis]`).
    pub backend: LimitsBackend,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_bytes: 1_048_576,
            rate_limit_per_minute: 100,
            rate_limit_max_ips: 100_000,
            ipv6_prefix: crate::ratelimit::DEFAULT_IPV6_PREFIX,
            backend: LimitsBackend::Memory,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// sled's page cache, in MiB (sled's own default is 1 GiB, too much for a laptop tool).
    pub cache_mb: u64,
    /// How many refused requests (bad signature or payload) the rejection log keeps.
    pub rejection_log_size: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { cache_mb: 16, rejection_log_size: 1000 }
    }
}

/// `[providers]`: every section by name. The seed's `stripe` and `twilio` are instances like any
/// other, whose kind is their name; any other name is served at `/staging/webhooks/<name>`.
/// A seed's endpoint is present even without its section ([`Config::sections`]).
#[derive(Debug, Clone, Default)]
pub struct ProvidersConfig(pub BTreeMap<String, ProviderConfig>);

impl ProvidersConfig {
    /// Adds or replaces a section, given as its provider settings (a kind's own settings type,
    /// or a whole [`Section`]), with the common keys at their defaults.
    pub fn insert(&mut self, name: String, section: impl Into<Section>) -> Option<ProviderConfig> {
        self.0.insert(name, ProviderConfig::from(section.into()))
    }
}

impl std::ops::Deref for ProvidersConfig {
    type Target = BTreeMap<String, ProviderConfig>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for ProvidersConfig {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// `[providers.<name>]`: the keys every kind shares, read here, and the kind's own, which the
/// registry parses into the kind's settings ([`registry::section`]) and checks when it builds.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// `kind` and the kind's own keys.
    pub settings: Section,
    /// The app's endpoints that receive every event, re-signed.
    pub forward_to: Vec<String>,
    /// Per-target time limit of one delivery attempt.
    pub timeout: HumanDuration,
    pub retry: RetryOverride,
    /// Headers a delivery keeps that it drops by default (`delivery::CREDENTIAL_HEADERS`),
    /// lowercase.
    pub forward_headers: Vec<String>,
}

impl From<Section> for ProviderConfig {
    fn from(settings: Section) -> Self {
        ProviderConfig {
            settings,
            forward_to: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            retry: RetryOverride::default(),
            forward_headers: Vec::new(),
        }
    }
}

/// The keys of a section that are config's, not the kind's.
pub const COMMON_KEYS: [&str; 4] = ["forward_to", "timeout", "retry", "forward_headers"];

/// Names an instance cannot take: the API's own paths (and the seed's, see
/// [`valid_instance_name`]).
pub const API_PATHS: [&str; 9] =
    ["test", "stats", "validate", "events", "replay", "recovery", "config", "rejections", "alerts"];

/// A name that is a path segment as it stands: lowercase letters, digits, `-` and `_`.
// A String: the message becomes a serde error's text, which is all serde keeps.
pub fn valid_instance_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("a provider name is 1 to 64 characters".into());
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
        return Err(format!("`{name}` may hold only lowercase letters, digits, `-` and `_` (it becomes a URL path)"));
    }
    if API_PATHS.contains(&name) || registry::taken_paths().any(|p| p == name) {
        return Err(format!("`{name}` is taken by a built-in endpoint; choose another name"));
    }
    Ok(())
}

// By hand rather than derived: a section's keys are read one by one, the common ones and `kind`
// here and the rest by the registry, which checks each value's type as it comes (so an error
// names `providers.<name>.<key>`, through serde_path_to_error) and parses them into the kind's
// settings once the kind is known (`kind` may come after them).
impl<'de> Deserialize<'de> for ProvidersConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Providers;
        impl<'de> serde::de::Visitor<'de> for Providers {
            type Value = ProvidersConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of providers by name")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ProvidersConfig, A::Error> {
                use serde::de::Error;
                let mut out = ProvidersConfig::default();
                while let Some(name) = map.next_key::<String>()? {
                    if !registry::is_seed(&name) {
                        valid_instance_name(&name).map_err(A::Error::custom)?;
                    }
                    let section: ProviderConfig = map.next_value_seed(SectionOf(&name))?;
                    if section.settings.kind.is_none() && ProviderKind::parse(&name).is_none() {
                        let kinds: Vec<&str> = ProviderKind::ALL.iter().map(|k| k.as_str()).collect();
                        return Err(A::Error::custom(format!(
                            "provider `{name}` needs `kind`, one of {}{}",
                            kinds.join(", "),
                            did_you_mean(&name, kinds.iter().copied())
                        )));
                    }
                    out.0.insert(name, section);
                }
                Ok(out)
            }
        }
        d.deserialize_map(Providers)
    }
}

/// Reads `[providers.<name>]`, whose name the kind may be.
struct SectionOf<'a>(&'a str);

impl<'de> serde::de::DeserializeSeed<'de> for SectionOf<'_> {
    type Value = ProviderConfig;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<ProviderConfig, D::Error> {
        /// One of the kind's keys, as the registry reads it.
        struct Key<'a> {
            kind: Option<ProviderKind>,
            key: &'a str,
        }
        impl<'de> serde::de::DeserializeSeed<'de> for Key<'_> {
            type Value = toml::Value;
            fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<toml::Value, D::Error> {
                registry::read_key(self.kind, self.key, d)
            }
        }
        struct Visit<'a>(&'a str);
        impl<'de> serde::de::Visitor<'de> for Visit<'_> {
            type Value = ProviderConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a provider's settings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ProviderConfig, A::Error> {
                static EXPECTED: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
                    ["kind"].iter().chain(registry::all_keys()).chain(COMMON_KEYS.iter()).copied().collect()
                });
                let name = self.0;
                let mut kind: Option<ProviderKind> = None;
                let mut keys = toml::Table::new();
                let (mut forward_to, mut timeout, mut retry) = (Vec::new(), DEFAULT_TIMEOUT, RetryOverride::default());
                let mut forward_headers: Vec<String> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "kind" => kind = map.next_value()?,
                        "forward_to" => forward_to = map.next_value()?,
                        "timeout" => timeout = map.next_value()?,
                        "retry" => retry = map.next_value()?,
                        "forward_headers" => forward_headers = map.next_value()?,
                        k if registry::all_keys().contains(&k) => {
                            let known = kind.or_else(|| ProviderKind::parse(name));
                            let value = map.next_value_seed(Key { kind: known, key: k })?;
                            keys.insert(key, value);
                        }
                        k => {
                            // The suggestion comes from the keys this section's kind reads when
                            // it is known by now, so that `secert` in a Stripe section is
                            // `secret`, not another kind's key.
                            let known = kind.or_else(|| ProviderKind::parse(name));
                            let own = known.map_or(registry::all_keys(), |of| of.keys());
                            let accepted = ["kind"].iter().chain(own).chain(COMMON_KEYS.iter()).copied();
                            let mut hint = did_you_mean(k, accepted);
                            if hint.is_empty() {
                                // Another kind's key, which a named instance may still hold.
                                hint = did_you_mean(k, EXPECTED.iter().copied());
                            }
                            let listed: Vec<String> = EXPECTED.iter().map(|k| format!("`{k}`")).collect();
                            return Err(serde::de::Error::custom(format!(
                                "unknown field `{k}`, expected one of {}{hint}",
                                listed.join(", ")
                            )));
                        }
                    }
                }
                let settings = registry::section(name, kind, keys).map_err(serde::de::Error::custom)?;
                // Header names compare case-insensitively; kept lowercase, as stored headers are.
                let forward_headers = forward_headers.into_iter().map(|h| h.to_ascii_lowercase()).collect();
                Ok(ProviderConfig { settings, forward_to, timeout, retry, forward_headers })
            }
        }
        d.deserialize_map(Visit(self.0))
    }
}

impl Serialize for ProvidersConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        /// A section as shown: its provider keys (`registry::shown`), then the common ones.
        struct Shown<'a>(&'a str, &'a ProviderConfig);
        impl Serialize for Shown<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let Shown(name, c) = self;
                let mut map = s.serialize_map(None)?;
                for (key, value) in registry::shown(name, &c.settings) {
                    map.serialize_entry(&key, &value)?;
                }
                map.serialize_entry("forward_to", &c.forward_to)?;
                map.serialize_entry("timeout", &c.timeout)?;
                map.serialize_entry("retry", &c.retry)?;
                map.serialize_entry("forward_headers", &c.forward_headers)?;
                map.end()
            }
        }
        let mut map = s.serialize_map(Some(self.len()))?;
        for (name, section) in self.iter() {
            map.serialize_entry(name, &Shown(name, section))?;
        }
        map.end()
    }
}

/// The smallest request head the HTTP layer can be held to (hyper's read buffer minimum).
pub const MIN_HEADER_BYTES: usize = 8192;
/// The largest: a head this size is already far beyond what any provider sends.
pub const MAX_HEADER_BYTES: usize = 1024 * 1024;

const DEFAULT_TIMEOUT: HumanDuration = HumanDuration(std::time::Duration::from_secs(10));

/// An address or CIDR range of trusted proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    addr: IpAddr,
    prefix: u8,
}

impl IpRange {
    pub fn parse(s: &str) -> Option<IpRange> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(IpRange { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 peer may arrive as an IPv4-mapped IPv6 address on a dual-stack socket.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix) };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl Config {
    /// Embedded defaults, then the TOML file (if any), then the environment; see [`layers`].
    pub fn load(path: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        layers::load(path, env, &[]).map(|l| l.config)
    }

    /// Parses TOML, naming the key of the first unknown or badly typed entry.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            // toml's message starts with a location and a source excerpt; the last line is the
            // reason, which is what a person needs next to the key.
            let mut message = inner.message().trim().to_string();
            let key = if key == "." { String::new() } else { key };
            if !message.contains("did you mean") {
                message.push_str(&unknown_field_hint(&message));
            }
            // toml's span is the section's for a key read inside a provider section (and for
            // an unknown key); the key's own line is found in the text, the span's kept for a
            // place inside an array, and for what the text does not show.
            let span_line = inner.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            let path = fault_path(&key, &message);
            let line = match (key_line(text, &path), span_line) {
                (Some(own), Some(span)) if key.ends_with(']') && span >= own => Some(span),
                (Some(own), _) => Some(own),
                (None, span) => span,
            };
            err(&key, format!("{message}{}", line.map(|l| format!(" (line {l})")).unwrap_or_default()))
        })
    }

    /// Value checks that the types alone cannot express.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.checked().map(drop)
    }

    /// [`Config::check`], giving the providers it built and the hosts and origins it read: each
    /// is built or read once, here, and [`crate::App::open_built`] takes them.
    pub fn checked(&self) -> Result<(Vec<Instance>, Origins), ConfigError> {
        // public_url (an http(s) URL with a host), its host and origin, allowed_origins and
        // allowed_hosts, read once into what the origin checks compare requests with.
        let origins = Origins::new(&self.server)?;
        if !valid_instance_id(&self.server.instance_id) {
            // Debug-quoted: a control character the id must not hold is shown escaped.
            return Err(err(
                "server.instance_id",
                format!(
                    "{:?} is not 1 to 64 letters, digits, `.`, `_` or `-` (a host name such as web-1 fits)",
                    self.server.instance_id
                ),
            ));
        }
        for (i, p) in self.server.trusted_proxies.iter().enumerate() {
            if IpRange::parse(p).is_none() {
                return Err(err(
                    &format!("server.trusted_proxies[{i}]"),
                    format!("`{p}` is not an IP address or CIDR range such as 10.0.0.0/8"),
                ));
            }
        }
        for (key, d) in [
            ("server.header_timeout", self.server.header_timeout),
            ("server.body_timeout", self.server.body_timeout),
            ("server.idle_timeout", self.server.idle_timeout),
            ("server.session_ttl", self.server.session_ttl),
            ("server.body_rate_grace", self.server.body_rate_grace),
        ] {
            if d.0.is_zero() {
                return Err(err(key, "must be longer than 0s"));
            }
        }
        if self.server.max_connections == 0 {
            return Err(err("server.max_connections", "must be at least 1"));
        }
        if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&self.server.max_header_bytes) {
            return Err(err(
                "server.max_header_bytes",
                format!("must be between {MIN_HEADER_BYTES} and {MAX_HEADER_BYTES}"),
            ));
        }
        if self.limits.max_body_bytes == 0 {
            return Err(err("limits.max_body_bytes", "must be at least 1"));
        }
        if self.server.max_inflight_body_bytes < self.limits.max_body_bytes {
            // Else a body of the largest size allowed, arriving in pieces, could never fit.
            return Err(err(
                "server.max_inflight_body_bytes",
                format!("must be at least limits.max_body_bytes ({})", self.limits.max_body_bytes),
            ));
        }
        if self.limits.rate_limit_max_ips == 0 {
            return Err(err("limits.rate_limit_max_ips", "must be at least 1"));
        }
        if !(1..=128).contains(&self.limits.ipv6_prefix) {
            return Err(err("limits.ipv6_prefix", "must be between 1 and 128 (bits of an IPv6 address)"));
        }
        shared::check(&self.redis, &self.dedup, self.limits.backend)?;
        if self.store.cache_mb == 0 {
            return Err(err("store.cache_mb", "must be at least 1"));
        }
        check_retry("retry", &self.retry)?;
        if self.circuit_breaker.failure_threshold == 0 {
            return Err(err("circuit_breaker.failure_threshold", "must be at least 1"));
        }
        if self.circuit_breaker.recovery_timeout.0.is_zero() {
            return Err(err("circuit_breaker.recovery_timeout", "must be longer than 0s"));
        }
        if !(1..=1024).contains(&self.delivery.concurrency) {
            return Err(err("delivery.concurrency", "must be between 1 and 1024"));
        }
        if self.retention.interval.0.is_zero() {
            return Err(err("retention.interval", "must be longer than 0s"));
        }
        for (name, c) in self.sections() {
            check_targets(&format!("providers.{name}"), &c.forward_to, c.timeout, &c.retry.over(&self.retry))?;
            check_forward_headers(&format!("providers.{name}.forward_headers"), &c.forward_headers)?;
        }
        let providers: Vec<String> = self.sections().into_iter().map(|(name, _)| name).collect();
        alerts::check(&self.notifiers, &self.alerts, &providers)?;
        Ok((self.build()?, origins))
    }

    /// Every provider section, the seed's first (their default when absent: their endpoints
    /// are always there), then the others by name.
    pub fn sections(&self) -> Vec<(String, ProviderConfig)> {
        let seeds = registry::seeds().map(|(kind, seed)| {
            (
                seed.name.to_string(),
                self.providers
                    .get(seed.name)
                    .cloned()
                    .unwrap_or_else(|| ProviderConfig::from(registry::default_section(kind))),
            )
        });
        let named = self.providers.iter().filter(|(name, _)| !registry::is_seed(name));
        seeds.chain(named.map(|(name, c)| (name.clone(), c.clone()))).collect()
    }

    /// Builds each section's provider (its settings checked by its kind); an error names the
    /// key. The rest of the configuration is not checked: see [`Config::checked`].
    pub fn build(&self) -> Result<Vec<Instance>, ConfigError> {
        self.sections()
            .into_iter()
            .map(|(name, c)| {
                registry::instance(&name, &c.settings, c.forward_to)
                    .map_err(|e| ConfigError { key: e.key, message: e.message })
            })
            .collect()
    }

    /// Where a provider's events go; `None` for an unknown provider name.
    pub fn targets(&self, provider: &str) -> Option<Targets> {
        let c = match self.providers.get(provider) {
            Some(c) => c.clone(),
            None if registry::is_seed(provider) => {
                return Some(Targets {
                    urls: Vec::new(),
                    timeout: DEFAULT_TIMEOUT.0,
                    retry: RetryOverride::default().over(&self.retry),
                    forward_headers: Vec::new(),
                })
            }
            None => return None,
        };
        Some(Targets {
            urls: c.forward_to,
            timeout: c.timeout.0,
            retry: c.retry.over(&self.retry),
            forward_headers: c.forward_headers,
        })
    }

    pub fn trusted_proxies(&self) -> Vec<IpRange> {
        self.server.trusted_proxies.iter().filter_map(|p| IpRange::parse(p)).collect()
    }
}

/// `; did you mean `x`?` when one of `candidates` is a likely slip for `word`
/// ([`registry::nearest`]), else nothing.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    registry::nearest(word, candidates).map(|c| format!("; did you mean `{c}`?")).unwrap_or_default()
}

/// The suggestion for serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a`
/// or `b`"), from the fields it lists: the keys that section accepts.
fn unknown_field_hint(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else { return String::new() };
    let Some((field, rest)) = rest.split_once('`') else { return String::new() };
    let Some((_, expected)) = rest.split_once("expected") else { return String::new() };
    did_you_mean(field, expected.split('`').skip(1).step_by(2))
}

/// The dotted path of what an error is about, as segments: its key, and below it the field an
/// unknown-field error names, or the provider a `needs kind` error names.
fn fault_path(key: &str, message: &str) -> Vec<String> {
    let mut path: Vec<String> = if key.is_empty() { Vec::new() } else { split_key(key) };
    let below = ["unknown field `", "provider `"]
        .iter()
        .find_map(|p| message.strip_prefix(p).and_then(|rest| rest.split_once('`')).map(|(name, _)| name));
    if let Some(name) = below {
        path.push(name.to_string());
    }
    path
}

/// `a.b[1]."c"` → `[a, b, c]`: a key's segments, without indexes or quotes.
fn split_key(key: &str) -> Vec<String> {
    key.split('.')
        .map(|part| {
            let part = part.split('[').next().unwrap_or(part).trim();
            part.trim_matches(|c| c == '"' || c == '\'').to_string()
        })
        .filter(|part| !part.is_empty())
        .collect()
}

/// The line (from 1) where `path` is written in `text`: the line of its key (`key = ...`
/// under its table's header, or dotted), else the header of the table it is (`[path]`), else
/// the line of a key whose value holds it (an inline table). Read from the text, line by line,
/// which is enough for a file as people write one; a line inside a multi-line string could be
/// mistaken for a key, which costs only a wrong line number.
fn key_line(text: &str, path: &[String]) -> Option<usize> {
    if path.is_empty() {
        return None;
    }
    let mut table: Vec<String> = Vec::new();
    let mut holder = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_start_matches('[');
            table = split_key(header.split(']').next().unwrap_or(header));
            if table == path {
                return Some(i + 1);
            }
            continue;
        }
        let Some((key, _)) = line.split_once('=') else { continue };
        let full: Vec<String> = table.iter().cloned().chain(split_key(key)).collect();
        if full == path {
            return Some(i + 1);
        }
        if holder.is_none() && full.len() > table.len() && path.starts_with(&full) {
            holder = Some(i + 1);
        }
    }
    holder
}

fn check_retry(section: &str, r: &RetryConfig) -> Result<(), ConfigError> {
    if r.max_attempts == 0 || r.max_attempts > 100 {
        return Err(err(&format!("{section}.max_attempts"), "must be between 1 and 100"));
    }
    if r.base_delay.0.is_zero() {
        return Err(err(&format!("{section}.base_delay"), "must be longer than 0s"));
    }
    if r.max_delay.0 < r.base_delay.0 {
        return Err(err(&format!("{section}.max_delay"), "must not be shorter than base_delay"));
    }
    if !(0.0..=1.0).contains(&r.jitter) {
        return Err(err(&format!("{section}.jitter"), "must be between 0.0 and 1.0"));
    }
    Ok(())
}

/// `forward_headers`: header names, at most 64, none that never reaches the app (a hop-by-hop
/// header, or stagehook's own, which the delivery sets).
fn check_forward_headers(key: &str, names: &[String]) -> Result<(), ConfigError> {
    if names.len() > 64 {
        return Err(err(key, "at most 64 header names"));
    }
    for (i, name) in names.iter().enumerate() {
        let key = format!("{key}[{i}]");
        if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(err(&key, format!("`{name}` is not a header name")));
        }
        if crate::delivery::never_forwarded(name) {
            return Err(err(
                &key,
                format!("`{name}` describes the hop to stagehook (or is stagehook's own) and is never forwarded"),
            ));
        }
    }
    Ok(())
}

fn check_targets(
    section: &str,
    urls: &[String],
    timeout: HumanDuration,
    retry: &RetryConfig,
) -> Result<(), ConfigError> {
    for (i, url) in urls.iter().enumerate() {
        if !is_http_url(url) {
            return Err(err(
                &format!("{section}.forward_to[{i}]"),
                format!("`{}` is not an http(s) URL such as http://127.0.0.1:3000/webhooks", crate::redact::url(url)),
            ));
        }
    }
    if urls.len() > 16 {
        return Err(err(&format!("{section}.forward_to"), "at most 16 targets"));
    }
    if timeout.0.is_zero() {
        return Err(err(&format!("{section}.timeout"), "must be longer than 0s"));
    }
    check_retry(&format!("{section}.retry"), retry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_backend_needs_a_redis_url_and_sound_settings() {
        let c = Config::default();
        assert_eq!((c.limits.backend, c.dedup.backend), (LimitsBackend::Memory, DedupBackend::Local));
        assert_eq!(c.redis.on_error, OnError::Open);
        c.check().unwrap();
        assert_eq!(key_of("[limits]\nbackend = \"redis\"\n"), "redis.url");
        assert_eq!(key_of("[dedup]\nbackend = \"redis\"\n"), "redis.url");
        assert_eq!(key_of("[limits]\nbackend = \"disk\"\n"), "limits.backend");
        let with =
            |extra: &str| format!("[dedup]\nbackend = \"redis\"\n[redis]\nurl = \"redis://127.0.0.1:6379/0\"\n{extra}");
        Config::from_toml(&with("")).unwrap().check().unwrap();
        for bad in ["http://127.0.0.1:6379", "redis://", "127.0.0.1:6379", "redis://127.0.0.1:port"] {
            let toml = format!("[limits]\nbackend = \"redis\"\n[redis]\nurl = \"{bad}\"\n");
            assert_eq!(key_of(&toml), "redis.url", "{bad}");
        }
        // A password in the URL is masked in the message.
        let e = Config::from_toml("[limits]\nbackend = \"redis\"\n[redis]\nurl = \"http://u:hunter2@h:1\"\n")
            .unwrap()
            .check()
            .unwrap_err();
        assert!(!e.message.contains("hunter2"), "{e}");
        assert_eq!(key_of(&with("timeout = \"0s\"\n")), "redis.timeout");
        assert_eq!(key_of(&with("on_error = \"maybe\"\n")), "redis.on_error");
        let c = Config::from_toml("[dedup]\npending_expiry = \"500ms\"\n").unwrap();
        assert_eq!(c.check().unwrap_err().key, "dedup.pending_expiry");
        // rediss:// (TLS) and a URL from the environment.
        let env = BTreeMap::from([
            ("STAGEHOOK_REDIS_URL".to_string(), "rediss://cache.example:6380/1".to_string()),
            ("STAGEHOOK_LIMITS_BACKEND".to_string(), "redis".to_string()),
            ("STAGEHOOK_REDIS_ON_ERROR".to_string(), "closed".to_string()),
        ]);
        let c = Config::load(None, &env).unwrap();
        assert_eq!(c.redis.url.as_deref(), Some("rediss://cache.example:6380/1"));
        assert_eq!((c.limits.backend, c.redis.on_error), (LimitsBackend::Redis, OnError::Closed));
    }

    fn key_of(toml: &str) -> String {
        match Config::from_toml(toml).and_then(|c| c.check()) {
            Ok(()) => panic!("accepted: {toml}"),
            Err(e) => e.key,
        }
    }

    #[test]
    fn named_instances_need_a_kind_a_free_name_and_sound_settings() {
        let c = Config::from_toml("[providers.github]\nsecret = \"x\"\n[providers.eu]\nkind = \"stripe\"\n").unwrap();
        assert_eq!(c.providers["github"].settings.kind(), ProviderKind::Github);
        assert_eq!(c.providers["eu"].settings.kind(), ProviderKind::Stripe);
        for (toml, key, words) in [
            ("[providers.acme]\nsecret = \"x\"\n", "providers", "needs `kind`"),
            ("[providers.events]\nkind = \"github\"\n", "providers", "taken by a built-in endpoint"),
            ("[providers.Big]\nkind = \"github\"\n", "providers", "lowercase"),
            ("[providers.x]\nkind = \"paypal\"\n", "providers.x.kind", "unknown variant"),
            ("[providers.x]\nkind = \"hmac\"\nsecret = \"k\"\n", "providers.x", "header"),
            ("[providers.x]\nkind = \"slack\"\nsecrets = [\"\"]\n", "providers.x.secrets[0]", "empty"),
        ] {
            let e = Config::from_toml(toml).and_then(|c| c.check()).expect_err(toml);
            assert!(e.key.starts_with(key) && e.to_string().contains(words), "{toml}: {e}");
        }
    }

    #[test]
    fn the_body_limits_of_server_are_checked() {
        let c = Config::default();
        assert_eq!(
            (c.server.min_body_rate, c.server.body_rate_grace.0, c.server.max_inflight_body_bytes),
            (1024, std::time::Duration::from_secs(5), 64 * 1024 * 1024)
        );
        for (toml, key, words) in [
            ("[server]\nbody_rate_grace = \"0s\"\n", "server.body_rate_grace", "longer than 0s"),
            ("[server]\nmax_inflight_body_bytes = 1000\n", "server.max_inflight_body_bytes", "limits.max_body_bytes"),
            (
                "[server]\nmax_inflight_body_bytes = 2000000\n[limits]\nmax_body_bytes = 3000000\n",
                "server.max_inflight_body_bytes",
                "(3000000)",
            ),
        ] {
            let e = Config::from_toml(toml).and_then(|c| c.check()).expect_err(toml);
            assert!(e.key == key && e.to_string().contains(words), "{toml}: {e}");
        }
        let c = Config::from_toml("[server]\nmin_body_rate = 0\nmax_inflight_body_bytes = 1048576\n").unwrap();
        c.check().unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(key_of("[limits]\nrate_limit_per_minute = \"many\"\n"), "limits.rate_limit_per_minute");
        assert_eq!(key_of("[server]\nbind = \"nowhere\"\n"), "server.bind");
        assert_eq!(key_of("[server]\ntrusted_proxies = [\"10.0.0.0/99\"]\n"), "server.trusted_proxies[0]");
        assert_eq!(key_of("[server]\npublic_url = \"ftp://x\"\n"), "server.public_url");
        assert_eq!(key_of("[server]\nallowed_origins = [\"evil.example\"]\n"), "server.allowed_origins[0]");
        assert_eq!(key_of("[server]\nallowed_hosts = [\"https://a.example\"]\n"), "server.allowed_hosts[0]");
        assert!(key_of("[limits]\nmax_body = 3\n").starts_with("limits"));
        assert_eq!(key_of("[providers.stripe]\ntolerance_seconds = -1\n"), "providers.stripe.tolerance_seconds");
        assert_eq!(
            key_of("[providers.stripe]\ntolerance_seconds = 99999999999\n"),
            "providers.stripe.tolerance_seconds"
        );
        assert_eq!(key_of("[providers.stripe]\nsecret = \"\"\n"), "providers.stripe.secret");
        assert_eq!(key_of("[providers.twilio]\nauth_token = \"\"\n"), "providers.twilio.auth_token");
    }

    /// A provider key is read by the registry into its kind's settings, `kind` before or after
    /// it: a badly typed value names its key and a line, a key no kind reads is unknown, and a
    /// key another kind reads is kept for the validator.
    #[test]
    fn provider_keys_are_checked_at_their_key_whatever_the_order() {
        let e = Config::from_toml("[providers.x]\nkind = \"slack\"\nsecrets = [\"a\", 1]\n").unwrap_err();
        assert_eq!(e.key, "providers.x.secrets");
        assert!(e.message.contains("(at `secrets[1]`)"), "{e}");
        for toml in [
            "[providers.x]\nkind = \"github\"\nsecrets = \"one\"\n",
            "[providers.x]\nsecrets = \"one\"\nkind = \"github\"\n",
            "[providers.stripe]\n\ntolerance_seconds = -1\n",
        ] {
            let e = Config::from_toml(toml).expect_err(toml);
            assert!(e.key == "providers.x.secrets" || e.key == "providers.stripe.tolerance_seconds", "{toml}: {e}");
            assert!(e.message.contains("(line "), "{toml}: {e}");
        }
        let e = Config::from_toml("[providers.x]\nkind = \"github\"\nsecert = \"a\"\n").unwrap_err();
        assert_eq!(e.key, "providers.x");
        assert!(e.message.contains("unknown field `secert`"), "{e}");
        let c = Config::from_toml("[providers.x]\nheader = \"x-sig\"\nkind = \"github\"\nsecret = \"k\"\n").unwrap();
        let x = &c.providers["x"].settings;
        assert_eq!((x.kind(), x.all_secrets().len()), (ProviderKind::Github, 1));
        assert_eq!(x.unused.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["header"]);
    }

    #[test]
    fn the_ipv6_prefix_is_between_1_and_128_bits() {
        for bad in ["0", "129", "-1", "\"64\""] {
            assert_eq!(key_of(&format!("[limits]\nipv6_prefix = {bad}\n")), "limits.ipv6_prefix", "{bad}");
        }
        for good in [1, 48, 128] {
            let c = Config::from_toml(&format!("[limits]\nipv6_prefix = {good}\n")).unwrap();
            c.check().unwrap();
            assert_eq!(c.limits.ipv6_prefix, good);
        }
        assert_eq!(Config::default().limits.ipv6_prefix, 64);
        let env = BTreeMap::from([("STAGEHOOK_LIMITS_IPV6_PREFIX".to_string(), "56".to_string())]);
        assert_eq!(Config::load(None, &env).unwrap().limits.ipv6_prefix, 56);
        let env = BTreeMap::from([("STAGEHOOK_LIMITS_IPV6_PREFIX".to_string(), "200".to_string())]);
        let e = Config::load(None, &env).unwrap_err();
        assert_eq!(e.key, "limits.ipv6_prefix", "{e}");
    }

    #[test]
    fn the_session_ttl_is_a_duration_over_zero_from_the_file_or_the_environment() {
        assert_eq!(Config::default().server.session_ttl.0, std::time::Duration::from_secs(12 * 3600));
        for bad in ["\"0s\"", "\"0ms\"", "\"soon\"", "3600"] {
            assert_eq!(key_of(&format!("[server]\nsession_ttl = {bad}\n")), "server.session_ttl", "{bad}");
        }
        let c = Config::from_toml("[server]\nsession_ttl = \"30m\"\n").unwrap();
        c.check().unwrap();
        assert_eq!(c.server.session_ttl.0, std::time::Duration::from_secs(1800));
        let env = BTreeMap::from([("STAGEHOOK_SERVER_SESSION_TTL".to_string(), "2h".to_string())]);
        assert_eq!(Config::load(None, &env).unwrap().server.session_ttl.0, std::time::Duration::from_secs(7200));
        let env = BTreeMap::from([("STAGEHOOK_SERVER_SESSION_TTL".to_string(), "0s".to_string())]);
        let e = Config::load(None, &env).unwrap_err();
        assert_eq!(e.key, "server.session_ttl", "{e}");
    }

    /// The default is the host name as the kernel holds it (what `hostname` prints), or
    /// `stagehook` when that is no valid id; a set id is checked from the file and from the
    /// environment, and a bad one names the key.
    #[test]
    #[cfg(target_os = "linux")]
    fn the_instance_id_is_the_host_name_unless_set_and_is_checked() {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
        let want = if valid_instance_id(&kernel) { kernel } else { "stagehook".to_string() };
        assert_eq!(Config::default().server.instance_id(), want);
        assert_eq!(Config::load(None, &BTreeMap::new()).unwrap().server.instance_id(), want);
        Config::default().check().unwrap();

        let long = "a".repeat(65);
        for bad in ["", "web 1", "web:1", "web\n1", "web\u{1b}1", "wéb", "a/b", long.as_str()] {
            let toml = format!("[server]\ninstance_id = {}\n", toml::Value::String(bad.to_string()));
            let e = Config::from_toml(&toml).and_then(|c| c.check()).expect_err(&toml);
            assert_eq!(e.key, "server.instance_id", "{bad:?}: {e}");
            assert!(e.to_string().contains("config key `server.instance_id`"), "{e}");
            assert!(!e.message.chars().any(char::is_control), "control characters shown escaped: {e}");
        }
        let max = "Z".repeat(64);
        for good in ["web-7", "ip-10-0-0-5.eu-west-1.compute.internal", "a", "blue_2", max.as_str()] {
            let c = Config::from_toml(&format!("[server]\ninstance_id = \"{good}\"\n")).unwrap();
            c.check().unwrap();
            assert_eq!(c.server.instance_id(), good);
        }

        let env = BTreeMap::from([("STAGEHOOK_SERVER_INSTANCE_ID".to_string(), "green-2".to_string())]);
        assert_eq!(Config::load(None, &env).unwrap().server.instance_id(), "green-2");
        let env = BTreeMap::from([("STAGEHOOK_SERVER_INSTANCE_ID".to_string(), "green 2".to_string())]);
        let e = Config::load(None, &env).unwrap_err();
        assert_eq!(e.key, "server.instance_id", "{e}");
    }

    #[test]
    fn delivery_settings_are_checked() {
        assert_eq!(key_of("[retry]\nstrategy = \"random\"\n"), "retry.strategy");
        assert_eq!(key_of("[retry]\nbase_delay = \"soon\"\n"), "retry.base_delay");
        assert_eq!(key_of("[retry]\nmax_attempts = 0\n"), "retry.max_attempts");
        assert_eq!(key_of("[retry]\njitter = 1.5\n"), "retry.jitter");
        assert_eq!(key_of("[retry]\nbase_delay = \"10m\"\nmax_delay = \"1m\"\n"), "retry.max_delay");
        assert_eq!(key_of("[circuit_breaker]\nfailure_threshold = 0\n"), "circuit_breaker.failure_threshold");
        assert_eq!(
            key_of("[providers.stripe]\nforward_to = [\"http://ok/\", \"ftp://no\"]\n"),
            "providers.stripe.forward_to[1]"
        );
        assert_eq!(key_of("[providers.twilio.retry]\njitter = -1.0\n"), "providers.twilio.retry.jitter");
        let c = Config::from_toml(
            "[retry]\nmax_attempts = 3\n[providers.stripe]\nforward_to = [\"https://app.test/hook\"]\ntimeout = \"2s\"\n[providers.stripe.retry]\nstrategy = \"fixed\"\n",
        )
        .unwrap();
        c.check().unwrap();
        let t = c.targets("stripe").unwrap();
        assert_eq!(t.urls, ["https://app.test/hook"]);
        assert_eq!(t.timeout, std::time::Duration::from_secs(2));
        assert_eq!((t.retry.strategy, t.retry.max_attempts), (Strategy::Fixed, 3));
        assert!(c.targets("twilio").unwrap().urls.is_empty());
    }

    /// Found by the property tests (tests/it/fuzz.rs): humantime reads up to u64::MAX seconds,
    /// which the retry schedule turned into a panic (`Duration::from_secs_f64`), and the breaker
    /// and retention into i64 milliseconds that wrapped to -1000: a breaker that never held, a
    /// retention that deleted every event.
    #[test]
    fn durations_past_a_century_are_refused() {
        let huge = "\"18446744073709551615s\"";
        for key in [
            "retry.base_delay",
            "retry.max_delay",
            "circuit_breaker.recovery_timeout",
            "retention.max_age",
            "retention.interval",
            "providers.stripe.timeout",
            "providers.twilio.retry.max_delay",
        ] {
            let (section, name) = key.rsplit_once('.').unwrap();
            let toml = format!("[{section}]\n{name} = {huge}\n");
            let e = Config::from_toml(&toml).and_then(|c| c.check()).expect_err(&toml);
            assert_eq!(e.key, key);
            assert!(e.message.contains("longer than 100 years"), "{e}");
        }
        assert_eq!(key_of("[retention]\nmax_age = \"100y 1s\"\n"), "retention.max_age");
        let c = Config::from_toml("[retention]\nmax_age = \"100y\"\n[retry]\nmax_delay = \"100y\"\n").unwrap();
        c.check().unwrap();
        assert_eq!(c.retention.max_age.0, MAX_DURATION);
    }

    #[test]
    fn env_wins_over_file() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let dir = file.path().to_path_buf();
        std::fs::write(&dir, "[providers.stripe]\nsecret = \"whsec_file\"\n").unwrap();
        let env = BTreeMap::from([("STRIPE_WEBHOOK_SECRET".to_string(), "whsec_env".to_string())]);
        let c = Config::load(Some(&dir), &env).unwrap();

        assert_eq!(c.providers["stripe"].settings.all_secrets()[0].expose(), "whsec_env");
        assert!(!c.providers.contains_key("twilio"));
    }

    #[test]
    fn the_base_url_is_public_url_or_an_address_a_client_can_call() {
        let mut server = ServerConfig::default();
        for (listening, want) in [
            ("127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("0.0.0.0:9000", "http://127.0.0.1:9000"),
            ("[::]:9000", "http://[::1]:9000"),
            ("[::1]:9000", "http://[::1]:9000"),
            ("10.0.0.5:80", "http://10.0.0.5:80"),
        ] {
            assert_eq!(server.base_url(listening.parse().unwrap()), want);
        }
        server.public_url = Some("https://abc.tunnel.example/base//".into());
        assert_eq!(server.base_url("0.0.0.0:1".parse().unwrap()), "https://abc.tunnel.example/base");
    }

    #[test]
    fn ip_ranges() {
        let r = IpRange::parse("10.0.0.0/8").unwrap();
        assert!(r.contains("10.1.2.3".parse().unwrap()));
        assert!(!r.contains("11.0.0.1".parse().unwrap()));
        assert!(r.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(IpRange::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(IpRange::parse("1.2.3.4/33").is_none());
    }
}
