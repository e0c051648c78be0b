//! `[providers.<name>]`: the keys every kind shares, read here, and the kind's own, which the
//! registry reads into the kind's settings; and the sections as the rest of stagehook asks for
//! them ([`Config::sections`], [`Config::build`], [`Config::targets`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{did_you_mean, Config, ConfigError, HumanDuration, RetryOverride, RouteTargets, Targets};
use crate::providers::registry::{self, Endpoint, KindConfig, ProviderKind, Route};

/// `[providers]`: every section by name. The built-in `stripe` and `twilio` are endpoints like any
/// other, whose kind is their name; any other name is served at `/staging/webhooks/<name>`.
/// A built-in endpoint is present even without its section ([`Config::sections`]).
#[derive(Debug, Clone, Default)]
pub struct ProvidersConfig(pub BTreeMap<String, EndpointConfig>);

impl ProvidersConfig {
    /// Adds or replaces a section, given as its provider settings (a kind's own settings type,
    /// or a whole [`KindConfig`]), with the common keys at their defaults.
    pub fn insert(&mut self, name: String, section: impl Into<KindConfig>) -> Option<EndpointConfig> {
        self.0.insert(name, EndpointConfig::from(section.into()))
    }
}

impl std::ops::Deref for ProvidersConfig {
    type Target = BTreeMap<String, EndpointConfig>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for ProvidersConfig {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// An endpoint's configuration, `[providers.<name>]`: the keys every kind shares, read here, and
/// the kind's own ([`KindConfig`]), which the registry parses into the kind's settings
/// ([`registry::kind_config`]) and checks when it builds.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// `kind` and the kind's own keys.
    pub settings: KindConfig,
    /// The app's endpoints that receive every event no route takes, re-signed.
    pub forward_to: Vec<String>,
    /// `[[providers.<name>.routes]]`: events sent elsewhere by their type (see
    /// [`Endpoint::targets_for`]).
    pub routes: Vec<Route>,
    /// Per-target time limit of one delivery attempt.
    pub timeout: HumanDuration,
    pub retry: RetryOverride,
    /// Headers a delivery keeps that it drops by default (`delivery::CREDENTIAL_HEADERS`),
    /// lowercase.
    pub forward_headers: Vec<String>,
    /// `[providers.<name>.chaos]`: chaos delivery, off when absent.
    pub chaos: Option<crate::chaos::ChaosConfig>,
}

impl From<KindConfig> for EndpointConfig {
    fn from(settings: KindConfig) -> Self {
        EndpointConfig {
            settings,
            forward_to: Vec::new(),
            routes: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            retry: RetryOverride::default(),
            forward_headers: Vec::new(),
            chaos: None,
        }
    }
}

/// The keys of a section that are config's, not the kind's.
pub const COMMON_KEYS: [&str; 6] = ["forward_to", "routes", "timeout", "retry", "forward_headers", "chaos"];

/// Names an endpoint cannot take: the API's own paths (and the built-in endpoints', see
/// [`valid_endpoint_name`]).
pub const API_PATHS: [&str; 10] =
    ["test", "stats", "validate", "events", "replay", "recovery", "config", "rejections", "alerts", "check-app"];

/// A name that is a path segment as it stands: lowercase letters, digits, `-` and `_`.
// A String: the message becomes a serde error's text, which is all serde keeps.
pub fn valid_endpoint_name(name: &str) -> Result<(), String> {
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
                    if !registry::is_built_in(&name) {
                        valid_endpoint_name(&name).map_err(A::Error::custom)?;
                    }
                    let section: EndpointConfig = map.next_value_seed(SectionOf(&name))?;
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
    type Value = EndpointConfig;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<EndpointConfig, D::Error> {
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
            type Value = EndpointConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a provider's settings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<EndpointConfig, A::Error> {
                static EXPECTED: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
                    ["kind"].iter().chain(registry::all_keys()).chain(COMMON_KEYS.iter()).copied().collect()
                });
                let name = self.0;
                let mut kind: Option<ProviderKind> = None;
                let mut keys = toml::Table::new();
                let (mut forward_to, mut timeout, mut retry) = (Vec::new(), DEFAULT_TIMEOUT, RetryOverride::default());
                let mut forward_headers: Vec<String> = Vec::new();
                let mut routes: Vec<Route> = Vec::new();
                let mut chaos = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "kind" => kind = map.next_value()?,
                        "forward_to" => forward_to = map.next_value()?,
                        "routes" => routes = map.next_value()?,
                        "timeout" => timeout = map.next_value()?,
                        "retry" => retry = map.next_value()?,
                        "forward_headers" => forward_headers = map.next_value()?,
                        "chaos" => chaos = Some(map.next_value()?),
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
                                // Another kind's key, which a named endpoint may still hold.
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
                let settings = registry::kind_config(name, kind, keys).map_err(serde::de::Error::custom)?;
                // Header names compare case-insensitively; kept lowercase, as stored headers are.
                let forward_headers = forward_headers.into_iter().map(|h| h.to_ascii_lowercase()).collect();
                Ok(EndpointConfig { settings, forward_to, routes, timeout, retry, forward_headers, chaos })
            }
        }
        d.deserialize_map(Visit(self.0))
    }
}

impl Serialize for ProvidersConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        /// A section as shown: its provider keys (`registry::shown`), then the common ones.
        struct Shown<'a>(&'a str, &'a EndpointConfig);
        impl Serialize for Shown<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let Shown(name, c) = self;
                let mut map = s.serialize_map(None)?;
                for (key, value) in registry::shown(name, &c.settings) {
                    map.serialize_entry(&key, &value)?;
                }
                map.serialize_entry("forward_to", &c.forward_to)?;
                map.serialize_entry("routes", &c.routes)?;
                map.serialize_entry("timeout", &c.timeout)?;
                map.serialize_entry("retry", &c.retry)?;
                map.serialize_entry("forward_headers", &c.forward_headers)?;
                if let Some(chaos) = &c.chaos {
                    map.serialize_entry("chaos", chaos)?;
                }
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

/// A target's time limit when its section sets none.
const DEFAULT_TIMEOUT: HumanDuration = HumanDuration(std::time::Duration::from_secs(10));

impl Config {
    /// Every provider section, the built-in endpoints first (their default when absent: their
    /// endpoints are always there), then the others by name.
    pub fn sections(&self) -> Vec<(String, EndpointConfig)> {
        let built_ins = registry::built_ins().map(|(kind, built_in)| {
            (
                built_in.name.to_string(),
                self.providers
                    .get(built_in.name)
                    .cloned()
                    .unwrap_or_else(|| EndpointConfig::from(registry::default_kind_config(kind))),
            )
        });
        let named = self.providers.iter().filter(|(name, _)| !registry::is_built_in(name));
        built_ins.chain(named.map(|(name, c)| (name.clone(), c.clone()))).collect()
    }

    /// Builds each section's provider (its settings checked by its kind); an error names the
    /// key. The rest of the configuration is not checked: see [`Config::checked`].
    pub fn build(&self) -> Result<Vec<Endpoint>, ConfigError> {
        self.sections()
            .into_iter()
            .map(|(name, c)| {
                let mut endpoint = registry::endpoint(&name, &c.settings, c.forward_to)?;
                endpoint.routes = c.routes;
                Ok(endpoint)
            })
            .collect()
    }

    /// Where a provider's events go; `None` for an unknown provider name.
    pub fn targets(&self, provider: &str) -> Option<Targets> {
        let c = match self.providers.get(provider) {
            Some(c) => c.clone(),
            None if registry::is_built_in(provider) => {
                return Some(Targets {
                    urls: Vec::new(),
                    routes: Vec::new(),
                    timeout: DEFAULT_TIMEOUT.0,
                    retry: RetryOverride::default().over(&self.retry),
                    forward_headers: Vec::new(),
                })
            }
            None => return None,
        };
        Some(Targets {
            urls: c.forward_to,
            routes: c
                .routes
                .iter()
                .map(|r| RouteTargets {
                    types: r.types.clone(),
                    urls: r.forward_to.clone(),
                    also_default: r.also_default,
                })
                .collect(),
            timeout: c.timeout.0,
            retry: c.retry.over(&self.retry),
            forward_headers: c.forward_headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_endpoints_need_a_kind_a_free_name_and_sound_settings() {
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
}
