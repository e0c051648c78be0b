//! `compare_events`: the dashboard's comparison of two events (assets/app.js,
//! `comparePayloads`), written again here for the agent: every path of the payloads added,
//! removed or changed, a form read as its fields, a value whose type changed one entry, paths
//! spelled `a.b[0]["odd key"]`; and, beyond the dashboard, the headers that differ. The older
//! event is the "before". Object keys come in sorted order (the detail's JSON is read into
//! sorted maps), where the dashboard keeps the payload's own.

use serde_json::{json, Map, Value};

/// Differences listed at most, as the dashboard's table; the summary counts them all.
pub const MAX_ENTRIES: usize = 500;

/// Two event details (`/events/{id}`'s JSON) compared.
pub fn compare(x: &Value, y: &Value) -> Value {
    let key = |e: &Value| (e["received_at_ms"].as_i64().unwrap_or(0), e["id"].as_str().unwrap_or("").to_string());
    let (before, after) = if key(x) <= key(y) { (x, y) } else { (y, x) };
    let side = |e: &Value| {
        json!({"id": e["id"], "provider": e["provider"], "event_id": e["event_id"], "event_type": e["event_type"],
               "received_at_ms": e["received_at_ms"]})
    };
    let payload = match (comparable(before), comparable(after)) {
        (Ok(a), Ok(b)) => {
            let mut entries = Vec::new();
            walk(&a, &b, String::new(), &mut entries);
            let count = |kind: &str| entries.iter().filter(|e| e["kind"] == kind).count();
            let summary = json!({"differences": entries.len(), "changed": count("changed"), "added": count("added"),
                                 "removed": count("removed"), "listed": entries.len().min(MAX_ENTRIES)});
            entries.truncate(MAX_ENTRIES);
            json!({"summary": summary, "entries": entries})
        }
        (Err(refusal), _) | (_, Err(refusal)) => json!({"refusal": refusal}),
    };
    let mut notes = Vec::new();
    if before["provider"] != after["provider"] {
        notes.push(format!(
            "the events are of two providers ({} and {}): the dashboard compares only events of one",
            before["provider"], after["provider"]
        ));
    }
    json!({"before": side(before), "after": side(after), "payload": payload, "headers": headers(before, after), "notes": notes})
}

/// An event's payload as a value to walk: JSON, or a form as its fields (a repeated field keeps
/// every value, in order).
// A String: the refusal is the sentence the agent reads, as the dashboard shows its own.
fn comparable(e: &Value) -> Result<Value, String> {
    let name = e["event_id"].as_str().or(e["id"].as_str()).unwrap_or("the event");
    let Some(payload) = e["payload"].as_str() else { return Err(format!("the body of {name} does not read back")) };
    if e["payload_encoding"] != "utf8" {
        return Err(format!("{name} has a binary body, neither JSON nor a form"));
    }
    let form = header(e, "content-type")
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    if form {
        let mut fields = Map::new();
        for (k, v) in form_urlencoded::parse(payload.as_bytes()) {
            let v = Value::String(v.into_owned());
            match fields.get_mut(k.as_ref()) {
                None => {
                    fields.insert(k.into_owned(), v);
                }
                Some(Value::Array(all)) => all.push(v),
                Some(one) => *one = Value::Array(vec![one.clone(), v]),
            }
        }
        return Ok(Value::Object(fields));
    }
    serde_json::from_str(payload).map_err(|_| format!("the body of {name} is neither JSON nor a form"))
}

fn header<'a>(e: &'a Value, name: &str) -> Option<&'a str> {
    e["headers"]
        .as_array()?
        .iter()
        .find_map(|h| (h[0].as_str()?.eq_ignore_ascii_case(name)).then(|| h[1].as_str()).flatten())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every difference between `a` and `b` under `path`, as the dashboard's `diffValues`. The depth
/// is bounded by what the API accepted and serde_json parsed (128 levels), so the recursion is.
fn walk(a: &Value, b: &Value, path: String, out: &mut Vec<Value>) {
    match (a, b) {
        _ if kind(a) != kind(b) => out.push(json!({"path": path, "kind": "changed", "before": a, "after": b})),
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let p = format!("{path}[{i}]");
                match (x.get(i), y.get(i)) {
                    (Some(u), Some(v)) => walk(u, v, p, out),
                    (Some(u), None) => out.push(json!({"path": p, "kind": "removed", "before": u})),
                    (None, Some(v)) => out.push(json!({"path": p, "kind": "added", "after": v})),
                    (None, None) => {}
                }
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            for (k, u) in x {
                match y.get(k) {
                    Some(v) => walk(u, v, child(&path, k), out),
                    None => out.push(json!({"path": child(&path, k), "kind": "removed", "before": u})),
                }
            }
            for (k, v) in y.iter().filter(|(k, _)| !x.contains_key(*k)) {
                out.push(json!({"path": child(&path, k), "kind": "added", "after": v}));
            }
        }
        _ if a != b => out.push(json!({"path": path, "kind": "changed", "before": a, "after": b})),
        _ => {}
    }
}

/// `a.b` for a plain key; any other key quoted: `a["b.c"]`.
fn child(path: &str, key: &str) -> String {
    let plain = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (plain, path.is_empty()) {
        (true, true) => key.to_string(),
        (true, false) => format!("{path}.{key}"),
        (false, _) => format!("{path}[{}]", Value::String(key.into())),
    }
}

/// The headers (names compared case-insensitively, as redacted by the API) that differ.
fn headers(before: &Value, after: &Value) -> Vec<Value> {
    let all = |e: &Value| -> Vec<(String, String)> {
        e["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| Some((h[0].as_str()?.to_ascii_lowercase(), h[1].as_str()?.to_string())))
            .collect()
    };
    let (a, b) = (all(before), all(after));
    let values = |list: &[(String, String)], name: &str| -> Vec<String> {
        list.iter().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect()
    };
    let mut names: Vec<&String> = a.iter().chain(&b).map(|(n, _)| n).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let (u, v) = (values(&a, name), values(&b, name));
            let kind = match (u.is_empty(), v.is_empty()) {
                (false, true) => "removed",
                (true, false) => "added",
                _ if u != v => "changed",
                _ => return None,
            };
            Some(json!({"name": name, "kind": kind, "before": u.join(", "), "after": v.join(", ")}))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, at: i64, payload: &str, content_type: &str) -> Value {
        json!({"id": id, "event_id": id, "provider": "stripe", "received_at_ms": at, "payload": payload,
               "payload_encoding": "utf8", "headers": [["content-type", content_type], ["x-run", id]]})
    }

    #[test]
    fn paths_are_the_dashboards_and_the_older_event_comes_first() {
        let old =
            event("a", 1, r#"{"data":{"object":{"amount":100,"tags":["x"],"a.b":1}},"gone":true}"#, "application/json");
        let new =
            event("b", 2, r#"{"data":{"object":{"amount":"100","tags":["x","y"]}},"new":null}"#, "application/json");
        let d = compare(&new, &old);
        assert_eq!(d["before"]["id"], "a");
        let entries: Vec<(String, String)> = d["payload"]["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["path"].as_str().unwrap().to_string(), e["kind"].as_str().unwrap().to_string()))
            .collect();
        let expect = [
            ("data.object[\"a.b\"]", "removed"),
            ("data.object.amount", "changed"),
            ("data.object.tags[1]", "added"),
            ("gone", "removed"),
            ("new", "added"),
        ];
        assert_eq!(entries, expect.map(|(p, k)| (p.to_string(), k.to_string())));
        assert_eq!(d["headers"], json!([{"name": "x-run", "kind": "changed", "before": "a", "after": "b"}]));
    }

    #[test]
    fn a_form_is_its_fields_and_a_binary_body_is_refused() {
        let form = "application/x-www-form-urlencoded";
        let d = compare(&event("a", 1, "Body=hi&To=1&To=2", form), &event("b", 2, "Body=ho&To=1", form));
        let entries = &d["payload"]["entries"];
        assert_eq!(entries[0]["path"], "Body");
        assert_eq!(entries[1], json!({"path": "To", "kind": "changed", "before": ["1", "2"], "after": "1"}));
        let mut binary = event("b", 2, "AAEC", "application/octet-stream");
        binary["payload_encoding"] = "base64".into();
        let d = compare(&event("a", 1, "{}", "application/json"), &binary);
        assert_eq!(d["payload"]["refusal"], "b has a binary body, neither JSON nor a form");
    }
}
