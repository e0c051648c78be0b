//! The listeners (`stagehook listen`) as the server sees them: a listener's report of an event
//! shown in the event's detail (the latest per name, its body cut to 2048 bytes), every
//! malformed report `400 invalid_payload` and an unknown event `404`; a stream opened with
//! `listener=` listed by `GET /listeners` while it is open (two at once, each its own entry, the
//! last event each reported), counted by the `stagehook_listeners` gauge (checked by
//! `promtool`), and a listener parameter past its bound refused `400`; the dashboard's listeners
//! panel and the report in an event's detail, in headless Chromium.

use serde_json::Value;

use crate::metrics::{promtool_finds_no_problem, samples};
use crate::read_token::{bearer, call, open_stream, open_stream_head, refusal_code, with_tokens, ADMIN, READER};
use crate::support::{start, stripe_event, until, TestServer};

fn report(name: &str, status: Value, body: &str) -> Vec<u8> {
    serde_json::json!({
        "name": name, "host": "dev-laptop.local", "status": status, "duration_ms": 12, "body": body, "error": null,
    })
    .to_string()
    .into_bytes()
}

async fn shown(s: &TestServer, id: &str) -> Value {
    let r = call(s, "GET", &format!("/staging/webhooks/events/{id}"), READER, b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["listeners"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listeners_report_is_shown_in_the_events_detail_and_bad_reports_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(with_tokens(dir.path())).await;
    let id = s.stripe_id(&stripe_event("evt_listen_1")).await;
    let path = format!("/staging/webhooks/events/{id}/listeners");
    assert_eq!(shown(&s, &id).await, serde_json::json!([]));

    let r = call(&s, "POST", &path, READER, &report("alice", 500.into(), "boom")).await;
    assert_eq!((r.status, r.json()), (200, serde_json::json!({"ok": true})), "{}", r.text());
    // The latest report of a name replaces its earlier one; the body is cut to 2048 bytes.
    let long = "é".repeat(1500);
    assert_eq!(call(&s, "POST", &path, READER, &report("alice", 200.into(), &long)).await.status, 200);
    let failed = br#"{"name":"bob","host":"b","status":null,"duration_ms":0,"body":"","error":"connection refused"}"#;
    assert_eq!(call(&s, "POST", &path, ADMIN, failed).await.status, 200);
    let listeners = shown(&s, &id).await;
    let list = listeners.as_array().unwrap();
    assert_eq!(list.len(), 2, "{listeners}");
    let alice = &list[0];
    assert_eq!(
        (alice["name"].as_str(), alice["host"].as_str(), alice["status"].as_u64()),
        (Some("alice"), Some("dev-laptop.local"), Some(200))
    );
    assert_eq!(alice["duration_ms"], 12);
    assert_eq!(alice["body"].as_str().unwrap().len(), 2048);
    assert!(alice["at_ms"].as_i64().is_some_and(|t| t > 0), "{alice}");
    assert_eq!((list[1]["name"].as_str(), list[1]["status"].is_null()), (Some("bob"), true));
    assert_eq!(list[1]["error"], "connection refused");

    // Each malformed report is refused with its code, and changes nothing.
    let long_name = "n".repeat(65);
    let long_host =
        format!(r#"{{"name":"a","host":"{}","status":200,"duration_ms":1,"body":"","error":null}}"#, "h".repeat(256));
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", b"not json".to_vec()),
        ("empty", b"".to_vec()),
        ("missing fields", br#"{"name":"a"}"#.to_vec()),
        ("an empty name", report("", 200.into(), "")),
        ("a name of 65 characters", report(&long_name, 200.into(), "")),
        ("a host of 256 characters", long_host.into_bytes()),
        ("a control character", report("a\nb", 200.into(), "")),
        ("a status as text", report("a", "200".into(), "")),
        (
            "a negative duration",
            br#"{"name":"a","host":"h","status":200,"duration_ms":-1,"body":"","error":null}"#.to_vec(),
        ),
        (
            "an unknown field",
            br#"{"name":"a","host":"h","status":200,"duration_ms":1,"body":"","error":null,"x":1}"#.to_vec(),
        ),
    ];
    for (what, body) in &bad {
        let r = call(&s, "POST", &path, READER, body).await;
        assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"), "{what}: {}", r.text());
    }
    assert_eq!(shown(&s, &id).await.as_array().unwrap().len(), 2);
    // An event that does not exist, or an id that is none.
    for other in ["01ARZ3NDEKTSV4RRFFQ69G5FAV", "not-an-id"] {
        let r = call(
            &s,
            "POST",
            &format!("/staging/webhooks/events/{other}/listeners"),
            READER,
            &report("a", 200.into(), ""),
        )
        .await;
        assert_eq!((r.status, r.code().as_str()), (404, "not_found"), "{other}");
    }
    s.stop().await;
}

async fn listed(s: &TestServer) -> Vec<Value> {
    let r = call(s, "GET", "/staging/webhooks/listeners", READER, b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["listeners"].as_array().unwrap().clone()
}

async fn gauge(s: &TestServer) -> f64 {
    let r = call(s, "GET", "/metrics", ADMIN, b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    promtool_finds_no_problem(&r.text());
    samples(&r.text())["stagehook_listeners"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_listeners_are_listed_while_their_streams_are_open() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(with_tokens(dir.path())).await;
    let auth = bearer(READER);
    let headers = [("authorization", auth.as_str())];
    assert_eq!(gauge(&s).await, 0.0);
    let (status, alice) =
        open_stream(s.addr, "?listener=alice&listener_host=alice-mbp&listener_filters=provider%3Dstripe", &headers)
            .await;
    assert_eq!(status, 200);
    let (status, bob) = open_stream(s.addr, "?listener=bob&provider=twilio", &headers).await;
    assert_eq!(status, 200);
    // A stream without `listener` is no listener.
    let (status, _plain) = open_stream(s.addr, "", &headers).await;
    assert_eq!(status, 200);

    let list = listed(&s).await;
    assert_eq!(list.len(), 2, "{list:?}");
    let a = list.iter().find(|l| l["name"] == "alice").expect("alice is listed");
    assert_eq!((a["host"].as_str(), a["filters"].as_str()), (Some("alice-mbp"), Some("provider=stripe")));
    assert_eq!(a["client"], "127.0.0.1");
    assert!(a["since_ms"].as_i64().is_some_and(|t| t > 0) && a["last_event"].is_null(), "{a}");
    let b = list.iter().find(|l| l["name"] == "bob").expect("bob is listed");
    assert!(b["host"].is_null() && b["filters"].is_null(), "{b}");
    assert_eq!(gauge(&s).await, 2.0);

    // A report names the last event the listener delivered.
    let id = s.stripe_id(&stripe_event("evt_listen_2")).await;
    let path = format!("/staging/webhooks/events/{id}/listeners");
    assert_eq!(call(&s, "POST", &path, READER, &report("alice", 204.into(), "")).await.status, 200);
    let list = listed(&s).await;
    let a = list.iter().find(|l| l["name"] == "alice").unwrap();
    assert_eq!((a["last_event"]["id"].as_str(), a["last_event"]["status"].as_u64()), (Some(id.as_str()), Some(204)));
    assert!(list.iter().find(|l| l["name"] == "bob").unwrap()["last_event"].is_null());

    // A closed stream is no longer listed.
    drop(alice);
    until("alice's stream to be gone", || async {
        let list = listed(&s).await;
        (list.len() == 1 && list[0]["name"] == "bob").then_some(())
    })
    .await;
    assert_eq!(gauge(&s).await, 1.0);
    drop(bob);
    until("bob's stream to be gone", || async { listed(&s).await.is_empty().then_some(()) }).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_parameter_past_its_bound_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(with_tokens(dir.path())).await;
    let auth = bearer(ADMIN);
    let headers = [("authorization", auth.as_str())];
    let cases = [
        format!("?listener={}", "n".repeat(65)),
        "?listener=".to_string(),
        format!("?listener=a&listener_host={}", "h".repeat(256)),
        format!("?listener=a&listener_filters={}", "f".repeat(513)),
        "?listener=a%0Ab".to_string(),
    ];
    for query in &cases {
        // Only the head is read: a stream opened by mistake fails the test rather than holding it.
        let (status, head, conn) = open_stream_head(s.addr, query, &headers).await;
        assert_eq!(status, 400, "{query}: {head}");
        assert_eq!(refusal_code(conn).await, "invalid_payload", "{query}");
    }
    // The bounds themselves are accepted.
    let at_bounds =
        format!("?listener={}&listener_host={}&listener_filters={}", "n".repeat(64), "h".repeat(255), "f".repeat(512));
    let (status, _stream) = open_stream(s.addr, &at_bounds, &headers).await;
    assert_eq!(status, 200);
    assert_eq!(listed(&s).await.len(), 1);
    s.stop().await;
}

/// The dashboard lists the active listeners and shows a report beside the event's attempts,
/// under its Content Security Policy (no inline script).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_listeners_and_their_reports() {
    let scenario = Box::pin(dashboard_scenario());
    tokio::time::timeout(std::time::Duration::from_secs(240), scenario)
        .await
        .expect("the browser scenario within 4 min");
}

async fn dashboard_scenario() {
    use crate::webdriver::Browser;
    let dir = tempfile::tempdir().unwrap();
    let mut c = with_tokens(dir.path());
    c.server.admin_token = None;
    let s = start(c).await;
    let id = s.stripe_id(&stripe_event("evt_listen_dash")).await;
    let path = format!("/staging/webhooks/events/{id}/listeners");
    assert_eq!(call(&s, "POST", &path, READER, &report("alice", 200.into(), "ok")).await.status, 200);
    let (status, _alice) =
        open_stream(s.addr, "?listener=alice&listener_host=alice-mbp&listener_filters=provider%3Dstripe", &[]).await;
    assert_eq!(status, 200);

    let browser = Browser::start().await;
    browser.goto(&format!("http://{}/", s.addr)).await;
    browser
        .wait("the listener's row", || async {
            browser
                .text("#listeners-table tbody tr")
                .await
                .filter(|t| t.contains("alice on alice-mbp") && t.contains("provider=stripe"))
        })
        .await;
    let row = format!("#events-table tbody tr[data-id=\"{id}\"]");
    browser.wait("the event's row", || async { (browser.count(&row).await == 1).then_some(()) }).await;
    browser.click(&row).await;
    browser
        .wait("the report beside the attempts", || async {
            browser
                .text("#detail-listeners li")
                .await
                .filter(|t| t.contains("delivered to alice on dev-laptop.local: 200 in 12 ms"))
        })
        .await;
    let console = browser.console().await;
    let violations: Vec<&String> =
        console.iter().filter(|m| m.contains("Content Security Policy") || m.contains("Refused to")).collect();
    assert!(violations.is_empty(), "{violations:#?}");
    browser.quit().await;
    s.stop().await;
}
