//! Edit and replay: `POST /staging/webhooks/events/<id>/replay` with a body. The edited copy
//! is a new event (its `parent` names the original, which is left as it was), parsed by its
//! provider as an arrival would be, and queued for the provider's targets. Nothing here signs:
//! every delivery is signed afresh for its target (`delivery/`), so the copy reaches the app
//! signed exactly as the provider would have signed that body.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use ulid::Ulid;
use warp::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use warp::reply::Response;

use super::errors::ApiError;
use super::{client_ip, ok_json, AppState};
use crate::providers::json;
use crate::providers::Inbound;
use crate::store::NewEvent;

/// The most header overrides one edit may make: more than any debugging edit needs, and few
/// enough that applying them to a head is cheap (each one looks through the whole head).
pub const MAX_OVERRIDES: usize = 64;

/// What may change: the body (a JSON string is the raw bytes, as a form body needs; any other
/// JSON value is written compact) and headers (a value sets, `null` removes).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Edit {
    /// A repeated key is refused here, as in a body that arrives ([`json`]): written out again,
    /// the value would silently keep one of the two.
    #[serde(deserialize_with = "json::unique_option")]
    body: Option<Value>,
    headers: Overrides,
}

impl Edit {
    /// `None` for an empty request or one that changes nothing: a plain replay of the original.
    pub fn read(bytes: &[u8]) -> Result<Option<Edit>, ApiError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let edit: Edit = serde_json::from_slice(bytes).map_err(|e| {
            let said = e.to_string();
            // A bound or a repeat is said as it is; any other mistake with the shape expected.
            if said.starts_with(HEADERS) {
                ApiError::invalid_payload(said)
            } else if said.starts_with("duplicate key") {
                ApiError::invalid_payload(format!("body: {said}"))
            } else {
                ApiError::invalid_payload(format!(
                    "expected {{\"body\": ..., \"headers\": {{name: value or null}}}}: {said}"
                ))
            }
        })?;
        Ok((edit.body.is_some() || !edit.headers.0.is_empty()).then_some(edit))
    }
}

/// How the overrides' own refusals begin.
const HEADERS: &str = "headers: ";

/// The header overrides in the order given, names lowercased. Read as they arrive: the one after
/// [`MAX_OVERRIDES`] is refused before the rest is read, and a name given twice (in any case) is
/// refused rather than one of the two silently kept.
#[derive(Debug, Default)]
struct Overrides(Vec<(String, Option<String>)>);

impl<'de> Deserialize<'de> for Overrides {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Overrides, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = Overrides;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of header names to a value or null")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Overrides, A::Error> {
                let mut out: Vec<(String, Option<String>)> = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    if out.len() == MAX_OVERRIDES {
                        return Err(de::Error::custom(format!(
                            "{HEADERS}at most {MAX_OVERRIDES} overrides in one edit"
                        )));
                    }
                    let value = map.next_value::<Option<String>>()?;
                    let name = name.to_ascii_lowercase();
                    if out.iter().any(|(k, _)| *k == name) {
                        return Err(de::Error::custom(format!(
                            "{HEADERS}`{}` twice (header names are case-insensitive)",
                            json::shown(&name)
                        )));
                    }
                    out.push((name, value));
                }
                Ok(Overrides(out))
            }
        }
        d.deserialize_map(Members)
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
    if !endpoint.has_targets() {
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
    let max_head = s.config.server.max_header_bytes;
    let headers = edited_headers(original.headers, &edit.headers.0, body.len(), max_head)?;
    let map = header_map(&headers);
    let now_ms = s.clock.now_ms();
    let url = format!("{}/staging/webhooks/{}", s.base_url(), endpoint.path);
    let inbound = Inbound { headers: &map, body: &body, url: &url, now_s: now_ms.div_euclid(1000) };
    // The provider's own parse, as an arrival gets: an edit it could not have sent is refused
    // with the same code and words.
    let parsed = endpoint.provider.parse(&inbound).map_err(ApiError::from)?;
    // The edited copy's type may differ from its parent's, and picks its own targets.
    let targets = endpoint.targets_for(&parsed.event_type);
    if targets.is_empty() {
        return Err(ApiError::no_target_for(&original.provider, &parsed.event_type));
    }
    let masked: Vec<String> = targets.iter().map(|u| crate::redact::url(u)).collect();
    let copy = NewEvent {
        provider: original.provider,
        event_id: parsed.event_id,
        event_type: parsed.event_type,
        received_at_ms: now_ms,
        source_ip: client_ip(peer, request_headers, &s.trusted_proxies).to_string(),
        headers: headers.into(),
        body,
        processing_us: start.elapsed().as_micros() as u64,
        targets,
        items: parsed.items,
        parent: Some(parent),
        source: crate::store::Source::Webhook,
    };
    let (event_id, event_type) = (copy.event_id.clone(), copy.event_type.clone());
    let stored = s.store.ingest(copy).await?;
    Ok(ok_json(&json!({
        "replayed": 1,
        "id": stored.id.to_string(),
        "parent_id": parent.to_string(),
        "event_id": event_id,
        "event_type": event_type,
        "targets": masked,
    })))
}

/// The original's headers with the overrides (lowercase, each name once) applied. A
/// `content-length` header (the hop's, never forwarded) is kept true for the new body.
///
/// An edited head is held to what an arriving one is (`server.max_header_bytes`, `max_head`):
/// each name and value, and when anything is overridden, the whole edited head as it is written
/// on the wire (`name: value` and a line end each, and the blank line). The app behind it would
/// refuse a larger one, and no provider sends one.
fn edited_headers(
    mut headers: Vec<(String, String)>,
    overrides: &[(String, Option<String>)],
    body_len: usize,
    max_head: usize,
) -> Result<Vec<(String, String)>, ApiError> {
    let too_long = |what: String, len: usize| {
        ApiError::invalid_payload(format!(
            "{HEADERS}{what} is {len} bytes, more than a whole request head may be (server.max_header_bytes = {max_head})"
        ))
    };
    for (name, value) in overrides {
        let shown = json::shown(name);
        if name.len() > max_head {
            return Err(too_long(format!("the name `{shown}`"), name.len()));
        }
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ApiError::invalid_payload(format!("{HEADERS}`{shown}` is not a header name")));
        }
        if let Some(v) = value {
            if v.len() > max_head {
                return Err(too_long(format!("the value of `{shown}`"), v.len()));
            }
            if HeaderValue::from_str(v).is_err() {
                return Err(ApiError::invalid_payload(format!(
                    "{HEADERS}the value of `{shown}` is not a header value"
                )));
            }
        }
    }
    for (name, value) in overrides {
        let at = headers.iter().position(|(k, _)| k == name);
        headers.retain(|(k, _)| k != name);
        if let Some(v) = value {
            headers.insert(at.unwrap_or(headers.len()), (name.clone(), v.clone()));
        }
    }
    if let Some((_, v)) = headers.iter_mut().find(|(k, _)| k == "content-length") {
        *v = body_len.to_string();
    }
    if !overrides.is_empty() {
        let head = headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum::<usize>() + 2;
        if head > max_head {
            return Err(ApiError::invalid_payload(format!(
                "{HEADERS}the edited head is {head} bytes, more than server.max_header_bytes ({max_head})"
            )));
        }
    }
    Ok(headers)
}

/// The headers as a request's: a stored value that is no longer a valid header (it was read
/// lossily) is left out, as a provider's parse never needs one; so is any beyond what a map
/// holds (a stored head never has that many).
fn header_map(headers: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            if map.try_append(k, v).is_err() {
                break;
            }
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
        let overrides = vec![
            ("content-type".to_string(), None),
            ("x-a".to_string(), Some("new".to_string())),
            ("x-b".to_string(), Some("added".to_string())),
        ];
        let got = edited_headers(original, &overrides, 42, HEAD).unwrap();
        assert_eq!(got, pairs(&[("x-a", "new"), ("content-length", "42"), ("x-b", "added")]));
    }

    const HEAD: usize = 64 * 1024;

    #[test]
    fn a_bad_name_or_value_is_refused() {
        let bad_name = vec![("a b".to_string(), Some("1".to_string()))];
        assert_eq!(edited_headers(vec![], &bad_name, 0, HEAD).unwrap_err().code, "invalid_payload");
        let bad_value = vec![("x-a".to_string(), Some("line\nbreak".to_string()))];
        assert_eq!(edited_headers(vec![], &bad_value, 0, HEAD).unwrap_err().code, "invalid_payload");
    }

    #[test]
    fn an_edited_head_is_held_to_max_header_bytes() {
        let original = pairs(&[("x-big", &"a".repeat(900))]);
        let fits = vec![("x-b".to_string(), Some("b".repeat(100)))];
        assert!(edited_headers(original.clone(), &fits, 0, 1024).is_ok());
        let over = vec![("x-b".to_string(), Some("b".repeat(200)))];
        let e = edited_headers(original.clone(), &over, 0, 1024).unwrap_err();
        assert!(e.message.contains("server.max_header_bytes (1024)"), "{}", e.message);
        let removed = vec![("x-big".to_string(), None), ("x-b".to_string(), Some("b".repeat(1000)))];
        assert!(edited_headers(original, &removed, 0, 1024).is_ok(), "what is removed makes room");
        let long_name = vec![("n".repeat(2000), None)];
        let e = edited_headers(vec![], &long_name, 0, 1024).unwrap_err();
        assert!(e.message.contains("2000 bytes") && e.message.len() < 200, "{}", e.message);
    }

    #[test]
    fn overrides_are_counted_and_a_name_twice_is_refused_as_they_are_read() {
        let n = |count: usize| {
            let members: Vec<String> = (0..count).map(|i| format!("\"x-{i}\": \"1\"")).collect();
            format!("{{\"headers\": {{{}}}}}", members.join(","))
        };
        assert_eq!(Edit::read(n(MAX_OVERRIDES).as_bytes()).unwrap().unwrap().headers.0.len(), MAX_OVERRIDES);
        let e = Edit::read(n(MAX_OVERRIDES + 1).as_bytes()).unwrap_err();
        assert!(e.message.starts_with("headers: at most 64 overrides"), "{}", e.message);
        let e = Edit::read(br#"{"headers": {"X-A": "1", "x-a": null}}"#).unwrap_err();
        assert!(e.message.starts_with("headers: `x-a` twice"), "{}", e.message);
        let e = Edit::read(br#"{"body": {"a": {"b": 1, "b": 2}}}"#).unwrap_err();
        assert!(e.message.starts_with("body: duplicate key `b` at $.a"), "{}", e.message);
        assert!(Edit::read(br#"{"body": null}"#).unwrap().is_none(), "a null body is no change");
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
