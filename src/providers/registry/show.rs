//! A section's provider keys as `check-config --show` lists them.

use super::{is_built_in, KindConfig};

/// The provider keys of `[providers.<name>]` as `check-config --show` lists them: `kind` when
/// written, the kind's own keys that are set (an unset optional key is left out), secrets as
/// fingerprints; and for a section that is not a built-in endpoint's (whose shape is its kind's)
/// the other kinds' keys it was given.
pub fn shown(name: &str, s: &KindConfig) -> Vec<(String, serde_json::Value)> {
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
    if !is_built_in(name) {
        for (key, given) in &s.unused {
            if let Some(v) = given.to_json().get(key).filter(|v| !v.is_null()) {
                out.push((key.clone(), v.clone()));
            }
        }
    }
    out
}
