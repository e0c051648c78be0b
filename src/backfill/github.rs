//! GitHub's hook deliveries (https://docs.github.com/en/rest/webhooks/repo-deliveries and
//! .../org-deliveries), oldest first.
//!
//! `GET .../hooks/{hook_id}/deliveries` lists a hook's deliveries newest first, as summaries
//! (id, guid, event, action, delivered_at), paged by the `Link` header's `rel="next"` URL (a
//! `cursor`). `GET .../deliveries/{id}` gives one delivery with the request it made: its headers
//! (a map) and its payload (an object). The lister reads the summaries back to the window's
//! start and keeps one per event the store lacks (redeliveries share the event's `guid`, which
//! is `X-GitHub-Delivery`, the store's duplicate key; the oldest delivery is kept), then fetches
//! them oldest first, a few per page. The summaries are the only thing held for the whole run:
//! GitHub keeps 3 days of deliveries, and a summary is a hundred bytes or so.

use std::collections::{HashMap, HashSet, VecDeque};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::http::{Dialect, Http};
use super::select::covered;
use super::{ApiError, Fetched, Known, Page, Window};
use crate::filter::type_matches;
use crate::providers::api::GithubApi;

/// "The number of results per page (max 100)."
/// (https://docs.github.com/en/rest/webhooks/repo-deliveries#list-deliveries-for-a-repository-webhook)
const PER_PAGE: usize = 100;
/// Deliveries fetched per page: each carries its whole payload (up to 25 MB, GitHub's cap), so
/// a page holds few.
const FETCH_PER_PAGE: usize = 10;
/// The headers of the original request that are not passed on: the delivery is signed afresh.
const SIGNATURE_HEADERS: [&str; 2] = ["x-hub-signature", "x-hub-signature-256"];

pub struct Lister {
    http: Http,
    /// `{base}/{repos/o/r | orgs/o}/hooks/{id}/deliveries`.
    deliveries: String,
    /// The API's base, which a `Link` URL must start with: the token goes nowhere else.
    base: String,
    window: Window,
    types: Vec<String>,
    known: Known,
    state: State,
    newest_listed_ms: Option<i64>,
}

enum State {
    Start,
    /// The missing deliveries still to fetch, oldest first, and how many known events the
    /// listing found (counted on the first page given).
    Fetching {
        queue: VecDeque<Summary>,
        known: u64,
    },
    Done,
}

#[derive(Debug, Clone)]
struct Summary {
    id: u64,
    guid: String,
    delivered_ms: i64,
}

#[derive(Deserialize)]
struct Item {
    id: u64,
    guid: String,
    delivered_at: String,
    event: String,
    action: Option<String>,
}

#[derive(Deserialize)]
struct Delivery<'a> {
    #[serde(borrow)]
    request: Request<'a>,
}

#[derive(Deserialize)]
struct Request<'a> {
    headers: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

impl Lister {
    pub fn new(api: &GithubApi, window: Window, types: Vec<String>, known: Known) -> Result<Lister, ApiError> {
        // The headers GitHub asks every REST call to send
        // (https://docs.github.com/en/rest/using-the-rest-api/getting-started-with-the-rest-api).
        let http = Http::new(
            Dialect::Github,
            api.token.expose(),
            vec![
                ("authorization", format!("Bearer {}", api.token.expose())),
                ("accept", "application/vnd.github+json".into()),
                ("x-github-api-version", "2022-11-28".into()),
                ("user-agent", concat!("stagehook/", env!("CARGO_PKG_VERSION")).into()),
            ],
        )?;
        let base = api.base.trim_end_matches('/').to_string();
        let deliveries = format!("{base}/{}/hooks/{}/deliveries", api.owner.api_path(), api.hook_id);
        Ok(Lister { http, deliveries, base, window, types, known, state: State::Start, newest_listed_ms: None })
    }

    pub async fn next_page(&mut self) -> Result<Option<Page>, ApiError> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Done => Ok(None),
            State::Start => {
                let (queue, known) = self.list().await?;
                self.state = State::Fetching { queue, known };
                Box::pin(self.next_page()).await
            }
            State::Fetching { mut queue, known } => {
                if queue.is_empty() {
                    return Ok((known > 0).then(|| Page { listed: known, missing: Vec::new() }));
                }
                let mut page = Page { listed: known, missing: Vec::new() };
                while page.missing.len() < FETCH_PER_PAGE {
                    let Some(summary) = queue.pop_front() else { break };
                    page.missing.push(self.fetch(&summary).await?);
                    page.listed += 1;
                    self.newest_listed_ms = Some(summary.delivered_ms);
                }
                if !queue.is_empty() {
                    self.state = State::Fetching { queue, known: 0 };
                }
                Ok(Some(page))
            }
        }
    }

    pub fn covered(&self) -> Window {
        // Before the fetching ends, the known events of the window are not placed in time:
        // the window is covered up to just before the newest delivery given.
        covered(self.window, self.newest_listed_ms, matches!(self.state, State::Done))
    }

    /// The window's deliveries of the events the store lacks, one per event, oldest first, and
    /// how many distinct events of the window it holds.
    async fn list(&mut self) -> Result<(VecDeque<Summary>, u64), ApiError> {
        let mut missing: HashMap<String, Summary> = HashMap::new();
        let mut known: HashSet<String> = HashSet::new();
        let mut url = format!("{}?per_page={PER_PAGE}", self.deliveries);
        'pages: loop {
            let answer = self.http.get(&url).await?;
            let items: Vec<Item> = serde_json::from_slice(&answer.body)
                .map_err(|e| ApiError::BadAnswer(format!("a list of hook deliveries that does not parse: {e}")))?;
            for item in items {
                let delivered_ms = parse_time(&item.delivered_at)?;
                if delivered_ms > self.window.until_ms {
                    continue;
                }
                if delivered_ms < self.window.since_ms {
                    // Newest first: everything after this is older still.
                    break 'pages;
                }
                let name = match &item.action {
                    Some(action) => format!("{}.{action}", item.event),
                    None => item.event.clone(),
                };
                if !type_matches(&self.types, &item.event) && !type_matches(&self.types, &name) {
                    continue;
                }
                if known.contains(&item.guid) {
                    continue;
                }
                if (self.known)(&item.guid) {
                    known.insert(item.guid);
                    continue;
                }
                // Newest first, so a later item of the same guid is an older delivery of it.
                missing.insert(item.guid.clone(), Summary { id: item.id, guid: item.guid, delivered_ms });
            }
            match next_link(&answer.headers) {
                Some(next) if next.starts_with(&format!("{}/", self.base)) => url = next,
                Some(next) => {
                    return Err(ApiError::BadAnswer(format!(
                        "a next page outside the API's base {}: {}",
                        self.base,
                        next.split('?').next().unwrap_or_default()
                    )))
                }
                None => break,
            }
        }
        let mut queue: Vec<Summary> = missing.into_values().collect();
        queue.sort_by_key(|s| (s.delivered_ms, s.id));
        Ok((queue.into(), known.len() as u64))
    }

    async fn fetch(&self, summary: &Summary) -> Result<Fetched, ApiError> {
        let answer = self.http.get(&format!("{}/{}", self.deliveries, summary.id)).await?;
        let delivery: Delivery<'_> = serde_json::from_slice(&answer.body)
            .map_err(|e| ApiError::BadAnswer(format!("hook delivery {} does not parse: {e}", summary.id)))?;
        let payload = delivery.request.payload.filter(|p| p.get().starts_with('{')).ok_or_else(|| {
            ApiError::BadAnswer(format!("hook delivery {} has no request payload object", summary.id))
        })?;
        let headers: Vec<(String, String)> = delivery
            .request
            .headers
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k.to_ascii_lowercase(), v)
            })
            .filter(|(k, _)| !SIGNATURE_HEADERS.contains(&k.as_str()))
            .collect();
        let form = headers.iter().any(|(k, v)| {
            k == "content-type" && v.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded")
        });
        // A hook whose content type is `form` posts `payload=<the JSON, urlencoded>`
        // (https://docs.github.com/en/webhooks/webhook-events-and-payloads#delivery-headers).
        let body = if form {
            form_urlencoded::Serializer::new(String::new()).append_pair("payload", payload.get()).finish().into_bytes()
        } else {
            payload.get().as_bytes().to_vec()
        };
        Ok(Fetched { event_id: summary.guid.clone(), created_ms: summary.delivered_ms, headers, body })
    }
}

/// The `rel="next"` URL of a `Link` header: `<url>; rel="next", <url>; rel="prev"`
/// (https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api).
fn next_link(headers: &hyper::HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p == "rel=\"next\"" || p == "rel=next"
        });
        let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| url.to_string())
    })
}

/// `2019-06-03T00:57:16Z` as Unix milliseconds.
fn parse_time(text: &str) -> Result<i64, ApiError> {
    let t = humantime::parse_rfc3339_weak(text)
        .map_err(|e| ApiError::BadAnswer(format!("a delivery time that is not RFC 3339 ({text:?}): {e}")))?;
    let since = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| ApiError::BadAnswer(format!("a delivery time before 1970: {text:?}")))?;
    Ok(since.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_is_found_among_others() {
        let mut h = hyper::HeaderMap::new();
        h.insert(
            "link",
            "<https://api.github.com/x?cursor=a>; rel=\"prev\", <https://api.github.com/x?per_page=100&cursor=v1_9>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert_eq!(next_link(&h).as_deref(), Some("https://api.github.com/x?per_page=100&cursor=v1_9"));
        h.insert("link", "<https://api.github.com/x?cursor=a>; rel=\"prev\"".parse().unwrap());
        assert_eq!(next_link(&h), None);
        assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert!(parse_time("yesterday").is_err());
    }
}
