//! Settings: the types, their embedded defaults, and how a TOML file and the environment layer
//! over them.
//!
//! Everything is checked once, here, at startup: an unknown key or a bad value is a
//! [`ConfigError`] that names the key, so `main` can exit with code 2 instead of panicking later.
//!
//! This file holds [`Config`] and its own sections; the rest, by concern: `sections.rs` (the
//! `[providers.<name>]` sections, read by hand), `check.rs` (the value checks the types cannot
//! express), `positions.rs` (where in the TOML text an error is), `ip_range.rs`, `origin.rs`
//! (the hosts and origins that are this stagehook), `backfill.rs` (`[backfill]`), `layers.rs`
//! (file, environment, flags) and `validate.rs` (the findings of `check-config`). The Redis module owns its settings
//! (`redis/settings.rs`), as each provider kind owns its own; they are re-exported here.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

mod alerts;
mod backfill;
mod chaos;
mod check;
mod delivery;
mod ip_range;
pub mod layers;
pub mod origin;
mod positions;
mod redis;
mod sections;
pub mod validate;
pub use crate::duration::{HumanDuration, MAX_DURATION};
pub use crate::redis::settings::{DedupBackend, DedupConfig, LimitsBackend, OnError, RedisConfig};
pub use alerts::{AlertRule, NotifierConfig, NotifierKind, RuleKind};
pub use backfill::BackfillConfig;
pub use check::{MAX_HEADER_BYTES, MIN_HEADER_BYTES};
pub use delivery::{
    is_http_url, BreakerConfig, DeliveryConfig, RetentionConfig, RetryConfig, RetryOverride, RouteTargets, Strategy,
    Targets,
};
pub use ip_range::IpRange;
pub use origin::Origins;
pub use positions::did_you_mean;
pub use sections::{valid_endpoint_name, EndpointConfig, ProvidersConfig, API_PATHS, COMMON_KEYS};

pub use crate::finding::ConfigError;

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
    /// `[backfill]`: when missed events are recovered from the providers' APIs on their own.
    pub backfill: BackfillConfig,
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
    /// Tokens that may read but change nothing (`Authorization: Bearer`, like the admin token):
    /// the event list, one event, the export, the live stream, `/stats` and the listeners, and
    /// a listener's report of a delivery. For `stagehook listen` on a developer's machine, so
    /// the admin token stays on the server. Meaningful only with `admin_token`: without it every
    /// endpoint is open anyway.
    pub read_tokens: Vec<Secret>,
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
            read_tokens: Vec::new(),
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

impl Config {
    /// Embedded defaults, then the TOML file (if any), then the environment; see [`layers`].
    pub fn load(path: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        layers::load(path, env, &[]).map(|l| l.config)
    }
}

/// The key of the first problem `toml` has, read or checked.
#[cfg(test)]
fn key_of(toml: &str) -> String {
    match Config::from_toml(toml).and_then(|c| c.check()) {
        Ok(()) => panic!("accepted: {toml}"),
        Err(e) => e.key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
