//! `POST /staging/webhooks/<provider>`: the hot path.
//!
//! Guards run first and in order, each cheaper than the next: declared size, rate limit, provider
//! configured, media type, then the body is read under the size limit, the signature verified,
//! the payload parsed, the event claimed across instances (when duplicates are shared through
//! Redis), and the event handed to the store. The 2xx is sent only after the store says the
//! event is on disk.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes};
use futures_util::Stream;
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::errors::ApiError;
use super::{client_ip, content_length, read_body, with_state, AppState, BodyError, Client, RequestLog};
use crate::config::OnError;
use crate::providers::diagnose::{self, Diagnosis};
use crate::providers::{Accepted, Inbound, RefusalCode};
use crate::ratelimit::Decision;
use crate::redis::{Claim, Pending, Redis, Unavailable};
use crate::store::{Headers, NewEvent, RejectionParts, StoreError};

pub fn filter(state: Arc<AppState>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let known = {
        let state = state.clone();
        warp::path::param::<String>().and_then(move |name: String| {
            let found = state.endpoint(&name).is_some();
            async move {
                if found {
                    Ok(name)
                } else {
                    Err(warp::reject::not_found())
                }
            }
        })
    };
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::path("staging")
        .and(warp::path("webhooks"))
        .and(known)
        .and(warp::path::end())
        .and(warp::post())
        .and(with_state(state))
        .and(super::server::peer())
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            |name: String,
             state: Arc<AppState>,
             peer,
             path: warp::path::FullPath,
             query: String,
             headers,
             body| async move {
                handle(&state, &name, peer, path.as_str(), &query, headers, body).await
            },
        )
}

async fn handle<S, B>(
    state: &AppState,
    name: &str,
    peer: Option<SocketAddr>,
    path: &str,
    query: &str,
    headers: HeaderMap,
    body: S,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let start = Instant::now();
    let received_at_ms = state.clock.now_ms();
    let endpoint = state.endpoint(name).expect("the filter only passes known endpoints");
    let provider_name = endpoint.provider.name().to_string();
    let client = client_ip(peer, &headers, &state.trusted_proxies);

    let mut log = RequestLog { provider: Some(provider_name.clone()), ..Default::default() };
    let mut decision = None;
    // The body of a signature or payload refusal, which the rejection log keeps; other refusals
    // are only counted.
    let mut logged_body: Option<Bytes> = None;
    // Why a signature failed, for the person running stagehook (never for the sender).
    let mut diagnosis: Option<Diagnosis> = None;
    let result = async {
        let limit = state.config.limits.max_body_bytes;
        let declared = content_length(&headers);
        if declared.is_some_and(|n| n > limit) {
            return Err(ApiError::payload_too_large(limit));
        }
        // The shared backends' calls are boxed, and awaited only when configured: inline, their
        // large futures would grow every request's, shared backends or not.
        let d = match state.redis.as_ref().filter(|s| s.limits() && state.limiter.enabled()) {
            Some(shared) => Box::pin(shared_decision(state, shared, &client)).await?,
            None => local_decision(state, &client),
        };
        decision = state.limiter.enabled().then_some(d);
        if !d.allowed {
            // Named only on refusal: formatting it is work an accepted request need not do.
            let counted_as = client.bucket(&state.limiter);
            let err = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "more than {} requests in a minute from {counted_as}; retry after {} s",
                    d.limit, d.retry_after_s
                ),
            )
            .with_header("retry-after", d.retry_after_s);
            return Err(err);
        }
        if !endpoint.configured {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "provider_not_configured",
                format!("no secret is configured for {provider_name}; set it in the config file or the environment"),
            ));
        }
        endpoint.provider.precheck(&headers).map_err(ApiError::from)?;
        let body = read_body(body, limit, declared).await.map_err(|e| match e {
            BodyError::TooLarge => ApiError::payload_too_large(limit),
            other => other.into(),
        })?;
        // Only a kind that signs the URL reads it: for the others, formatting it would be an
        // allocation per request for nothing (a refusal's diagnosis builds it below).
        let url = match endpoint.provider.signs_url() {
            true => request_url(state, &headers, peer, path, query),
            false => String::new(),
        };
        let now_s = received_at_ms.div_euclid(1000);
        let inbound = Inbound { headers: &headers, body: &body, url: &url, now_s };
        let checked = endpoint.provider.verify(&inbound).and_then(|()| endpoint.provider.parse(&inbound));
        let parsed = match checked {
            Ok(parsed) => parsed,
            Err(refusal) => {
                // Only after a refusal, and at most `diagnose::PER_SECOND` a second.
                let signature = matches!(refusal.code, RefusalCode::InvalidSignature | RefusalCode::StaleTimestamp);
                if signature && state.diagnoses.admit(state.clock.now_ms()) {
                    let public_url_set = state.config.server.public_url.is_some();
                    // The diagnosis tries the other endpoints' kinds too, some of which sign it.
                    let url = request_url(state, &headers, peer, path, query);
                    let inbound = Inbound { url: &url, ..inbound };
                    diagnosis = diagnose::diagnose(endpoint, &state.endpoints, &inbound, &refusal, public_url_set);
                    if let Some(d) = &diagnosis {
                        tracing::warn!(provider = %provider_name, code = refusal.code.as_str(), diagnosis = d.code, "signature refused: {}", d.detail);
                    }
                }
                logged_body = Some(body);
                return Err(ApiError::from(refusal));
            }
        };
        let claim = match state.redis.as_ref().filter(|s| s.dedup()) {
            Some(shared) => Box::pin(claim(state, shared, endpoint, &parsed.event_id)).await?,
            None => None,
        };
        Ok((parsed, body, claim))
    }
    .await;

    let mut res = match result {
        Ok((parsed, body, Some(Claim::Elsewhere { id, .. }))) => {
            log.event_id = Some(parsed.event_id.clone());
            answer(endpoint, &id, &parsed.event_id, true, &body)
        }
        Ok((parsed, body, claim)) => {
            log.event_id = Some(parsed.event_id.clone());
            let pending = match claim {
                Some(Claim::Ours(pending)) => Some(pending),
                _ => None,
            };
            store_event(state, endpoint, &headers, &client, received_at_ms, start, parsed, body, pending).await
        }
        Err(error) => {
            log.code = Some(error.code);
            // The request's parts as they are: the store counts the refusal and cuts what it logs
            // to its bounds, copying only what it keeps.
            state.store.reject(RejectionParts {
                at_ms: received_at_ms,
                provider: &provider_name,
                code: error.code,
                message: &error.message,
                source_ip: &client,
                headers: headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())),
                body: logged_body.as_deref(),
                diagnosis: diagnosis.as_ref().map(|d| (d.code, d.detail.as_str())),
            });
            error.into_response()
        }
    };
    if let Some(d) = decision {
        add_rate_headers(&mut res, d);
    }
    if let Some(l) = res.extensions_mut().get_mut::<RequestLog>() {
        log.code = log.code.or(l.code);
    }
    res.extensions_mut().insert(log);
    res
}

#[allow(clippy::too_many_arguments)]
async fn store_event(
    state: &AppState,
    endpoint: &crate::providers::Endpoint,
    headers: &HeaderMap,
    client: &Client,
    received_at_ms: i64,
    start: Instant,
    parsed: crate::providers::Parsed,
    body: Bytes,
    claimed: Option<Pending>,
) -> Response {
    // Picked by the event's type: its routes' targets, or the endpoint's `forward_to`.
    let targets = endpoint.targets_for(&parsed.event_type);
    let event = NewEvent {
        provider: endpoint.provider.name().to_string(),
        event_id: parsed.event_id.clone(),
        event_type: parsed.event_type,
        received_at_ms,
        source_ip: client.to_string(),
        // Encoded from the map as the log keeps them, without an owned copy of each: the
        // provider's checks and a refusal's log read the map as it is too.
        headers: Headers::from_raw(headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes()))),
        // Bytes: a reference count, not a copy; the answer may echo part of the body.
        body: body.clone(),
        processing_us: start.elapsed().as_micros() as u64,
        targets,
        items: parsed.items,
        parent: None,
        source: crate::store::Source::Webhook,
    };
    let stored = state.store.ingest(event).await;
    // The claim follows the local commit: committed once the event is on disk (a duplicate of
    // this store's own is committed under its id), released when it is not, so that the
    // provider's retry is recorded rather than taken for a duplicate.
    if let (Some(redis), Some(pending)) = (&state.redis, claimed) {
        match &stored {
            Ok(done) => Box::pin(redis.commit(pending, &done.id.to_string())).await,
            Err(_) => Box::pin(redis.release(pending)).await,
        }
    }
    match stored {
        Ok(done) => answer(endpoint, &done.id.to_string(), &parsed.event_id, done.duplicate, &body),
        // The conversion logs the error; the span names the event in that line.
        Err(e) => tracing::error_span!("event not stored", event_id = %parsed.event_id)
            .in_scope(|| not_stored(e))
            .into_response(),
    }
}

/// The answer to an event the store could not take: what [`ApiError::from`] gives every route,
/// and, when that is `storage_unavailable`, in a stored event's words and with `Retry-After: 1`.
/// Neither moves into the conversion: its own words ("could not be read or written") fit the
/// routes that read, and the header, which tells the provider to send the event again soon, has
/// no meaning to a person reading the event list.
fn not_stored(e: StoreError) -> ApiError {
    let converted = ApiError::from(e);
    if converted.code != "storage_unavailable" {
        return converted;
    }
    ApiError::storage_unavailable().with_header("retry-after", 1)
}

/// The provider's 2xx for an event stored as `id` (here or, for a duplicate, maybe elsewhere).
fn answer(endpoint: &crate::providers::Endpoint, id: &str, event_id: &str, duplicate: bool, body: &Bytes) -> Response {
    let answer = endpoint.provider.answer(&Accepted { id, event_id, duplicate, body });
    let mut res = Response::new(answer.body.into());
    res.headers_mut().insert("content-type", HeaderValue::from_static(answer.content_type));
    res
}

/// The shared limiter's decision when Redis answers; this instance's own otherwise, or
/// `503 redis_unavailable` under `redis.on_error = "closed"`.
async fn shared_decision(state: &AppState, redis: &Redis, client: &Client) -> Result<Decision, ApiError> {
    match redis.check_limit(&client.bucket(&state.limiter), state.limiter.limit()).await {
        Ok(d) => Ok(d),
        Err(Unavailable) if redis.on_error() == OnError::Open => Ok(local_decision(state, client)),
        Err(Unavailable) => Err(ApiError::redis_unavailable()),
    }
}

/// This instance's own limiter.
fn local_decision(state: &AppState, client: &Client) -> Decision {
    match client {
        Client::Addr(ip) => state.limiter.check(*ip),
        Client::Named(name) => state.limiter.check_named(name),
    }
}

/// The event's claim across instances, when duplicates are shared: `None` when the local store
/// decides alone (Redis down under `on_error = "open"`). Another instance's pending claim is
/// `409 in_progress`, so that the provider retries once it is committed or has expired.
async fn claim(
    state: &AppState,
    redis: &Redis,
    endpoint: &crate::providers::Endpoint,
    event_id: &str,
) -> Result<Option<Claim>, ApiError> {
    let provider = endpoint.provider.name();
    // Asked only about a claim an earlier process of this instance committed: a restart answers
    // its own events from its own store.
    let held_here = || state.store.find_by_event_id(provider, event_id).is_ok_and(|found| found.is_some());
    match redis.claim(provider, event_id, held_here).await {
        Ok(Claim::InProgress { retry_after_s }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "in_progress",
            format!("another instance is storing event {event_id}; retry after {retry_after_s} s"),
        )
        .with_header("retry-after", retry_after_s)),
        Ok(claim) => Ok(Some(claim)),
        Err(Unavailable) if redis.on_error() == OnError::Open => Ok(None),
        Err(Unavailable) => Err(ApiError::redis_unavailable()),
    }
}

fn add_rate_headers(res: &mut Response, d: Decision) {
    let h = res.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(d.limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(d.remaining));
}

/// The URL the provider called: `server.public_url` when set (a tunnel or proxy in front),
/// otherwise the scheme and Host of the request itself.
///
/// The Host is used here, and only here, because this URL is checked, never signed: it must be
/// the one the provider signed, and without `public_url` the request is all there is to say what
/// that was (stagehook's own base URL, the bind address, is not what a tunnel's caller signs). A
/// client that lies about its Host only makes its own signature fail to match; it learns and
/// gets nothing.
fn request_url(state: &AppState, headers: &HeaderMap, peer: Option<SocketAddr>, path: &str, query: &str) -> String {
    let mut url = match &state.config.server.public_url {
        Some(_) => state.base_url(),
        None => {
            let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost");
            let from_proxy = peer.is_some_and(|p| state.trusted_proxies.iter().any(|r| r.contains(p.ip())));
            let scheme = headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .filter(|p| from_proxy && (*p == "https" || *p == "http"))
                .unwrap_or("http");
            format!("{scheme}://{host}")
        }
    };
    url.push_str(path);
    if !query.is_empty() {
        url.push('?');
        url.push_str(query);
    }
    url
}
