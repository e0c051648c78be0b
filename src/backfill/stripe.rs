//! Stripe's `GET /v1/events` (https://docs.stripe.com/api/events/list), oldest first.
//!
//! Stripe lists newest first, and both cursors keep that order: `starting_after=X` answers the
//! page just older than X, `ending_before=X` the page just newer than X, still newest first,
//! with `has_more` telling whether more lie beyond it in the direction asked for
//! (https://docs.stripe.com/api/pagination; stripe-python's `ListObject` walks an
//! `ending_before` listing by reversing each page and asking `ending_before` its first item).
//! So the lister walks the window twice: first toward the oldest with `starting_after`, keeping
//! only the page in hand, then from that oldest page back toward the newest with
//! `ending_before`, giving each page reversed. Memory holds a page or two; the price is reading
//! the window's events twice.
//!
//! Each event's body is its object exactly as the API's answer carried it (the bytes sliced
//! out of the page, not re-serialised), which is what its webhook carried too.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::http::{Dialect, Http};
use super::select::covered;
use super::{ApiError, Fetched, Known, Page, Window};
use crate::filter::type_matches;
use crate::providers::api::StripeApi;

/// "A limit on the number of objects to be returned. Limit can range between 1 and 100."
/// (https://docs.stripe.com/api/events/list)
const PAGE_LIMIT: usize = 100;
/// "types: An array of up to 20 strings containing specific event names."
/// (https://docs.stripe.com/api/events/list)
const MAX_TYPES: usize = 20;

/// The headers Stripe's webhooks carry, besides the signature.
const USER_AGENT: &str = "Stripe/1.0 (+https://stripe.com/docs/webhooks)";
const CONTENT_TYPE: &str = "application/json; charset=utf-8";

pub struct Lister {
    http: Http,
    /// `{base}/v1/events?created[gte]=..&created[lte]=..&limit=100[&type=..|&types[]=..]`.
    url: String,
    window: Window,
    types: Vec<String>,
    known: Known,
    state: State,
    newest_listed_ms: Option<i64>,
}

enum State {
    /// Nothing asked yet.
    Start,
    /// Walking toward the newest: the next page is the one just newer than this event.
    Newer(String),
    Done,
}

#[derive(Deserialize)]
struct List<'a> {
    #[serde(borrow)]
    data: Vec<&'a RawValue>,
    has_more: bool,
}

#[derive(Deserialize)]
struct Head {
    id: String,
    created: i64,
    #[serde(rename = "type")]
    kind: String,
}

impl Lister {
    pub fn new(api: &StripeApi, window: Window, types: Vec<String>, known: Known) -> Result<Lister, ApiError> {
        let http = Http::new(
            Dialect::Stripe,
            api.key.expose(),
            vec![("authorization", format!("Bearer {}", api.key.expose())), ("accept", "application/json".into())],
        )?;
        // The window in whole seconds, Stripe's `created`: an event of second s was created at
        // s * 1000 ms, inside the window when since <= s * 1000 <= until.
        let gte = window.since_ms.div_euclid(1000) + i64::from(window.since_ms.rem_euclid(1000) != 0);
        let lte = window.until_ms.div_euclid(1000);
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("created[gte]", &gte.to_string());
        query.append_pair("created[lte]", &lte.to_string());
        query.append_pair("limit", &PAGE_LIMIT.to_string());
        // `type` takes one name or a group with `*` as a wildcard, `types[]` up to 20 exact
        // names; anything else (a class, `[a-z]`, which Stripe would read as those characters)
        // is filtered here, from every type's listing.
        if types.len() == 1 && !types[0].contains('[') {
            query.append_pair("type", &types[0]);
        } else if (2..=MAX_TYPES).contains(&types.len()) && types.iter().all(|t| !t.contains(['*', '['])) {
            for t in &types {
                query.append_pair("types[]", t);
            }
        }
        let url = format!("{}/v1/events?{}", api.base.trim_end_matches('/'), query.finish());
        Ok(Lister { http, url, window, types, known, state: State::Start, newest_listed_ms: None })
    }

    pub async fn next_page(&mut self) -> Result<Option<Page>, ApiError> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Done => Ok(None),
            State::Start => {
                // Toward the oldest, keeping only the last page.
                let mut body = self.http.get(&self.url).await?.body;
                let mut walked = false;
                loop {
                    let list = parse_list(&body)?;
                    if !list.has_more {
                        break;
                    }
                    let Some(oldest) = list.data.last() else { break };
                    let cursor = head(oldest)?.id;
                    let url = format!("{}&starting_after={}", self.url, encode(&cursor));
                    body = self.http.get(&url).await?.body;
                    walked = true;
                }
                let list = parse_list(&body)?;
                // With more than one page, the walk back starts from the newest event of the
                // oldest page; with one page, there is nothing newer to walk back to.
                let page = self.page(&list.data)?;
                if walked {
                    if let Some(first) = list.data.first() {
                        self.state = State::Newer(head(first)?.id);
                    }
                }
                Ok(Some(page))
            }
            State::Newer(cursor) => {
                let url = format!("{}&ending_before={}", self.url, encode(&cursor));
                let body = self.http.get(&url).await?.body;
                let list = parse_list(&body)?;
                let Some(first) = list.data.first() else { return Ok(None) };
                if list.has_more {
                    self.state = State::Newer(head(first)?.id);
                }
                Ok(Some(self.page(&list.data)?))
            }
        }
    }

    pub fn covered(&self) -> Window {
        covered(self.window, self.newest_listed_ms, matches!(self.state, State::Done))
    }

    /// A page of the API's answer (newest first) as the run wants it: oldest first, of the
    /// types asked for, only those the store lacks.
    fn page(&mut self, data: &[&RawValue]) -> Result<Page, ApiError> {
        let mut page = Page::default();
        for raw in data.iter().rev() {
            let head = head(raw)?;
            let created_ms = head.created.saturating_mul(1000);
            self.newest_listed_ms = Some(self.newest_listed_ms.map_or(created_ms, |n| n.max(created_ms)));
            if !type_matches(&self.types, &head.kind)
                || created_ms < self.window.since_ms
                || created_ms > self.window.until_ms
            {
                continue;
            }
            page.listed += 1;
            if (self.known)(&head.id) {
                continue;
            }
            page.missing.push(Fetched {
                event_id: head.id,
                created_ms,
                headers: vec![("content-type".into(), CONTENT_TYPE.into()), ("user-agent".into(), USER_AGENT.into())],
                body: raw.get().as_bytes().to_vec(),
            });
        }
        Ok(page)
    }
}

fn parse_list(body: &[u8]) -> Result<List<'_>, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadAnswer(format!("a list of events that does not parse: {e}")))
}

fn head(raw: &RawValue) -> Result<Head, ApiError> {
    serde_json::from_str(raw.get()).map_err(|e| {
        ApiError::BadAnswer(format!("an event without a string `id`, a number `created` and a `type`: {e}"))
    })
}

fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
