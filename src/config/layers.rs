//! Where each setting comes from, in order: the embedded defaults, the TOML file, the
//! environment (`STAGEHOOK_<SECTION>_<KEY>` for every key, plus the providers' own variable
//! names for their secrets), then command-line flags. Each layer is a TOML table merged over the
//! one before; the result is deserialized once, so every error names the key, and for a value
//! from the environment the variable too.

use std::collections::BTreeMap;
use std::path::Path;

use toml::{Table, Value};

use super::{
    err, Config, ConfigError, EndpointConfig, IsolationConfig, NotifierConfig, NotifierKind, Origins, RetryOverride,
};
use crate::providers::registry::{self, Endpoint};
use crate::secret::Secret;

/// The providers' own variables for their built-in endpoints' credentials (`STRIPE_WEBHOOK_SECRET`,
/// `TWILIO_AUTH_TOKEN`) and the keys they set; they win over `STAGEHOOK_*`. Each kind names
/// its own (`Kind::BUILT_IN`).
pub fn secret_env() -> Vec<(&'static str, String)> {
    registry::built_ins()
        .map(|(_, built_in)| (built_in.env.0, format!("providers.{}.{}", built_in.name, built_in.env.1)))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File,
    Env(String),
    Flag(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File => f.write_str("file"),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Flag(name) => write!(f, "flag {name}"),
        }
    }
}

/// The effective configuration, where each key came from, and its providers and the hosts and
/// origins that are this stagehook's, built and read once by the check.
#[derive(Debug, Clone)]
pub struct Layered {
    pub config: Config,
    pub sources: BTreeMap<String, Source>,
    pub endpoints: Vec<Endpoint>,
    pub origins: Origins,
}

/// The environment variable for a key: `limits.max_body_bytes` → `STAGEHOOK_LIMITS_MAX_BODY_BYTES`,
/// `providers.eu-west.secret` → `STAGEHOOK_PROVIDERS_EU_WEST_SECRET` (a `-` is no letter of a
/// variable name; two keys that come to one name are refused when it is set, see [`load`]).
pub fn env_name(key: &str) -> String {
    format!("STAGEHOOK_{}", key.replace(['.', '-'], "_").to_ascii_uppercase())
}

/// The prefix of the variables of provider sections. One under it that names no key is refused:
/// most likely it is meant for an endpoint the file does not declare, which a variable cannot
/// declare (it cannot say the kind), or it has a slip in its name; either way the setting it
/// carries (often a secret) would otherwise be lost without a word.
const PROVIDERS_ENV: &str = "STAGEHOOK_PROVIDERS_";
/// The same for notifiers (`[notifiers.<name>]`).
const NOTIFIERS_ENV: &str = "STAGEHOOK_NOTIFIERS_";

pub fn load(
    file: Option<&Path>,
    env: &BTreeMap<String, String>,
    flags: &[(&str, &str, Value)],
) -> Result<Layered, ConfigError> {
    let mut merged = Table::try_from(Config::default()).expect("the defaults serialize");
    let mut sources: BTreeMap<String, Source> =
        leaves(&merged).into_iter().map(|(k, _)| (k, Source::Default)).collect();

    let mut named: Vec<(String, registry::ProviderKind)> = Vec::new();
    let mut notifiers: Vec<(String, NotifierKind)> = Vec::new();
    if let Some(path) = file {
        let text =
            std::fs::read_to_string(path).map_err(|e| err("", format!("cannot read {}: {e}", path.display())))?;
        // Parsed alone first, for errors with line numbers, and for the named endpoints and
        // their kinds, whose keys the environment may then set.
        let parsed = Config::from_toml(&text)?;
        named = parsed
            .providers
            .iter()
            .filter(|(name, _)| !registry::is_built_in(name))
            .map(|(name, c)| (name.clone(), c.settings.kind()))
            .collect();
        notifiers = parsed.notifiers.iter().map(|(name, n)| (name.clone(), n.kind)).collect();
        let table: Table = text.parse().map_err(|e: toml::de::Error| err("", e.message().to_string()))?;
        for (key, value) in leaves(&table) {
            set(&mut merged, &key, value);
            sources.insert(key, Source::File);
        }
    }

    let schema = Table::try_from(schema(&named, &notifiers)).expect("the schema serializes");
    let mut keys_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, _) in leaves(&schema) {
        keys_of.entry(env_name(&key)).or_default().push(key);
    }
    for (name, _) in env.iter().filter(|(name, v)| name.starts_with(PROVIDERS_ENV) && !v.is_empty()) {
        match keys_of.get(name).map(Vec::as_slice) {
            None => {
                let known = keys_of.keys().filter(|n| n.starts_with(PROVIDERS_ENV)).map(String::as_str);
                return Err(err(
                    "providers",
                    format!(
                        "`{name}` sets no key: a variable sets a key of an endpoint the file declares \
                         (`[providers.<name>]`, with its `kind` unless the name is one), and cannot declare \
                         one, having no way to say its kind{}",
                        super::did_you_mean(name, known)
                    ),
                ));
            }
            Some([first, second, ..]) => {
                return Err(err(
                    first,
                    format!(
                        "`{name}` could set `{first}` or `{second}` (a `-` in a name is `_` in a variable): \
                         set the key in the file instead, or rename one of the endpoints"
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    // Likewise a notifier's: a variable cannot declare one (it cannot say the kind), and a
    // secret or URL meant for one the file does not declare would otherwise be lost silently.
    for (name, _) in env.iter().filter(|(name, v)| name.starts_with(NOTIFIERS_ENV) && !v.is_empty()) {
        if !keys_of.contains_key(name) {
            let known = keys_of.keys().filter(|n| n.starts_with(NOTIFIERS_ENV)).map(String::as_str);
            return Err(err(
                "notifiers",
                format!(
                    "`{name}` sets no key: a variable sets a key of a notifier the file declares \
                     (`[notifiers.<name>]` with its `kind`), and cannot declare one{}",
                    super::did_you_mean(name, known)
                ),
            ));
        }
    }
    for (key, example) in leaves(&schema) {
        let name = env_name(&key);
        let Some(raw) = env.get(&name).filter(|v| !v.is_empty()) else { continue };
        let value = parse_env(&example, raw).map_err(|m| err(&key, format!("{m} (from {name})")))?;
        set(&mut merged, &key, value);
        sources.insert(key, Source::Env(name));
    }
    for (name, key) in secret_env() {
        if let Some(raw) = env.get(name).filter(|v| !v.is_empty()) {
            set(&mut merged, &key, Value::String(raw.clone()));
            sources.insert(key, Source::Env(name.to_string()));
        }
    }
    for (key, flag, value) in flags {
        set(&mut merged, key, value.clone());
        sources.insert(key.to_string(), Source::Flag(flag.to_string()));
    }

    let config: Config = serde_path_to_error::deserialize(Value::Table(merged)).map_err(|e| {
        let key = e.path().to_string();
        let message = e.into_inner().message().trim().to_string();
        // A place inside an array's value (`routes[0].types`) came from where the array did.
        let whole = key.split_once('[').map_or(key.as_str(), |(k, _)| k);
        match sources.get(&key).or_else(|| sources.get(whole)) {
            Some(Source::Env(name)) => err(&key, format!("{message} (from {name})")),
            Some(Source::Flag(flag)) => err(&key, format!("{message} (from {flag})")),
            _ => err(&key, message),
        }
    })?;
    let (endpoints, origins) = config.checked()?;
    Ok(Layered { config, sources, endpoints, origins })
}

impl Layered {
    /// Every key of the effective configuration, secrets as fingerprints and URLs with their
    /// credentials masked, with its source.
    pub fn show(&self) -> Vec<(String, String, Source)> {
        let table = Table::try_from(&self.config).expect("the config serializes");
        leaves(&table)
            .into_iter()
            .map(|(k, v)| {
                let source = self.sources.get(&k).cloned().unwrap_or(Source::Default);
                (k, masked_urls(v).to_string(), source)
            })
            .collect()
    }
}

/// A value with every URL in it masked (`forward_to`, `public_url`, and any URL key to come):
/// a string is taken for a URL when it has a scheme, so other settings are never rewritten.
fn masked_urls(v: Value) -> Value {
    match v {
        Value::String(s) if s.contains("://") => Value::String(crate::redact::url(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(masked_urls).collect()),
        // An array of tables (`routes`) holds URLs of its own.
        Value::Table(t) => Value::Table(t.into_iter().map(|(k, v)| (k, masked_urls(v))).collect()),
        other => other,
    }
}

/// A configuration with every optional key present, to learn every key's name and type: the
/// built-in endpoints' sections, and the `named` endpoints the file declares, each of its kind.
fn schema(named: &[(String, registry::ProviderKind)], notifiers: &[(String, NotifierKind)]) -> Config {
    let s = || Some(Secret::new("x"));
    let retry = || RetryOverride {
        strategy: Some(super::Strategy::Fixed),
        max_attempts: Some(1),
        base_delay: Some(super::HumanDuration(std::time::Duration::from_secs(1))),
        max_delay: Some(super::HumanDuration(std::time::Duration::from_secs(1))),
        jitter: Some(0.0),
    };
    let mut c = Config::default();
    c.server.public_url = Some(String::new());
    c.server.admin_token = s();
    c.redis.url = Some(String::new());
    c.server.metrics_bind = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    c.isolation = IsolationConfig::default();
    c.backfill.every = Some(super::HumanDuration(std::time::Duration::from_secs(60)));
    // `routes` is one array, `STAGEHOOK_PROVIDERS_<NAME>_ROUTES`, written as JSON (or a TOML
    // array of inline tables).
    let routes =
        || vec![registry::Route { types: vec!["x".into()], forward_to: vec!["http://x".into()], also_default: false }];
    for (kind, built_in) in registry::built_ins() {
        let section = EndpointConfig {
            retry: retry(),
            routes: routes(),
            ..EndpointConfig::from(registry::env_example(kind, &built_in))
        };
        c.providers.0.insert(built_in.name.to_string(), section);
    }
    // `kind` itself is not among their keys (the example's is unwritten): the file says it.
    for (name, kind) in named {
        let section = EndpointConfig {
            retry: retry(),
            routes: routes(),
            ..EndpointConfig::from(registry::env_example_named(*kind))
        };
        c.providers.0.insert(name.clone(), section);
    }
    // A notifier the file declares, with every key it has (`kind` too: it is a plain value),
    // so `STAGEHOOK_NOTIFIERS_<NAME>_URL` and `_SECRET` set it. `[[alerts]]` is one array,
    // `STAGEHOOK_ALERTS`, written as a TOML array of inline tables.
    for (name, kind) in notifiers {
        let n = NotifierConfig { kind: *kind, url: Secret::new("x"), secret: s() };
        c.notifiers.insert(name.clone(), n);
    }
    c
}

/// Reads an environment value as the type the key has in the schema.
// A String: the reason alone, which `load` puts after the key and the variable (`ConfigError`).
fn parse_env(example: &Value, raw: &str) -> Result<Value, String> {
    let raw = raw.trim();
    Ok(match example {
        Value::String(_) => Value::String(raw.to_string()),
        Value::Integer(_) => Value::Integer(raw.parse().map_err(|_| format!("`{raw}` is not a whole number"))?),
        Value::Float(_) => Value::Float(raw.parse().map_err(|_| format!("`{raw}` is not a number"))?),
        Value::Boolean(_) => Value::Boolean(raw.parse().map_err(|_| format!("`{raw}` is not true or false"))?),
        Value::Array(_) if raw.starts_with('[') => match format!("v = {raw}").parse::<Table>() {
            Ok(t) => t["v"].clone(),
            // JSON too, for the arrays of tables (`routes`): `[{"types": ["invoice.*"], ...}]`.
            Err(_) => serde_json::from_str::<serde_json::Value>(raw)
                .ok()
                .and_then(|json| Value::try_from(json).ok())
                .filter(Value::is_array)
                .ok_or_else(|| format!("`{raw}` is not a TOML or JSON array"))?,
        },
        Value::Array(_) => Value::Array(
            raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.to_string())).collect(),
        ),
        _ => return Err("cannot be set from the environment".into()),
    })
}

/// `(dotted key, value)` of every non-table value.
fn leaves(table: &Table) -> Vec<(String, Value)> {
    fn walk(prefix: &str, table: &Table, out: &mut Vec<(String, Value)>) {
        for (k, v) in table {
            let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            match v {
                Value::Table(t) => walk(&key, t, out),
                other => out.push((key, other.clone())),
            }
        }
    }
    let mut out = Vec::new();
    walk("", table, &mut out);
    out
}

fn set(table: &mut Table, key: &str, value: Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("a key has a name");
    let mut t = table;
    for p in parts {
        let entry = t.entry(p.to_string()).or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        t = entry.as_table_mut().expect("made a table above");
    }
    t.insert(last.to_string(), value);
}

/// The parsed value of a `Config` field, for flags.
pub fn flag_value<T: serde::Serialize>(v: &T) -> Value {
    Value::try_from(v).expect("flag values serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn every_key_has_an_environment_variable_and_sources_are_tracked() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let dir = file.path().to_path_buf();
        std::fs::write(
            &dir,
            "[limits]\nrate_limit_per_minute = 7\nmax_body_bytes = 10\n[providers.stripe]\nsecret = \"whsec_file\"\n",
        )
        .unwrap();
        let e = env(&[
            ("STAGEHOOK_LIMITS_MAX_BODY_BYTES", "2048"),
            ("STAGEHOOK_RETRY_BASE_DELAY", "250ms"),
            ("STAGEHOOK_PROVIDERS_STRIPE_FORWARD_TO", "http://127.0.0.1:3000/a, http://127.0.0.1:3000/b"),
            ("STAGEHOOK_PROVIDERS_TWILIO_RETRY_MAX_ATTEMPTS", "2"),
            ("STAGEHOOK_PROVIDERS_STRIPE_SECRET", "whsec_stagehook_env"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_named_env"),
        ]);
        let flags = [("server.bind", "--bind", Value::String("127.0.0.1:9999".into()))];
        let l = load(Some(&dir), &e, &flags).unwrap();

        let c = &l.config;
        assert_eq!(c.limits.rate_limit_per_minute, 7);
        assert_eq!(c.limits.max_body_bytes, 2048);
        assert_eq!(c.retry.base_delay.0, std::time::Duration::from_millis(250));
        assert_eq!(c.providers["stripe"].forward_to.len(), 2);
        assert_eq!(c.providers["twilio"].retry.max_attempts, Some(2));
        assert_eq!(c.providers["stripe"].settings.all_secrets()[0].expose(), "whsec_named_env");
        assert_eq!(c.server.bind.port(), 9999);
        assert_eq!(l.sources["limits.rate_limit_per_minute"], Source::File);
        assert_eq!(l.sources["limits.max_body_bytes"], Source::Env("STAGEHOOK_LIMITS_MAX_BODY_BYTES".into()));
        assert_eq!(l.sources["providers.stripe.secret"], Source::Env("STRIPE_WEBHOOK_SECRET".into()));
        assert_eq!(l.sources["server.bind"], Source::Flag("--bind".into()));
        assert_eq!(l.sources["store.cache_mb"], Source::Default);
        let shown = l.show();
        let secret = shown.iter().find(|(k, _, _)| k == "providers.stripe.secret").unwrap();
        assert!(!secret.1.contains("whsec_named_env"), "{secret:?}");
    }

    /// Two endpoints whose names differ only by `-` and `_` come to one variable: when it is
    /// set, which one it means cannot be told, and it is refused naming both; unset, they load.
    #[test]
    fn a_variable_two_instances_share_is_refused_when_set() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let path = file.path().to_path_buf();
        std::fs::write(&path, "[providers.eu-west]\nkind = \"github\"\n[providers.eu_west]\nkind = \"github\"\n")
            .unwrap();
        load(Some(&path), &env(&[]), &[]).unwrap();
        let error = load(Some(&path), &env(&[("STAGEHOOK_PROVIDERS_EU_WEST_SECRET", "s")]), &[]).unwrap_err();
        assert!(error.message.contains("`providers.eu-west.secret` or `providers.eu_west.secret`"), "{error}");
    }

    /// `STAGEHOOK_PROVIDERS_<NAME>_ROUTES` sets an endpoint's routes as JSON (or TOML), remembered
    /// as their source and shown with their URLs masked; a route it sets wrong names the route.
    #[test]
    fn routes_are_set_from_the_environment_as_json() {
        let json = r#"[{"types": ["invoice.*"], "forward_to": ["http://user:pw@127.0.0.1:3000/billing"]},
                       {"types": ["charge.*"], "forward_to": ["http://127.0.0.1:3000/charges"], "also_default": true}]"#;
        let l = load(None, &env(&[("STAGEHOOK_PROVIDERS_STRIPE_ROUTES", json)]), &[]).unwrap();
        let routes = &l.config.providers["stripe"].routes;
        assert_eq!(routes.len(), 2);
        assert_eq!((routes[0].also_default, routes[1].also_default), (false, true));
        assert_eq!(l.sources["providers.stripe.routes"], Source::Env("STAGEHOOK_PROVIDERS_STRIPE_ROUTES".into()));
        let stripe = l.endpoints.iter().find(|e| e.path == "stripe").unwrap();
        assert_eq!(stripe.targets_for("invoice.paid"), ["http://user:pw@127.0.0.1:3000/billing"]);
        let shown = l.show();
        let (_, value, _) = shown.iter().find(|(k, _, _)| k == "providers.stripe.routes").unwrap();
        assert!(value.contains("invoice.*") && value.contains("also_default = true"), "{value}");
        assert!(!value.contains("pw@"), "{value}");

        let toml = r#"[{types = ["a"], forward_to = ["http://127.0.0.1:3000/a"]}]"#;
        let l = load(None, &env(&[("STAGEHOOK_PROVIDERS_STRIPE_ROUTES", toml)]), &[]).unwrap();
        assert_eq!(l.config.providers["stripe"].routes[0].types, ["a"]);

        for (raw, key, words) in [
            (
                r#"[{"types": ["a"], "forward_to": ["http://x.test/"], "else": 1}]"#,
                "providers.stripe.routes[0].else",
                "unknown field `else`",
            ),
            (r#"[{"types": [], "forward_to": ["http://x.test/"]}]"#, "providers.stripe.routes[0].types", "empty"),
            (
                r#"[{"types": ["a"], "forward_to": ["http://x.test/"]}, {"types": ["[a"], "forward_to": ["http://x.test/"]}]"#,
                "providers.stripe.routes[1].types[0]",
                "never closed",
            ),
            (
                r#"[{"types": ["a"], "forward_to": ["http://x.test/"]"#,
                "providers.stripe.routes",
                "not a TOML or JSON array",
            ),
        ] {
            let e = load(None, &env(&[("STAGEHOOK_PROVIDERS_STRIPE_ROUTES", raw)]), &[]).unwrap_err();
            assert!(e.key == key && e.message.contains(words), "{raw}: {e}");
        }
        let e = load(
            None,
            &env(&[(
                "STAGEHOOK_PROVIDERS_STRIPE_ROUTES",
                r#"[{"types": ["a"], "forward_to": ["http://x.test/"], "else": 1}]"#,
            )]),
            &[],
        )
        .unwrap_err();
        assert!(e.message.contains("(from STAGEHOOK_PROVIDERS_STRIPE_ROUTES)"), "{e}");
    }

    #[test]
    fn a_bad_environment_value_names_key_and_variable() {
        let e = env(&[("STAGEHOOK_LIMITS_RATE_LIMIT_PER_MINUTE", "lots")]);
        let error = load(None, &e, &[]).unwrap_err();
        assert_eq!(error.key, "limits.rate_limit_per_minute");
        assert!(error.message.contains("STAGEHOOK_LIMITS_RATE_LIMIT_PER_MINUTE"), "{error}");
        let e = env(&[("STAGEHOOK_RETRY_STRATEGY", "random")]);
        let error = load(None, &e, &[]).unwrap_err();
        assert_eq!(error.key, "retry.strategy");
        assert!(error.message.contains("STAGEHOOK_RETRY_STRATEGY"), "{error}");
    }

    mod properties {
        use proptest::prelude::*;
        use proptest::sample::Index;

        use super::*;

        /// Values for any variable: every type's edge cases and mistakes, and any text.
        const VALUES: &[&str] = &[
            "0",
            "1",
            "-1",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999",
            "4294967296",
            "1.5",
            "1e400",
            "nan",
            "NaN",
            "inf",
            "-inf",
            "true",
            "yes",
            " ",
            "0s",
            "1ms",
            "100y",
            "18446744073709551615s",
            "99999999999999999999s",
            "-1s",
            "soon",
            "http://127.0.0.1:3000/a, http://127.0.0.1:3000/b",
            "ftp://x",
            "[]",
            "[\"http://a\"]",
            "[1, 2]",
            "[\"a\"",
            "[1]\nw = 2",
            "[1]\n[v]",
            "[] # comment",
            ",,,",
            "127.0.0.1:0",
            "[::1]:99999",
            "10.0.0.0/8, ::/200",
            "whsec_x",
            "exponential",
            "https://",
        ];

        /// A value of the example's type, as a variable writes it (an array as a list).
        fn of_type(example: &Value) -> String {
            match example {
                Value::String(s) => s.clone(),
                Value::Array(items) => items
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            }
        }

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![3 => prop::sample::select(VALUES).prop_map(str::to_string), 1 => any::<String>()]
        }

        proptest! {
            #![proptest_config(crate::proptest_cases(256))]

            /// Any values in any `STAGEHOOK_*` variables (and the providers' own secret
            /// variables) load, or are refused with the key named; never a panic. What loads can
            /// be shown, and names the variable that set each key as its source.
            #[test]
            fn any_environment_loads_or_is_refused_naming_the_key(
                picks in prop::collection::vec((any::<Index>(), any::<bool>(), value()), 1..6),
            ) {
                // Every variable and its key, in the order `load` reads them: the providers' own
                // last, so they win.
                let schema = Table::try_from(schema(&[], &[])).unwrap();
                let mut vars: Vec<(String, String, Value)> =
                    leaves(&schema).into_iter().map(|(key, example)| (env_name(&key), key, example)).collect();
                vars.extend(secret_env().into_iter().map(|(name, key)| (name.to_string(), key, "x".into())));
                // Half the values are of the key's type, so that many environments load.
                let env: BTreeMap<String, String> = picks
                    .into_iter()
                    .map(|(i, typed, value)| {
                        let (name, _, example) = &vars[i.index(vars.len())];
                        (name.clone(), if typed { of_type(example) } else { value })
                    })
                    .collect();
                let set = |name: &String| env.get(name).is_some_and(|v| !v.is_empty());
                match load(None, &env, &[]) {
                    Ok(layered) => {
                        let _ = layered.show();
                        for (_, key, _) in vars.iter().filter(|(name, _, _)| set(name)) {
                            let winner = vars.iter().rfind(|(n, k, _)| k == key && set(n)).unwrap();
                            prop_assert_eq!(layered.sources.get(key), Some(&Source::Env(winner.0.clone())), "{}", key);
                        }
                    }
                    Err(e) => {
                        prop_assert!(!e.key.is_empty(), "{e} from {env:?}");
                        prop_assert!(!e.message.trim().is_empty());
                    }
                }
            }
        }
    }
}
