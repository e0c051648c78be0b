//! `[backfill]`: when stagehook recovers, on its own, the events its endpoints missed while it was
//! down, from each provider's API (`backfill/`; an endpoint's API access is in its own
//! `[providers.<name>]` section). Off by default: `stagehook backfill` does it on demand.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{err, ConfigError, HumanDuration};

/// The shortest `every`. GitHub allows a token 5,000 REST requests an hour, shared with whatever
/// else uses it (https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api),
/// and a recovery pages through a hook's deliveries: a run a minute at most leaves room for the
/// rest.
pub const MIN_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackfillConfig {
    /// At startup, recover what every endpoint with API access missed since the last event it
    /// recorded.
    pub on_start: bool,
    /// Recover again this often while running (at least a minute); unset, never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every: Option<HumanDuration>,
}

impl BackfillConfig {
    /// The interval of the periodic recovery, if there is one.
    pub fn every(&self) -> Option<Duration> {
        self.every.map(|d| d.0)
    }
}

pub(super) fn check(c: &BackfillConfig) -> Result<(), ConfigError> {
    if c.every.is_some_and(|d| d.0 < MIN_EVERY) {
        return Err(err("backfill.every", "must be at least 1m (the providers' APIs are rate limited), or unset"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::{key_of, Config};
    use super::*;

    #[test]
    fn backfill_is_off_by_default_and_every_is_at_least_a_minute() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.backfill, BackfillConfig { on_start: false, every: None });
        let c = Config::from_toml("[backfill]\non_start = true\nevery = \"15m\"\n").unwrap();
        c.check().unwrap();
        assert!(c.backfill.on_start);
        assert_eq!(c.backfill.every(), Some(Duration::from_secs(900)));
        Config::from_toml("[backfill]\nevery = \"1m\"\n").unwrap().check().unwrap();
        assert_eq!(key_of("[backfill]\nevery = \"59s\"\n"), "backfill.every");
        assert_eq!(key_of("[backfill]\nevery = \"0s\"\n"), "backfill.every");
        assert_eq!(key_of("[backfill]\nevery = \"soon\"\n"), "backfill.every");
        assert_eq!(key_of("[backfill]\nonstart = true\n"), "backfill.onstart");

        let env = BTreeMap::from([
            ("STAGEHOOK_BACKFILL_ON_START".to_string(), "true".to_string()),
            ("STAGEHOOK_BACKFILL_EVERY".to_string(), "2h".to_string()),
        ]);
        let c = Config::load(None, &env).unwrap();
        assert_eq!((c.backfill.on_start, c.backfill.every()), (true, Some(Duration::from_secs(7200))));
        let env = BTreeMap::from([("STAGEHOOK_BACKFILL_EVERY".to_string(), "30s".to_string())]);
        assert_eq!(Config::load(None, &env).unwrap_err().key, "backfill.every");
    }
}
