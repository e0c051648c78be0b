//! One lister per provider behind one face: built from an endpoint's [`ApiAccess`], it gives
//! the window's events the store lacks page by page, oldest first across the whole run, in
//! memory bounded by a page or two of the provider's answers (and, for GitHub, a short summary
//! per missing delivery).

use super::{github, stripe, ApiError, Known, Page, Window};
use crate::providers::api::ApiAccess;

pub enum Lister {
    Stripe(stripe::Lister),
    Github(github::Lister),
}

impl Lister {
    /// A lister of `window`'s events of `types` (globs such as `invoice.*`, where `*` stands
    /// for any run of characters; none means every type), skipping those `known` says the store
    /// holds. Nothing is asked of the API before the first [`next_page`](Lister::next_page).
    pub fn new(access: &ApiAccess, window: Window, types: Vec<String>, known: Known) -> Result<Lister, ApiError> {
        Ok(match access {
            ApiAccess::Stripe(api) => Lister::Stripe(stripe::Lister::new(api, window, types, known)?),
            ApiAccess::Github(api) => Lister::Github(github::Lister::new(api, window, types, known)?),
        })
    }

    /// The next page, or None once the window is listed. `listed` summed over the pages is the
    /// number of distinct events of the types asked for in the window; `missing` is oldest
    /// first, and no event comes twice in a run.
    pub async fn next_page(&mut self) -> Result<Option<Page>, ApiError> {
        match self {
            Lister::Stripe(l) => l.next_page().await,
            Lister::Github(l) => l.next_page().await,
        }
    }

    /// The part of the window whose events the pages so far have given in full: from its start
    /// to just before the newest event given (the next page may hold more of the same
    /// millisecond), the whole window once done; empty (`until_ms < since_ms`) before the first
    /// page.
    pub fn covered(&self) -> Window {
        match self {
            Lister::Stripe(l) => l.covered(),
            Lister::Github(l) => l.covered(),
        }
    }
}

impl super::run::Pages for Lister {
    async fn next_page(&mut self) -> Result<Option<Page>, ApiError> {
        Lister::next_page(self).await
    }
}
