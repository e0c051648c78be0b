//! The one validator: every check that is advice or needs the world outside (the environment,
//! the data folder, exposure), as findings with a stable id, a severity, the key concerned and
//! how to fix it; what a value must hold, `Config::check` and the provider's kind check once,
//! before. Used at startup (errors stop it, exit 2), by `stagehook check-config`, and by
//! `GET /staging/webhooks/config/validate`.
//!
//! Secrets never appear in a finding: only their fingerprint
//! ([`Secret::fingerprint`](crate::secret::Secret::fingerprint)).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::{Config, IpRange};
pub use crate::finding::{Finding, Severity};
use crate::providers::registry::{self, Surroundings};

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
}

/// Where the validator runs, which decides how the data folder is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Before this process opens the store: a held lock means another instance.
    Standalone,
    /// Inside the running server, which holds the lock itself.
    Running,
    /// `stagehook check-config`: a held lock is most often the running stagehook whose
    /// configuration is being edited, so it is a note (severity `ok`), not an error; `serve`
    /// (`Standalone`) still refuses the folder.
    Check,
}

/// The environment variables the isolation checks read: each kind names its own.
pub fn isolation_env() -> Vec<&'static str> {
    registry::isolation_env().collect()
}

impl Report {
    pub fn errors(&self) -> usize {
        self.findings.iter().filter(|f| f.severity == Severity::Error).count()
    }

    pub fn warnings(&self) -> usize {
        self.findings.iter().filter(|f| f.severity == Severity::Warning).count()
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": self.errors() == 0,
            "errors": self.errors(),
            "warnings": self.warnings(),
            "findings": self.findings,
        })
    }

    /// One line per finding, errors first.
    pub fn to_text(&self) -> String {
        let mut sorted = self.findings.clone();
        sorted.sort_by_key(|f| f.severity);
        let mut out = String::new();
        for f in &sorted {
            let sev = match f.severity {
                Severity::Error => "ERROR  ",
                Severity::Warning => "WARNING",
                Severity::Ok => "ok     ",
            };
            out.push_str(&format!("{sev} {:<34} {:<36} {}\n", f.id, f.key, f.message));
        }
        out.push_str(&format!("{} error(s), {} warning(s)\n", self.errors(), self.warnings()));
        out
    }

    fn push(&mut self, id: &'static str, severity: Severity, key: &str, message: impl Into<String>) {
        self.findings.push(Finding { id, severity, key: key.to_string(), message: message.into() });
    }
}

/// Every finding about `config`, which has passed [`Config::check`] (every caller's config has:
/// `load` checks it), so each provider builds; what a provider's settings must hold is checked
/// there, once, and only what is advice or needs the world outside is checked here.
pub fn validate(config: &Config, env: &BTreeMap<String, String>, context: Context) -> Report {
    let mut r = Report::default();
    providers(config, env, &mut r);
    targets(config, &mut r);
    data_dir(&config.server.data_dir, context, &mut r);
    exposure(config, &mut r);
    read_tokens(config, &mut r);
    ranges(config, &mut r);
    alerts(config, &mut r);
    r.findings.extend(super::chaos::remote_findings(config));
    r
}

/// What `Config::check` lets pass in the alert rules but is most likely a slip: a key the
/// rule's kind does not read (`for` on a `dead_letters` rule), a notifier no rule names.
fn alerts(c: &Config, r: &mut Report) {
    for (i, rule) in c.alerts.iter().enumerate() {
        for key in rule.keys_set() {
            if !rule.when.reads().contains(&key) {
                r.push(
                    "alert.unused_key",
                    Severity::Warning,
                    &format!("alerts[{i}].{key}"),
                    format!("a `{}` rule does not read `{key}`; it has no effect", rule.when.as_str()),
                );
            }
        }
    }
    for name in c.notifiers.keys() {
        if !c.alerts.iter().any(|rule| rule.notify.contains(name)) {
            r.push(
                "notifier.unused",
                Severity::Warning,
                &format!("notifiers.{name}"),
                "no `[[alerts]]` rule notifies it (`notify = [...]`)",
            );
        }
    }
}

/// The providers' findings (the built-in credentials, isolation, each section's credential and
/// keys, no secret shared), from the registry; and whether there is any provider at all.
fn providers(c: &Config, env: &BTreeMap<String, String>, r: &mut Report) {
    let around = Surroundings {
        env,
        public_url_set: c.server.public_url.is_some(),
        behind_proxy: !c.server.trusted_proxies.is_empty() || !c.server.bind.ip().is_loopback(),
    };
    if c.providers.is_empty() {
        r.push(
            "provider.none_configured",
            Severity::Warning,
            "providers",
            "no provider is configured: every ingest endpoint answers 503 until a secret is set",
        );
    }
    let sections = c.providers.iter().map(|(name, p)| (name.as_str(), &p.settings));
    r.findings.extend(registry::findings(sections, &around));
}

/// `*` matches any run of characters; everything else is literal, case-insensitively.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.to_ascii_lowercase(), text.to_ascii_lowercase());
    let parts: Vec<&str> = p.split('*').collect();
    if parts.len() == 1 {
        return p == t;
    }
    let mut rest = t.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else { return false };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else { return false };
            rest = &rest[at + part.len()..];
        }
    }
    true
}

/// A target URL's host (brackets of an IPv6 literal removed), if it is an http(s) URL with one.
fn target_host(url: &str) -> Option<String> {
    let host = url.parse::<hyper::Uri>().ok().and_then(|u| u.host().map(|h| h.trim_matches(['[', ']']).to_string()));
    host.filter(|h| !h.is_empty() && super::is_http_url(url))
}

/// Why `url` may not be a target, by the rules a `forward_to` URL meets (an http(s) URL whose
/// host is neither a provider's own API nor one of `isolation.production_hosts`), or `None`
/// when it may: for a target given at run time (`POST /staging/webhooks/check-app`).
pub fn target_refusal(c: &Config, url: &str) -> Option<String> {
    let Some(host) = target_host(url) else {
        return Some(format!("`{}` is not an http(s) URL", crate::redact::url(url)));
    };
    production_pattern(c, &host).map(|(built_in, p)| match built_in {
        true => format!("{host} is a provider's own API ({p}); checks go to the app under test, never there"),
        false => {
            format!("{host} matches isolation.production_hosts pattern `{p}`: staging must not send to production")
        }
    })
}

/// The pattern a host matches that makes it production: a provider's own API or one of
/// `isolation.production_hosts`, with whether it is built in.
fn production_pattern<'a>(c: &'a Config, host: &str) -> Option<(bool, &'a str)> {
    registry::api_hosts()
        .find(|p| glob_match(p, host))
        .map(|p| (true, p))
        .or_else(|| c.isolation.production_hosts.iter().find(|p| glob_match(p, host)).map(|p| (false, p.as_str())))
}

/// Every target a section names, each with its key: its `forward_to`, then each route's.
fn section_targets(provider: &str, section: &super::EndpointConfig) -> Vec<(String, String)> {
    let own =
        section.forward_to.iter().enumerate().map(|(i, url)| (format!("providers.{provider}.forward_to[{i}]"), url));
    let routed = section.routes.iter().enumerate().flat_map(|(i, route)| {
        route
            .forward_to
            .iter()
            .enumerate()
            .map(move |(j, url)| (format!("providers.{provider}.routes[{i}].forward_to[{j}]"), url))
    });
    own.chain(routed).map(|(key, url)| (key, url.clone())).collect()
}

fn targets(c: &Config, r: &mut Report) {
    for (provider, section) in c.sections() {
        for (key, url) in section_targets(&provider, &section) {
            let url = &url;
            // What a target URL is, `is_http_url` says, for `Config::check` too; this finding is
            // for a configuration that reached the running server without it (`App::open`).
            let Some(host) = target_host(url) else {
                r.push(
                    "target.url",
                    Severity::Error,
                    &key,
                    format!("`{}` is not an http(s) URL", crate::redact::url(url)),
                );
                continue;
            };
            match production_pattern(c, &host) {
                Some((true, p)) => r.push(
                    "isolation.production_target",
                    Severity::Error,
                    &key,
                    format!("{host} is a provider's own API ({p}); deliveries go to the app under test, never there"),
                ),
                Some((false, p)) => r.push(
                    "isolation.production_target",
                    Severity::Error,
                    &key,
                    format!("{host} matches isolation.production_hosts pattern `{p}`: staging must not deliver to production"),
                ),
                None => r.push("isolation.production_target", Severity::Ok, &key, format!("{host} is not production")),
            }
        }
    }
}

/// The shortest admin token accepted where other machines reach stagehook. The right token
/// passes the failed-authentication limit (`http/auth.rs`), so only the token's length keeps a
/// guesser out: 24 random hex characters are 96 bits, and at a million guesses a second finding
/// them takes about 10^15 years (`openssl rand -hex 24` makes 48).
pub const MIN_TOKEN_CHARS: usize = 24;

/// How long one target may take to answer the probe (resolve, connect, TLS handshake).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the whole probe step may take, whatever the number of targets (they are probed at
/// once, so this is a bound, not a sum).
const PROBE_STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// What probing one target found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Reachable,
    Refused,
    UnknownHost,
    Timeout,
    Tls(String),
    /// Resolved, but the connection failed otherwise (no route, reset, ...).
    Unreachable(String),
}

/// `target.reachable` for each `forward_to` target: connects (and, for https, completes the TLS
/// handshake with the delivery client's connector and roots) within [`PROBE_TIMEOUT`], all
/// targets at once. Separate from [`validate`] because it needs the network: `serve` does not
/// run it (the app under test often starts after stagehook), `check-config --offline` skips it.
/// Targets that are not http(s) URLs or that are production (errors of [`validate`]) are never
/// contacted. `redis.reachable` is the Redis module's own probe (`redis::probe`), which the
/// callers run after this one.
pub async fn probe_targets(c: &Config) -> Vec<Finding> {
    let mut probes = Vec::new();
    for (provider, section) in c.sections() {
        for (key, url) in section_targets(&provider, &section) {
            let Some(host) = target_host(&url) else { continue };
            if production_pattern(c, &host).is_some() {
                continue;
            }
            let probed = url.clone();
            let task = tokio::spawn(async move {
                tokio::time::timeout(PROBE_TIMEOUT, probe(&probed)).await.unwrap_or(Probe::Timeout)
            });
            probes.push((key, url, task));
        }
    }
    let deadline = tokio::time::Instant::now() + PROBE_STEP_TIMEOUT;
    let mut out = Vec::with_capacity(probes.len());
    for (key, url, task) in probes {
        let probe = match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => Probe::Unreachable(format!("the probe failed: {e}")),
            Err(_) => Probe::Timeout,
        };
        out.push(probe_finding(&key, &url, &probe));
    }
    out
}

/// One target: resolve, connect, then for https the TLS handshake as a delivery makes it.
async fn probe(url: &str) -> Probe {
    // Without its userinfo, as a delivery connects: the connector's debug lines name the URI.
    let (url, _) = crate::delivery::client::split_userinfo(url);
    let Ok(uri) = url.parse::<hyper::Uri>() else { return Probe::Unreachable("not a URL".into()) };
    let https = uri.scheme_str() == Some("https");
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']).to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let addrs = match resolved(tokio::net::lookup_host((host.as_str(), port)).await.map(Iterator::collect)) {
        Ok(addrs) => addrs,
        Err(p) => return p,
    };
    match tokio::net::TcpStream::connect(&addrs[..]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Probe::Refused,
        Err(e) => return Probe::Unreachable(e.to_string()),
    }
    if !https {
        return Probe::Reachable;
    }
    // The TCP connection was made: what fails now is the handshake (or the certificate).
    let mut connector = match crate::delivery::client::connector(PROBE_TIMEOUT) {
        Ok(c) => c,
        Err(e) => return Probe::Tls(e.to_string()),
    };
    use tower_service::Service;
    if let Err(e) = std::future::poll_fn(|cx| connector.poll_ready(cx)).await {
        return Probe::Tls(crate::delivery::client::error_chain(&*e));
    }
    match connector.call(uri).await {
        Ok(_) => Probe::Reachable,
        Err(e) => Probe::Tls(crate::delivery::client::error_chain(&*e)),
    }
}

/// A name that does not resolve, or resolves to nothing, is an unknown host.
fn resolved(lookup: std::io::Result<Vec<SocketAddr>>) -> Result<Vec<SocketAddr>, Probe> {
    match lookup {
        Ok(addrs) if !addrs.is_empty() => Ok(addrs),
        _ => Err(Probe::UnknownHost),
    }
}

/// The finding for one probed target, its URL masked ([`crate::redact::url`]).
pub fn probe_finding(key: &str, url: &str, probe: &Probe) -> Finding {
    let shown = crate::redact::url(url);
    let (severity, message) = match probe {
        Probe::Reachable => (Severity::Ok, format!("{shown} is reachable")),
        Probe::Refused => (
            Severity::Warning,
            format!("{shown}: connection refused; is the app under test running? (deliveries are retried until it is)"),
        ),
        Probe::UnknownHost => (Severity::Warning, format!("{shown}: unknown host; the name does not resolve")),
        Probe::Timeout => (Severity::Warning, format!("{shown}: no connection within {}s", PROBE_TIMEOUT.as_secs())),
        Probe::Tls(e) => (Severity::Warning, format!("{shown}: TLS error: {e}")),
        Probe::Unreachable(e) => (Severity::Warning, format!("{shown}: unreachable: {e}")),
    };
    Finding::new("target.reachable", severity, key, message)
}

fn data_dir(dir: &Path, context: Context, r: &mut Report) {
    let key = "server.data_dir";
    // Checked without creating anything: a folder that does not exist yet is fine when the
    // nearest existing parent takes new files.
    let existing = dir.ancestors().find(|p| p.exists()).unwrap_or(Path::new("."));
    if !existing.is_dir() {
        r.push("data_dir.writable", Severity::Error, key, format!("{} is inside a file, not a folder", dir.display()));
        return;
    }
    let probe = existing.join(format!(".stagehook-write-check-{}", std::process::id()));
    match std::fs::write(&probe, b"ok") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            let how = if existing == dir { "is writable" } else { "can be created" };
            r.push("data_dir.writable", Severity::Ok, key, format!("{} {how}", dir.display()));
        }
        Err(e) => {
            r.push("data_dir.writable", Severity::Error, key, format!("{} is not writable: {e}", existing.display()));
            return;
        }
    }
    if context == Context::Running {
        return;
    }
    match crate::store::in_use(dir) {
        Some(true) if context == Context::Check => r.push(
            "data_dir.in_use",
            Severity::Ok,
            key,
            format!(
                "{} is in use by a running stagehook (fine for checking an edit; `serve` with this data_dir refuses to start until it stops)",
                dir.display()
            ),
        ),
        Some(true) => r.push(
            "data_dir.in_use",
            Severity::Error,
            key,
            format!("{} is in use by another running stagehook; stop it or choose another data_dir", dir.display()),
        ),
        Some(false) | None => r.push("data_dir.in_use", Severity::Ok, key, "not in use by another instance"),
    }
}

fn exposure(c: &Config, r: &mut Report) {
    let ip = c.server.bind.ip();
    let loopback = ip.is_loopback();
    match (&c.server.admin_token, loopback) {
        // Empty is not "no token": the key was set, so the operator meant to guard the admin
        // endpoints, and a blank value must never be what a client can match.
        (Some(t), _) if t.expose().trim().is_empty() => r.push(
            "admin_token.empty",
            Severity::Error,
            "server.admin_token",
            "is empty or only whitespace: set a long random value (`openssl rand -hex 24`), or remove the key to run without a token on loopback",
        ),
        (None, false) => r.push(
            "bind.exposed_without_token",
            Severity::Error,
            "server.bind",
            format!("{ip} is reachable from other machines and the read and replay endpoints expose payloads: set server.admin_token or bind to 127.0.0.1"),
        ),
        // An error wherever other machines can try it ([`MIN_TOKEN_CHARS`] says why).
        (Some(t), _) if t.expose().trim().chars().count() < MIN_TOKEN_CHARS => match reached_from(c) {
            Some(how) => r.push(
                "admin_token.weak",
                Severity::Error,
                "server.admin_token",
                format!("shorter than {MIN_TOKEN_CHARS} characters while {how} reaches stagehook from other machines: use a long random value (`openssl rand -hex 24`)"),
            ),
            None => r.push(
                "admin_token.weak",
                Severity::Warning,
                "server.admin_token",
                format!("shorter than {MIN_TOKEN_CHARS} characters: use a long random value (`openssl rand -hex 24`) before other machines can reach stagehook"),
            ),
        },
        _ => r.push("bind.exposed_without_token", Severity::Ok, "server.bind", format!("{ip} with {}", if c.server.admin_token.is_some() { "an admin token" } else { "loopback only" })),
    }
    if c.server.public_url.is_some() && c.server.trusted_proxies.is_empty() {
        r.push(
            "proxies.missing",
            Severity::Warning,
            "server.trusted_proxies",
            "server.public_url is set but no proxy is trusted: behind a tunnel or proxy every client is the proxy's address, so all of them share one rate limit and one failed-authentication limit; list the proxy's address (e.g. `[\"127.0.0.1\"]` for a local tunnel)",
        );
    }
    for (i, p) in c.server.trusted_proxies.iter().enumerate() {
        if IpRange::parse(p)
            .is_some_and(|r| r.contains("8.8.8.8".parse().unwrap()) && r.contains("1.1.1.1".parse().unwrap()))
        {
            r.push(
                "proxies.too_broad",
                Severity::Warning,
                &format!("server.trusted_proxies[{i}]"),
                format!("`{p}` trusts the whole internet: anyone could choose their client IP"),
            );
        }
    }
}

/// What makes stagehook reachable from other machines, if anything: a bind address that is not
/// loopback, or a `public_url` whose host is not (a tunnel's).
/// `server.read_tokens`: each as long as the admin token must be (a read token reads every
/// payload), and none the admin token itself (a holder could then change everything).
fn read_tokens(c: &Config, r: &mut Report) {
    let admin = c.server.admin_token.as_ref().map(|t| t.expose().trim()).filter(|t| !t.is_empty());
    for (i, t) in c.server.read_tokens.iter().enumerate() {
        let key = format!("server.read_tokens[{i}]");
        let value = t.expose().trim();
        if admin == Some(value) {
            r.push(
                "read_token.is_admin_token",
                Severity::Error,
                &key,
                "is the admin token: a read token must be a value of its own (`openssl rand -hex 24`), or its holders may change everything",
            );
        } else if value.chars().count() < MIN_TOKEN_CHARS {
            match reached_from(c) {
                Some(how) => r.push(
                    "read_token.weak",
                    Severity::Error,
                    &key,
                    format!("shorter than {MIN_TOKEN_CHARS} characters while {how} reaches stagehook from other machines: use a long random value (`openssl rand -hex 24`)"),
                ),
                None => r.push(
                    "read_token.weak",
                    Severity::Warning,
                    &key,
                    format!("shorter than {MIN_TOKEN_CHARS} characters: use a long random value (`openssl rand -hex 24`) before other machines can reach stagehook"),
                ),
            }
        }
    }
}

fn reached_from(c: &Config) -> Option<String> {
    let ip = c.server.bind.ip();
    if !ip.is_loopback() {
        return Some(format!("server.bind {ip}"));
    }
    let url = c.server.public_url.as_deref()?;
    let host =
        url.parse::<hyper::Uri>().ok().and_then(|u| u.host().map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase()));
    let loopback = host.as_deref().is_some_and(|h| {
        h == "localhost" || h.ends_with(".localhost") || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    });
    (!loopback).then(|| format!("server.public_url ({})", crate::redact::url(url)))
}

fn ranges(c: &Config, r: &mut Report) {
    if c.limits.rate_limit_per_minute == 0 {
        r.push(
            "limits.rate_limit_off",
            Severity::Warning,
            "limits.rate_limit_per_minute",
            "0 turns the rate limiter off: fine for load tests, not for a reachable receiver",
        );
    }
    if c.limits.max_body_bytes > 10 * 1024 * 1024 {
        r.push(
            "limits.body_limit_large",
            Severity::Warning,
            "limits.max_body_bytes",
            "over 10 MiB: providers send far less; a large limit only helps abuse",
        );
    }
    if c.retry.max_delay.0 > std::time::Duration::from_secs(86_400) {
        r.push(
            "retry.max_delay_long",
            Severity::Warning,
            "retry.max_delay",
            "over a day between attempts: failures will look like silence",
        );
    }
    if c.retention.max_age.0 < std::time::Duration::from_secs(3600) {
        r.push(
            "retention.max_age_short",
            Severity::Warning,
            "retention.max_age",
            "under an hour: events may be gone before anyone looks at them",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_a_rule_does_not_read_and_an_unused_notifier_are_warnings() {
        let text = "[notifiers.ops]\nkind = \"slack\"\nurl = \"https://hooks.example.com/x\"\n\
                    [notifiers.idle]\nkind = \"slack\"\nurl = \"https://hooks.example.com/y\"\n\
                    [[alerts]]\nwhen = \"breaker_open\"\nnotify = [\"ops\"]\n\
                    [[alerts]]\nwhen = \"dead_letters\"\nabove = 0\nfor = \"5m\"\nnotify = [\"ops\"]\n";
        let c = Config::from_toml(text).unwrap();
        c.check().unwrap();
        let report = validate(&c, &BTreeMap::new(), Context::Running);
        let found: Vec<(&str, Severity, &str)> = report
            .findings
            .iter()
            .filter(|f| f.id.starts_with("alert") || f.id.starts_with("notifier"))
            .map(|f| (f.id, f.severity, f.key.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                ("alert.unused_key", Severity::Warning, "alerts[1].for"),
                ("notifier.unused", Severity::Warning, "notifiers.idle")
            ]
        );
    }

    /// Tests never resolve a name (no traffic leaves the machine): a failed lookup is given.
    #[test]
    fn a_name_that_does_not_resolve_is_an_unknown_host() {
        let failed = std::io::Error::other("failed to lookup address information: Name or service not known");
        assert_eq!(resolved(Err(failed)), Err(Probe::UnknownHost));
        assert_eq!(resolved(Ok(Vec::new())), Err(Probe::UnknownHost));
        let loopback: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(resolved(Ok(vec![loopback])), Ok(vec![loopback]));
        let f =
            probe_finding("providers.stripe.forward_to[0]", "https://u:pw@app.invalid/x?token=t", &Probe::UnknownHost);
        assert_eq!((f.id, f.severity), ("target.reachable", Severity::Warning));
        assert!(f.message.contains("unknown host") && f.message.contains("u:***@app.invalid"), "{}", f.message);
        assert!(!f.message.contains("pw") && !f.message.contains("token=t"), "{}", f.message);
    }
}
