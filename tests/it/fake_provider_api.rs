//! Stand-ins for the providers' APIs a backfill reads: a real HTTP server on loopback serving
//! Stripe's `GET /v1/events` and GitHub's hook deliveries with the data a test sets, honouring
//! their documented parameters (Stripe's `created[gte|lte]`, `type`, `types[]`, `limit`,
//! `starting_after`, `ending_before`, newest first either way; GitHub's `per_page`, a `cursor`
//! in the `Link` header's `rel="next"` URL, newest first), recording every request, and
//! answering a scripted fault on the Nth request (a 429 with `Retry-After`, a 500) or a 401 on
//! every one.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;
use warp::Filter;

pub const STRIPE_KEY: &str = "sk_test_fakeprovider0123456789";
pub const GITHUB_TOKEN: &str = "ghp_fakeprovider0123456789";

#[derive(Debug, Clone)]
pub struct Got {
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// 429 with `Retry-After: secs`.
    RateLimit(u64),
    /// 500 with an error body.
    ServerError,
}

/// A Stripe event, created in the order the test adds them (the API's creation order).
#[derive(Debug, Clone)]
pub struct StripeEvent {
    pub id: String,
    pub created: i64,
    pub kind: String,
}

impl StripeEvent {
    /// The event object as the fake serves it, byte for byte.
    pub fn json(&self) -> String {
        format!(
            r#"{{"id":"{}","object":"event","api_version":"2024-06-20","created":{},"data":{{"object":{{"id":"in_{}","object":"invoice","amount_due":1200}}}},"livemode":false,"pending_webhooks":0,"request":{{"id":null,"idempotency_key":null}},"type":"{}"}}"#,
            self.id, self.created, self.id, self.kind
        )
    }
}

/// A GitHub hook delivery.
#[derive(Debug, Clone)]
pub struct GithubDelivery {
    pub id: u64,
    pub guid: String,
    pub event: String,
    pub action: Option<String>,
    /// `2024-05-01T10:00:00Z`.
    pub delivered_at: String,
    pub redelivery: bool,
    pub headers: Vec<(String, String)>,
    /// The payload object's JSON text, as the detail answer embeds it.
    pub payload: String,
}

#[derive(Default)]
struct Shared {
    got: Mutex<Vec<Got>>,
    faults: Mutex<HashMap<usize, Fault>>,
    unauthorized: Mutex<bool>,
    stripe: Mutex<Vec<StripeEvent>>,
    github: Mutex<Vec<GithubDelivery>>,
}

pub struct FakeProviderApi {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for FakeProviderApi {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

type Reply = warp::http::Response<String>;

impl FakeProviderApi {
    pub async fn start() -> FakeProviderApi {
        let shared = Arc::new(Shared::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let s = shared.clone();
        let route = warp::get()
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::headers_cloned())
            .map(move |path: warp::path::FullPath, query: String, headers: warp::http::HeaderMap| {
                let got = Got {
                    path: path.as_str().to_string(),
                    query: form_urlencoded::parse(query.as_bytes()).into_owned().collect(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                        .collect(),
                };
                answer(&s, got, addr)
            });
        let (tx, rx) = oneshot::channel::<()>();
        let server = warp::serve(route).incoming(listener).graceful(async {
            let _ = rx.await;
        });
        tokio::spawn(server.run());
        FakeProviderApi { addr, shared, stop: Some(tx) }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_stripe_events(&self, events: Vec<StripeEvent>) {
        *self.shared.stripe.lock() = events;
    }

    pub fn set_github_deliveries(&self, deliveries: Vec<GithubDelivery>) {
        *self.shared.github.lock() = deliveries;
    }

    /// The `n`th request (from 1) gets this fault instead of its answer.
    pub fn fault_on(&self, n: usize, fault: Fault) {
        self.shared.faults.lock().insert(n, fault);
    }

    /// Every request gets a 401, as for a revoked credential.
    pub fn refuse_all(&self) {
        *self.shared.unauthorized.lock() = true;
    }

    pub fn got(&self) -> Vec<Got> {
        self.shared.got.lock().clone()
    }
}

fn reply(status: u16, body: String) -> Reply {
    warp::http::Response::builder().status(status).header("content-type", "application/json").body(body).unwrap()
}

fn answer(s: &Shared, got: Got, addr: SocketAddr) -> Reply {
    let n = {
        let mut log = s.got.lock();
        log.push(got.clone());
        log.len()
    };
    let stripe = got.path.starts_with("/v1/");
    if let Some(fault) = s.faults.lock().remove(&n) {
        return match fault {
            Fault::RateLimit(secs) => {
                let mut r = reply(429, r#"{"error":{"message":"Too many requests"}}"#.into());
                r.headers_mut().insert("retry-after", secs.to_string().parse().unwrap());
                r
            }
            Fault::ServerError => reply(500, r#"{"error":{"message":"An unknown error occurred"}}"#.into()),
        };
    }
    let (want, refused) = if stripe {
        (
            format!("Bearer {STRIPE_KEY}"),
            r#"{"error":{"message":"Invalid API Key provided: sk_test_****6789","type":"invalid_request_error"}}"#,
        )
    } else {
        (
            format!("Bearer {GITHUB_TOKEN}"),
            r#"{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest","status":"401"}"#,
        )
    };
    if *s.unauthorized.lock() || got.header("authorization") != Some(want.as_str()) {
        return reply(401, refused.into());
    }
    if got.path == "/v1/events" {
        return stripe_events(s, &got);
    }
    github(s, &got, addr)
}

fn stripe_error(status: u16, message: &str) -> Reply {
    reply(status, format!(r#"{{"error":{{"message":"{message}","type":"invalid_request_error"}}}}"#))
}

/// `GET /v1/events` as https://docs.stripe.com/api/events/list and
/// https://docs.stripe.com/api/pagination document it.
fn stripe_events(s: &Shared, got: &Got) -> Reply {
    let int = |name: &str| got.param(name).map(|v| v.parse::<i64>());
    let (gte, lte, limit) = match (int("created[gte]"), int("created[lte]"), int("limit")) {
        (Some(Err(_)), ..) | (_, Some(Err(_)), _) | (.., Some(Err(_))) => return stripe_error(400, "Invalid integer"),
        (g, l, lim) => (g.map(Result::unwrap), l.map(Result::unwrap), lim.map(Result::unwrap).unwrap_or(10)),
    };
    if !(1..=100).contains(&limit) {
        return stripe_error(400, "Invalid limit: must be between 1 and 100");
    }
    let types: Vec<&str> = got.query.iter().filter(|(k, _)| k == "types[]").map(|(_, v)| v.as_str()).collect();
    if types.len() > 20 {
        return stripe_error(400, "types: at most 20");
    }
    let kind = got.param("type");
    if kind.is_some() && !types.is_empty() {
        return stripe_error(400, "You may only specify one of these parameters: type, types");
    }
    let events = s.stripe.lock();
    // Newest first: the reverse of creation order.
    let listed: Vec<&StripeEvent> = events
        .iter()
        .rev()
        .filter(|e| gte.is_none_or(|g| e.created >= g) && lte.is_none_or(|l| e.created <= l))
        .filter(|e| kind.is_none_or(|k| wildcard(k, &e.kind)))
        .filter(|e| types.is_empty() || types.contains(&e.kind.as_str()))
        .collect();
    let position = |id: &str| listed.iter().position(|e| e.id == id);
    let limit = limit as usize;
    let (page, has_more): (&[&StripeEvent], bool) = match (got.param("starting_after"), got.param("ending_before")) {
        (Some(_), Some(_)) => {
            return stripe_error(
                400,
                "Received both starting_after and ending_before parameters. Please pass in only one.",
            )
        }
        (Some(after), None) => {
            let Some(i) = position(after) else { return stripe_error(400, "No such event") };
            let rest = &listed[i + 1..];
            (&rest[..rest.len().min(limit)], rest.len() > limit)
        }
        (None, Some(before)) => {
            // The `limit` objects just newer than `before`, still newest first.
            let Some(i) = position(before) else { return stripe_error(400, "No such event") };
            let rest = &listed[..i];
            (&rest[rest.len().saturating_sub(limit)..], rest.len() > limit)
        }
        (None, None) => (&listed[..listed.len().min(limit)], listed.len() > limit),
    };
    let data: Vec<String> = page.iter().map(|e| e.json()).collect();
    reply(
        200,
        format!(
            "{{\n  \"object\": \"list\",\n  \"data\": [\n    {}\n  ],\n  \"has_more\": {has_more},\n  \"url\": \"/v1/events\"\n}}",
            data.join(",\n    ")
        ),
    )
}

fn wildcard(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => name.len() >= head.len() + tail.len() && name.starts_with(head) && name.ends_with(tail),
    }
}

/// GitHub's hook deliveries, as
/// https://docs.github.com/en/rest/webhooks/repo-deliveries documents them.
fn github(s: &Shared, got: &Got, addr: SocketAddr) -> Reply {
    let not_found = || reply(404, r#"{"message":"Not Found","status":"404"}"#.into());
    let parts: Vec<&str> = got.path.trim_start_matches('/').split('/').collect();
    let rest = match parts.as_slice() {
        ["repos", _, _, "hooks", _, rest @ ..] | ["orgs", _, "hooks", _, rest @ ..] => rest,
        _ => return not_found(),
    };
    let list_path = got.path.trim_end_matches(&format!("/{}", rest.get(1).copied().unwrap_or_default())).to_string();
    let mut deliveries = s.github.lock().clone();
    // Newest first.
    deliveries.sort_by(|a, b| (&b.delivered_at, b.id).cmp(&(&a.delivered_at, a.id)));
    match rest {
        ["deliveries"] => {
            let per_page = got.param("per_page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(30).min(100);
            let start = match got.param("cursor") {
                None => 0,
                Some(c) => {
                    let Some(id) = c.strip_prefix("v1_").and_then(|i| i.parse::<u64>().ok()) else {
                        return reply(400, r#"{"message":"Bad cursor"}"#.into());
                    };
                    match deliveries.iter().position(|d| d.id == id) {
                        Some(i) => i,
                        None => return reply(400, r#"{"message":"Bad cursor"}"#.into()),
                    }
                }
            };
            let page = &deliveries[start..(start + per_page).min(deliveries.len())];
            let items: Vec<serde_json::Value> = page
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "id": d.id, "guid": d.guid, "delivered_at": d.delivered_at, "redelivery": d.redelivery,
                        "duration": 0.27, "status": "OK", "status_code": 200, "event": d.event,
                        "action": d.action, "installation_id": null, "repository_id": 7,
                        "throttled_at": null,
                    })
                })
                .collect();
            let mut r = reply(200, serde_json::to_string(&items).unwrap());
            if let Some(next) = deliveries.get(start + per_page) {
                let link =
                    format!("<http://{addr}{list_path}?per_page={per_page}&cursor=v1_{}>; rel=\"next\"", next.id);
                r.headers_mut().insert("link", link.parse().unwrap());
            }
            r
        }
        ["deliveries", id] => {
            let Some(d) = id.parse::<u64>().ok().and_then(|id| deliveries.iter().find(|d| d.id == id)) else {
                return not_found();
            };
            let headers: serde_json::Map<String, serde_json::Value> =
                d.headers.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
            let head = serde_json::json!({
                "id": d.id, "guid": d.guid, "delivered_at": d.delivered_at, "redelivery": d.redelivery,
                "duration": 0.27, "status": "OK", "status_code": 200, "event": d.event, "action": d.action,
                "installation_id": null, "repository_id": 7, "url": "https://app.example/hook",
            });
            let head = serde_json::to_string(&head).unwrap();
            let body = format!(
                r#"{},"request":{{"headers":{},"payload":{}}},"response":{{"headers":{{}},"payload":"ok"}}}}"#,
                head.trim_end_matches('}'),
                serde_json::to_string(&headers).unwrap(),
                d.payload
            );
            reply(200, body)
        }
        _ => not_found(),
    }
}
