//! The one registry of provider kinds, and the one door `config` uses into `providers/`.
//!
//! Each kind says everything about itself in its own file, by implementing [`Kind`]
//! (`providers/kind.rs`): its settings type (the keys of its section, their defaults and types),
//! what they must hold (its `from_settings`), its credential, its built-in endpoint if any
//! (`stripe` at `/stripe`, `twilio` at `/sms`, with their environment variables), its API hosts
//! and its own validator findings. The
//! `kinds!` list (in `providers/mod.rs`, beside the kinds' modules) turns that into
//! [`ProviderKind`], [`KindSettings`] and the dispatch over them, so adding a kind is one file
//! plus its two lines there.
//!
//! `config` reads a section's common keys (`forward_to`, `routes`, `timeout`, `retry`, `forward_headers`)
//! and `kind`, hands every other key to [`read_key`] and the keys it read to [`kind_config`], which
//! parses them into the kind's settings; it builds each endpoint once through [`endpoint`].
//! Nothing in `providers/` reads `config`. What `config` does with sections beyond building
//! them lives below this module and is reached through it: the validator's [`findings`], the
//! keys `check-config --show` lists ([`shown`]), the sections that say which keys the
//! environment sets ([`env_example`]), and the "did you mean" of a name ([`nearest`]).

use std::sync::Arc;

use serde::de::Error as _;
use serde::Deserialize;

pub use self::env::{env_example, env_example_named};
pub use self::findings::findings;
pub use self::routes::Route;
pub use self::show::shown;
pub use self::spelling::nearest;
use super::kind::MAX_TOLERANCE_S;
use crate::providers::Malformed;
// The kinds' side of the registry, named here too for the callers that come through this door.
pub use super::kind::{BuiltIn, ConfigError, Kind, Rotation, Surroundings};
use super::Provider;
pub use super::{KindSettings, ProviderKind};
use crate::secret::Secret;

mod env;
mod findings;
mod routes;
mod show;
mod spelling;

/// The registry's list, written once in `providers/mod.rs`: each line names a kind's variant,
/// its name in `kind = "..."`, and its file and type (whose module is declared beside it). It makes
/// [`ProviderKind`], [`KindSettings`] and the dispatch over the kinds' [`Kind`] implementations.
macro_rules! kinds {
    ($($variant:ident = $name:literal => $module:ident :: $ty:ident,)*) => {
        /// The kinds of provider an endpoint can be.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize, serde::Serialize)]
        pub enum ProviderKind {
            $(#[serde(rename = $name)] $variant,)*
        }

        /// One kind's settings, of that kind's own type.
        #[derive(Debug, Clone)]
        pub enum KindSettings {
            $($variant(<$module::$ty as $crate::providers::kind::Kind>::Settings),)*
        }

        $(
            impl From<<$module::$ty as $crate::providers::kind::Kind>::Settings> for $crate::providers::registry::KindConfig {
                fn from(s: <$module::$ty as $crate::providers::kind::Kind>::Settings) -> Self {
                    $crate::providers::registry::KindConfig::new(KindSettings::$variant(s))
                }
            }
        )*

        impl ProviderKind {
            pub const ALL: [ProviderKind; [$($name),*].len()] = [$(ProviderKind::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(ProviderKind::$variant => $name,)* }
            }

            /// The keys of its section it reads, besides `kind` and the common ones.
            pub fn keys(self) -> &'static [&'static str] {
                match self { $(ProviderKind::$variant => <$module::$ty as $crate::providers::kind::Kind>::KEYS,)* }
            }

            /// The key of its section that holds the credential (`secret`, `auth_token`, `public_key`).
            pub fn credential_key(self) -> &'static str {
                match self { $(ProviderKind::$variant => <$module::$ty as $crate::providers::kind::Kind>::CREDENTIAL,)* }
            }

            fn secret_hint(self) -> &'static str {
                match self { $(ProviderKind::$variant => <$module::$ty as $crate::providers::kind::Kind>::SECRET_HINT,)* }
            }

            fn built_in(self) -> Option<$crate::providers::kind::BuiltIn> {
                match self { $(ProviderKind::$variant => <$module::$ty as $crate::providers::kind::Kind>::BUILT_IN,)* }
            }

            fn api_hosts(self) -> &'static [&'static str] {
                match self { $(ProviderKind::$variant => <$module::$ty as $crate::providers::kind::Kind>::API_HOSTS,)* }
            }

            fn isolation_env(self) -> &'static [&'static str] {
                match self { $(ProviderKind::$variant => <$module::$ty as $crate::providers::kind::Kind>::ISOLATION_ENV,)* }
            }

            fn credential_format(self, secret: &$crate::secret::Secret) -> Result<(), $crate::providers::Malformed> {
                match self { $(ProviderKind::$variant => <$module::$ty as $crate::providers::kind::Kind>::credential_format(secret),)* }
            }

            /// Its settings with every key at its default.
            fn default_settings(self) -> KindSettings {
                match self { $(ProviderKind::$variant => KindSettings::$variant(Default::default()),)* }
            }

            /// Parses `table` (keys of its section) into its settings; an error has the path
            /// below the section.
            fn parse_settings(self, table: toml::Table) -> Result<KindSettings, serde_path_to_error::Error<toml::de::Error>> {
                let value = toml::Value::Table(table);
                Ok(match self { $(ProviderKind::$variant => KindSettings::$variant(serde_path_to_error::deserialize(value)?),)* })
            }

            fn findings(self, built_in: Option<&KindSettings>, around: &$crate::providers::kind::Surroundings<'_>, out: &mut Vec<$crate::finding::Finding>) {
                match self {
                    $(ProviderKind::$variant => {
                        let built_in = built_in.and_then(|s| match s { KindSettings::$variant(s) => Some(s), #[allow(unreachable_patterns)] _ => None });
                        <$module::$ty as $crate::providers::kind::Kind>::findings(built_in, around, out)
                    })*
                }
            }
        }

        impl KindSettings {
            pub fn kind(&self) -> ProviderKind {
                match self { $(KindSettings::$variant(_) => ProviderKind::$variant,)* }
            }

            fn build(&self, name: &str) -> Result<std::sync::Arc<dyn $crate::providers::Provider>, $crate::providers::kind::ConfigError> {
                Ok(match self { $(KindSettings::$variant(s) => std::sync::Arc::new(<$module::$ty as $crate::providers::kind::Kind>::from_settings(name, s)?),)* })
            }

            pub fn rotation(&self) -> $crate::providers::kind::Rotation<'_> {
                match self { $(KindSettings::$variant(s) => <$module::$ty as $crate::providers::kind::Kind>::rotation(s),)* }
            }

            fn tolerance_seconds(&self) -> Option<u64> {
                match self { $(KindSettings::$variant(s) => <$module::$ty as $crate::providers::kind::Kind>::tolerance_seconds(s),)* }
            }

            fn check_anywhere(&self, name: &str) -> Result<(), $crate::providers::kind::ConfigError> {
                match self { $(KindSettings::$variant(s) => <$module::$ty as $crate::providers::kind::Kind>::check_anywhere(name, s),)* }
            }

            fn section_findings(&self, name: &str, out: &mut Vec<$crate::finding::Finding>) {
                match self { $(KindSettings::$variant(s) => <$module::$ty as $crate::providers::kind::Kind>::section_findings(name, s, out),)* }
            }

            pub fn has_credentials(&self) -> bool {
                match self { $(KindSettings::$variant(s) => <$module::$ty as $crate::providers::kind::Kind>::has_credentials(s),)* }
            }

            fn credential(&self) -> Option<&$crate::secret::Secret> {
                match self { $(KindSettings::$variant(s) => <$module::$ty as $crate::providers::kind::Kind>::credential(s),)* }
            }

            /// Every key as serialized, secrets as fingerprints.
            fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
                let value = match self { $(KindSettings::$variant(s) => serde_json::to_value(s),)* };
                match value {
                    Ok(serde_json::Value::Object(map)) => map,
                    _ => serde_json::Map::new(),
                }
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

/// An endpoint's configuration as its kind reads it, the part of `[providers.<name>]` that is
/// not [`EndpointConfig`](crate::config::EndpointConfig)'s own keys: the kind as written, its
/// settings, and the keys of other kinds it was given, which the validator reports (`provider.unused_key`).
#[derive(Debug, Clone)]
pub struct KindConfig {
    /// `kind`, as written: optional when the name is a kind (`[providers.github]`, the built-in endpoint's
    /// `[providers.stripe]`).
    pub kind: Option<ProviderKind>,
    /// The kind's own keys; its variant is the endpoint's kind.
    pub settings: KindSettings,
    /// Every key the section's kind does not read but another kind does, set to something
    /// other than its default, each as the settings of a kind that reads it (that key alone).
    pub unused: Vec<(String, KindSettings)>,
}

impl KindConfig {
    pub fn new(settings: KindSettings) -> KindConfig {
        KindConfig { kind: None, settings, unused: Vec::new() }
    }

    /// The endpoint's kind.
    pub fn kind(&self) -> ProviderKind {
        self.settings.kind()
    }

    /// Every accepted secret, `secret` first.
    pub fn all_secrets(&self) -> Vec<Secret> {
        self.settings.rotation().all()
    }

    /// The section with its kind written out, as a named endpoint's is (`kind = "..."`).
    pub fn with_kind(mut self) -> KindConfig {
        self.kind = Some(self.kind());
        self
    }

    /// `[providers.<name>]` from the TOML of its provider keys (`kind` among them or not), as
    /// `config` reads it, for tests and benchmarks that need a section without a whole file.
    pub fn from_toml(name: &str, text: &str) -> Result<KindConfig, ConfigError> {
        let mut table: toml::Table =
            text.parse().map_err(|e: toml::de::Error| ConfigError::new(format!("providers.{name}"), e.message()))?;
        let kind = match table.remove("kind") {
            Some(k) => Some(
                k.as_str()
                    .and_then(ProviderKind::parse)
                    .ok_or_else(|| ConfigError::new(format!("providers.{name}.kind"), format!("`{k}` is no kind")))?,
            ),
            None => None,
        };
        kind_config(name, kind, table)
    }
}

/// The section of a built-in endpoint whose `[providers.<name>]` is absent: its kind's defaults.
pub fn default_kind_config(kind: ProviderKind) -> KindConfig {
    KindConfig::new(kind.default_settings())
}

/// Every key some kind reads, besides `kind`: what a section may hold besides the common keys.
pub fn all_keys() -> &'static [&'static str] {
    static KEYS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
        let mut keys: Vec<&'static str> = Vec::new();
        for key in ProviderKind::ALL.into_iter().flat_map(|k| k.keys().iter().copied()) {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys
    });
    &KEYS
}

/// A kind that reads `key`: `kind` when it does, else the first in the list that does.
fn reader_of(key: &str, kind: Option<ProviderKind>) -> Option<ProviderKind> {
    kind.filter(|k| k.keys().contains(&key)).or_else(|| ProviderKind::ALL.into_iter().find(|k| k.keys().contains(&key)))
}

/// Reads the value of `key`, one of [`all_keys`], as written, and checks it has the type a
/// kind that reads it gives it (`kind`'s, when it is known by then and reads the key), so that
/// a badly typed value is refused at its key. [`kind_config`] parses what it gives.
pub fn read_key<'de, D: serde::Deserializer<'de>>(
    kind: Option<ProviderKind>,
    key: &str,
    d: D,
) -> Result<toml::Value, D::Error> {
    let value = toml::Value::deserialize(d)?;
    let Some(reader) = reader_of(key, kind) else {
        return Err(D::Error::unknown_field(key, all_keys()));
    };
    let one = toml::Table::from_iter([(key.to_string(), value.clone())]);
    reader.parse_settings(one).map_err(|e| {
        // The error names the key; a place inside its value (`secrets[1]`) is said in words.
        let at = e.path().to_string();
        let message = e.into_inner().message().trim().to_string();
        D::Error::custom(if at == key { message } else { format!("{message} (at `{at}`)") })
    })?;
    Ok(value)
}

/// Parses the provider keys of `[providers.<name>]` (as [`read_key`] gave them) into the
/// section: the kind's own keys into its settings, and every other key into the settings of a
/// kind that reads it, kept for the validator when it is not that kind's default. `kind` is
/// the key as written; without it the name is the kind, or else `hmac` (`config` refuses a
/// section that needs one and has none).
pub fn kind_config(name: &str, kind: Option<ProviderKind>, table: toml::Table) -> Result<KindConfig, ConfigError> {
    let of = kind.or_else(|| ProviderKind::parse(name)).unwrap_or(ProviderKind::Hmac);
    let error = |e: serde_path_to_error::Error<toml::de::Error>| {
        ConfigError::new(format!("providers.{name}.{}", e.path()), e.into_inner().message().trim().to_string())
    };
    let (own, others): (toml::Table, toml::Table) =
        table.into_iter().partition(|(k, _)| of.keys().contains(&k.as_str()));
    let settings = of.parse_settings(own).map_err(error)?;
    let mut unused = Vec::new();
    for (key, value) in others {
        let Some(reader) = reader_of(&key, None) else {
            return Err(ConfigError::new(format!("providers.{name}"), format!("unknown field `{key}`")));
        };
        let given = reader.parse_settings(toml::Table::from_iter([(key.clone(), value)])).map_err(error)?;
        // A key at its default changes nothing, as if it were not there.
        if given.to_json().get(&key) != reader.default_settings().to_json().get(&key) {
            unused.push((key, given));
        }
    }
    Ok(KindConfig { kind, settings, unused })
}

/// The built-in endpoints, in the order they are listed.
pub fn built_ins() -> impl Iterator<Item = (ProviderKind, BuiltIn)> {
    ProviderKind::ALL.into_iter().filter_map(|k| Some((k, k.built_in()?)))
}

/// Whether `name` is the section of a built-in endpoint.
pub fn is_built_in(name: &str) -> bool {
    built_ins().any(|(_, s)| s.name == name)
}

/// Names an endpoint cannot take besides the API's own: the built-in paths that are not their
/// section's name (`sms`).
pub fn taken_paths() -> impl Iterator<Item = &'static str> {
    built_ins().filter(|(_, s)| s.path != s.name).map(|(_, s)| s.path)
}

/// The hosts of the providers' own APIs: never a forward target, whatever the config says.
pub fn api_hosts() -> impl Iterator<Item = &'static str> {
    ProviderKind::ALL.into_iter().flat_map(|k| k.api_hosts().iter().copied())
}

/// The environment variables the kinds' isolation checks read.
pub fn isolation_env() -> impl Iterator<Item = &'static str> {
    ProviderKind::ALL.into_iter().flat_map(|k| k.isolation_env().iter().copied())
}

/// The path segment of an endpoint: the built-in endpoint's own, or its name.
pub fn path_of(name: &str) -> String {
    built_ins().find(|(_, s)| s.name == name).map_or(name, |(_, s)| s.path).to_string()
}

/// One ingest endpoint, built once at startup: its path segment, its kind, whether it can
/// verify, its provider, and where its events are delivered.
#[derive(Clone)]
pub struct Endpoint {
    /// The last path segment: `stripe`, `sms`, or a named endpoint's name.
    pub path: String,
    pub kind: ProviderKind,
    /// The provider, present whether or not its secret is set, so `/validate` can check
    /// structure; `configured` says whether it may verify.
    pub provider: Arc<dyn Provider>,
    pub configured: bool,
    /// Where its events are delivered when no route takes them (`forward_to`); with no route
    /// and no target, recorded and processed at once.
    pub targets: Vec<String>,
    /// `[[providers.<name>.routes]]`: the events sent elsewhere by their type; which targets an
    /// event goes to is [`Endpoint::targets_for`]'s to say.
    pub routes: Vec<Route>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.provider.name())
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("configured", &self.configured)
            .field("targets", &self.targets.len())
            .field("routes", &self.routes.len())
            .finish()
    }
}

/// Builds the endpoint `[providers.<name>]` describes: a built-in endpoint's section must have its
/// kind's shape, then [`build`].
pub fn endpoint(name: &str, s: &KindConfig, targets: Vec<String>) -> Result<Endpoint, ConfigError> {
    let key = |k: &str| format!("providers.{name}.{k}");
    let kind = s.kind();
    if let Some((built_in_kind, _)) = built_ins().find(|(_, built_in)| built_in.name == name) {
        if kind != built_in_kind {
            return Err(ConfigError {
                key: key("kind"),
                message: format!(
                    "`{name}` is the {} endpoint; name a `{}` endpoint otherwise",
                    built_in_kind.as_str(),
                    kind.as_str()
                ),
            });
        }
        // A built-in endpoint's section has its kind's shape, as it always had: any other key stops
        // startup rather than passing as advice.
        if let Some((stray, _)) = s.unused.first() {
            let keys: Vec<String> = kind.keys().iter().map(|k| format!("`{k}`")).collect();
            return Err(ConfigError {
                key: format!("providers.{name}"),
                message: format!(
                    "unknown field `{stray}`, expected one of {}, `forward_to`, `routes`, `timeout`, `retry`, `forward_headers`",
                    keys.join(", ")
                ),
            });
        }
    }
    let provider = build(name, s)?;
    // The routes are config's to add: they are read beside `forward_to`, not by the kind.
    let routes = Vec::new();
    Ok(Endpoint { path: path_of(name), kind, configured: s.settings.has_credentials(), provider, targets, routes })
}

/// The provider of `[providers.<name>]` alone: the checks every kind shares, then the kind's own.
/// [`endpoint`] adds the built-in endpoint's section shape and the endpoint; tests and benchmarks
/// that need no endpoint call this.
pub fn build(name: &str, s: &KindConfig) -> Result<Arc<dyn Provider>, ConfigError> {
    let hint = s.kind().secret_hint();
    // Checked whatever the kind, as they always were: a key another kind reads still refuses a
    // value no kind could use (a tolerance no timestamp could meet, an empty secret).
    for settings in std::iter::once(&s.settings).chain(s.unused.iter().map(|(_, given)| given)) {
        if settings.tolerance_seconds().is_some_and(|t| t == 0 || t > MAX_TOLERANCE_S) {
            return Err(ConfigError::new(
                format!("providers.{name}.tolerance_seconds"),
                format!("must be between 1 and {MAX_TOLERANCE_S} (a year)"),
            ));
        }
    }
    for settings in std::iter::once(&s.settings).chain(s.unused.iter().map(|(_, given)| given)) {
        settings.rotation().check_empty(name, hint)?;
        settings.check_anywhere(name)?;
    }
    s.settings.build(name)
}

/// The provider of `[providers.<name>]` as it would be with other secrets of the same shape:
/// every secret of the section (the credential, the rotation) replaced by one that differs from
/// it in two characters, the section rebuilt through [`kind_config`] and [`build`], the path the
/// configuration takes. `stagehook check-app` signs with it to see that the app refuses a
/// signature made with a secret it does not hold. An error says why none could be made (a
/// secret the section's keys do not show, such as SendGrid's signing key).
pub fn with_other_secrets(name: &str, s: &KindConfig) -> Result<Arc<dyn Provider>, ConfigError> {
    let known: Vec<Secret> = s.settings.rotation().all().into_iter().chain(s.settings.credential().cloned()).collect();
    let unknown = || ConfigError::new(format!("providers.{name}"), "holds a secret whose value cannot be changed here");
    // Settings serialize a secret as its fingerprint: each one is put back as another value.
    let other = |v: serde_json::Value| -> Result<Option<toml::Value>, ConfigError> {
        Ok(match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(text) => match known.iter().find(|k| k.fingerprint() == text) {
                Some(secret) => Some(toml::Value::String(other_value(secret.expose()).ok_or_else(unknown)?)),
                None if text.contains("(sha256:") => return Err(unknown()),
                None => Some(toml::Value::String(text)),
            },
            v => Some(
                toml::Value::try_from(v).map_err(|e| ConfigError::new(format!("providers.{name}"), e.to_string()))?,
            ),
        })
    };
    let mut table = toml::Table::new();
    for (key, value) in s.settings.to_json() {
        let value = match value {
            serde_json::Value::Array(items) => {
                let items: Result<Vec<_>, _> = items.into_iter().map(&other).collect();
                Some(toml::Value::Array(items?.into_iter().flatten().collect()))
            }
            v => other(v)?,
        };
        if let Some(value) = value {
            table.insert(key, value);
        }
    }
    build(name, &kind_config(name, Some(s.kind()), table)?)
}

/// `value` with two neighbouring, different characters swapped after its prefix (`whsec_`) and
/// away from its end: another secret of the same length and alphabet, so still well formed
/// (base64's last character, which carries padding bits, is left alone).
fn other_value(value: &str) -> Option<String> {
    let mut chars: Vec<char> = value.chars().collect();
    let start = value.find('_').filter(|&i| i < 8).map_or(0, |i| value[..=i].chars().count());
    let end = chars.len().saturating_sub(2);
    let at = (start..end).find(|&i| chars[i] != chars[i + 1])?;
    chars.swap(at, at + 1);
    Some(chars.into_iter().collect())
}

/// Whether `secret` is a Standard Webhooks secret (`whsec_` and base64): the check of the
/// `webhook` notifier's secret (`config/`), made by the kind that signs with it
/// ([`Kind::credential_format`]).
pub fn standard_webhooks_secret(secret: &Secret) -> Result<(), Malformed> {
    ProviderKind::Standard.credential_format(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(name: &str, body: &str) -> KindConfig {
        KindConfig::from_toml(name, body).unwrap()
    }

    #[test]
    fn another_secret_is_built_for_every_kind_that_signs_with_a_shown_one() {
        use crate::providers::Inbound;
        const NOW: i64 = 1_700_000_000;
        let sections = [
            ("stripe", "secret = \"whsec_0123456789abcdef\""),
            ("tw", "kind = \"twilio\"\nauth_token = \"0123456789abcdef0123456789abcdef\""),
            ("gh", "kind = \"github\"\nsecret = \"it is a secret\""),
            ("shop", "kind = \"shopify\"\nsecret = \"shpss_0123456789\""),
            ("sl", "kind = \"slack\"\nsecret = \"8f742231b10e8888abcd99yyyzzz85a5\"\ntolerance_seconds = 60"),
            ("std", "kind = \"standard\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nsecrets = [\"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\"]"),
            ("h", "kind = \"hmac\"\nsecret = \"abcdef\"\nheader = \"x-sig\""),
        ];
        for (name, body) in sections {
            let section = parsed(name, body);
            let own = build(name, &section).unwrap();
            let other = with_other_secrets(name, &section).unwrap_or_else(|e| panic!("{name}: {e}"));
            let sample = own.sample(None, NOW).unwrap();
            let signed = other.sign_resend(
                "http://app.test/hook",
                Some(sample.content_type),
                &sample.body,
                &sample.headers,
                NOW,
            );
            let mut headers = crate::providers::testing::delivered_headers(&sample, &signed);
            headers.insert("content-type", sample.content_type.parse().unwrap());
            let req = Inbound { headers: &headers, body: &sample.body, url: &signed.url, now_s: NOW };
            other.verify(&req).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let refused = own.verify(&req).unwrap_err();
            assert_eq!(refused.code, crate::providers::RefusalCode::InvalidSignature, "{name}");
        }
        assert_eq!(other_value("whsec_aaaa"), None);
        assert_eq!(other_value("abcd").as_deref(), Some("bacd"));
    }

    #[test]
    fn every_kind_is_listed_once_and_parses_back() {
        for kind in ProviderKind::ALL {
            assert_eq!(ProviderKind::parse(kind.as_str()), Some(kind));
            // The list of keys is the settings type's.
            let mut keys: Vec<String> = kind.default_settings().to_json().keys().cloned().collect();
            keys.sort();
            let mut listed: Vec<String> = kind.keys().iter().map(|k| k.to_string()).collect();
            listed.sort();
            assert_eq!(keys, listed, "{}", kind.as_str());
        }
        let names: std::collections::BTreeSet<&str> = ProviderKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), ProviderKind::ALL.len());
        let built_ins: Vec<(&str, &str)> = built_ins().map(|(_, s)| (s.name, s.path)).collect();
        assert_eq!(built_ins, [("stripe", "stripe"), ("twilio", "sms")]);
        assert_eq!(taken_paths().collect::<Vec<_>>(), ["sms"]);
    }

    /// A built-in endpoint's section keeps its kind's shape: another kind, or a key its kind does
    /// not read, stops startup naming the section; a named endpoint of the same kind may take any
    /// key (the validator reports the unused ones).
    #[test]
    fn a_built_in_section_has_its_kinds_shape() {
        let e = endpoint("stripe", &parsed("stripe", "header = \"x-sig\""), Vec::new()).unwrap_err();
        assert_eq!(e.key, "providers.stripe");
        assert!(e.message.contains("unknown field `header`"), "{e}");
        let other = parsed("twilio", "kind = \"github\"");
        assert_eq!(endpoint("twilio", &other, Vec::new()).unwrap_err().key, "providers.twilio.kind");
        let named = parsed("eu", "kind = \"stripe\"\nheader = \"x-sig\"");
        let eu = endpoint("eu", &named, vec!["http://app.test/".into()]).unwrap();
        assert_eq!((eu.path.as_str(), eu.kind, eu.targets.len()), ("eu", ProviderKind::Stripe, 1));
        let sms = endpoint("twilio", &parsed("twilio", ""), Vec::new()).unwrap();
        assert_eq!((sms.path.as_str(), sms.configured), ("sms", false));
        let token = parsed("twilio", "auth_token = \"t\"");
        assert!(endpoint("twilio", &token, Vec::new()).unwrap().configured);
        // What no kind could use stops startup in a section of another kind too.
        for (body, key) in [
            ("kind = \"github\"\nauth_token = \"\"", "providers.gh.auth_token"),
            ("kind = \"github\"\ntolerance_seconds = 0", "providers.gh.tolerance_seconds"),
            ("kind = \"sendgrid\"\nsecret = \"\"", "providers.gh.secret"),
        ] {
            assert_eq!(endpoint("gh", &parsed("gh", body), Vec::new()).unwrap_err().key, key, "{body}");
        }
    }
}
