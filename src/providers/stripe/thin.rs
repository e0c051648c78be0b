//! Stripe's thin events (`object: "v2.core.event"`), which event destinations send: the event
//! refers to the object it is about (`related_object`) in place of carrying a snapshot of it,
//! and `created` is an RFC 3339 time. Signed as snapshot events are (`Stripe-Signature`).

use serde_json::{json, Value};

use crate::providers::json;
use crate::providers::{fresh_id, Check};

/// The `object` of a thin event; any other (`event`, or none) is a snapshot event.
pub const THIN_OBJECT: &str = "v2.core.event";

/// The `related_object` of a thin event's body (`id`, `type`, `url`), or `None` for any other
/// body or a thin event without one.
pub(super) fn related_object(body: &[u8]) -> Option<Value> {
    let v = json::parse(body).ok()?;
    if v.get("object").and_then(Value::as_str) != Some(THIN_OBJECT) {
        return None;
    }
    let r = v.get("related_object")?.as_object()?;
    Some(json!({"id": r.get("id"), "type": r.get("type"), "url": r.get("url")}))
}

/// A thin event of `kind` as an event destination sends it, or `None` for a snapshot kind. The
/// shape is that of Stripe's documentation ("Event destinations", the thin event payload) and
/// of stripe-python's own tests (tests/test_v2_event.py): `created` to the millisecond, a
/// test-mode id `evt_test_...`, and `related_object` with the path to fetch it from.
pub(super) fn sample(kind: &str, now_s: i64) -> Option<Value> {
    let related = match kind {
        "v1.billing.meter.error_report_triggered" => {
            let id = fresh_id("mtr_test_");
            json!({"id": id, "type": "billing.meter", "url": format!("/v1/billing/meters/{id}")})
        }
        "v2.core.account.updated" => {
            let id = fresh_id("acct_test_");
            json!({"id": id, "type": "v2.core.account", "url": format!("/v2/core/accounts/{id}")})
        }
        _ => return None,
    };
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(now_s).unwrap_or(0));
    // An Accounts v2 update comes from an API request, which the event names; a meter's error
    // report from Stripe itself, with no reason.
    let reason = (kind == "v2.core.account.updated")
        .then(|| json!({"type": "request", "request": {"id": fresh_id("req_v2"), "idempotency_key": fresh_id("")}}));
    Some(json!({
        "id": fresh_id("evt_test_"), "object": THIN_OBJECT, "type": kind, "livemode": false,
        "created": humantime::format_rfc3339_millis(t).to_string(), "context": null,
        "related_object": related, "reason": reason,
    }))
}

/// Whether `text` is an RFC 3339 time: UTC (`Z`) or with a numeric offset (`+02:00`), any
/// precision of seconds.
fn is_rfc3339(text: &str) -> bool {
    if !text.is_ascii() {
        return false;
    }
    if text.ends_with('Z') || text.ends_with("+00:00") {
        return humantime::parse_rfc3339(text).is_ok();
    }
    // `±HH:MM`: the time before it, read as UTC, is a time too (the offset only moves it).
    let Some((time, offset)) = text.len().checked_sub(6).map(|at| text.split_at(at)) else {
        return false;
    };
    let o = offset.as_bytes();
    let digits = |r: &[u8]| r.iter().all(u8::is_ascii_digit);
    matches!(o[0], b'+' | b'-')
        && digits(&o[1..3])
        && o[3] == b':'
        && digits(&o[4..6])
        && offset[1..3] < *"24"
        && offset[4..6] < *"60"
        && humantime::parse_rfc3339(&format!("{time}Z")).is_ok()
}

/// The checks of a thin event: what stripe's SDKs read of one in `parse_event_notification`
/// (stripe-python's `EventNotification.__init__` and `RelatedObject`: `id`, `type`, `created`,
/// `livemode`, `context` split on `/`, `reason` with its `request`, `related_object`'s `id`,
/// `type` and `url`), each of the type Stripe's API reference gives it.
pub(super) fn checks(obj: &serde_json::Map<String, Value>) -> Vec<Check> {
    let text = |key: &str| obj.get(key).and_then(Value::as_str).filter(|t| !t.is_empty());
    let mut checks = vec![
        Check::pass("object", "v2.core.event: a thin event"),
        match text("id") {
            Some(_) => Check::pass("id", "event id"),
            None => Check::fail("id", "missing, empty or not a string"),
        },
        match text("type") {
            Some(_) => Check::pass("type", "event type"),
            None => Check::fail("type", "missing, empty or not a string"),
        },
        match obj.get("created") {
            Some(Value::String(t)) if is_rfc3339(t) => Check::pass("created", format!("RFC 3339 time {t}")),
            Some(Value::String(t)) => Check::fail(
                "created",
                format!("`{}` is not an RFC 3339 time (such as 2024-09-17T06:20:52.246Z)", json::shown(t)),
            ),
            _ => Check::fail("created", "missing or not a string: a thin event's is an RFC 3339 time"),
        },
        match obj.get("livemode") {
            Some(Value::Bool(true)) => Check::fail("livemode", "live-mode event; staging takes test-mode events only"),
            Some(Value::Bool(false)) => Check::pass("livemode", "test mode"),
            None => Check::fail("livemode", "missing: a thin event says `false` in test mode"),
            Some(_) => Check::fail("livemode", "not a boolean"),
        },
        match obj.get("context") {
            None | Some(Value::Null) => Check::pass("context", "none"),
            Some(Value::String(_)) => Check::pass("context", "account context"),
            Some(_) => Check::fail("context", "not a string or null"),
        },
    ];
    checks.extend(reference_checks(
        "related_object",
        obj.get("related_object"),
        &["id", "type", "url"],
        "the object the event is about",
    ));
    match obj.get("reason") {
        None | Some(Value::Null) => checks.push(Check::pass("reason", "none")),
        Some(Value::Object(r)) => match r.get("type").and_then(Value::as_str) {
            // The one reason the SDKs read into: the API request that caused the event.
            Some("request") => match r.get("request") {
                Some(request @ Value::Object(_)) => checks.extend(reference_checks(
                    "reason.request",
                    Some(request),
                    &["id", "idempotency_key"],
                    "the API request",
                )),
                _ => checks.push(Check::fail("reason.request", "missing or not an object")),
            },
            Some(_) => checks.push(Check::pass("reason", "reason")),
            None => checks.push(Check::fail("reason.type", "missing or not a string")),
        },
        Some(_) => checks.push(Check::fail("reason", "not an object or null")),
    }
    checks
}

/// `at` (`related_object`): absent or null, or an object whose `keys` are all strings. One
/// check when it is right, one per member that is not.
fn reference_checks(at: &str, v: Option<&Value>, keys: &[&str], what: &str) -> Vec<Check> {
    let map = match v {
        None | Some(Value::Null) => return vec![Check::pass(at, "none")],
        Some(Value::Object(map)) => map,
        Some(_) => return vec![Check::fail(at, "not an object or null")],
    };
    let failed: Vec<Check> = keys
        .iter()
        .filter(|k| !map.get(**k).is_some_and(Value::is_string))
        .map(|k| Check::fail(&format!("{at}.{k}"), "missing or not a string"))
        .collect();
    if failed.is_empty() {
        vec![Check::pass(at, what)]
    } else {
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_with_any_precision_and_offset() {
        for ok in [
            "2024-09-17T06:20:52.246Z",
            "2024-09-17T06:20:52Z",
            "2024-09-17T08:20:52+02:00",
            "2024-09-17T01:20:52.5-05:00",
            "2024-09-17T06:20:52+00:00",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "",
            "2024-09-17",
            "2024-09-17 06:20:52",
            "2024-09-17T06:20:52",
            "2024-13-17T06:20:52Z",
            "2024-09-17T06:20:52+2:00",
            "2024-09-17T06:20:52+24:00",
            "2024-09-17T06:20:52+02:60",
            "2024-09-17T06:20:52+é:00",
            "1726554052",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }
}
