//! Durations as settings write them: `"500ms"`, `"10s"`, `"30d"`, read by every section of the
//! configuration and by the modules that own their settings (`redis::settings`). A leaf: it
//! names nothing else of the crate.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written the human way in TOML: `"500ms"`, `"10s"`, `"5m"`, `"30d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// The longest duration any setting takes: a century (`"100y"`). The delivery engine, the
/// breaker and retention compute in i64 milliseconds from a clock reading and in f64 seconds,
/// where humantime's own limit (u64 seconds) overflows: `max_age = "18446744073709551615s"`
/// wrapped to minus one second, and retention would have deleted every event.
pub const MAX_DURATION: Duration = Duration::from_secs(3_155_760_000);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let duration = humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!("`{text}` is not a duration like \"500ms\", \"10s\" or \"5m\": {e}"))
        })?;
        if duration > MAX_DURATION {
            return Err(serde::de::Error::custom(format!(
                "`{text}` is longer than 100 years (\"100y\"), the most it takes"
            )));
        }
        Ok(HumanDuration(duration))
    }
}
