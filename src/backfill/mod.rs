//! Recovering the events a provider sent while stagehook could not receive them, from the
//! provider's API (`stagehook backfill`, `POST /staging/webhooks/backfill`, and the runs after a
//! downtime). A lister (`stripe.rs`, `github.rs`) reads the provider's API page by page, in the
//! provider's creation order, and gives each event as the webhook would have carried it; the
//! run records the ones the store lacks as events of `Source::Backfill`.

use std::sync::Arc;

pub mod github;
pub mod http;
pub mod listing;
pub mod remote;
pub mod run;
pub mod runs;
pub mod schedule;
pub mod select;
pub mod stripe;

pub use listing::Lister;

/// The stretch of time a run covers, in Unix milliseconds (both ends included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Window {
    pub since_ms: i64,
    pub until_ms: i64,
}

/// One event as the provider's API gave it, shaped as its webhook would have carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The provider's id of the event, the store's duplicate key (what the provider's `parse`
    /// reads from the request).
    pub event_id: String,
    /// When the provider created (or first sent) it, Unix milliseconds.
    pub created_ms: i64,
    /// The headers its webhook carried or would have carried, lowercase names, without any
    /// signature: a delivery is signed afresh for the app.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One page of a listing: the events in it the store lacks, oldest first, and how many the
/// page listed in all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub listed: u64,
    pub missing: Vec<Fetched>,
}

/// Whether the store already holds the provider's event id, so a lister need not fetch it.
pub type Known = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Why a provider's API could not be read. Each has a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 401 or 403: the credential (named by its key) is wrong, revoked or lacks the scope.
    #[error("the provider refused `{key}` (HTTP {status}): {message}")]
    Unauthorized { key: &'static str, status: u16, message: String },
    /// Another 4xx: the request is wrong for this account (an unknown hook, say).
    #[error("the provider answered HTTP {status}: {message}")]
    Refused { status: u16, message: String },
    /// 5xx or rate limits that outlasted the retries.
    #[error("the provider's API is unavailable: {0}")]
    Unavailable(String),
    /// Not reachable at all (DNS, connect, TLS, timeout) after the retries.
    #[error("the provider's API is unreachable: {0}")]
    Unreachable(String),
    /// An answer that is not what the provider's API reference documents.
    #[error("the provider's API answered something unexpected: {0}")]
    BadAnswer(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized { .. } => "api_unauthorized",
            ApiError::Refused { .. } => "api_refused",
            ApiError::Unavailable(_) => "api_unavailable",
            ApiError::Unreachable(_) => "api_unreachable",
            ApiError::BadAnswer(_) => "api_bad_answer",
        }
    }
}
