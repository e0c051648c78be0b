//! What an endpoint may read of its provider's API, to recover the events its webhooks missed
//! (`stagehook backfill`, `backfill/`). Data only: the credential and where to ask. The kinds
//! that have such an API build it from their settings; `backfill/` does the asking.

use std::time::Duration;

use crate::secret::Secret;

/// Stripe's API, where `GET /v1/events` lists the account's events.
pub const STRIPE_API_BASE: &str = "https://api.stripe.com";
/// GitHub's REST API (GitHub Enterprise Server answers the same under its own base).
pub const GITHUB_API_BASE: &str = "https://api.github.com";

/// An endpoint's read access to its provider's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiAccess {
    Stripe(StripeApi),
    Github(GithubApi),
}

/// `GET {base}/v1/events` with a test-mode key as the Bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeApi {
    /// Without a trailing slash.
    pub base: String,
    /// `sk_test_...` or `rk_test_...`; a live key never gets this far (an isolation error).
    pub key: Secret,
}

/// `GET {base}/{repos/owner/name | orgs/org}/hooks/{hook_id}/deliveries` with a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubApi {
    /// Without a trailing slash.
    pub base: String,
    pub token: Secret,
    pub owner: HookOwner,
    pub hook_id: u64,
}

/// Whose webhook the deliveries are of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOwner {
    /// `owner/name`.
    Repository(String),
    Organization(String),
}

impl HookOwner {
    /// The path of the hook's owner under the API's base: `repos/owner/name` or `orgs/org`.
    pub fn api_path(&self) -> String {
        match self {
            HookOwner::Repository(r) => format!("repos/{r}"),
            HookOwner::Organization(o) => format!("orgs/{o}"),
        }
    }
}

impl ApiAccess {
    /// How far back the provider's API lists what it sent: a window reaching further is cut to
    /// this.
    pub fn retention(&self) -> Duration {
        match self {
            // "List events, going back up to 30 days." (https://docs.stripe.com/api/events/list)
            ApiAccess::Stripe(_) => Duration::from_secs(30 * 24 * 3600),
            // "The delivery logs... are retained for 3 days."
            // (https://docs.github.com/en/webhooks/testing-and-troubleshooting-webhooks/viewing-webhook-deliveries)
            ApiAccess::Github(_) => Duration::from_secs(3 * 24 * 3600),
        }
    }
}

/// Why an endpoint cannot be backfilled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoApi {
    /// The provider has no API that lists the webhooks it sent (Twilio, Slack, ...).
    #[error("its provider offers no API that lists the webhooks it sent, so missed events cannot be recovered")]
    NotOffered,
    /// The provider has one, but the section does not give the keys it needs (named here).
    #[error("no API access is configured: set {0}")]
    NotConfigured(String),
}
