//! The one validator: every check of a configuration, as findings with a stable id, a severity,
//! the key concerned and how to fix it. Used at startup (errors stop it, exit 2), by
//! `stagehook check-config`, and by `GET /staging/webhooks/config/validate`.
//!
//! Secrets never appear in a finding: only [`Secret::fingerprint`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::{Config, InstanceConfig, IpRange, ProviderKind};
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Ok,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub id: &'static str,
    pub severity: Severity,
    pub key: String,
    pub message: String,
}

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
}

/// The hosts of the providers' own APIs: never a forward target, whatever the config says.
pub const PROVIDER_API_HOSTS: [&str; 6] =
    ["stripe.com", "*.stripe.com", "twilio.com", "*.twilio.com", "sendgrid.com", "*.sendgrid.com"];

/// The environment variables the isolation checks read.
pub const ISOLATION_ENV: [&str; 5] =
    ["STRIPE_API_KEY", "STRIPE_SECRET_KEY", "TWILIO_API_KEY", "TWILIO_API_SECRET", "TWILIO_ACCOUNT_SID"];

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

pub fn validate(config: &Config, env: &BTreeMap<String, String>, context: Context) -> Report {
    let mut r = Report::default();
    secrets(config, &mut r);
    named(config, &mut r);
    isolation(config, env, &mut r);
    targets(config, &mut r);
    data_dir(&config.server.data_dir, context, &mut r);
    exposure(config, &mut r);
    ranges(config, &mut r);
    r
}

fn is_placeholder(s: &Secret) -> bool {
    let v = s.expose().to_ascii_lowercase();
    ["replace", "changeme", "change_me", "placeholder", "your_", "xxxx", "todo", "example"]
        .iter()
        .any(|p| v.contains(p))
}

fn secrets(c: &Config, r: &mut Report) {
    let configured: Vec<(&str, &Secret)> = [
        ("stripe", c.providers.stripe.as_ref().and_then(|p| p.secret.as_ref())),
        ("twilio", c.providers.twilio.as_ref().and_then(|p| p.auth_token.as_ref())),
    ]
    .into_iter()
    .chain(c.providers.named.iter().map(|(name, p)| (name.as_str(), p.secret.as_ref())))
    .filter_map(|(name, s)| Some((name, s?)))
    .collect();
    if let Some(stripe) = &c.providers.stripe {
        let key = "providers.stripe.secret";
        match &stripe.secret {
            None => r.push(
                "provider.secret_missing",
                Severity::Error,
                key,
                "Stripe is configured without its signing secret: set STRIPE_WEBHOOK_SECRET (from `stripe listen` or the dashboard's endpoint page)",
            ),
            Some(s) if is_placeholder(s) => r.push(
                "provider.placeholder_secret",
                Severity::Error,
                key,
                format!("{} is a placeholder: replace it with the endpoint's real whsec_ secret", s.fingerprint()),
            ),
            Some(s) if !s.expose().starts_with("whsec_") || s.expose().len() < 16 => r.push(
                "stripe.secret_format",
                Severity::Error,
                key,
                format!("{} does not look like a Stripe signing secret (whsec_...)", s.fingerprint()),
            ),
            Some(s) => {
                r.push("stripe.secret_format", Severity::Ok, key, format!("signing secret {}", s.fingerprint()));
            }
        }
    }
    if let Some(twilio) = &c.providers.twilio {
        let key = "providers.twilio.auth_token";
        match &twilio.auth_token {
            None => r.push(
                "provider.secret_missing",
                Severity::Error,
                key,
                "Twilio is configured without its auth token: set TWILIO_AUTH_TOKEN (Console → Account → API keys & tokens)",
            ),
            Some(s) if is_placeholder(s) => r.push(
                "provider.placeholder_secret",
                Severity::Error,
                key,
                format!("{} is a placeholder: replace it with the account's auth token", s.fingerprint()),
            ),
            Some(s) if s.expose().len() != 32 || !s.expose().bytes().all(|b| b.is_ascii_hexdigit()) => r.push(
                "twilio.token_format",
                Severity::Error,
                key,
                format!("{} is not a Twilio auth token (32 hexadecimal characters)", s.fingerprint()),
            ),
            Some(s) => {
                r.push("twilio.token_format", Severity::Ok, key, format!("auth token {}", s.fingerprint()));
            }
        }
    }
    if c.providers.stripe.is_none() && c.providers.twilio.is_none() && c.providers.named.is_empty() {
        r.push(
            "provider.none_configured",
            Severity::Warning,
            "providers",
            "no provider is configured: every ingest endpoint answers 503 until a secret is set",
        );
    }
    for (i, (a, sa)) in configured.iter().enumerate() {
        for (b, sb) in &configured[i + 1..] {
            if sa.expose() == sb.expose() {
                r.push(
                    "secret.reused",
                    Severity::Warning,
                    &format!("providers.{b}"),
                    format!("{a} and {b} share one secret: each provider has its own; a leak of one exposes both"),
                );
            }
        }
    }
}

/// The keys each kind reads besides the common ones (`kind`, `forward_to`, `timeout`, `retry`).
fn kind_keys(kind: ProviderKind) -> &'static [&'static str] {
    match kind {
        ProviderKind::Stripe | ProviderKind::Slack | ProviderKind::Standard => {
            &["secret", "secrets", "tolerance_seconds"]
        }
        ProviderKind::Twilio | ProviderKind::Github | ProviderKind::Shopify => &["secret", "secrets"],
        ProviderKind::Sendgrid => &["public_key", "secrets", "signing_key"],
        ProviderKind::Hmac => &[
            "secret",
            "secrets",
            "tolerance_seconds",
            "header",
            "algorithm",
            "encoding",
            "prefix",
            "timestamp_header",
            "signed_content",
            "id_header",
            "id_pointer",
            "type_header",
            "type_pointer",
        ],
    }
}

/// Named instances: credentials present and not placeholders, settings the kind understands.
fn named(c: &Config, r: &mut Report) {
    let defaults = serde_json::to_value(InstanceConfig::default()).unwrap_or_default();
    for (name, p) in &c.providers.named {
        let kind = p.kind_of(name);
        let prefix = format!("providers.{name}");
        if let Err(m) = crate::providers::build(name, p) {
            r.push("provider.setting", Severity::Error, &prefix, m);
        }
        let credential = if kind == ProviderKind::Sendgrid { "public_key" } else { "secret" };
        if !crate::providers::has_credentials(name, p) {
            r.push(
                "provider.secret_missing",
                Severity::Error,
                &format!("{prefix}.{credential}"),
                format!("{name} ({}) has no {credential}: its endpoint answers 503 until one is set", kind.as_str()),
            );
        }
        for (i, s) in p.all_secrets().iter().enumerate() {
            if is_placeholder(s) {
                r.push(
                    "provider.placeholder_secret",
                    Severity::Error,
                    &format!(
                        "{prefix}.secret{}",
                        if i == 0 && p.secret.is_some() { String::new() } else { format!("s[{i}]") }
                    ),
                    format!("{} is a placeholder: replace it with the provider's real signing secret", s.fingerprint()),
                );
            }
        }
        // A key the kind ignores is a mistake that would pass silently (a GitHub instance given
        // `timestamp_header` still verifies without one).
        let given = serde_json::to_value(p).unwrap_or_default();
        let common = ["kind", "forward_to", "timeout", "retry"];
        if let (Some(given), Some(defaults)) = (given.as_object(), defaults.as_object()) {
            for (key, value) in given {
                if common.contains(&key.as_str()) || kind_keys(kind).contains(&key.as_str()) {
                    continue;
                }
                if defaults.get(key) != Some(value) {
                    r.push(
                        "provider.unused_key",
                        Severity::Error,
                        &format!("{prefix}.{key}"),
                        format!("kind `{}` does not use `{key}`: remove it, or set the kind that does", kind.as_str()),
                    );
                }
            }
        }
    }
}

fn isolation(c: &Config, env: &BTreeMap<String, String>, r: &mut Report) {
    let mut keys: Vec<(String, Secret)> = Vec::new();
    if let Some(k) = c.providers.stripe.as_ref().and_then(|s| s.api_key.clone()) {
        keys.push(("providers.stripe.api_key".into(), k));
    }
    for name in ["STRIPE_API_KEY", "STRIPE_SECRET_KEY"] {
        if let Some(v) = env.get(name).filter(|v| !v.is_empty()) {
            keys.push((format!("env {name}"), Secret::new(v.clone())));
        }
    }
    for (key, k) in keys {
        let v = k.expose();
        if ["sk_live_", "rk_live_", "pk_live_"].iter().any(|p| v.starts_with(p)) {
            r.push(
                "isolation.live_stripe_key",
                Severity::Error,
                &key,
                format!(
                    "{} is a live-mode Stripe key: staging must use a test-mode key (sk_test_ or rk_test_)",
                    k.fingerprint()
                ),
            );
        } else if v.starts_with("sk_test_") || v.starts_with("rk_test_") {
            r.push("isolation.live_stripe_key", Severity::Ok, &key, format!("test-mode key {}", k.fingerprint()));
        } else {
            r.push(
                "isolation.stripe_key_format",
                Severity::Warning,
                &key,
                format!("{} is not a recognisable Stripe secret key (sk_test_... or rk_test_...)", k.fingerprint()),
            );
        }
    }
    for name in ["TWILIO_API_KEY", "TWILIO_API_SECRET"] {
        if env.get(name).is_some_and(|v| !v.is_empty()) {
            r.push(
                "isolation.twilio_live_credentials",
                Severity::Warning,
                &format!("env {name}"),
                "Twilio API keys belong to live accounts (test credentials have none): make sure this is not production",
            );
        }
    }
    let sid =
        c.providers.twilio.as_ref().and_then(|t| t.account_sid.clone()).map(|s| ("providers.twilio.account_sid", s));
    let sid = sid.or_else(|| {
        env.get("TWILIO_ACCOUNT_SID").filter(|v| !v.is_empty()).map(|s| ("env TWILIO_ACCOUNT_SID", s.clone()))
    });
    if let Some((key, sid)) = sid {
        if !(sid.starts_with("AC") && sid.len() == 34) {
            r.push(
                "twilio.account_sid_format",
                Severity::Error,
                key,
                "an account SID is AC followed by 32 hexadecimal characters",
            );
        }
    }
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

fn targets(c: &Config, r: &mut Report) {
    let names = ["stripe", "twilio"].into_iter().chain(c.providers.named.keys().map(String::as_str));
    for provider in names {
        let Some(t) = c.targets(provider) else { continue };
        for (i, url) in t.urls.iter().enumerate() {
            let key = format!("providers.{provider}.forward_to[{i}]");
            let host =
                url.parse::<hyper::Uri>().ok().and_then(|u| u.host().map(|h| h.trim_matches(['[', ']']).to_string()));
            let Some(host) = host.filter(|h| !h.is_empty()) else {
                r.push(
                    "target.url",
                    Severity::Error,
                    &key,
                    format!("`{}` is not an http(s) URL", crate::redact::url(url)),
                );
                continue;
            };
            let builtin = PROVIDER_API_HOSTS.iter().find(|p| glob_match(p, &host));
            let listed = c.isolation.production_hosts.iter().find(|p| glob_match(p, &host));
            match (builtin, listed) {
                (Some(p), _) => r.push(
                    "isolation.production_target",
                    Severity::Error,
                    &key,
                    format!("{host} is a provider's own API ({p}); deliveries go to the app under test, never there"),
                ),
                (None, Some(p)) => r.push(
                    "isolation.production_target",
                    Severity::Error,
                    &key,
                    format!("{host} matches isolation.production_hosts pattern `{p}`: staging must not deliver to production"),
                ),
                (None, None) => r.push("isolation.production_target", Severity::Ok, &key, format!("{host} is not production")),
            }
        }
    }
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
    match lock_held(&dir.join("db")) {
        Some(true) => r.push(
            "data_dir.in_use",
            Severity::Error,
            key,
            format!("{} is in use by another running stagehook; stop it or choose another data_dir", dir.display()),
        ),
        Some(false) | None => r.push("data_dir.in_use", Severity::Ok, key, "not in use by another instance"),
    }
}

/// Whether another process holds sled's lock on `db` (`None`: no database there yet).
#[cfg(unix)]
fn lock_held(db: &Path) -> Option<bool> {
    use std::os::unix::io::AsRawFd;
    let file = std::fs::OpenOptions::new().read(true).write(true).open(db).ok()?;
    // sled takes an exclusive advisory lock on this file (fcntl, via fs2 on Unix: flock).
    // SAFETY: flock on a descriptor we own; it reads and writes no memory of ours.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        // SAFETY: as above; we release what we just took.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
        Some(false)
    } else {
        Some(true)
    }
}

#[cfg(not(unix))]
fn lock_held(_db: &Path) -> Option<bool> {
    None
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
        (Some(t), _) if t.expose().len() < 16 => r.push(
            "admin_token.weak",
            Severity::Warning,
            "server.admin_token",
            "shorter than 16 characters: use a long random value (e.g. `openssl rand -hex 24`)",
        ),
        _ => r.push("bind.exposed_without_token", Severity::Ok, "server.bind", format!("{ip} with {}", if c.server.admin_token.is_some() { "an admin token" } else { "loopback only" })),
    }
    let behind_proxy = !c.server.trusted_proxies.is_empty() || !loopback;
    if c.providers.twilio.is_some() && c.server.public_url.is_none() && behind_proxy {
        r.push(
            "twilio.public_url_missing",
            Severity::Warning,
            "server.public_url",
            "Twilio signs the URL it called; behind a proxy or tunnel set server.public_url to that URL's base, or signatures will not match",
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
