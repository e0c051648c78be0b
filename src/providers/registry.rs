//! The one registry of provider kinds, and the one door `config` uses into `providers/`.
//!
//! Each kind says everything about itself in its own file, by implementing [`Kind`]: the keys
//! of its section, what they must hold (its `build`), its credential, the seed's instance of
//! it if any (`stripe` at `/stripe`, `twilio` at `/sms`, with their environment variables), its
//! API hosts and its own validator findings. The `kinds!` list (in `providers/mod.rs`, where it
//! also declares the kinds' modules) turns that into [`ProviderKind`] and the dispatch over it,
//! so adding a kind is one file plus one line in that list.
//!
//! `config` reads a section's common keys (`forward_to`, `timeout`, `retry`), hands every other
//! key to [`InstanceConfig::read_key`], and builds each instance once through [`instance`];
//! nothing in `providers/` reads `config`.

use std::collections::BTreeMap;
use std::sync::Arc;

pub use super::settings::InstanceConfig;
use super::Provider;
pub use super::ProviderKind;
use crate::finding::{Finding, Severity};
use crate::secret::Secret;

/// A setting that cannot work: the key (`providers.<name>.<key>`) and what is wrong with it,
/// which reads on from the key (`is empty; remove it`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} {message}")]
pub struct SettingError {
    pub key: String,
    pub message: String,
}

impl SettingError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> SettingError {
        SettingError { key: key.into(), message: message.into() }
    }
}

/// The seed's instance of a kind: a section that needs no `kind`, whose endpoint is always
/// present (answering 503 until its credential is set) and whose credential the provider's own
/// environment variable sets.
#[derive(Debug, Clone, Copy)]
pub struct Seed {
    /// The section, `[providers.<name>]`, and the instance's name in records.
    pub name: &'static str,
    /// The last segment of `POST /staging/webhooks/<path>`.
    pub path: &'static str,
    /// The provider's own environment variable for the credential, and the key it sets; it
    /// wins over `STAGEHOOK_PROVIDERS_<NAME>_<KEY>`.
    pub env: (&'static str, &'static str),
    /// The optional keys of the section that can be set from the environment
    /// (`STAGEHOOK_PROVIDERS_<NAME>_<KEY>`), besides those with a default.
    pub env_keys: &'static [&'static str],
}

/// What the validator knows beyond a section, for a kind's own findings.
#[derive(Debug, Clone, Copy)]
pub struct Surroundings<'a> {
    /// The isolation-relevant environment ([`isolation_env`]).
    pub env: &'a BTreeMap<String, String>,
    pub public_url_set: bool,
    /// Behind a proxy or tunnel, or reachable from other machines.
    pub behind_proxy: bool,
}

/// One kind of provider. Implemented once, in the kind's own file.
pub trait Kind: Provider + Sized {
    /// The keys of its section it reads, besides `kind` and the common ones.
    const KEYS: &'static [&'static str];
    /// The key an instance without credentials lacks.
    const CREDENTIAL: &'static str = "secret";
    /// How the message for an empty `secret` names what belongs there.
    const SECRET_HINT: &'static str = "the secret";
    /// The seed's instance of this kind, if there is one.
    const SEED: Option<Seed> = None;
    /// Hosts of the provider's own API: never a forward target.
    const API_HOSTS: &'static [&'static str] = &[];
    /// The environment variables its isolation checks read.
    const ISOLATION_ENV: &'static [&'static str] = &[];

    /// Checks the settings and builds the provider; a missing credential is not an error (the
    /// endpoint answers 503 until one is set).
    fn build(name: &str, c: &InstanceConfig) -> Result<Self, SettingError>;

    /// Whether the instance has what it needs to verify.
    fn has_credentials(c: &InstanceConfig) -> bool {
        !c.all_secrets().is_empty()
    }

    /// The credential compared across instances (a secret shared by two is a warning).
    fn credential(c: &InstanceConfig) -> Option<&Secret> {
        c.secret.as_ref()
    }

    /// The kind's own findings: about the seed's section (`None` when it is not configured)
    /// and the environment.
    fn findings(_seed: Option<&InstanceConfig>, _around: &Surroundings<'_>, _out: &mut Vec<Finding>) {}
}

/// Refuses settings of another kind, for a kind's constructor called directly (the registry
/// only ever hands a kind its own sections).
pub fn expect_kind(name: &str, c: &InstanceConfig, kind: ProviderKind) -> Result<(), SettingError> {
    match c.kind_of(name) {
        k if k == kind => Ok(()),
        other => Err(SettingError::new(
            format!("providers.{name}.kind"),
            format!("is `{}`, not `{}`", other.as_str(), kind.as_str()),
        )),
    }
}

/// The registry's list, written once in `providers/mod.rs`: each line names a kind's variant,
/// its name in `kind = "..."`, and its file and type. It declares the files' modules, and makes
/// [`ProviderKind`] and the dispatch over the kinds' [`Kind`] implementations.
macro_rules! kinds {
    ($($variant:ident = $name:literal => $module:ident :: $ty:ident,)*) => {
        $(pub mod $module;)*

        /// The kinds of provider an instance can be.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize, serde::Serialize)]
        pub enum ProviderKind {
            $(#[serde(rename = $name)] $variant,)*
        }

        impl ProviderKind {
            pub const ALL: [ProviderKind; [$($name),*].len()] = [$(ProviderKind::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(ProviderKind::$variant => $name,)* }
            }

            /// The keys of its section it reads, besides `kind` and the common ones.
            pub fn keys(self) -> &'static [&'static str] {
                match self { $(ProviderKind::$variant => <$module::$ty as $crate::providers::registry::Kind>::KEYS,)* }
            }

            fn credential_key(self) -> &'static str {
                match self { $(ProviderKind::$variant => <$module::$ty as $crate::providers::registry::Kind>::CREDENTIAL,)* }
            }

            fn secret_hint(self) -> &'static str {
                match self { $(ProviderKind::$variant => <$module::$ty as $crate::providers::registry::Kind>::SECRET_HINT,)* }
            }

            fn seed(self) -> Option<$crate::providers::registry::Seed> {
                match self { $(ProviderKind::$variant => <$module::$ty as $crate::providers::registry::Kind>::SEED,)* }
            }

            fn api_hosts(self) -> &'static [&'static str] {
                match self { $(ProviderKind::$variant => <$module::$ty as $crate::providers::registry::Kind>::API_HOSTS,)* }
            }

            fn isolation_env(self) -> &'static [&'static str] {
                match self { $(ProviderKind::$variant => <$module::$ty as $crate::providers::registry::Kind>::ISOLATION_ENV,)* }
            }

            fn build(self, name: &str, c: &$crate::providers::InstanceConfig) -> Result<std::sync::Arc<dyn $crate::providers::Provider>, $crate::providers::registry::SettingError> {
                Ok(match self { $(ProviderKind::$variant => std::sync::Arc::new(<$module::$ty as $crate::providers::registry::Kind>::build(name, c)?),)* })
            }

            fn has_credentials(self, c: &$crate::providers::InstanceConfig) -> bool {
                match self { $(ProviderKind::$variant => <$module::$ty as $crate::providers::registry::Kind>::has_credentials(c),)* }
            }

            fn credential(self, c: &$crate::providers::InstanceConfig) -> Option<&$crate::secret::Secret> {
                match self { $(ProviderKind::$variant => <$module::$ty as $crate::providers::registry::Kind>::credential(c),)* }
            }

            fn findings(self, seed: Option<&$crate::providers::InstanceConfig>, around: &$crate::providers::registry::Surroundings<'_>, out: &mut Vec<$crate::finding::Finding>) {
                match self { $(ProviderKind::$variant => <$module::$ty as $crate::providers::registry::Kind>::findings(seed, around, out),)* }
            }
        }
    };
}

pub(crate) use kinds;

impl ProviderKind {
    pub fn parse(s: &str) -> Option<ProviderKind> {
        ProviderKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The seed's instances, in the order their endpoints are listed.
pub fn seeds() -> impl Iterator<Item = (ProviderKind, Seed)> {
    ProviderKind::ALL.into_iter().filter_map(|k| Some((k, k.seed()?)))
}

/// Whether `name` is the section of a seed's instance.
pub fn is_seed(name: &str) -> bool {
    seeds().any(|(_, s)| s.name == name)
}

/// Names an instance cannot take besides the API's own: the seed's paths that are not their
/// section's name (`sms`).
pub fn taken_paths() -> impl Iterator<Item = &'static str> {
    seeds().filter(|(_, s)| s.path != s.name).map(|(_, s)| s.path)
}

/// The hosts of the providers' own APIs: never a forward target, whatever the config says.
pub fn api_hosts() -> impl Iterator<Item = &'static str> {
    ProviderKind::ALL.into_iter().flat_map(|k| k.api_hosts().iter().copied())
}

/// The environment variables the kinds' isolation checks read.
pub fn isolation_env() -> impl Iterator<Item = &'static str> {
    ProviderKind::ALL.into_iter().flat_map(|k| k.isolation_env().iter().copied())
}

/// A settings value with every key a seed's section can take from the environment set, so that
/// `config` can learn each key's name and type.
pub fn env_example(kind: ProviderKind, seed: &Seed) -> InstanceConfig {
    let mut c = InstanceConfig::default();
    let example = Secret::new("x");
    for key in seed.env_keys {
        match *key {
            "secret" => c.secret = Some(example.clone()),
            "api_key" => c.api_key = Some(example.clone()),
            "auth_token" => c.auth_token = Some(example.clone()),
            "account_sid" => c.account_sid = Some(String::new()),
            other => debug_assert!(false, "{} lists {other}, which is no optional string key", kind.as_str()),
        }
    }
    c
}

/// The provider keys of `[providers.<name>]` as `check-config --show` lists them: a seed's
/// section has its kind's shape, so its kind's keys; any other section every key that is set.
pub fn shown(name: &str, c: &InstanceConfig) -> Vec<(&'static str, serde_json::Value)> {
    let kind = c.kind_of(name);
    if is_seed(name) {
        c.shown(&[&["kind"][..], kind.keys()].concat())
    } else {
        c.shown(&InstanceConfig::KEYS)
    }
}

/// The path segment of an instance: the seed's own, or its name.
pub fn path_of(name: &str) -> String {
    seeds().find(|(_, s)| s.name == name).map_or(name, |(_, s)| s.path).to_string()
}

/// One ingest endpoint, built once at startup: its path segment, its kind, whether it can
/// verify, its provider, and where its events are delivered.
#[derive(Clone)]
pub struct Instance {
    /// The last path segment: `stripe`, `sms`, or a named instance's name.
    pub path: String,
    pub kind: ProviderKind,
    /// The provider, present whether or not its secret is set, so `/validate` can check
    /// structure; `configured` says whether it may verify.
    pub provider: Arc<dyn Provider>,
    pub configured: bool,
    /// Where its events are delivered; empty means recorded and processed at once.
    pub targets: Vec<String>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("name", &self.provider.name())
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("configured", &self.configured)
            .field("targets", &self.targets.len())
            .finish()
    }
}

/// Builds the endpoint `[providers.<name>]` describes: a seed's section must have its kind's
/// shape, then [`build`].
pub fn instance(name: &str, c: &InstanceConfig, targets: Vec<String>) -> Result<Instance, SettingError> {
    let key = |k: &str| format!("providers.{name}.{k}");
    let kind = c.kind_of(name);
    if let Some((seed_kind, _)) = seeds().find(|(_, s)| s.name == name) {
        if kind != seed_kind {
            return Err(SettingError {
                key: key("kind"),
                message: format!(
                    "`{name}` is the {} endpoint; name a `{}` instance otherwise",
                    seed_kind.as_str(),
                    kind.as_str()
                ),
            });
        }
        // A seed's section has its kind's shape, as it always had: any other key stops startup
        // rather than passing as advice.
        let stray = c.given().into_iter().find(|(k, _)| k != "kind" && !kind.keys().contains(&k.as_str()));
        if let Some((stray, _)) = stray {
            let keys: Vec<String> = kind.keys().iter().map(|k| format!("`{k}`")).collect();
            return Err(SettingError {
                key: format!("providers.{name}"),
                message: format!(
                    "unknown field `{stray}`, expected one of {}, `forward_to`, `timeout`, `retry`",
                    keys.join(", ")
                ),
            });
        }
    }
    let provider = build(name, c)?;
    Ok(Instance { path: path_of(name), kind, configured: kind.has_credentials(c), provider, targets })
}

/// The provider of `[providers.<name>]` alone: the checks every kind shares, then the kind's
/// own. [`instance`] adds the seed's section shape and the endpoint; tests and benchmarks that
/// need no endpoint call this.
pub fn build(name: &str, c: &InstanceConfig) -> Result<Arc<dyn Provider>, SettingError> {
    let key = |k: &str| format!("providers.{name}.{k}");
    let kind = c.kind_of(name);
    // Checked whatever the kind, as it always was: a kind that reads no timestamp still refuses
    // a tolerance no timestamp could meet.
    if c.tolerance_seconds == 0 || c.tolerance_seconds > 366 * 86_400 {
        return Err(SettingError {
            key: key("tolerance_seconds"),
            message: "must be between 1 and 31622400 (a year)".into(),
        });
    }
    if c.secret.as_ref().is_some_and(|s| s.expose().is_empty()) {
        return Err(SettingError {
            key: key("secret"),
            message: format!("is empty; set {} or remove the key", kind.secret_hint()),
        });
    }
    if c.auth_token.as_ref().is_some_and(|s| s.expose().is_empty()) {
        return Err(SettingError {
            key: key("auth_token"),
            message: "is empty; set the auth token or remove the key".into(),
        });
    }
    if let Some(i) = c.secrets.iter().position(|s| s.expose().is_empty()) {
        return Err(SettingError { key: key(&format!("secrets[{i}]")), message: "is empty; remove it".into() });
    }
    kind.build(name, c)
}

/// `secret` then `secrets`, refusing an empty one: an empty string is a slip in the file, not
/// "no secret", and an HMAC under an empty key is one anybody can compute.
pub(crate) fn nonempty_secrets(name: &str, c: &InstanceConfig) -> Result<Vec<Secret>, SettingError> {
    if c.secret.as_ref().is_some_and(|s| s.expose().is_empty()) {
        return Err(SettingError::new(
            format!("providers.{name}.secret"),
            "is empty; set the secret or remove the key",
        ));
    }
    if let Some(i) = c.secrets.iter().position(|s| s.expose().is_empty()) {
        return Err(SettingError::new(format!("providers.{name}.secrets[{i}]"), "is empty; remove it"));
    }
    Ok(c.all_secrets())
}

/// A value someone meant to replace.
pub fn is_placeholder(s: &Secret) -> bool {
    let v = s.expose().to_ascii_lowercase();
    ["replace", "changeme", "change_me", "placeholder", "your_", "xxxx", "todo", "example"]
        .iter()
        .any(|p| v.contains(p))
}

/// Every finding about the configured provider sections (`common`: the keys config reads
/// itself): the kinds' own ([`Kind::findings`]), each section's (`section_findings`), and a
/// credential two sections share.
pub fn findings<'a>(
    sections: impl IntoIterator<Item = (&'a str, &'a InstanceConfig)>,
    around: &Surroundings<'_>,
    common: &[&str],
) -> Vec<Finding> {
    let mut sections: Vec<(&str, &InstanceConfig)> = sections.into_iter().collect();
    // The seed's first, so that a named instance is the one warned about.
    sections.sort_by_key(|(name, _)| !is_seed(name));
    let mut out = Vec::new();
    for kind in ProviderKind::ALL {
        let seed = kind.seed().and_then(|s| sections.iter().find(|(name, _)| *name == s.name).map(|(_, c)| *c));
        kind.findings(seed, around, &mut out);
    }
    for (name, c) in &sections {
        section_findings(name, c, common, &mut out);
    }
    let credentials: Vec<(&str, &Secret)> =
        sections.iter().filter_map(|(name, c)| Some((*name, c.kind_of(name).credential(c)?))).collect();
    for (i, (a, sa)) in credentials.iter().enumerate() {
        for (b, sb) in &credentials[i + 1..] {
            if sa.expose() == sb.expose() {
                out.push(Finding::new(
                    "secret.reused",
                    Severity::Warning,
                    &format!("providers.{b}"),
                    format!("{a} and {b} share one secret: each provider has its own; a leak of one exposes both"),
                ));
            }
        }
    }
    out
}

/// The findings about a section: every key one its kind reads, and for a section that is not a
/// seed's (whose kind checks its credential itself, [`Kind::findings`]) its credential present
/// and no placeholder.
fn section_findings(name: &str, c: &InstanceConfig, common: &[&str], out: &mut Vec<Finding>) {
    let kind = c.kind_of(name);
    let prefix = format!("providers.{name}");
    let credential = kind.credential_key();
    let seed = is_seed(name);
    if !seed && !kind.has_credentials(c) {
        out.push(Finding::new(
            "provider.secret_missing",
            Severity::Error,
            &format!("{prefix}.{credential}"),
            format!("{name} ({}) has no {credential}: its endpoint answers 503 until one is set", kind.as_str()),
        ));
    }
    for (i, s) in c.all_secrets().iter().enumerate() {
        if !seed && is_placeholder(s) {
            out.push(Finding::new(
                "provider.placeholder_secret",
                Severity::Error,
                &format!(
                    "{prefix}.secret{}",
                    if i == 0 && c.secret.is_some() { String::new() } else { format!("s[{i}]") }
                ),
                format!("{} is a placeholder: replace it with the provider's real signing secret", s.fingerprint()),
            ));
        }
    }
    // A key the kind ignores is a mistake that would pass silently (a GitHub instance given
    // `timestamp_header` still verifies without one).
    for (key, _) in c.given() {
        if key == "kind" || common.contains(&key.as_str()) || kind.keys().contains(&key.as_str()) {
            continue;
        }
        out.push(Finding::new(
            "provider.unused_key",
            Severity::Error,
            &format!("{prefix}.{key}"),
            format!("kind `{}` does not use `{key}`: remove it, or set the kind that does", kind.as_str()),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once_and_parses_back() {
        for kind in ProviderKind::ALL {
            assert_eq!(ProviderKind::parse(kind.as_str()), Some(kind));
            assert!(kind.keys().iter().all(|k| InstanceConfig::KEYS.contains(k)), "{}", kind.as_str());
        }
        let names: std::collections::BTreeSet<&str> = ProviderKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), ProviderKind::ALL.len());
        let seeds: Vec<(&str, &str)> = seeds().map(|(_, s)| (s.name, s.path)).collect();
        assert_eq!(seeds, [("stripe", "stripe"), ("twilio", "sms")]);
        assert_eq!(taken_paths().collect::<Vec<_>>(), ["sms"]);
    }

    /// A seed's section keeps its kind's shape: another kind, or a key its kind does not read,
    /// stops startup naming the section; a named instance of the same kind may take any key
    /// (the validator reports the unused ones).
    #[test]
    fn a_seeds_section_has_its_kinds_shape() {
        let header = InstanceConfig { header: Some("x-sig".into()), ..Default::default() };
        let e = instance("stripe", &header, Vec::new()).unwrap_err();
        assert_eq!(e.key, "providers.stripe");
        assert!(e.message.contains("unknown field `header`"), "{e}");
        let other = InstanceConfig { kind: Some(ProviderKind::Github), ..Default::default() };
        assert_eq!(instance("twilio", &other, Vec::new()).unwrap_err().key, "providers.twilio.kind");
        let named = InstanceConfig { kind: Some(ProviderKind::Stripe), ..header };
        let eu = instance("eu", &named, vec!["http://app.test/".into()]).unwrap();
        assert_eq!((eu.path.as_str(), eu.kind, eu.targets.len()), ("eu", ProviderKind::Stripe, 1));
        let sms = instance("twilio", &InstanceConfig::default(), Vec::new()).unwrap();
        assert_eq!((sms.path.as_str(), sms.configured), ("sms", false));
        let token = InstanceConfig { auth_token: Some(Secret::new("t")), ..Default::default() };
        assert!(instance("twilio", &token, Vec::new()).unwrap().configured);
    }
}
