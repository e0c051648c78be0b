//! Edit and replay: `POST /staging/webhooks/events/<id>/replay` with a body. The edited copy
//! is a new event (its `parent` names the original, which is left as it was), parsed by its
//! provider as an arrival would be, and queued for the provider's targets. Nothing here signs:
//! every delivery is signed afresh for its target (`delivery/`), so the copy reaches the app
//! signed exactly as the provider would have signed that body.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use ulid::Ulid;
use warp::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use warp::reply::Response;

use super::errors::ApiError;
use super::{client_ip, ok_json, AppState};
use crate::providers::Inbound;
use crate::store::NewEvent;

/// What may change: the body (a JSON string is the raw bytes, as a form body needs; any other
/// JSON value is written compact) and headers (a value sets, `null` removes).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Edit {
    body: Option<Value>,
    headers: BTreeMap<String, Option<String>>,
}

impl Edit {
    /// `None` for an empty request or one that changes nothing: a plain replay of the original.
    pub fn read(bytes: &[u8]) -> Result<Option<Edit>, ApiError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let edit: Edit = serde_json::from_slice(bytes).map_err(|e| {
            ApiError::invalid_payload(format!("expected {{\"body\": ..., \"headers\": {{name: value or null}}}}: {e}"))
        })?;
        Ok((edit.body.is_some() || !edit.headers.is_empty()).then_some(edit))
    }
}

/// The most an edit request may hold: twice the body limit (a body as a JSON string is escaped)
/// and room for the headers.
pub fn request_limit(max_body_bytes: u64) -> u64 {
    max_body_bytes.saturating_mul(2).saturating_add(64 * 1024)
}

/// Stores the edited copy of `parent` and queues its delivery; answers with the copy's id.
pub async fn replay_edited(
    s: &AppState,
    parent: Ulid,
    edit: Edit,
    peer: Option<SocketAddr>,
    request_headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let (original, original_body) =
        s.store.get_event(parent)?.ok_or_else(|| ApiError::not_found(format!("no event `{parent}`")))?;
    let endpoint = s.endpoints.iter().find(|x| x.provider.name() == original.provider).ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "not_editable",
            format!("{} is not a provider's event, so there is nothing to sign an edit as", original.provider),
        )
    })?;
    if endpoint.targets.is_empty() {
        return Err(ApiError::no_target(&original.provider));
    }
    if !endpoint.provider.can_sign() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "cannot_sign",
            format!(
                "{} cannot sign an edited body here (deliveries carry the original signature), so the app \
                 would refuse it; configure the provider's staging signing key",
                original.provider
            ),
        ));
    }
    let limit = s.config.limits.max_body_bytes;
    let body = match edit.body {
        None => Bytes::from(original_body),
        Some(Value::String(text)) => Bytes::from(text),
        Some(value) => Bytes::from(serde_json::to_vec(&value).map_err(|_| ApiError::internal())?),
    };
    if body.len() as u64 > limit {
        return Err(ApiError::payload_too_large(limit));
    }
    let headers = edited_headers(original.headers, &edit.headers, body.len())?;
    let map = header_map(&headers);
    let now_ms = s.clock.now_ms();
    let url = format!("{}/staging/webhooks/{}", s.base_url(), endpoint.path);
    let inbound = Inbound { headers: &map, body: &body, url: &url, now_s: now_ms.div_euclid(1000) };
    // The provider's own parse, as an arrival gets: an edit it could not have sent is refused
    // with the same code and words.
    let parsed = endpoint.provider.parse(&inbound).map_err(ApiError::from)?;
    let copy = NewEvent {
        provider: original.provider,
        event_id: parsed.event_id,
        event_type: parsed.event_type,
        received_at_ms: now_ms,
        source_ip: client_ip(peer, request_headers, &s.trusted_proxies).to_string(),
        headers,
        body,
        processing_us: start.elapsed().as_micros() as u64,
        targets: endpoint.targets.clone(),
        items: parsed.items,
        parent: Some(parent),
    };
    let (event_id, event_type) = (copy.event_id.clone(), copy.event_type.clone());
    let stored = s.store.ingest(copy).await?;
    Ok(ok_json(&json!({
        "replayed": 1,
        "id": stored.id.to_string(),
        "parent_id": parent.to_string(),
        "event_id": event_id,
        "event_type": event_type,
    })))
}

/// The original's headers with the overrides applied, names lowercased. A `content-length`
/// header (the hop's, never forwarded) is kept true for the new body.
fn edited_headers(
    mut headers: Vec<(String, String)>,
    overrides: &BTreeMap<String, Option<String>>,
    body_len: usize,
) -> Result<Vec<(String, String)>, ApiError> {
    for (name, value) in overrides {
        let name = name.to_ascii_lowercase();
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ApiError::invalid_payload(format!("headers: `{name}` is not a header name")));
        }
        if let Some(v) = value {
            if HeaderValue::from_str(v).is_err() {
                return Err(ApiError::invalid_payload(format!("headers: the value of `{name}` is not a header value")));
            }
        }
        let at = headers.iter().position(|(k, _)| *k == name);
        headers.retain(|(k, _)| *k != name);
        if let Some(v) = value {
            headers.insert(at.unwrap_or(headers.len()), (name, v.clone()));
        }
    }
    if let Some((_, v)) = headers.iter_mut().find(|(k, _)| k == "content-length") {
        *v = body_len.to_string();
    }
    Ok(headers)
}

/// The headers as a request's: a stored value that is no longer a valid header (it was read
/// lossily) is left out, as a provider's parse never needs one.
fn header_map(headers: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            map.append(k, v);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn overrides_set_replace_in_place_and_remove() {
        let original =
            pairs(&[("content-type", "application/json"), ("x-a", "1"), ("x-a", "2"), ("content-length", "9")]);
        let overrides = BTreeMap::from([
            ("X-A".to_string(), Some("new".to_string())),
            ("content-type".to_string(), None),
            ("x-b".to_string(), Some("added".to_string())),
        ]);
        let got = edited_headers(original, &overrides, 42).unwrap();
        assert_eq!(got, pairs(&[("x-a", "new"), ("content-length", "42"), ("x-b", "added")]));
    }

    #[test]
    fn a_bad_name_or_value_is_refused() {
        let bad_name = BTreeMap::from([("a b".to_string(), Some("1".to_string()))]);
        assert_eq!(edited_headers(vec![], &bad_name, 0).unwrap_err().code, "invalid_payload");
        let bad_value = BTreeMap::from([("x-a".to_string(), Some("line\nbreak".to_string()))]);
        assert_eq!(edited_headers(vec![], &bad_value, 0).unwrap_err().code, "invalid_payload");
    }

    #[test]
    fn an_empty_request_or_one_without_changes_is_a_plain_replay() {
        assert!(Edit::read(b"").unwrap().is_none());
        assert!(Edit::read(b" {} ").unwrap().is_none());
        assert!(Edit::read(br#"{"body": {"a": 1}}"#).unwrap().is_some());
        assert!(Edit::read(br#"{"headers": {"x-a": null}}"#).unwrap().is_some());
        assert_eq!(Edit::read(br#"{"bdy": 1}"#).unwrap_err().code, "invalid_payload");
    }
}
