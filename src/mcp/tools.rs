//! The tools of `stagehook mcp`: each one's name, description and JSON schema for its input, and
//! its call against the running stagehook's API. A failing call is a tool result with `isError`
//! and the API's error code (the agent reads it and can correct itself), never a protocol error;
//! a write tool called without `--allow-write`, or an unknown tool, is a protocol error: it was
//! never offered.

use serde_json::{json, Map, Value};

use super::{RpcError, Server, INVALID_PARAMS};
use crate::backfill::remote::RemoteError;
use crate::send::{SendFailure, SendRequest};
use crate::tail::urlencoding;

/// The most fixtures one `send_fixture` call sends.
const MAX_SENDS: u64 = 10;
/// The rejections `why_signature_failed` shows unless asked for more.
const DEFAULT_REJECTIONS: u64 = 20;

struct Tool {
    name: &'static str,
    write: bool,
    description: &'static str,
    schema: Value,
}

fn tools() -> Vec<Tool> {
    let id = json!({"type": "string", "description": "stagehook's id of the event (the ULID list_events gives), or the provider's event id"});
    vec![
        Tool {
            name: "list_events",
            write: false,
            description: "List recorded webhook events, newest first: id, provider, event_id, event_type, status, \
                          attempts, last_error, received_at_ms. Filters combine.",
            schema: object(
                json!({
                    "provider": {"type": "string", "description": "endpoint name, e.g. stripe, sms, github"},
                    "status": {"type": "string", "enum": ["received", "processing", "processed", "retrying", "failed"]},
                    "type": {"type": "string", "description": "event type, e.g. invoice.paid"},
                    "source": {"type": "string", "enum": ["webhook", "backfill"]},
                    "since": {"type": "string", "description": "RFC 3339 time in UTC (2026-11-28T10:00:00Z) or Unix ms; inclusive"},
                    "until": {"type": "string", "description": "RFC 3339 time in UTC or Unix ms; exclusive"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                    "cursor": {"type": "string", "description": "next_cursor of the previous page"},
                }),
                &[],
            ),
        },
        Tool {
            name: "get_event",
            write: false,
            description: "One event: its headers (credentials and signatures redacted), its raw body (payload), \
                          every delivery attempt with the app's answer, and its status.",
            schema: object(json!({"id": id}), &["id"]),
        },
        Tool {
            name: "why_signature_failed",
            write: false,
            description: "Recently refused requests, newest first, each with its error code and, for a signature \
                          refusal, a diagnosis {code, detail}: the likely cause (wrong secret, a tunnel's URL, \
                          a stale timestamp, a body changed on the way).",
            schema: object(
                json!({
                    "provider": {"type": "string", "description": "only this endpoint's refusals"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": DEFAULT_REJECTIONS},
                }),
                &[],
            ),
        },
        Tool {
            name: "compare_events",
            write: false,
            description: "Compare two events, as the dashboard does: every path of their payloads added, removed \
                          or changed (JSON, or a form's fields), and their headers.",
            schema: object(json!({"a": id, "b": id}), &["a", "b"]),
        },
        Tool {
            name: "stats_and_breakers",
            write: false,
            description: "Counters per provider (received, duplicates, refusals by code, deliveries) and each \
                          provider's delivery breaker, targets, routes, queue and dead letters.",
            schema: object(json!({}), &[]),
        },
        Tool {
            name: "last_app_check",
            write: false,
            description: "The last app check of an endpoint (see check_app): each check's outcome, what was sent, \
                          what the app answered and, for a failed one, the fix.",
            schema: object(
                json!({"endpoint": {"type": "string", "description": "endpoint name, e.g. stripe"}}),
                &["endpoint"],
            ),
        },
        Tool {
            name: "check_app",
            write: true,
            description: "Test the app's webhook handler as the provider would (`stagehook check-app`): signed, \
                          wrongly signed, unsigned, modified, reformatted, stale, duplicated and out-of-order \
                          requests straight to the app, graded into a scorecard with a fix for each failure.",
            schema: object(
                json!({
                    "endpoint": {"type": "string", "description": "endpoint name, e.g. stripe"},
                    "target": {"type": "string", "description": "the app's webhook URL; where the endpoint delivers when left out"},
                    "only": {"type": "array", "items": {"type": "string"}, "description": "the checks to run, e.g. refuses_unsigned; all when left out"},
                }),
                &["endpoint"],
            ),
        },
        Tool {
            name: "send_fixture",
            write: true,
            description: "Send a realistic, correctly signed test event (a provider's fixture, or a given body) \
                          to the running stagehook, as `stagehook send` does, signed with this machine's \
                          configured secret.",
            schema: object(
                json!({
                    "provider": {"type": "string", "description": "endpoint name, e.g. stripe, twilio, github"},
                    "event": {"type": "string", "description": "fixture type, e.g. payment_intent.succeeded; the provider's default when left out"},
                    "payload": {"type": "string", "description": "a body to send instead of the fixture, as it is"},
                    "count": {"type": "integer", "minimum": 1, "maximum": MAX_SENDS, "default": 1},
                }),
                &["provider"],
            ),
        },
        Tool {
            name: "replay",
            write: true,
            description: "Deliver a recorded event to the app again (a new delivery series, signed afresh), to the \
                          targets its type routes to now.",
            schema: object(json!({"id": id}), &["id"]),
        },
        Tool {
            name: "edit_and_replay",
            write: true,
            description: "Deliver an edited copy of an event: a new event with parent_id, signed afresh. `body` \
                          replaces the body (a string is its exact bytes, any other JSON value is written \
                          compact); `headers` overrides headers (null removes one). At least one of the two.",
            schema: object(
                json!({
                    "id": id,
                    "body": {"description": "the new body: a string (exact bytes) or a JSON value"},
                    "headers": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
                }),
                &["id"],
            ),
        },
    ]
}

/// An object schema: these properties, these required, nothing else.
fn object(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

/// The tools offered: the read ones, and the write ones with `--allow-write`.
pub fn listed(allow_write: bool) -> Vec<Value> {
    tools()
        .into_iter()
        .filter(|t| allow_write || !t.write)
        .map(|t| {
            json!({
                "name": t.name,
                "description": t.description,
                "inputSchema": t.schema,
                "annotations": {"readOnlyHint": !t.write, "destructiveHint": false, "openWorldHint": false},
            })
        })
        .collect()
}

/// Why a tool call failed: a stable code (the API's own when it refused), a message, and the
/// HTTP status when the API answered.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolError {
    pub code: String,
    pub message: String,
    pub status: Option<u16>,
}

impl ToolError {
    fn new(code: &str, message: impl Into<String>) -> ToolError {
        ToolError { code: code.into(), message: message.into(), status: None }
    }

    pub fn to_json(&self) -> Value {
        json!({"code": self.code, "message": self.message, "status": self.status})
    }
}

impl From<RemoteError> for ToolError {
    fn from(e: RemoteError) -> ToolError {
        match e {
            RemoteError::Refused { status, code, message } => ToolError { code, message, status: Some(status) },
            RemoteError::Unreachable(m) => ToolError::new("unreachable", m),
        }
    }
}

/// Calls `name` with `args`: its result, or `isError` with the failure's code.
pub async fn call(server: &Server, name: &str, args: &Map<String, Value>) -> Result<Value, RpcError> {
    let Some(tool) = tools().into_iter().find(|t| t.name == name) else {
        let mut e = RpcError::new(INVALID_PARAMS, format!("no tool `{name}`"));
        e.data = Some(json!({"code": "unknown_tool"}));
        return Err(e);
    };
    if tool.write && !server.allow_write {
        let mut e = RpcError::new(
            INVALID_PARAMS,
            format!("`{name}` changes the running stagehook, and this server is read-only: start `stagehook mcp` with --allow-write to offer it"),
        );
        e.data = Some(json!({"code": "write_not_allowed"}));
        return Err(e);
    }
    let outcome = match check(&tool.schema, args) {
        Err(e) => Err(e),
        Ok(()) => run(server, name, args).await,
    };
    Ok(match outcome {
        Ok(value) => json!({
            "content": [{"type": "text", "text": format!("{value:#}")}],
            "structuredContent": value,
            "isError": false,
        }),
        Err(e) => {
            let status = e.status.map(|s| format!("HTTP {s} ")).unwrap_or_default();
            json!({
                "content": [{"type": "text", "text": format!("{status}{}: {}", e.code, e.message)}],
                "structuredContent": {"error": e.to_json()},
                "isError": true,
            })
        }
    })
}

/// The arguments against the tool's schema, as far as its schemas go: no unknown name, every
/// required one, and each of the type it says.
fn check(schema: &Value, args: &Map<String, Value>) -> Result<(), ToolError> {
    let bad = |m: String| Err(ToolError::new("invalid_arguments", m));
    let properties = schema["properties"].as_object().cloned().unwrap_or_default();
    for (name, value) in args {
        let Some(p) = properties.get(name) else {
            let known: Vec<&str> = properties.keys().map(String::as_str).collect();
            return bad(format!("unknown argument `{name}`; this tool takes {}", known.join(", ")));
        };
        let fits = match p["type"].as_str() {
            Some("string") => value.is_string(),
            Some("integer") => value.as_u64().is_some_and(|n| {
                p["minimum"].as_u64().is_none_or(|min| n >= min) && p["maximum"].as_u64().is_none_or(|max| n <= max)
            }),
            Some("object") => value.is_object(),
            _ => true,
        };
        if !fits {
            let wanted = match p["type"].as_str() {
                Some("integer") => format!(
                    "an integer from {} to {}",
                    p["minimum"].as_u64().unwrap_or(0),
                    p["maximum"].as_u64().unwrap_or(u64::MAX)
                ),
                Some(kind) => format!("a JSON {kind}"),
                None => "a value".into(),
            };
            return bad(format!("`{name}` must be {wanted}"));
        }
        if let Some(allowed) = p["enum"].as_array().filter(|a| !a.contains(value)) {
            let allowed: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
            return bad(format!("`{name}` must be one of {}", allowed.join(", ")));
        }
    }
    for name in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        if !args.contains_key(name) {
            return bad(format!("`{name}` is required"));
        }
    }
    Ok(())
}

fn text<'a>(args: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    args.get(name).and_then(Value::as_str)
}

async fn run(server: &Server, name: &str, args: &Map<String, Value>) -> Result<Value, ToolError> {
    let api = &server.api;
    match name {
        "list_events" => {
            let query: Vec<String> = ["provider", "status", "type", "source", "since", "until", "limit", "cursor"]
                .into_iter()
                .filter_map(|k| {
                    let v = args.get(k)?;
                    let v = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                    Some(format!("{k}={}", urlencoding(&v)))
                })
                .collect();
            Ok(api.request("GET", &format!("/staging/webhooks/events?{}", query.join("&")), None).await?)
        }
        "get_event" => event(server, text(args, "id").unwrap_or_default()).await,
        "why_signature_failed" => {
            let limit = args.get("limit").and_then(Value::as_u64).unwrap_or(DEFAULT_REJECTIONS) as usize;
            let provider = text(args, "provider");
            // The log is read newest first; with a provider, the newest 1000 are read and that
            // provider's kept.
            let asked = if provider.is_some() { 1000 } else { limit };
            let answer = api.request("GET", &format!("/staging/webhooks/rejections?limit={asked}"), None).await?;
            let rejections: Vec<Value> = answer["rejections"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| provider.is_none_or(|p| r["provider"] == p))
                .take(limit)
                .cloned()
                .collect();
            let diagnosed = rejections.iter().filter(|r| !r["diagnosis"].is_null()).count();
            Ok(json!({"count": rejections.len(), "diagnosed": diagnosed, "rejections": rejections}))
        }
        "compare_events" => {
            let a = event(server, text(args, "a").unwrap_or_default()).await?;
            let b = event(server, text(args, "b").unwrap_or_default()).await?;
            Ok(super::diff::compare(&a, &b))
        }
        "stats_and_breakers" => {
            let stats = api.request("GET", "/staging/webhooks/stats", None).await?;
            let recovery = api.request("GET", "/staging/webhooks/recovery/stats", None).await?;
            Ok(json!({"stats": stats, "recovery": recovery}))
        }
        "last_app_check" => {
            let endpoint = urlencoding(text(args, "endpoint").unwrap_or_default());
            Ok(api.request("GET", &format!("/staging/webhooks/check-app?endpoint={endpoint}"), None).await?)
        }
        "check_app" => {
            Ok(api.request("POST", "/staging/webhooks/check-app", Some(&Value::Object(args.clone()))).await?)
        }
        "send_fixture" => send(server, args).await,
        "replay" => {
            let id = resolve(server, text(args, "id").unwrap_or_default()).await?;
            Ok(api.request("POST", &format!("/staging/webhooks/events/{}/replay", urlencoding(&id)), None).await?)
        }
        "edit_and_replay" => {
            let mut edit = Map::new();
            for k in ["body", "headers"] {
                if let Some(v) = args.get(k) {
                    edit.insert(k.into(), v.clone());
                }
            }
            if edit.is_empty() {
                return Err(ToolError::new(
                    "invalid_arguments",
                    "give `body`, `headers` or both (without either, use replay)",
                ));
            }
            let id = resolve(server, text(args, "id").unwrap_or_default()).await?;
            let path = format!("/staging/webhooks/events/{}/replay", urlencoding(&id));
            Ok(api.request("POST", &path, Some(&Value::Object(edit))).await?)
        }
        _ => Err(ToolError::new("unknown_tool", format!("no tool `{name}`"))),
    }
}

/// An event's detail by stagehook's id or, failing that, by the provider's event id.
async fn event(server: &Server, id: &str) -> Result<Value, ToolError> {
    let id = resolve(server, id).await?;
    Ok(server.api.request("GET", &format!("/staging/webhooks/events/{}", urlencoding(&id)), None).await?)
}

/// stagehook's id for `id`: itself when stored under it, else the one event whose provider id it
/// is. Two events (of two providers) with that provider id are named, not guessed between.
async fn resolve(server: &Server, id: &str) -> Result<String, ToolError> {
    let found =
        server.api.request("GET", &format!("/staging/webhooks/events?q={}&limit=10", urlencoding(id)), None).await?;
    let events = found["events"].as_array().cloned().unwrap_or_default();
    if events.iter().any(|e| e["id"] == id) {
        return Ok(id.to_string());
    }
    match events.as_slice() {
        [one] => Ok(one["id"].as_str().unwrap_or(id).to_string()),
        [] => Err(ToolError { status: Some(404), ..ToolError::new("not_found", format!("no event `{id}` is stored")) }),
        many => {
            let ids: Vec<String> =
                many.iter().map(|e| format!("{} ({})", e["id"].as_str().unwrap_or(""), e["provider"])).collect();
            Err(ToolError::new(
                "ambiguous_id",
                format!("`{id}` is the event id of {} events; give stagehook's id: {}", many.len(), ids.join(", ")),
            ))
        }
    }
}

/// `send_fixture`: the `send` library, signed with this machine's configuration, to the server.
async fn send(server: &Server, args: &Map<String, Value>) -> Result<Value, ToolError> {
    let provider = text(args, "provider").unwrap_or_default().to_string();
    let refusals = crate::send::refusals(&server.config, &server.endpoints, &provider, &server.env);
    if let Some(f) = refusals.first() {
        return Err(ToolError::new(
            "config_refused",
            format!(
                "not sending: {} [{}]: {} (set the real secret in the environment of `stagehook mcp`, as for `serve`)",
                f.key, f.id, f.message
            ),
        ));
    }
    let req = SendRequest {
        provider,
        event: text(args, "event").map(str::to_string),
        payload: text(args, "payload").map(|p| p.as_bytes().to_vec()),
        to: None,
        server: Some(server.api.server.clone()),
        count: args.get("count").and_then(Value::as_u64).unwrap_or(1) as u32,
    };
    let clock = server.clock.clone();
    let sent = crate::send::send(&server.config, &server.endpoints, &req, || clock.now_s())
        .await
        .map_err(|e: SendFailure| ToolError::new(e.code(), e.to_string()))?;
    let ok = sent.iter().all(|s| (200..300).contains(&s.status));
    let sent: Vec<Value> = sent
        .iter()
        .map(|s| {
            let body = serde_json::from_str(&s.body).unwrap_or_else(|_| Value::String(s.body.clone()));
            json!({"url": crate::redact::url(&s.url), "status": s.status, "body": body})
        })
        .collect();
    if !ok {
        let first = sent.iter().find(|s| !(200..300).contains(&s["status"].as_u64().unwrap_or(0))).cloned();
        let code = first.as_ref().and_then(|s| s["body"]["error"]["code"].as_str()).unwrap_or("refused");
        let status = first.as_ref().and_then(|s| s["status"].as_u64()).map(|s| s as u16);
        return Err(ToolError {
            status,
            ..ToolError::new(code, format!("stagehook refused what was sent: {}", Value::Array(sent)))
        });
    }
    Ok(json!({"ok": ok, "sent": sent}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn arguments_are_checked_against_the_schema() {
        let list = tools().into_iter().find(|t| t.name == "list_events").unwrap().schema;
        assert_eq!(check(&list, &args(json!({"provider": "stripe", "limit": 5}))), Ok(()));
        let e = check(&list, &args(json!({"limit": 0}))).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("invalid_arguments", "`limit` must be an integer from 1 to 500")
        );
        let e = check(&list, &args(json!({"status": "duplicate"}))).unwrap_err();
        assert!(e.message.starts_with("`status` must be one of \"received\""), "{}", e.message);
        let e = check(&list, &args(json!({"providr": "stripe"}))).unwrap_err();
        assert!(e.message.starts_with("unknown argument `providr`; this tool takes"), "{}", e.message);
        let get = tools().into_iter().find(|t| t.name == "get_event").unwrap().schema;
        assert_eq!(check(&get, &Map::new()).unwrap_err().message, "`id` is required");
    }

    #[test]
    fn write_tools_are_listed_only_when_allowed() {
        let names = |w| listed(w).iter().map(|t| t["name"].as_str().unwrap().to_string()).collect::<Vec<_>>();
        let writes = ["send_fixture", "replay", "edit_and_replay", "check_app"];
        assert!(!names(false).iter().any(|n| writes.contains(&n.as_str())));
        assert_eq!(names(true).len(), names(false).len() + writes.len());
    }
}
