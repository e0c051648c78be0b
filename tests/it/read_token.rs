//! Read tokens (`server.read_tokens`): a read token reads the events (list, one, export, stream),
//! `/stats` and the listeners, and reports a listener's delivery; every other route answers it
//! `403 read_only_token`, one row per route; a wrong token is still a counted failure (`429`
//! after ten); with no `admin_token` the API stays open; the environment sets the list; and the
//! validator holds a read token to the admin token's length and refuses the admin token itself.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use stagehook::config::validate::{validate, Context};
use stagehook::finding::Severity;
use stagehook::secret::Secret;
use stagehook::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{self, request, start, stripe_event, TestServer};

pub const ADMIN: &str = "admin-token-0123456789abcdefghij";
pub const READER: &str = "read-token-0123456789abcdefghijk";

/// [`support::config`] with the admin token and one read token.
pub fn with_tokens(dir: &std::path::Path) -> Config {
    let mut c = support::config(dir);
    c.server.admin_token = Some(Secret::new(ADMIN));
    c.server.read_tokens = vec![Secret::new("another-read-token-0123456789"), Secret::new(READER)];
    c
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Sends `method path` with `token` (as `Authorization: Bearer`) and, for a change, the JSON
/// content type the origin checks ask of it.
pub async fn call(s: &TestServer, method: &str, path: &str, token: &str, body: &[u8]) -> support::Resp {
    let auth = bearer(token);
    let mut headers = vec![("authorization", auth.as_str())];
    if method != "GET" {
        headers.push(("content-type", "application/json"));
    }
    request(s.addr, method, path, &headers, body).await
}

/// Opens `GET /staging/webhooks/events/stream<query>` with `headers` and returns its status and
/// the connection, which keeps the stream open until it is dropped. Only the answer's head is
/// read, so a stream that opens never holds the caller up.
pub async fn open_stream(addr: SocketAddr, query: &str, headers: &[(&str, &str)]) -> (u16, TcpStream) {
    let (status, _, conn) = open_stream_head(addr, query, headers).await;
    (status, conn)
}

/// [`open_stream`], with the answer's head as text.
pub async fn open_stream_head(addr: SocketAddr, query: &str, headers: &[(&str, &str)]) -> (u16, String, TcpStream) {
    let raw = support::build("GET", &format!("/staging/webhooks/events/stream{query}"), headers, b"");
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(&raw).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let read_head = async {
        while !head.ends_with(b"\r\n\r\n") {
            match conn.read(&mut byte).await {
                Ok(0) | Err(_) => break,
                Ok(_) => head.push(byte[0]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), read_head).await.expect("the stream's head within 15 s");
    let text = String::from_utf8_lossy(&head).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status: {text:?}"));
    (status, text, conn)
}

/// The JSON error of a refused stream: the rest of the answer, which the server ends.
pub async fn refusal_code(mut conn: TcpStream) -> String {
    let mut body = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), conn.read_to_end(&mut body))
        .await
        .expect("the refusal within 15 s")
        .ok();
    let text = String::from_utf8_lossy(&body);
    let json = text.find('{').map(|i| &text[i..]).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    v["error"]["code"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_token_reads_and_every_other_route_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(with_tokens(dir.path())).await;
    let body = stripe_event("evt_read_1");
    let id = s.stripe_id(&body).await;
    let one = format!("/staging/webhooks/events/{id}");

    // What a read token may do.
    let reads = [
        ("GET", "/staging/webhooks/events".to_string()),
        ("GET", "/staging/webhooks/events?provider=stripe&limit=5".to_string()),
        ("GET", one.clone()),
        ("GET", "/staging/webhooks/events/export".to_string()),
        ("GET", format!("/staging/webhooks/events/export?after={id}")),
        ("GET", "/staging/webhooks/stats".to_string()),
        ("GET", "/staging/webhooks/listeners".to_string()),
    ];
    for (method, path) in &reads {
        let r = call(&s, method, path, READER, b"").await;
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
    }
    let (status, _stream) = open_stream(s.addr, "", &[("authorization", &bearer(READER))]).await;
    assert_eq!(status, 200, "the stream");
    let report = br#"{"name":"laptop","host":"dev-1","status":200,"duration_ms":3,"body":"ok","error":null}"#;
    let r = call(&s, "POST", &format!("{one}/listeners"), READER, report).await;
    assert_eq!(r.status, 200, "a listener's report: {}", r.text());

    // One event as a read token sees it: its stored signature is not shown whole.
    let shown = call(&s, "GET", &one, READER, b"").await.text();
    let signature = support::stripe_header(support::STRIPE_SECRET, support::now_s(), body.as_bytes());
    let v1 = signature.split(",v1=").nth(1).unwrap();
    assert!(!shown.contains(v1), "{shown}");

    // Everything else: refused with its code, while the admin token is let in.
    let refused: &[(&str, String, &[u8])] = &[
        ("GET", "/staging/webhooks/test".into(), b""),
        ("POST", format!("{one}/replay"), b""),
        ("POST", format!("{one}/replay"), br#"{"payload":{"id":"evt_edit"}}"#),
        ("POST", "/staging/webhooks/replay".into(), b"{}"),
        ("GET", format!("{one}/curl"), b""),
        ("POST", "/staging/webhooks/validate".into(), b"{}"),
        ("GET", "/staging/webhooks/rejections".into(), b""),
        ("GET", "/staging/webhooks/config/validate?offline=true".into(), b""),
        ("GET", "/staging/webhooks/recovery/stats".into(), b""),
        ("GET", "/staging/webhooks/alerts".into(), b""),
        ("GET", "/metrics".into(), b""),
    ];
    for (method, path, body) in refused {
        let r = call(&s, method, path, READER, body).await;
        assert_eq!((r.status, r.code().as_str()), (403, "read_only_token"), "{method} {path}: {}", r.text());
        support::assert_security_headers(&r);
        let r = call(&s, method, path, ADMIN, body).await;
        assert!(![401, 403, 404, 405].contains(&r.status), "the admin at {method} {path}: {} {}", r.status, r.text());
    }
    // A read token buys no dashboard session.
    let login = serde_json::json!({ "token": READER }).to_string();
    let r =
        request(s.addr, "POST", "/dashboard/session", &[("content-type", "application/json")], login.as_bytes()).await;
    assert_eq!((r.status, r.code().as_str()), (403, "read_only_token"), "{}", r.text());
    assert!(r.header("set-cookie").is_none());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_a_counted_failure_and_a_read_token_never_is() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(with_tokens(dir.path())).await;
    // Read tokens are right credentials: many of them count nothing.
    for _ in 0..15 {
        assert_eq!(call(&s, "GET", "/staging/webhooks/events", READER, b"").await.status, 200);
        assert_eq!(call(&s, "GET", "/staging/webhooks/test", READER, b"").await.status, 403);
    }
    // A read token one character off is a wrong guess like any other.
    let near = format!("{READER}x");
    for i in 1..=10 {
        let r = call(&s, "GET", "/staging/webhooks/events", &near, b"").await;
        assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"), "failure {i}");
    }
    let r = call(&s, "GET", "/staging/webhooks/events", &near, b"").await;
    assert_eq!((r.status, r.code().as_str()), (429, "too_many_auth_failures"), "{}", r.text());
    // The right tokens still pass, each to what it may do.
    assert_eq!(call(&s, "GET", "/staging/webhooks/events", READER, b"").await.status, 200);
    assert_eq!(call(&s, "GET", "/staging/webhooks/test", ADMIN, b"").await.status, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_token_the_api_stays_open_and_read_tokens_pass() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = with_tokens(dir.path());
    c.server.admin_token = None;
    let s = start(c).await;
    let id = s.stripe_id(&stripe_event("evt_open_1")).await;
    assert_eq!(request(s.addr, "GET", "/staging/webhooks/events", &[], b"").await.status, 200);
    assert_eq!(call(&s, "GET", "/staging/webhooks/events", READER, b"").await.status, 200);
    let r = call(&s, "GET", &format!("/staging/webhooks/events/{id}/curl"), "anything", b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    s.stop().await;
}

#[test]
fn the_environment_sets_read_tokens_as_a_list() {
    let env: BTreeMap<String, String> =
        [("STAGEHOOK_SERVER_READ_TOKENS".to_string(), format!("{READER}, {ADMIN}x"))].into_iter().collect();
    let c = Config::load(None, &env).unwrap();
    let got: Vec<&str> = c.server.read_tokens.iter().map(Secret::expose).collect();
    assert_eq!(got, [READER.to_string(), format!("{ADMIN}x")]);
    assert!(Config::load(None, &BTreeMap::new()).unwrap().server.read_tokens.is_empty());
}

#[test]
fn the_validator_holds_read_tokens_to_the_admin_tokens_rules() {
    use Severity::*;
    // (the [server] lines, the finding, its severity, its key)
    let cases: &[(&str, &str, Severity, &str)] = &[
        ("read_tokens = [\"short\"]", "read_token.weak", Warning, "server.read_tokens[0]"),
        ("bind = \"0.0.0.0:8080\"\nadmin_token = \"admin-token-0123456789abcdefghij\"\nread_tokens = [\"read-token-0123456789abcdefghijk\", \"short\"]", "read_token.weak", Error, "server.read_tokens[1]"),
        ("public_url = \"https://abc.tunnel.example\"\ntrusted_proxies = [\"127.0.0.1\"]\nread_tokens = [\"\"]", "read_token.weak", Error, "server.read_tokens[0]"),
        ("admin_token = \"admin-token-0123456789abcdefghij\"\nread_tokens = [\" admin-token-0123456789abcdefghij\"]", "read_token.is_admin_token", Error, "server.read_tokens[0]"),
    ];
    for (server, id, severity, key) in cases {
        let toml = format!("[server]\n{server}\n");
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::from_toml(&toml).unwrap_or_else(|e| panic!("{toml}: {e}"));
        c.server.data_dir = dir.path().join("data");
        let report = validate(&c, &BTreeMap::new(), Context::Standalone);
        let found = report.findings.iter().any(|f| f.id == *id && f.severity == *severity && f.key == *key);
        assert!(found, "expected {id} {severity:?} on {key} for\n{toml}got {:#?}", report.findings);
    }
    // A long token of its own has nothing to say.
    let toml = "[server]\nadmin_token = \"admin-token-0123456789abcdefghij\"\nread_tokens = [\"read-token-0123456789abcdefghijk\"]\n";
    let c = Config::from_toml(toml).unwrap();
    let report = validate(&c, &BTreeMap::new(), Context::Standalone);
    assert!(report.findings.iter().all(|f| !f.id.starts_with("read_token")), "{:#?}", report.findings);
}
