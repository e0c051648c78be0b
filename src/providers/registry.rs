//! The one registry of provider kinds, and the one door `config` uses into `providers/`.
//!
//! Each kind says everything about itself in its own file, by implementing [`Kind`]: its
//! settings type (the keys of its section, their defaults and types), what they must hold (its
//! `build`), its credential, the seed's instance of it if any (`stripe` at `/stripe`, `twilio` at
//! `/sms`, with their environment variables), its API hosts and its own validator findings. The
//! `kinds!` list (in `providers/mod.rs`, where it also declares the kinds' modules) turns that
//! into [`ProviderKind`], [`KindSettings`] and the dispatch over them, so adding a kind is one
//! file plus one line in that list.
//!
//! `config` reads a section's common keys (`forward_to`, `timeout`, `retry`, `forward_headers`)
//! and `kind`, hands
//! every other key to [`read_key`] and the keys it read to [`section`], which parses them into
//! the kind's settings; it builds each instance once through [`instance`]. Nothing in
//! `providers/` reads `config`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Serialize};

use super::Provider;
pub use super::{KindSettings, ProviderKind};
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
    /// (`STAGEHOOK_PROVIDERS_<NAME>_<KEY>`), besides those with a default. Each is a string key
    /// of the kind's settings.
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
    pub fn nonempty(&self, name: &str) -> Result<Vec<Secret>, SettingError> {
        self.check_empty(name, "the secret")?;
        Ok(self.all())
    }

    /// An empty `secret` (the message names `hint`, what belongs there) or `secrets[i]`.
    fn check_empty(&self, name: &str, hint: &str) -> Result<(), SettingError> {
        if self.secret.is_some_and(|s| s.expose().is_empty()) {
            return Err(SettingError::new(
                format!("providers.{name}.secret"),
                format!("is empty; set {hint} or remove the key"),
            ));
        }
        if let Some(i) = self.secrets.iter().position(|s| s.expose().is_empty()) {
            return Err(SettingError::new(format!("providers.{name}.secrets[{i}]"), "is empty; remove it"));
        }
        Ok(())
    }
}

/// The bounds of `tolerance_seconds`, whichever kind reads it: a year at most.
const MAX_TOLERANCE_S: u64 = 366 * 86_400;

/// One kind of provider. Implemented once, in the kind's own file.
pub trait Kind: Provider + Sized {
    /// The kind's part of its section: every key it reads besides `kind` and the common ones,
    /// with their defaults. Parsed with serde; serialized (secrets as fingerprints) to show.
    type Settings: DeserializeOwned + Serialize + Default + Clone + std::fmt::Debug + Send + Sync + 'static;
    /// The keys of [`Kind::Settings`], in its order (a unit test holds them equal).
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
    fn build(name: &str, s: &Self::Settings) -> Result<Self, SettingError>;

    /// Its `secret` and `secrets`, if it reads them.
    fn rotation(s: &Self::Settings) -> Rotation<'_>;

    /// Its `tolerance_seconds`, if it reads one.
    fn tolerance_seconds(_s: &Self::Settings) -> Option<u64> {
        None
    }

    /// Checks of its own keys that hold in any section, its own kind's or another's (where the
    /// validator also reports them unused), besides the shared ones of [`build`]: a value no
    /// kind could use stops startup wherever it is written.
    fn check_anywhere(_name: &str, _s: &Self::Settings) -> Result<(), SettingError> {
        Ok(())
    }

    /// Whether the instance has what it needs to verify.
    fn has_credentials(s: &Self::Settings) -> bool {
        !Self::rotation(s).all().is_empty()
    }

    /// The credential compared across instances (a secret shared by two is a warning).
    fn credential(s: &Self::Settings) -> Option<&Secret> {
        Self::rotation(s).secret
    }

    /// The kind's own findings: about the seed's section (`None` when it is not configured)
    /// and the environment.
    fn findings(_seed: Option<&Self::Settings>, _around: &Surroundings<'_>, _out: &mut Vec<Finding>) {}
}

/// The registry's list, written once in `providers/mod.rs`: each line names a kind's variant,
/// its name in `kind = "..."`, and its file and type (whose module is declared beside it). It makes
/// [`ProviderKind`], [`KindSettings`] and the dispatch over the kinds' [`Kind`] implementations.
macro_rules! kinds {
    ($($variant:ident = $name:literal => $module:ident :: $ty:ident,)*) => {
        /// The kinds of provider an instance can be.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize, serde::Serialize)]
        pub enum ProviderKind {
            $(#[serde(rename = $name)] $variant,)*
        }

        /// One kind's settings, of that kind's own type.
        #[derive(Debug, Clone)]
        pub enum KindSettings {
            $($variant(<$module::$ty as $crate::providers::registry::Kind>::Settings),)*
        }

        $(
            impl From<<$module::$ty as $crate::providers::registry::Kind>::Settings> for $crate::providers::registry::Section {
                fn from(s: <$module::$ty as $crate::providers::registry::Kind>::Settings) -> Self {
                    $crate::providers::registry::Section::new(KindSettings::$variant(s))
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

            fn findings(self, seed: Option<&KindSettings>, around: &$crate::providers::registry::Surroundings<'_>, out: &mut Vec<$crate::finding::Finding>) {
                match self {
                    $(ProviderKind::$variant => {
                        let seed = seed.and_then(|s| match s { KindSettings::$variant(s) => Some(s), #[allow(unreachable_patterns)] _ => None });
                        <$module::$ty as $crate::providers::registry::Kind>::findings(seed, around, out)
                    })*
                }
            }
        }

        impl KindSettings {
            pub fn kind(&self) -> ProviderKind {
                match self { $(KindSettings::$variant(_) => ProviderKind::$variant,)* }
            }

            fn build(&self, name: &str) -> Result<std::sync::Arc<dyn $crate::providers::Provider>, $crate::providers::registry::SettingError> {
                Ok(match self { $(KindSettings::$variant(s) => std::sync::Arc::new(<$module::$ty as $crate::providers::registry::Kind>::build(name, s)?),)* })
            }

            pub fn rotation(&self) -> $crate::providers::registry::Rotation<'_> {
                match self { $(KindSettings::$variant(s) => <$module::$ty as $crate::providers::registry::Kind>::rotation(s),)* }
            }

            fn tolerance_seconds(&self) -> Option<u64> {
                match self { $(KindSettings::$variant(s) => <$module::$ty as $crate::providers::registry::Kind>::tolerance_seconds(s),)* }
            }

            fn check_anywhere(&self, name: &str) -> Result<(), $crate::providers::registry::SettingError> {
                match self { $(KindSettings::$variant(s) => <$module::$ty as $crate::providers::registry::Kind>::check_anywhere(name, s),)* }
            }

            pub fn has_credentials(&self) -> bool {
                match self { $(KindSettings::$variant(s) => <$module::$ty as $crate::providers::registry::Kind>::has_credentials(s),)* }
            }

            fn credential(&self) -> Option<&$crate::secret::Secret> {
                match self { $(KindSettings::$variant(s) => <$module::$ty as $crate::providers::registry::Kind>::credential(s),)* }
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

/// One `[providers.<name>]` section's provider part: the kind as written, its settings, and
/// the keys of other kinds it was given, which the validator reports (`provider.unused_key`).
#[derive(Debug, Clone)]
pub struct Section {
    /// `kind`, as written: optional when the name is a kind (`[providers.github]`, the seed's
    /// `[providers.stripe]`).
    pub kind: Option<ProviderKind>,
    /// The kind's own keys; its variant is the instance's kind.
    pub settings: KindSettings,
    /// Every key the section's kind does not read but another kind does, set to something
    /// other than its default, each as the settings of a kind that reads it (that key alone).
    pub unused: Vec<(String, KindSettings)>,
}

impl Section {
    pub fn new(settings: KindSettings) -> Section {
        Section { kind: None, settings, unused: Vec::new() }
    }

    /// The instance's kind.
    pub fn kind(&self) -> ProviderKind {
        self.settings.kind()
    }

    /// Every accepted secret, `secret` first.
    pub fn all_secrets(&self) -> Vec<Secret> {
        self.settings.rotation().all()
    }

    /// The section with its kind written out, as a named instance's is (`kind = "..."`).
    pub fn with_kind(mut self) -> Section {
        self.kind = Some(self.kind());
        self
    }

    /// `[providers.<name>]` from the TOML of its provider keys (`kind` among them or not), as
    /// `config` reads it, for tests and benchmarks that need a section without a whole file.
    pub fn from_toml(name: &str, text: &str) -> Result<Section, SettingError> {
        let mut table: toml::Table =
            text.parse().map_err(|e: toml::de::Error| SettingError::new(format!("providers.{name}"), e.message()))?;
        let kind = match table.remove("kind") {
            Some(k) => Some(
                k.as_str()
                    .and_then(ProviderKind::parse)
                    .ok_or_else(|| SettingError::new(format!("providers.{name}.kind"), format!("`{k}` is no kind")))?,
            ),
            None => None,
        };
        section(name, kind, table)
    }
}

/// The section of a seed whose `[providers.<name>]` is absent: its kind's defaults.
pub fn default_section(kind: ProviderKind) -> Section {
    Section::new(kind.default_settings())
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

/// The candidate nearest to `word` by edit distance (Levenshtein, over characters), when it is
/// near enough to be a slip of the keyboard rather than another word: at most 2 edits, and
/// fewer than `word` has characters. For the "did you mean" of an unknown key or provider name;
/// the first of equally near candidates wins.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = 2.min(word.chars().count().saturating_sub(1));
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= limit && *c != word)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The fewest single-character insertions, deletions and substitutions that turn `a` into `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    // One row of the table at a time: `row[j]` is the distance from the prefix of `a` read so
    // far to `b[..j]`.
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substituted = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substituted.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// A kind that reads `key`: `kind` when it does, else the first in the list that does.
fn reader_of(key: &str, kind: Option<ProviderKind>) -> Option<ProviderKind> {
    kind.filter(|k| k.keys().contains(&key)).or_else(|| ProviderKind::ALL.into_iter().find(|k| k.keys().contains(&key)))
}

/// Reads the value of `key`, one of [`all_keys`], as written, and checks it has the type a
/// kind that reads it gives it (`kind`'s, when it is known by then and reads the key), so that
/// a badly typed value is refused at its key. [`section`] parses what it gives.
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
pub fn section(name: &str, kind: Option<ProviderKind>, table: toml::Table) -> Result<Section, SettingError> {
    let of = kind.or_else(|| ProviderKind::parse(name)).unwrap_or(ProviderKind::Hmac);
    let error = |e: serde_path_to_error::Error<toml::de::Error>| {
        SettingError::new(format!("providers.{name}.{}", e.path()), e.into_inner().message().trim().to_string())
    };
    let (own, others): (toml::Table, toml::Table) =
        table.into_iter().partition(|(k, _)| of.keys().contains(&k.as_str()));
    let settings = of.parse_settings(own).map_err(error)?;
    let mut unused = Vec::new();
    for (key, value) in others {
        let Some(reader) = reader_of(&key, None) else {
            return Err(SettingError::new(format!("providers.{name}"), format!("unknown field `{key}`")));
        };
        let given = reader.parse_settings(toml::Table::from_iter([(key.clone(), value)])).map_err(error)?;
        // A key at its default changes nothing, as if it were not there.
        if given.to_json().get(&key) != reader.default_settings().to_json().get(&key) {
            unused.push((key, given));
        }
    }
    Ok(Section { kind, settings, unused })
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

/// A seed's section with every key it can take from the environment set (the seed's
/// `env_keys`, parsed by the kind's own settings type), so that `config` can learn each key's
/// name and type by serializing it.
pub fn env_example(kind: ProviderKind, seed: &Seed) -> Section {
    let example = seed.env_keys.iter().map(|k| (k.to_string(), toml::Value::String("x".into())));
    match kind.parse_settings(example.collect()) {
        Ok(settings) => Section::new(settings),
        Err(e) => {
            debug_assert!(false, "{}: an env key is no optional string key: {e}", kind.as_str());
            Section::new(kind.default_settings())
        }
    }
}

/// A named instance's section with every key of its kind that a variable can write set (to a
/// string, a number or a boolean, whichever the kind's settings type takes; the others, lists
/// and keys with a default, are there at their default), so that `config` can learn the name
/// and type of each key a named instance takes from the environment by serializing it.
pub fn env_example_named(kind: ProviderKind) -> Section {
    let samples = [toml::Value::String("x".into()), toml::Value::Integer(1), toml::Value::Boolean(true)];
    let mut example = toml::Table::new();
    for key in kind.keys() {
        let one = |v: &toml::Value| toml::Table::from_iter([(key.to_string(), v.clone())]);
        if let Some(v) = samples.iter().find(|v| kind.parse_settings(one(v)).is_ok()) {
            example.insert(key.to_string(), v.clone());
        }
    }
    match kind.parse_settings(example) {
        Ok(settings) => Section::new(settings),
        Err(_) => Section::new(kind.default_settings()),
    }
}

/// The provider keys of `[providers.<name>]` as `check-config --show` lists them: `kind` when
/// written, the kind's own keys that are set (an unset optional key is left out), secrets as
/// fingerprints; and for a section that is not a seed's (whose shape is its kind's) the other
/// kinds' keys it was given.
pub fn shown(name: &str, s: &Section) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    if let Some(kind) = s.kind {
        out.push(("kind".to_string(), serde_json::Value::String(kind.as_str().to_string())));
    }
    let own = s.settings.to_json();
    for key in s.kind().keys() {
        if let Some(v) = own.get(*key).filter(|v| !v.is_null()) {
            out.push((key.to_string(), v.clone()));
        }
    }
    if !is_seed(name) {
        for (key, given) in &s.unused {
            if let Some(v) = given.to_json().get(key).filter(|v| !v.is_null()) {
                out.push((key.clone(), v.clone()));
            }
        }
    }
    out
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
pub fn instance(name: &str, s: &Section, targets: Vec<String>) -> Result<Instance, SettingError> {
    let key = |k: &str| format!("providers.{name}.{k}");
    let kind = s.kind();
    if let Some((seed_kind, _)) = seeds().find(|(_, seed)| seed.name == name) {
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
        if let Some((stray, _)) = s.unused.first() {
            let keys: Vec<String> = kind.keys().iter().map(|k| format!("`{k}`")).collect();
            return Err(SettingError {
                key: format!("providers.{name}"),
                message: format!(
                    "unknown field `{stray}`, expected one of {}, `forward_to`, `timeout`, `retry`, `forward_headers`",
                    keys.join(", ")
                ),
            });
        }
    }
    let provider = build(name, s)?;
    Ok(Instance { path: path_of(name), kind, configured: s.settings.has_credentials(), provider, targets })
}

/// The provider of `[providers.<name>]` alone: the checks every kind shares, then the kind's
/// own. [`instance`] adds the seed's section shape and the endpoint; tests and benchmarks that
/// need no endpoint call this.
pub fn build(name: &str, s: &Section) -> Result<Arc<dyn Provider>, SettingError> {
    let hint = s.kind().secret_hint();
    // Checked whatever the kind, as they always were: a key another kind reads still refuses a
    // value no kind could use (a tolerance no timestamp could meet, an empty secret).
    for settings in std::iter::once(&s.settings).chain(s.unused.iter().map(|(_, given)| given)) {
        if settings.tolerance_seconds().is_some_and(|t| t == 0 || t > MAX_TOLERANCE_S) {
            return Err(SettingError::new(
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

/// Whether `secret` is a Standard Webhooks secret (`whsec_` and base64): the check of the
/// `webhook` notifier's secret (`config/`), made by the kind that signs with it.
pub fn standard_webhooks_secret(secret: &Secret) -> Result<(), &'static str> {
    super::standard::decode_secret(secret.expose()).map(drop)
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

/// A seed's credential at `key`: `provider.secret_missing` (with `missing`, how to set it), a
/// placeholder (see [`placeholder_finding`]), or what the kind's own check of its format says.
pub fn seed_credential(
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

/// Every finding about the configured provider sections: the kinds' own ([`Kind::findings`]),
/// each section's (`section_findings`), and a credential two sections share.
pub fn findings<'a>(
    sections: impl IntoIterator<Item = (&'a str, &'a Section)>,
    around: &Surroundings<'_>,
) -> Vec<Finding> {
    let mut sections: Vec<(&str, &Section)> = sections.into_iter().collect();
    // The seed's first, so that a named instance is the one warned about.
    sections.sort_by_key(|(name, _)| !is_seed(name));
    let mut out = Vec::new();
    for kind in ProviderKind::ALL {
        let seed =
            kind.seed().and_then(|s| sections.iter().find(|(name, _)| *name == s.name).map(|(_, c)| &c.settings));
        kind.findings(seed, around, &mut out);
    }
    for (name, s) in &sections {
        section_findings(name, s, &mut out);
    }
    let credentials: Vec<(&str, &Secret)> =
        sections.iter().filter_map(|(name, s)| Some((*name, s.settings.credential()?))).collect();
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
fn section_findings(name: &str, s: &Section, out: &mut Vec<Finding>) {
    let kind = s.kind();
    let prefix = format!("providers.{name}");
    let credential = kind.credential_key();
    let seed = is_seed(name);
    if !seed && !s.settings.has_credentials() {
        out.push(Finding::new(
            "provider.secret_missing",
            Severity::Error,
            &format!("{prefix}.{credential}"),
            format!("{name} ({}) has no {credential}: its endpoint answers 503 until one is set", kind.as_str()),
        ));
    }
    let rotation = s.settings.rotation();
    for (i, secret) in rotation.all().iter().enumerate() {
        if !seed && is_placeholder(secret) {
            let key = format!(
                "{prefix}.secret{}",
                if i == 0 && rotation.secret.is_some() { String::new() } else { format!("s[{i}]") }
            );
            out.push(placeholder_finding(&key, secret, "the provider's real signing secret"));
        }
    }
    // A key the kind ignores is a mistake that would pass silently (a GitHub instance given
    // `timestamp_header` still verifies without one).
    for (key, _) in &s.unused {
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

    fn parsed(name: &str, body: &str) -> Section {
        Section::from_toml(name, body).unwrap()
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
        let seeds: Vec<(&str, &str)> = seeds().map(|(_, s)| (s.name, s.path)).collect();
        assert_eq!(seeds, [("stripe", "stripe"), ("twilio", "sms")]);
        assert_eq!(taken_paths().collect::<Vec<_>>(), ["sms"]);
    }

    #[test]
    fn nearest_suggests_only_a_close_candidate() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("secert", "secret"), 2);
        let kinds = ProviderKind::ALL.map(|k| k.as_str());
        assert_eq!(nearest("githb", kinds), Some("github"));
        assert_eq!(nearest("strpie", kinds), Some("stripe"));
        assert_eq!(nearest("paypal", kinds), None);
        assert_eq!(nearest("bnd", ["bind", "data_dir"]), Some("bind"));
        // A word of one or two characters is near everything short: no guess.
        assert_eq!(nearest("x", ["a", "b"]), None);
        assert_eq!(nearest("bind", ["bind"]), None);
    }

    /// A seed's section keeps its kind's shape: another kind, or a key its kind does not read,
    /// stops startup naming the section; a named instance of the same kind may take any key
    /// (the validator reports the unused ones).
    #[test]
    fn a_seeds_section_has_its_kinds_shape() {
        let e = instance("stripe", &parsed("stripe", "header = \"x-sig\""), Vec::new()).unwrap_err();
        assert_eq!(e.key, "providers.stripe");
        assert!(e.message.contains("unknown field `header`"), "{e}");
        let other = parsed("twilio", "kind = \"github\"");
        assert_eq!(instance("twilio", &other, Vec::new()).unwrap_err().key, "providers.twilio.kind");
        let named = parsed("eu", "kind = \"stripe\"\nheader = \"x-sig\"");
        let eu = instance("eu", &named, vec!["http://app.test/".into()]).unwrap();
        assert_eq!((eu.path.as_str(), eu.kind, eu.targets.len()), ("eu", ProviderKind::Stripe, 1));
        let sms = instance("twilio", &parsed("twilio", ""), Vec::new()).unwrap();
        assert_eq!((sms.path.as_str(), sms.configured), ("sms", false));
        let token = parsed("twilio", "auth_token = \"t\"");
        assert!(instance("twilio", &token, Vec::new()).unwrap().configured);
        // What no kind could use stops startup in a section of another kind too.
        for (body, key) in [
            ("kind = \"github\"\nauth_token = \"\"", "providers.gh.auth_token"),
            ("kind = \"github\"\ntolerance_seconds = 0", "providers.gh.tolerance_seconds"),
            ("kind = \"sendgrid\"\nsecret = \"\"", "providers.gh.secret"),
        ] {
            assert_eq!(instance("gh", &parsed("gh", body), Vec::new()).unwrap_err().key, key, "{body}");
        }
    }
}
