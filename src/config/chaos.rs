//! `[providers.<name>.chaos]` as the rest of stagehook asks for it: each endpoint's chaos
//! settings ([`Config::chaos`]), refused where a target is not this machine, and the finding
//! that says so to `check-config` and `serve` ([`remote_findings`]). The settings and their
//! value checks are `crate::chaos`'s.

use std::collections::BTreeMap;

use super::{err, Config, ConfigError};
use crate::chaos::{is_loopback_target, ChaosConfig};
use crate::finding::{Finding, Severity};

/// The finding's id: chaos on a target that is not this machine, without `allow_remote`.
pub const REMOTE_TARGET: &str = "chaos.remote_target";

impl Config {
    /// The chaos settings of each endpoint that has them, by name. Chaos on a target that is
    /// not this machine is refused unless the section sets `allow_remote = true`: duplicates
    /// and delays sent to a shared staging app surprise whoever else uses it.
    pub fn chaos(&self) -> Result<BTreeMap<String, ChaosConfig>, ConfigError> {
        let mut out = BTreeMap::new();
        for (name, section) in self.sections() {
            let Some(chaos) = section.chaos.clone() else { continue };
            if let Some(f) = remote(&name, &targets(&section), &chaos).into_iter().next() {
                return Err(err(&f.key, f.message));
            }
            out.insert(name, chaos);
        }
        Ok(out)
    }
}

/// An error finding for each target of a chaos endpoint that is not this machine, unless the
/// section allows it.
pub fn remote_findings(c: &Config) -> Vec<Finding> {
    c.sections()
        .into_iter()
        .filter_map(|(name, s)| Some(remote(&name, &targets(&s), s.chaos.as_ref()?)))
        .flatten()
        .collect()
}

/// Every target a section delivers to: `forward_to` and each route's.
fn targets(section: &super::EndpointConfig) -> Vec<String> {
    let routed = section.routes.iter().flat_map(|r| r.forward_to.iter());
    section.forward_to.iter().chain(routed).cloned().collect()
}

fn remote(name: &str, targets: &[String], chaos: &ChaosConfig) -> Vec<Finding> {
    if chaos.allow_remote {
        return Vec::new();
    }
    targets
        .iter()
        .filter(|url| !is_loopback_target(url))
        .map(|url| {
            Finding::new(
                REMOTE_TARGET,
                Severity::Error,
                &format!("providers.{name}.chaos.allow_remote"),
                format!(
                    "chaos delivery to {}, which is not this machine, is refused: set `allow_remote = true` \
                     in [providers.{name}.chaos] if that app is yours to disturb",
                    crate::redact::url(url)
                ),
            )
        })
        .collect()
}
