//! `docs/openapi.json` against the real server: every documented operation is a route (it
//! answers neither 404 nor 405), every route of `src/http/` (read from the source) is
//! documented, errors have the `{"error": {"code", "message"}}` shape, and the document is
//! served as it is in the repository.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use stagehook::secret::Secret;

use crate::support::{config, request, start, stripe_event};

const METHODS: [&str; 7] = ["get", "post", "put", "delete", "patch", "head", "options"];
const TOKEN: &str = "openapi-test-token-0123456789";

fn document() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("docs/openapi.json is JSON")
}

/// `(METHOD, path)` of every operation in the document.
fn documented(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, _) in item.as_object().unwrap() {
            assert!(METHODS.contains(&method.as_str()), "{path}: `{method}` is not a method");
            out.push((method.to_uppercase(), path.clone()));
        }
    }
    out
}

/// A path's fixed segments, without its parameters: what the source names.
fn literals(path: &str) -> Vec<String> {
    path.split('/').filter(|s| !s.is_empty() && !s.starts_with('{')).map(str::to_string).collect()
}

/// The first string literal at the start of `text`, after `"`.
fn literal(text: &str) -> String {
    text[..text.find('"').expect("a closed string")].to_string()
}

/// `(METHOD, fixed segments)` of every route that `src/http/*.rs` builds, read from the
/// source: each statement that ends a path (`warp::path::end()`) is a route, its segments the
/// `warp::path("...")` in it, in order, with a `let` of segments (`base`) spelled out where it
/// is used, and its method the one method filter in it.
fn routes_in_source() -> Vec<(String, Vec<String>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut routes = Vec::new();
    for file in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "rs")) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .map(|l| format!("{}\n", l.split(" // ").next().unwrap()))
            .collect();
        assert!(!code.contains("path!"), "{name}: teach tests/it/openapi.rs to read `warp::path!`");
        let mut prefixes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for statement in code.split(';') {
            // Segments and where they stand: `warp::path("x")`, or a prefix named before.
            let mut found: Vec<(usize, Vec<String>)> = statement
                .match_indices("warp::path(\"")
                .map(|(at, m)| (at, vec![literal(&statement[at + m.len()..])]))
                .collect();
            for (prefix, segments) in &prefixes {
                let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
                for (at, _) in statement.match_indices(prefix.as_str()) {
                    let before = statement[..at].chars().next_back().is_some_and(ident);
                    let after = statement[at + prefix.len()..].chars().next().is_some_and(ident);
                    if !before && !after {
                        found.push((at, segments.clone()));
                    }
                }
            }
            found.sort();
            let first = found.first().map(|(at, _)| *at);
            let segments: Vec<String> = found.into_iter().flat_map(|(_, s)| s).collect();
            if statement.contains("warp::path::end()") {
                let methods: Vec<&str> =
                    METHODS.iter().copied().filter(|m| statement.contains(&format!("warp::{m}()"))).collect();
                assert_eq!(methods.len(), 1, "{name}: a route with one method filter each:\n{statement}");
                routes.push((methods[0].to_uppercase(), segments));
            } else if let Some(at) = first.and_then(|first| statement[..first].rfind("let ")) {
                // `let base = warp::path("staging")...`: segments that routes go on from.
                let binding = statement[at + 4..].split([' ', '=', ':']).next().unwrap().to_string();
                prefixes.insert(binding, segments);
            }
        }
    }
    routes
}

#[test]
fn every_route_in_the_source_is_documented_and_no_other() {
    let mut source: Vec<(String, Vec<String>)> = routes_in_source();
    let mut doc: Vec<(String, Vec<String>)> =
        documented(&document()).into_iter().map(|(m, p)| (m, literals(&p))).collect();
    source.sort();
    doc.sort();
    // The reading found the routes it must: the ingest route and a guarded one at least.
    assert!(source.contains(&("POST".into(), vec!["staging".into(), "webhooks".into()])), "{source:?}");
    assert!(source.contains(&("GET".into(), vec!["staging".into(), "webhooks".into(), "events".into()])), "{source:?}");
    let missing: Vec<_> = source.iter().filter(|r| !doc.contains(r)).collect();
    let extra: Vec<_> = doc.iter().filter(|r| !source.contains(r)).collect();
    assert!(missing.is_empty(), "routes in src/http/ that docs/openapi.json does not document: {missing:?}");
    assert!(extra.is_empty(), "operations in docs/openapi.json that src/http/ has no route for: {extra:?}");
    assert_eq!(source, doc, "as many routes of each path and method as operations");
}

#[test]
fn the_document_is_openapi_3_1_with_the_stable_error_shape() {
    let doc = document();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")), "{}", doc["openapi"]);
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"), "info.version is the crate's");
    let error = &doc["components"]["schemas"]["Error"];
    assert_eq!(error["properties"]["error"]["required"], serde_json::json!(["code", "message"]));
    // Every error response of every operation has that shape.
    for (name, response) in doc["components"]["responses"].as_object().unwrap() {
        let schema = &response["content"]["application/json"]["schema"]["$ref"];
        assert_eq!(schema, "#/components/schemas/Error", "response {name}");
    }
    for (method, path) in documented(&doc) {
        let op = &doc["paths"][&path][method.to_lowercase()];
        for (status, response) in op["responses"].as_object().unwrap() {
            if status.as_str() >= "400" && path != "/readyz" {
                let r = response["$ref"].as_str().unwrap_or("");
                assert!(r.starts_with("#/components/responses/"), "{method} {path} {status}: a shared error response");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_a_route_of_the_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.server.admin_token = Some(Secret::new(TOKEN));
    let s = start(c).await;
    let r = s.stripe(&stripe_event("evt_openapi")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["id"].as_str().expect("the stored id").to_string();

    let doc = document();
    let bearer = format!("Bearer {TOKEN}");
    for (method, path) in documented(&doc) {
        // Each path parameter by its example, but the event id, which must name a stored event.
        let mut url = path.clone();
        let op = &doc["paths"][&path][method.to_lowercase()];
        for p in op["parameters"].as_array().into_iter().flatten() {
            let p = match p["$ref"].as_str() {
                Some(r) => &doc["components"]["parameters"][r.rsplit('/').next().unwrap()],
                None => p,
            };
            if p["in"] != "path" {
                continue;
            }
            let name = p["name"].as_str().unwrap();
            let value = if name == "id" { id.clone() } else { p["example"].as_str().expect("an example").to_string() };
            url = url.replace(&format!("{{{name}}}"), &value);
        }
        assert!(!url.contains('{'), "{method} {path}: every path parameter is declared");
        let headers = [("authorization", bearer.as_str()), ("content-type", "application/json")];
        let body: &[u8] = if method == "GET" { b"" } else { b"{}" };
        // A stream never ends: its answer's head is enough.
        if op["responses"]["200"]["content"].get("text/event-stream").is_some() {
            let status = head_status(s.addr, &crate::support::build(&method, &url, &headers, body)).await;
            assert_eq!(status, 200, "{method} {url} is documented as a stream");
            continue;
        }
        let r = request(s.addr, &method, &url, &headers, body).await;
        // A route's own 404 (no such backfill run) still shows the route is there; the router's
        // says "no such endpoint".
        let unrouted = r.status == 405 || (r.status == 404 && r.json()["error"]["message"] == "no such endpoint");
        assert!(!unrouted, "{method} {url} is documented but answered {}: {}", r.status, r.text());
    }
    s.stop().await;
}

/// The status of the answer to `raw`, read from its head only, within 5 s.
async fn head_status(addr: std::net::SocketAddr, raw: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let read = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(raw).await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the head ended");
            head.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
        line.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), read).await.expect("the head within 5 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_served_without_the_token_to_this_stagehooks_host() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.server.admin_token = Some(Secret::new(TOKEN));
    let s = start(c).await;
    let r = s.get("/staging/webhooks/openapi.json").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(serde_json::from_slice::<Value>(&r.body).unwrap(), document(), "the repository's document");
    let r = request(s.addr, "GET", "/staging/webhooks/openapi.json", &[("host", "evil.example")], b"").await;
    assert_eq!((r.status, r.code().as_str()), (403, "host_not_allowed"), "{}", r.text());
    s.stop().await;
}
