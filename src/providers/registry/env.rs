//! The sections `config` serializes to learn which provider keys the environment can set
//! (`STAGEHOOK_PROVIDERS_<NAME>_<KEY>`), and of what type.

use super::{KindConfig, ProviderKind};
use crate::providers::kind::BuiltIn;

/// A built-in endpoint's section with every key it can take from the environment set (the built-in
/// endpoint's `env_keys`, parsed by the kind's own settings type), so that `config` can learn each
/// key's name and type by serializing it.
pub fn env_example(kind: ProviderKind, built_in: &BuiltIn) -> KindConfig {
    let example = built_in.env_keys.iter().map(|k| (k.to_string(), toml::Value::String("x".into())));
    match kind.parse_settings(example.collect()) {
        Ok(settings) => KindConfig::new(settings),
        Err(e) => {
            debug_assert!(false, "{}: an env key is no optional string key: {e}", kind.as_str());
            KindConfig::new(kind.default_settings())
        }
    }
}

/// A named endpoint's section with every key of its kind that a variable can write set (to a
/// string, a number or a boolean, whichever the kind's settings type takes; the others, lists
/// and keys with a default, are there at their default), so that `config` can learn the name
/// and type of each key a named endpoint takes from the environment by serializing it.
pub fn env_example_named(kind: ProviderKind) -> KindConfig {
    let samples = [toml::Value::String("x".into()), toml::Value::Integer(1), toml::Value::Boolean(true)];
    let mut example = toml::Table::new();
    for key in kind.keys() {
        let one = |v: &toml::Value| toml::Table::from_iter([(key.to_string(), v.clone())]);
        if let Some(v) = samples.iter().find(|v| kind.parse_settings(one(v)).is_ok()) {
            example.insert(key.to_string(), v.clone());
        }
    }
    match kind.parse_settings(example) {
        Ok(settings) => KindConfig::new(settings),
        Err(_) => KindConfig::new(kind.default_settings()),
    }
}
