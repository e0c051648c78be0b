//! What one kind of provider implements, in its own file: the [`Kind`] trait (its settings
//! type and their keys, its constructor, its credential, its built-in endpoint, its own
//! findings), and what those implementations share: [`Rotation`] of secrets, [`ConfigError`],
//! [`BuiltIn`], the [`Surroundings`] its findings read, and the findings about a credential.
//!
//! It sits below the kinds and the registry alike: the kinds import it and nothing of the
//! registry, and the registry reaches the kinds only through the dispatch `kinds!` makes, so no
//! two of them import each other.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Provider;
pub use crate::finding::ConfigError;
use crate::finding::{Finding, Severity};
use crate::providers::Malformed;
use crate::secret::Secret;

/// The built-in endpoint of a kind: a section that needs no `kind`, whose endpoint is always
/// present (answering 503 until its credential is set) and whose credential the provider's own
/// environment variable sets.
#[derive(Debug, Clone, Copy)]
pub struct BuiltIn {
    /// The section, `[providers.<name>]`, and the endpoint's name in records.
    pub name: &'static str,
    /// The last segment of `POST /staging/webhooks/<path>`.
    pub path: &'static str,
    /// The provider's own environment variable for the credential, and the key it sets; it
    /// wins over `STAGEHOOK_PROVIDERS_<NAME>_<KEY>`.
    pub env: (&'static str, &'static str),
    /// The optional keys of the section that can be set from the environment
    /// (`STAGEHOOK_PROVIDERS_<NAME>_<KEY>`), besides those with a default. Each is a string key
    /// of the kind's settings.
    pub env_keys: &'static [&'static str],
}

/// What the validator knows beyond a section, for a kind's own findings.
#[derive(Debug, Clone, Copy)]
pub struct Surroundings<'a> {
    /// The isolation-relevant environment ([`super::registry::isolation_env`]).
    pub env: &'a BTreeMap<String, String>,
    pub public_url_set: bool,
    /// Behind a proxy or tunnel, or reachable from other machines.
    pub behind_proxy: bool,
}

/// The secrets a section accepts at once (rotation): `secret`, then `secrets`. Every kind that
/// signs with a shared secret reads these two keys; the registry checks them the same way for
/// all.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rotation<'a> {
    pub secret: Option<&'a Secret>,
    pub secrets: &'a [Secret],
}

impl<'a> Rotation<'a> {
    pub fn new(secret: &'a Option<Secret>, secrets: &'a [Secret]) -> Rotation<'a> {
        Rotation { secret: secret.as_ref(), secrets }
    }

    /// Every accepted secret, `secret` first.
    pub fn all(&self) -> Vec<Secret> {
        self.secret.into_iter().chain(self.secrets).cloned().collect()
    }

    /// [`Rotation::all`], refusing an empty one: an empty string is a slip in the file, not "no
    /// secret", and an HMAC under an empty key is one anybody can compute.
    pub fn nonempty(&self, name: &str) -> Result<Vec<Secret>, ConfigError> {
        self.check_empty(name, "the secret")?;
        Ok(self.all())
    }

    /// An empty `secret` (the message names `hint`, what belongs there) or `secrets[i]`.
    pub(super) fn check_empty(&self, name: &str, hint: &str) -> Result<(), ConfigError> {
        if self.secret.is_some_and(|s| s.expose().is_empty()) {
            return Err(ConfigError::new(
                format!("providers.{name}.secret"),
                format!("is empty; set {hint} or remove the key"),
            ));
        }
        if let Some(i) = self.secrets.iter().position(|s| s.expose().is_empty()) {
            return Err(ConfigError::new(format!("providers.{name}.secrets[{i}]"), "is empty; remove it"));
        }
        Ok(())
    }
}

/// The bounds of `tolerance_seconds`, whichever kind reads it: a year at most.
pub(super) const MAX_TOLERANCE_S: u64 = 366 * 86_400;

/// One kind of provider. Implemented once, in the kind's own file.
pub trait Kind: Provider + Sized {
    /// The kind's part of its section: every key it reads besides `kind` and the common ones,
    /// with their defaults. Parsed with serde; serialized (secrets as fingerprints) to show.
    type Settings: DeserializeOwned + Serialize + Default + Clone + std::fmt::Debug + Send + Sync + 'static;
    /// The keys of [`Kind::Settings`], in its order (a unit test holds them equal).
    const KEYS: &'static [&'static str];
    /// The key an endpoint without credentials lacks.
    const CREDENTIAL: &'static str = "secret";
    /// How the message for an empty `secret` names what belongs there.
    const SECRET_HINT: &'static str = "the secret";
    /// The built-in endpoint of this kind, if there is one.
    const BUILT_IN: Option<BuiltIn> = None;
    /// Hosts of the provider's own API: never a forward target.
    const API_HOSTS: &'static [&'static str] = &[];
    /// The environment variables its isolation checks read.
    const ISOLATION_ENV: &'static [&'static str] = &[];

    /// Checks the settings and builds the provider, the kind's one constructor; a missing
    /// credential is not an error (the endpoint answers 503 until one is set). The checks every
    /// kind shares come first, in [`super::registry::build`].
    fn from_settings(name: &str, s: &Self::Settings) -> Result<Self, ConfigError>;

    /// Its `secret` and `secrets`, if it reads them.
    fn rotation(s: &Self::Settings) -> Rotation<'_>;

    /// Its `tolerance_seconds`, if it reads one.
    fn tolerance_seconds(_s: &Self::Settings) -> Option<u64> {
        None
    }

    /// Checks of its own keys that hold in any section, its own kind's or another's (where the
    /// validator also reports them unused), besides the shared ones of [`super::registry::build`]:
    /// a value no kind could use stops startup wherever it is written.
    fn check_anywhere(_name: &str, _s: &Self::Settings) -> Result<(), ConfigError> {
        Ok(())
    }

    /// Whether the endpoint has what it needs to verify.
    fn has_credentials(s: &Self::Settings) -> bool {
        !Self::rotation(s).all().is_empty()
    }

    /// The credential compared across endpoints (a secret shared by two is a warning).
    fn credential(s: &Self::Settings) -> Option<&Secret> {
        Self::rotation(s).secret
    }

    /// What a credential of this kind must look like beyond being set and not empty, for a
    /// secret used outside a section (the `webhook` notifier signs with a Standard Webhooks
    /// secret): what is wrong with it, which reads on from its key.
    fn credential_format(_secret: &Secret) -> Result<(), Malformed> {
        Ok(())
    }

    /// The kind's own findings: about the built-in endpoint's section (`None` when it is not
    /// configured) and the environment.
    fn findings(_built_in: Option<&Self::Settings>, _around: &Surroundings<'_>, _out: &mut Vec<Finding>) {}

    /// The kind's own findings about one section of its kind, the built-in endpoint's or a named
    /// one (a live API key, an API reached in clear), at `providers.<name>.<key>`.
    fn section_findings(_name: &str, _s: &Self::Settings, _out: &mut Vec<Finding>) {}
}

/// `api_base` of `[providers.<name>]` (`default` when unset): an http(s) URL with a host and
/// without a query or fragment, as the API's paths are appended to it; a trailing `/` is
/// dropped.
pub fn api_base(name: &str, base: Option<&str>, default: &str) -> Result<String, ConfigError> {
    let Some(base) = base else { return Ok(default.to_string()) };
    let bad = |why: &str| ConfigError::new(format!("providers.{name}.api_base"), format!("`{base}` {why}"));
    let uri: warp::http::Uri = base.parse().map_err(|_| bad("is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none_or(str::is_empty) {
        return Err(bad("is not an http(s) URL with a host, such as https://api.example.com"));
    }
    if base.contains(['?', '#']) {
        return Err(bad("has a query or fragment: the API's paths and parameters are added to it"));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(bad("has a user in it: the credential goes in its own key"));
    }
    Ok(base.trim_end_matches('/').to_string())
}

/// The `provider.api_base_clear` warning when `base` (as [`api_base`] gave it) is plain http to
/// a host that is not this machine: the API key or token would cross the network in clear.
pub fn api_base_finding(name: &str, base: &str) -> Option<Finding> {
    let uri: warp::http::Uri = base.parse().ok()?;
    let host = uri.host()?.trim_matches(['[', ']']);
    let loopback =
        host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    (uri.scheme_str() == Some("http") && !loopback).then(|| {
        Finding::new(
            "provider.api_base_clear",
            Severity::Warning,
            &format!("providers.{name}.api_base"),
            format!("{base} is plain http to another machine: the API credential would be sent in clear; use https"),
        )
    })
}

/// A value someone meant to replace.
pub fn is_placeholder(s: &Secret) -> bool {
    let v = s.expose().to_ascii_lowercase();
    ["replace", "changeme", "change_me", "placeholder", "your_", "xxxx", "todo", "example"]
        .iter()
        .any(|p| v.contains(p))
}

/// The `provider.placeholder_secret` finding for `secret` at `key`, `replace_with` saying what
/// belongs there.
pub fn placeholder_finding(key: &str, secret: &Secret, replace_with: &str) -> Finding {
    Finding::new(
        "provider.placeholder_secret",
        Severity::Error,
        key,
        format!("{} is a placeholder: replace it with {replace_with}", secret.fingerprint()),
    )
}

/// A built-in endpoint's credential at `key`: `provider.secret_missing` (with `missing`, how to set
/// it), a placeholder (see [`placeholder_finding`]), or what the kind's own check of its format
/// says.
pub fn built_in_credential(
    key: &str,
    secret: Option<&Secret>,
    missing: &str,
    replace_with: &str,
    format: impl FnOnce(&Secret) -> Finding,
) -> Finding {
    match secret {
        None => Finding::new("provider.secret_missing", Severity::Error, key, missing),
        Some(s) if is_placeholder(s) => placeholder_finding(key, s, replace_with),
        Some(s) => format(s),
    }
}

/// A configuration error as the kinds' tests read it: the key, then what is wrong with it.
#[cfg(test)]
pub(crate) fn said(e: &ConfigError) -> String {
    format!("{} {}", e.key, e.message)
}
