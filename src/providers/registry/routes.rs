//! `[[providers.<name>.routes]]`: which events of an endpoint go where, by their type, and the
//! one place that picks an event's targets ([`Endpoint::targets_for`]), which ingest, edits,
//! replays and backfills all ask.

use serde::{Deserialize, Serialize};

use super::Endpoint;

/// One route: the events whose type matches one of `types` (globs, as
/// [`crate::filter::type_matches`] reads them) go to `forward_to`, and also to the endpoint's
/// own `forward_to` when `also_default` is set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub types: Vec<String>,
    pub forward_to: Vec<String>,
    #[serde(default)]
    pub also_default: bool,
}

impl Route {
    /// Whether an event of this type takes the route. A route without types takes nothing
    /// (the configuration refuses one; this keeps an empty list from meaning "all").
    pub fn matches(&self, event_type: &str) -> bool {
        !self.types.is_empty() && crate::filter::type_matches(&self.types, event_type)
    }
}

impl Endpoint {
    /// Where an event of this type is delivered now: the targets of every route it matches, in
    /// the order the routes are written, then the endpoint's `forward_to` when no route matched
    /// or a matching one says `also_default`; each distinct URL once, since a job is per target.
    /// Empty means the event is recorded and processed at once.
    pub fn targets_for(&self, event_type: &str) -> Vec<String> {
        // On the ingest path: a few URLs at most (64, see the configuration's check), so a scan
        // of what is already taken costs less than hashing them.
        let mut out: Vec<String> = Vec::new();
        let mut add = |urls: &[String]| {
            for url in urls {
                if !out.contains(url) {
                    out.push(url.clone());
                }
            }
        };
        let (mut matched, mut also_default) = (false, false);
        for route in self.routes.iter().filter(|r| r.matches(event_type)) {
            matched = true;
            also_default |= route.also_default;
            add(&route.forward_to);
        }
        if !matched || also_default {
            add(&self.targets);
        }
        out
    }

    /// Whether some event type could be delivered somewhere: a default target or any route.
    pub fn has_targets(&self) -> bool {
        !self.targets.is_empty() || self.routes.iter().any(|r| !r.forward_to.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(types: &[&str], to: &[&str], also_default: bool) -> Route {
        Route {
            types: types.iter().map(|t| t.to_string()).collect(),
            forward_to: to.iter().map(|t| t.to_string()).collect(),
            also_default,
        }
    }

    #[test]
    fn an_event_fans_out_to_every_matching_route_and_falls_back_to_the_default() {
        let s = super::super::KindConfig::from_toml("stripe", "").unwrap();
        let mut e = super::super::endpoint("stripe", &s, vec!["http://app/default".into()]).unwrap();
        e.routes = vec![
            route(&["invoice.*"], &["http://app/billing", "http://app/audit"], false),
            route(&["invoice.paid", "charge.*"], &["http://app/audit", "http://app/paid"], false),
            route(&["customer.[cd]*"], &["http://app/customers"], true),
        ];
        assert_eq!(e.targets_for("invoice.paid"), ["http://app/billing", "http://app/audit", "http://app/paid"]);
        assert_eq!(e.targets_for("invoice.created"), ["http://app/billing", "http://app/audit"]);
        assert_eq!(e.targets_for("payout.paid"), ["http://app/default"]);
        assert_eq!(e.targets_for("customer.created"), ["http://app/customers", "http://app/default"]);
        assert_eq!(e.targets_for("customer.updated"), ["http://app/default"]);
        // A route that names the default itself still sends it once.
        e.routes.push(route(&["payout.*"], &["http://app/default"], true));
        assert_eq!(e.targets_for("payout.paid"), ["http://app/default"]);
        assert!(e.has_targets());
        e.targets.clear();
        assert!(e.targets_for("refund.created").is_empty());
        assert!(e.has_targets());
        // `also_default` of one matching route is enough, whatever the others say.
        e.targets = vec!["http://app/default".into()];
        e.routes = vec![route(&["a.*"], &["http://app/a"], true), route(&["a.b"], &["http://app/b"], false)];
        assert_eq!(e.targets_for("a.b"), ["http://app/a", "http://app/b", "http://app/default"]);
    }
}
