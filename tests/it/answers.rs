//! What the app answered: every delivery attempt keeps the answer's status, headers (shown
//! redacted) and the start of its body (`delivery.capture_body_bytes`), successes included; an
//! attempt slower than its provider's published delivery timeout is flagged in the attempt and
//! counted in `/metrics`, while stagehook's own `timeout` still decides the outcome. The app is
//! a real HTTP server that answers each path its own way.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use stagehook::config::Config;
use stagehook::providers::{slack, KindConfig};
use stagehook::secret::Secret;
use warp::http::Response;
use warp::Filter;

use crate::support::{self, config, request, start, stripe_event, until, wait_status};

/// An HTML error page whose markup must reach the dashboard as text, never as elements.
pub(crate) const HTML_ERROR: &str =
    "<!doctype html><h1 id=\"app-crash\">Internal Server Error</h1><img src=x onerror=\"window.pwned=1\">";
/// Not UTF-8: shown as base64.
const BINARY: [u8; 6] = [0xff, 0xfe, 0x00, 0x01, 0x80, 0x7f];
/// Longer than the provider's timeout (Slack's 3 s, the shortest published), shorter than
/// stagehook's own `timeout` in the test that uses it.
const SLOW: Duration = Duration::from_millis(3300);

/// The app under test: `/json` answers 200 with JSON and a cookie, `/html` 500 with an HTML
/// page, `/big` 200 with 10 000 bytes of text, `/binary` 200 with bytes that are not UTF-8, and
/// `/slow` 200 after [`SLOW`].
pub(crate) async fn answering_app() -> SocketAddr {
    let reply = |status: u16, content_type: &str, body: Vec<u8>| {
        Response::builder().status(status).header("content-type", content_type).body(body).unwrap()
    };
    let json = warp::path("json").map(move || {
        let mut r = reply(200, "application/json", br#"{"ok":true,"order":"ord_42"}"#.to_vec());
        r.headers_mut().insert("set-cookie", "session=s3cr3t-cookie; HttpOnly".parse().unwrap());
        r.headers_mut().insert("x-request-id", "req-7".parse().unwrap());
        r
    });
    let html = warp::path("html").map(move || reply(500, "text/html; charset=utf-8", HTML_ERROR.as_bytes().to_vec()));
    let big = warp::path("big").map(move || reply(200, "text/plain", "a".repeat(10_000).into_bytes()));
    let binary = warp::path("binary").map(move || reply(200, "application/octet-stream", BINARY.to_vec()));
    let slow = warp::path("slow").then(move || async move {
        tokio::time::sleep(SLOW).await;
        reply(200, "text/plain", b"done".to_vec())
    });
    let routes = warp::post().and(json.or(html).unify().or(big).unify().or(binary).unify().or(slow).unify());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(routes).incoming(listener).run());
    addr
}

/// The attempts of the event `id` once it is `status`.
async fn history(s: &support::TestServer, id: &str, status: &str) -> Vec<Value> {
    wait_status(s, id, status).await["history"].as_array().unwrap().clone()
}

fn header<'a>(response: &'a Value, name: &str) -> Option<&'a str> {
    response["headers"].as_array()?.iter().find(|h| h[0] == name).and_then(|h| h[1].as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_answer_is_kept_with_its_headers_and_the_cookie_redacted() {
    let app = answering_app().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start(support::forwarding(dir.path(), "stripe", format!("http://{app}/json"))).await;
    let id = s.stripe_id(&stripe_event("evt_answer_json")).await;
    let attempts = history(&s, &id, "processed").await;
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    let a = &attempts[0];
    assert_eq!((a["status"].as_u64(), a["outcome"].as_str()), (Some(200), Some("delivered")), "{a}");
    let r = &a["response"];
    assert_eq!(r["content_type"], "application/json", "{r}");
    assert_eq!(r["body"], r#"{"ok":true,"order":"ord_42"}"#, "{r}");
    assert_eq!((r["body_encoding"].as_str(), r["body_truncated"].as_bool()), (Some("utf8"), Some(false)), "{r}");
    assert_eq!(r["body_bytes"], 28, "{r}");
    assert_eq!(header(r, "x-request-id"), Some("req-7"), "{r}");
    assert_eq!(header(r, "set-cookie"), Some("[redacted]"), "{r}");
    let shown = s.get(&format!("/staging/webhooks/events/{id}")).await.text();
    assert!(!shown.contains("s3cr3t-cookie"), "the cookie is never shown: {shown}");
    // Stripe publishes no delivery timeout: nothing to be slower than.
    assert_eq!(a["slower_than_provider"], Value::Null, "{a}");
    // The answer is stored whole: the redaction is the API's.
    let stored = s.store.attempts(id.parse().unwrap()).unwrap().remove(0).unwrap();
    let cookie = stored.answer.unwrap().headers.into_iter().find(|(k, _)| k == "set-cookie").unwrap();
    assert_eq!(cookie.1, "session=s3cr3t-cookie; HttpOnly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_error_answer_is_kept_as_text() {
    let app = answering_app().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = support::forwarding(dir.path(), "stripe", format!("http://{app}/html"));
    c.retry.max_attempts = 1;
    let s = start(c).await;
    let id = s.stripe_id(&stripe_event("evt_answer_html")).await;
    let attempts = history(&s, &id, "failed").await;
    let a = &attempts[0];
    assert_eq!((a["status"].as_u64(), a["outcome"].as_str()), (Some(500), Some("failed")), "{a}");
    let r = &a["response"];
    assert_eq!(r["content_type"], "text/html; charset=utf-8", "{r}");
    assert_eq!((r["body"].as_str(), r["body_encoding"].as_str()), (Some(HTML_ERROR), Some("utf8")), "{r}");
    assert_eq!(r["body_truncated"], false, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_capture_limit_cuts_the_body_and_binary_bodies_are_base64() {
    let app = answering_app().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.providers.get_mut("stripe").unwrap().forward_to =
        vec![format!("http://{app}/big"), format!("http://{app}/binary")];
    c.delivery.capture_body_bytes = 100;
    let s = start(c).await;
    let id = s.stripe_id(&stripe_event("evt_answer_big")).await;
    let attempts = until("both targets' attempts", || async {
        let h = history(&s, &id, "processed").await;
        (h.len() == 2).then_some(h)
    })
    .await;
    let of = |path: &str| {
        attempts.iter().find(|a| a["target"].as_str().unwrap().ends_with(path)).unwrap()["response"].clone()
    };
    let big = of("/big");
    let kept = big["body"].as_str().unwrap();
    assert!(kept.len() == 100 && kept.bytes().all(|b| b == b'a'), "{} bytes kept", kept.len());
    assert_eq!((big["body_bytes"].as_u64(), big["body_truncated"].as_bool()), (Some(10_000), Some(true)), "{big}");
    let binary = of("/binary");
    assert_eq!(
        (binary["body"].as_str(), binary["body_encoding"].as_str()),
        (Some("//4AAYB/"), Some("base64")),
        "{binary}"
    );
    assert_eq!(binary["body_truncated"], false, "{binary}");
}

#[test]
fn the_capture_limit_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    assert_eq!(c.delivery.capture_body_bytes, 8192, "the default is 8 KiB");
    c.delivery.capture_body_bytes = 65_536;
    c.check().unwrap();
    c.delivery.capture_body_bytes = 65_537;
    let e = c.check().unwrap_err().to_string();
    assert!(e.contains("delivery.capture_body_bytes") && e.contains("between 0 and 65536"), "{e}");
    let e = Config::from_toml("[delivery]\ncapture_body_bytes = -1\n").map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("capture_body_bytes"), "{e}");
}

const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// A signed Slack event to stagehook's `slack` endpoint.
async fn post_slack(addr: SocketAddr, event_id: &str) {
    let body = json!({
        "token": "z26uFbvR1xHJEdHE1OQiO6t8",
        "team_id": "T061EG9RZ",
        "api_app_id": "A0FFV41KK",
        "event": {"type": "app_mention", "user": "U061F7AUR", "text": "hi", "ts": "1515449522.000016", "channel": "C0LAN2Q65"},
        "type": "event_callback",
        "event_id": event_id,
        "event_time": 1515449522,
    })
    .to_string();
    let ts = support::now_s().to_string();
    let sig = crate::sdk_slack::generate_signature(SLACK_SECRET, &ts, &body);
    let headers =
        [("content-type", "application/json"), ("x-slack-request-timestamp", ts.as_str()), ("x-slack-signature", &sig)];
    let r = request(addr, "POST", "/staging/webhooks/slack", &headers, body.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_is_flagged_against_slacks_timeout_and_counted() {
    let app = answering_app().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    let kind: KindConfig = slack::Settings { secret: Some(Secret::new(SLACK_SECRET)), ..Default::default() }.into();
    c.providers.insert("slack".into(), kind.with_kind());
    let slack = c.providers.get_mut("slack").unwrap();
    slack.forward_to = vec![format!("http://{app}/slow")];
    // stagehook waits longer than Slack would: the attempt succeeds, and is flagged.
    slack.timeout = stagehook::config::HumanDuration(Duration::from_secs(20));
    let s = start(c).await;
    post_slack(s.addr, "Ev_slow_1").await;
    let listed = until("the slack event", || async {
        let r = s.get("/staging/webhooks/events?provider=slack").await.json();
        r["events"].as_array().and_then(|e| e.first()).map(|e| e["id"].as_str().unwrap().to_string())
    })
    .await;
    let attempts = history(&s, &listed, "processed").await;
    let a = &attempts[0];
    assert_eq!((a["status"].as_u64(), a["outcome"].as_str()), (Some(200), Some("delivered")), "{a}");
    assert!(a["duration_us"].as_u64().unwrap() > 3_000_000, "{a}");
    assert_eq!(
        a["slower_than_provider"],
        json!({
            "provider": "Slack",
            "timeout_s": 3,
            "message": "slower than Slack's 3 s timeout: the provider would have retried",
        }),
        "{a}"
    );
    assert_eq!(a["response"]["body"], "done", "{a}");

    let text = s.get("/metrics").await.text();
    let m = crate::metrics::samples(&text);
    assert_eq!(m.get("stagehook_deliveries_slower_than_provider_total{provider=\"slack\"}"), Some(&1.0), "{text}");
    // Twilio publishes a timeout too: its series is there, at 0; Stripe publishes none.
    assert_eq!(m.get("stagehook_deliveries_slower_than_provider_total{provider=\"twilio\"}"), Some(&0.0), "{text}");
    assert!(!text.contains("stagehook_deliveries_slower_than_provider_total{provider=\"stripe\"}"), "{text}");
    crate::metrics::promtool_finds_no_problem(&text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_an_html_answer_as_text_and_the_slow_flag() {
    // On the heap and bounded, as the dashboard's own scenarios are.
    let scenario = Box::pin(dashboard_answers());
    tokio::time::timeout(Duration::from_secs(240), scenario).await.expect("the browser scenario finished in 4 min");
}

async fn dashboard_answers() {
    let app = answering_app().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = support::forwarding(dir.path(), "stripe", format!("http://{app}/html"));
    c.retry.max_attempts = 1;
    let kind: KindConfig = slack::Settings { secret: Some(Secret::new(SLACK_SECRET)), ..Default::default() }.into();
    c.providers.insert("slack".into(), kind.with_kind());
    c.providers.get_mut("slack").unwrap().forward_to = vec![format!("http://{app}/slow")];
    let s = start(c).await;
    let html_id = s.stripe_id(&stripe_event("evt_answer_dash")).await;
    post_slack(s.addr, "Ev_slow_dash").await;
    wait_status(&s, &html_id, "failed").await;
    let slack_id = until("the slack event delivered", || async {
        let r = s.get("/staging/webhooks/events?provider=slack&status=processed").await.json();
        r["events"].as_array().and_then(|e| e.first()).map(|e| e["id"].as_str().unwrap().to_string())
    })
    .await;

    let browser = crate::webdriver::Browser::start().await;
    browser.goto(&format!("http://{}/?poll=300", s.addr)).await;
    let open = |id: String| {
        let browser = &browser;
        async move {
            let row = format!("#events-table tbody tr[data-id=\"{id}\"]");
            browser.wait("the event's row", || async { (browser.count(&row).await == 1).then_some(()) }).await;
            browser.click(&row).await;
            browser
                .wait("the detail's attempt", || async {
                    let shown = browser.eval("return document.querySelector('#detail').dataset.id;", json!([])).await;
                    (shown == json!(id) && browser.count("#detail-history .attempt-answer").await == 1).then_some(())
                })
                .await;
        }
    };

    open(html_id.clone()).await;
    let body =
        browser.eval("return document.querySelector('#detail-history .answer-body').textContent;", json!([])).await;
    assert_eq!(body, json!(HTML_ERROR), "the HTML answer is shown as its text");
    // Nothing of the markup became an element: no heading, no image, no handler ran.
    let made = browser
        .eval(
            "return [document.querySelector('#app-crash') === null, \
                     document.querySelectorAll('#detail-history img').length, \
                     document.querySelector('#detail-history .answer-body').childElementCount, \
                     typeof window.pwned];",
            json!([]),
        )
        .await;
    assert_eq!(made, json!([true, 0, 0, "undefined"]), "no element was created from the answer");
    // Read from the DOM: a folded <details> hides its text from WebDriver's visible text.
    let headers =
        browser.eval("return document.querySelector('#detail-history .answer-headers').textContent;", json!([])).await;
    assert!(headers.as_str().unwrap().contains("content-type: text/html; charset=utf-8"), "{headers}");
    assert_eq!(browser.count("#detail-history .attempt-slow").await, 0, "Stripe publishes no timeout");

    open(slack_id).await;
    let slow = browser
        .wait("the slow flag", || async {
            browser.text("#detail-history .attempt-slow").await.filter(|t| !t.is_empty())
        })
        .await;
    assert_eq!(slow, "slower than Slack's 3 s timeout: the provider would have retried");
    browser.quit().await;
}
