//! Reading an event's id and type (from a header, a JSON pointer, or the body's hash) with the
//! checks a dry run shows, and placing them in the `stagehook send` fixture. Separate because it
//! is the payload side of the scheme: none of it touches the secret or the signature.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use warp::http::HeaderMap;

use super::{Hmac, Source, DEFAULT_TYPE};
use crate::providers::{header_str, Check, Inbound, Parsed};

impl Hmac {
    fn needs_json(&self) -> bool {
        matches!(self.id_source, Some(Source::Pointer(_))) || matches!(self.type_source, Some(Source::Pointer(_)))
    }

    /// The structural checks and, when they all pass, the event.
    pub(super) fn inspect(&self, req: &Inbound<'_>) -> (Vec<Check>, Option<Parsed>) {
        let mut checks = Vec::new();
        let json = if self.needs_json() {
            match crate::providers::json::parse(req.body) {
                Ok(v) => {
                    checks.push(Check::pass("body", "JSON"));
                    Some(v)
                }
                Err(crate::providers::json::JsonError::Syntax(e)) => {
                    checks.push(Check::fail("body", format!("not JSON ({e}); id_pointer and type_pointer read JSON")));
                    None
                }
                Err(duplicate) => {
                    checks.push(Check::fail("body", duplicate.to_string()));
                    None
                }
            }
        } else {
            None
        };
        let id = match &self.id_source {
            Some(source) => lookup("id", source, req.headers, json.as_ref(), &mut checks),
            None => {
                checks.push(Check::pass("id", "no id source configured: the SHA-256 of the body"));
                Some(hex::encode(Sha256::digest(req.body)))
            }
        };
        let kind = match &self.type_source {
            Some(source) => lookup("type", source, req.headers, json.as_ref(), &mut checks),
            None => {
                checks.push(Check::pass("type", format!("no type source configured: `{DEFAULT_TYPE}`")));
                Some(DEFAULT_TYPE.to_string())
            }
        };
        let parsed = match (id, kind) {
            (Some(id), Some(kind)) if checks.iter().all(|c| c.ok) => Some(Parsed::one(id, kind)),
            _ => None,
        };
        (checks, parsed)
    }
}

/// Reads an id or type from its source, recording the check.
fn lookup(
    field: &str,
    source: &Source,
    headers: &HeaderMap,
    json: Option<&Value>,
    checks: &mut Vec<Check>,
) -> Option<String> {
    let (found, place) = match source {
        Source::Header(name) => {
            (header_str(headers, name).filter(|v| !v.is_empty()).map(str::to_string), format!("header `{name}`"))
        }
        Source::Pointer(pointer) => match json {
            Some(doc) => (doc.pointer(pointer).and_then(scalar), format!("JSON pointer `{pointer}`")),
            None => {
                checks.push(Check::fail(field, "cannot be read: the body is not JSON"));
                return None;
            }
        },
    };
    match found {
        Some(v) => {
            checks.push(Check::pass(field, format!("from {place}")));
            Some(v)
        }
        None => {
            checks.push(Check::fail(field, format!("{place} is missing, empty, or not a string or number")));
            None
        }
    }
}

/// A JSON id or type: a non-empty string, or a number as written.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Sets `value` at `pointer`, making objects along the way, so that a fixture carries its id and
/// type wherever the configuration reads them.
pub(super) fn set_pointer(doc: &mut Value, pointer: &str, value: Value) {
    fn object(v: &mut Value) -> &mut Map<String, Value> {
        if !v.is_object() {
            *v = Value::Object(Map::new());
        }
        match v {
            Value::Object(map) => map,
            _ => unreachable!("just made an object"),
        }
    }
    let Some(path) = pointer.strip_prefix('/') else {
        // The empty pointer is the whole document: the fixture is then the value alone, the only
        // body such a configuration reads an id (or type) from.
        *doc = value;
        return;
    };
    let tokens: Vec<String> = path.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect();
    let Some((last, parents)) = tokens.split_last() else {
        return;
    };
    let mut at = doc;
    for token in parents {
        at = object(at).entry(token.clone()).or_insert_with(|| Value::Object(Map::new()));
    }
    object(at).insert(last.clone(), value);
}
